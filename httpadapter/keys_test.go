package httpadapter_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"

	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
	"github.com/p2kit/p2kit/p2core/idcert"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
)

func clientKey(t *testing.T, uid string) *idcerttest.ClientKey {
	t.Helper()
	k, err := idcerttest.NewClientKey(uid, nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serverKeyAt(t *testing.T, e *env, at time.Time) *idcert.ServerKey {
	t.Helper()
	pub, err := e.anon().ServerKey(ctx, at)
	if err != nil {
		t.Fatal(err)
	}
	k, err := idcert.ParsePublicServerKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestIDCertIssuedVerifiesAndIsListed(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(101, "alice", false)
	k := clientKey(t, "Alice <alice@home.test>")
	cert, err := alice.c.IssueIDCert(ctx, k.Armored)
	if err != nil {
		t.Fatal(err)
	}
	c, err := idcert.Verify(cert, serverKeyAt(t, e, time.Time{}), e.clock.Now())
	if err != nil {
		t.Fatalf("our own cert does not verify: %v", err)
	}
	if c.FID != "alice@home.test" || c.SessionID != string(alice.session) {
		t.Errorf("cert says FID %q session %q", c.FID, c.SessionID)
	}
	if !bytes.Equal(c.MLSSignatureKey, k.Signer.Public().(ed25519.PublicKey)) {
		t.Error("cert does not certify the uploaded key")
	}
	if d := c.Expires.Sub(c.IssuedAt); d != 30*24*time.Hour {
		t.Errorf("lifetime %v, want 30 days", d)
	}
	listed, err := e.anon().UserIDCerts(ctx, 101, time.Time{})
	if err != nil || len(listed) != 1 || !bytes.Equal(listed[0], cert) {
		t.Fatalf("route 9 = %d certs, %v", len(listed), err)
	}
	// A second cert supersedes the first; the history answers for the past.
	issued := e.clock.Now()
	e.clock.Add(time.Hour)
	cert2, err := alice.c.IssueIDCert(ctx, clientKey(t, "alice@home.test").Armored)
	if err != nil {
		t.Fatal(err)
	}
	listed, _ = e.anon().UserIDCerts(ctx, 101, time.Time{})
	if len(listed) != 1 || !bytes.Equal(listed[0], cert2) {
		t.Fatalf("after a new cert route 9 lists %d certs (want only the new one)", len(listed))
	}
	listed, _ = e.anon().UserIDCerts(ctx, 101, issued.Add(time.Minute))
	if len(listed) != 1 || !bytes.Equal(listed[0], cert) {
		t.Fatalf("route 9 at the old instant lists %d certs (want the old one)", len(listed))
	}
	listed, _ = e.anon().UserIDCerts(ctx, 101, issued.Add(-time.Hour))
	if len(listed) != 0 {
		t.Fatalf("route 9 before any cert lists %d", len(listed))
	}
}

func TestIDCertRefusals(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(101, "alice", false)
	cases := map[string]string{
		"another user's FID": clientKey(t, "bob@home.test").Armored,
		"lookalike FID":      clientKey(t, "Mallory <alice@home.test.evil>").Armored,
		"garbage":            "hello",
		"private key":        privateArmored(t),
		// Names that pass for another user wherever the User ID is shown.
		"address as name":        keyWithUserID(t, "bob@home.test <alice@home.test>"),
		"full-width brackets":    keyWithUserID(t, "Bob \uff1cbob@home.test\uff1e <alice@home.test>"),
		"right-to-left override": keyWithUserID(t, "\u202etset.emoh@bob <alice@home.test>"),
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := alice.c.IssueIDCert(ctx, body)
			apiErr(t, err, 400, "P2CORE_INVALID_PUBLIC_KEY")
		})
	}
	_, err := e.anon().IssueIDCert(ctx, clientKey(t, "alice@home.test").Armored)
	apiErr(t, err, 401, "P2CORE_UNAUTHORIZED")
	_, err = alice.c.IssueIDCert(ctx, strings.Repeat("A", 70<<10))
	apiErr(t, err, 400, "P2CORE_INVALID_PUBLIC_KEY")
}

// keyWithUserID returns an armored public key whose only User ID is exactly
// uid, self-signed, whatever go-crypto's own User ID rules would allow.
func keyWithUserID(t *testing.T, uid string) string {
	t.Helper()
	e := clientKey(t, "x@other.test").Entity
	sig := &packet.Signature{
		Version: e.PrimaryKey.Version, SigType: packet.SigTypePositiveCert, PubKeyAlgo: e.PrimaryKey.PubKeyAlgo,
		Hash: crypto.SHA256, CreationTime: time.Now().Add(-time.Minute), IssuerKeyId: &e.PrimaryKey.KeyId,
		FlagsValid: true, FlagSign: true, FlagCertify: true,
	}
	if err := sig.SignUserId(uid, e.PrimaryKey, e.PrivateKey, nil); err != nil {
		t.Fatal(err)
	}
	e.Identities = map[string]*openpgp.Identity{uid: {
		Primary: e, Name: uid, UserId: &packet.UserId{Id: uid},
		SelfCertifications: []*packet.VerifiableSignature{packet.NewVerifiableSig(sig)},
	}}
	var buf bytes.Buffer
	w, err := armorEncode(&buf, "PGP PUBLIC KEY BLOCK")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return buf.String()
}

func privateArmored(t *testing.T) string {
	t.Helper()
	k := clientKey(t, "alice@home.test")
	var buf bytes.Buffer
	w, err := armorEncode(&buf, "PGP PRIVATE KEY BLOCK")
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Entity.SerializePrivate(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return buf.String()
}

func TestServerKeyRotationKeepsOldCertsVerifiable(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.login(1, "root", true)
	alice := e.login(101, "alice", false)
	oldCert, err := alice.c.IssueIDCert(ctx, clientKey(t, "alice@home.test").Armored)
	if err != nil {
		t.Fatal(err)
	}
	before := e.clock.Now()
	e.clock.Add(time.Hour)

	_, err = alice.c.RotateServerKey(ctx)
	apiErr(t, err, 403, "P2CORE_NOT_ADMINISTRATOR")
	armored, err := admin.c.RotateServerKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(armored, "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
		t.Fatalf("route 11 answer is not armored: %.40q", armored)
	}
	newKey := serverKeyAt(t, e, time.Time{})
	oldKey := serverKeyAt(t, e, before)
	if bytes.Equal(newKey.Fingerprint(), oldKey.Fingerprint()) {
		t.Fatal("rotation did not change the key")
	}
	if _, err := idcert.Verify(oldCert, oldKey, e.clock.Now()); err != nil {
		t.Fatalf("old cert against the key of its time: %v", err)
	}
	if _, err := idcert.Verify(oldCert, newKey, e.clock.Now()); err == nil {
		t.Fatal("old cert verified against the new key")
	}
	newCert, err := alice.c.IssueIDCert(ctx, clientKey(t, "alice@home.test").Armored)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idcert.Verify(newCert, newKey, e.clock.Now()); err != nil {
		t.Fatalf("new cert against the new key: %v", err)
	}
	// Before the first key existed there was none.
	_, err = e.anon().ServerKey(ctx, before.Add(-24*time.Hour))
	apiErr(t, err, 404, "P2CORE_NOT_FOUND")
}

func TestServerKeyArmoredOnRequest(t *testing.T) {
	e := newEnv(t, nil)
	req, _ := http.NewRequest("GET", e.srv.URL+"/p2core/key/server", nil)
	req.Header.Set("Accept", "application/pgp-keys")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pgp-keys" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	k, err := idcert.ParsePublicServerKey(body)
	if err != nil {
		t.Fatal(err)
	}
	if k.Domain() != "home.test" {
		t.Errorf("server key User ID %q, want the domain", k.Domain())
	}
	status, _, b := e.raw("GET", "/p2core/key/server?timestamp=abc", "", "")
	wantError(t, status, b, 400, "P2CORE_BAD_REQUEST")
}
