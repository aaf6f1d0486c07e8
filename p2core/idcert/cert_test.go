package idcert

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
	"github.com/google/uuid"
)

// clientCase is a client key source for round-trip tests.
type clientCase struct {
	name    string
	fid     string
	armored func(t testing.TB) []byte
}

func clientCases() []clientCase {
	return []clientCase{
		{"openpgpjs-legacy", "alice@example.com", func(t testing.TB) []byte { return openpgpjsKey(t, "legacy") }},
		{"openpgpjs-v6", "alice@example.com", func(t testing.TB) []byte { return openpgpjsKey(t, "v6") }},
		{"openpgpjs-p256", "alice@example.com", func(t testing.TB) []byte { return openpgpjsKey(t, "p256") }},
		{"gpg-ed25519", "alice@x", func(t testing.TB) []byte { return gpgClientKey(t, "alice@x") }},
		{"gocrypto-ed25519", "alice@example.com", func(t testing.TB) []byte { return armoredPublic(t, newEntity(t, aliceSpec())) }},
		{"gocrypto-ed448-v6", "alice@example.com", func(t testing.TB) []byte {
			return armoredPublic(t, newEntity(t, keySpec{name: "Alice", email: "alice@example.com", alg: packet.PubKeyAlgoEd448, v6: true}))
		}},
	}
}

func TestIssueVerifyRoundTripForEveryServerAlgorithmAndClient(t *testing.T) {
	for _, alg := range allServerAlgorithms {
		server := testServerKey(t, alg)
		public, err := ParsePublicServerKey(server.PublicArmored()) // what a foreign server holds
		if err != nil {
			t.Fatal(err)
		}
		for _, cc := range clientCases() {
			t.Run(string(alg)+"/"+cc.name, func(t *testing.T) {
				now := time.Now().Truncate(time.Second).UTC()
				client, err := ParseClientKey(cc.armored(t), cc.fid, now, Policy{})
				if err != nil {
					t.Fatal(err)
				}
				serial := uuid.Must(uuid.NewV7())
				issued, err := Issue(server, client, IssueParams{SessionID: "session-1", Serial: serial, Now: now})
				if err != nil {
					t.Fatal(err)
				}
				mls, _ := client.MLSSignatureKey()
				want := Cert{
					FID: strings.ToLower(cc.fid), UserID: client.UserID(), SessionID: "session-1", Serial: serial,
					IssuedAt: now, Expires: now.Add(DefaultCertLifetime),
					IssuerFingerprint: server.Fingerprint(), ClientFingerprint: client.Fingerprint(),
					ClientAlgorithm: client.Algorithm(), MLSSignatureKey: mls, Raw: issued.Raw,
				}
				assertCert(t, "Issue", issued, want)
				for name, k := range map[string]*ServerKey{"private": server, "public": public} {
					got, err := Verify(issued.Raw, k, now)
					if err != nil {
						t.Fatalf("Verify with %s key: %v", name, err)
					}
					assertCert(t, "Verify", got, want)
				}
				parsed, err := ParseCert(issued.Raw)
				if err != nil {
					t.Fatal(err)
				}
				assertCert(t, "ParseCert", parsed, want)
				if err := VerifyFID(parsed, strings.ToUpper(cc.fid)); err != nil {
					t.Fatal(err)
				}
				assertOnlyCertificationAdded(t, client, issued.Raw)
			})
		}
	}
}

func assertCert(t *testing.T, what string, got *Cert, want Cert) {
	t.Helper()
	g, w := *got, want
	if !bytes.Equal(g.IssuerFingerprint, w.IssuerFingerprint) || !bytes.Equal(g.ClientFingerprint, w.ClientFingerprint) ||
		!bytes.Equal(g.MLSSignatureKey, w.MLSSignatureKey) || !bytes.Equal(g.Raw, w.Raw) ||
		!g.IssuedAt.Equal(w.IssuedAt) || !g.Expires.Equal(w.Expires) {
		t.Fatalf("%s: got %+v\nwant %+v", what, g, w)
	}
	if g.FID != w.FID || g.UserID != w.UserID || g.SessionID != w.SessionID || g.Serial != w.Serial || g.ClientAlgorithm != w.ClientAlgorithm {
		t.Fatalf("%s: got %+v\nwant %+v", what, g, w)
	}
}

// assertOnlyCertificationAdded checks that cert is the client's packets,
// byte for byte, plus one signature packet right after the FID User ID's
// own signatures.
func assertOnlyCertificationAdded(t *testing.T, client *ClientKey, cert []byte) {
	t.Helper()
	pkts, err := splitPackets(cert)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkts) != len(client.pkts)+1 {
		t.Fatalf("%d packets, client had %d", len(pkts), len(client.pkts))
	}
	at := client.uidIndex + 1
	for at < len(client.pkts) && client.pkts[at].tag == tagSignature {
		at++
	}
	if pkts[at].tag != tagSignature {
		t.Fatalf("packet %d has tag %d, want the certification", at, pkts[at].tag)
	}
	rest := append(append([]rawPacket{}, pkts[:at]...), pkts[at+1:]...)
	for i := range rest {
		if !bytes.Equal(rest[i].full, client.pkts[i].full) {
			t.Fatalf("client packet %d changed", i)
		}
	}
}

func TestVerifyRejectsEveryFlippedByteOfKeyUserIDAndCertification(t *testing.T) {
	for _, alg := range allServerAlgorithms {
		t.Run(string(alg), func(t *testing.T) {
			server := testServerKey(t, alg)
			now := time.Now()
			client, err := ParseClientKey(openpgpjsKey(t, "legacy"), "alice@example.com", now, Policy{})
			if err != nil {
				t.Fatal(err)
			}
			c, err := Issue(server, client, IssueParams{SessionID: "s", Now: now})
			if err != nil {
				t.Fatal(err)
			}
			pkts, _ := splitPackets(c.Raw)
			var regions [][2]int // [start, end) offsets in c.Raw
			off := 0
			for _, p := range pkts {
				if p.tag == tagPublicKey || p.tag == tagUserID || (p.tag == tagSignature && issuedBy(p, server)) {
					regions = append(regions, [2]int{off, off + len(p.full)})
				}
				off += len(p.full)
			}
			if len(regions) != 3 {
				t.Fatalf("found %d regions", len(regions))
			}
			tried := 0
			for _, r := range regions {
				for i := r[0]; i < r[1]; i++ {
					for _, mask := range []byte{0x01, 0x80, 0xff} {
						bad := bytes.Clone(c.Raw)
						bad[i] ^= mask
						tried++
						if _, err := Verify(bad, server, now); !errors.Is(err, ErrInvalidCert) {
							t.Fatalf("flipping byte %d with %#x: Verify returned %v, want ErrInvalidCert", i, mask, err)
						}
					}
				}
			}
			t.Logf("%d tampered certificates refused", tried)
		})
	}
}

func TestVerifyRejectsOtherServersKey(t *testing.T) {
	now := time.Now()
	c := issueFor(t, testServerKey(t, ServerEd25519Legacy), now, IssueParams{SessionID: "s", Now: now})
	other, err := GenerateServerKey("example.com", ServerEd25519Legacy, now.Add(-time.Hour), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(c.Raw, other, now); !errors.Is(err, ErrInvalidCert) || !strings.Contains(err.Error(), "no certification by server key") {
		t.Fatalf("got %v", err)
	}
	if _, err := Verify(c.Raw, testServerKey(t, ServerEd25519), now); !errors.Is(err, ErrInvalidCert) {
		t.Fatalf("got %v", err)
	}
}

func TestVerifyFIDRejectsOtherFID(t *testing.T) {
	now := time.Now()
	c := issueFor(t, testServerKey(t, ServerEd25519Legacy), now, IssueParams{SessionID: "s", Now: now})
	for _, fid := range []string{"bob@example.com", "alice@example.org", "alice@example.com.evil", ""} {
		if err := VerifyFID(c, fid); !errors.Is(err, ErrInvalidCert) {
			t.Errorf("VerifyFID(%q) = %v", fid, err)
		}
	}
	if err := VerifyFID(c, "Alice@EXAMPLE.com"); err != nil {
		t.Errorf("case-insensitive FID refused: %v", err)
	}
	if err := VerifyFID(nil, "alice@example.com"); !errors.Is(err, ErrInvalidCert) {
		t.Errorf("nil cert: %v", err)
	}
}

// issueFor issues a certificate for the OpenPGP.js legacy test key.
func issueFor(t *testing.T, server *ServerKey, now time.Time, p IssueParams) *Cert {
	t.Helper()
	client, err := ParseClientKey(openpgpjsKey(t, "legacy"), "alice@example.com", now, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Issue(server, client, p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerifyHonoursTheValidityWindow(t *testing.T) {
	server := testServerKey(t, ServerEd25519Legacy)
	issuedAt := time.Now().Truncate(time.Second)
	c := issueFor(t, server, issuedAt, IssueParams{SessionID: "s", Now: issuedAt, Lifetime: time.Hour})
	if !c.Expires.Equal(issuedAt.Add(time.Hour)) {
		t.Fatalf("expires %v", c.Expires)
	}
	for _, ok := range []time.Time{issuedAt, issuedAt.Add(59*time.Minute + 59*time.Second)} {
		if _, err := Verify(c.Raw, server, ok); err != nil {
			t.Errorf("at %v: %v", ok, err)
		}
	}
	_, err := Verify(c.Raw, server, issuedAt.Add(time.Hour))
	if !errors.Is(err, ErrCertExpired) || !errors.Is(err, ErrInvalidCert) {
		t.Errorf("at expiry: %v", err)
	}
	_, err = Verify(c.Raw, server, issuedAt.Add(-time.Second))
	if !errors.Is(err, ErrInvalidCert) || errors.Is(err, ErrCertExpired) {
		t.Errorf("before issue: %v", err)
	}
	if _, err := Verify(c.Raw, server, time.Time{}); err != nil {
		t.Errorf("zero now (meaning time.Now()): %v", err)
	}
}

func TestIssueClampsExpiryToTheServerKeyExpiry(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	server, err := GenerateServerKey("example.com", ServerEd25519Legacy, now.Add(-time.Hour), 10*24*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := issueFor(t, server, now, IssueParams{SessionID: "s", Now: now}) // asks for 30 days
	if !c.Expires.Equal(server.Expires()) {
		t.Fatalf("cert expires %v, server key %v", c.Expires, server.Expires())
	}
	if _, err := Verify(c.Raw, server, server.Expires().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(c.Raw, server, server.Expires()); !errors.Is(err, ErrCertExpired) {
		t.Fatalf("at server key expiry: %v", err)
	}
	client, _ := ParseClientKey(openpgpjsKey(t, "legacy"), "alice@example.com", now, Policy{})
	late := server.Expires()
	if _, err := Issue(server, client, IssueParams{SessionID: "s", Now: late}); !errors.Is(err, ErrInvalidServerKey) {
		t.Fatalf("issuing with an expired server key: %v", err)
	}
}

func TestIssueClampsExpiryToTheClientKeyExpiry(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	e := newEntity(t, keySpec{name: "Alice", email: "alice@example.com", created: now.Add(-time.Hour), lifetime: 5 * 24 * 3600})
	client, err := ParseClientKey(armoredPublic(t, e), "alice@example.com", now, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := Issue(testServerKey(t, ServerEd25519Legacy), client, IssueParams{SessionID: "s", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(-time.Hour + 5*24*time.Hour); !c.Expires.Equal(want) || !client.Expires().Equal(want) {
		t.Fatalf("cert expires %v, client key %v, want %v", c.Expires, client.Expires(), want)
	}
}

func TestIssueRefusesBadParameters(t *testing.T) {
	now := time.Now()
	server := testServerKey(t, ServerEd25519Legacy)
	public, _ := ParsePublicServerKey(server.PublicBinary())
	client, err := ParseClientKey(openpgpjsKey(t, "legacy"), "alice@example.com", now, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	badVariant := uuid.Must(uuid.NewV7())
	badVariant[8] &= 0x3f // NCS variant
	cases := []struct {
		name   string
		server *ServerKey
		client *ClientKey
		p      IssueParams
		want   error
	}{
		{"empty session", server, client, IssueParams{Now: now}, ErrInvalidParams},
		{"long session", server, client, IssueParams{SessionID: strings.Repeat("x", 33), Now: now}, ErrInvalidParams},
		{"control character", server, client, IssueParams{SessionID: "a\nb", Now: now}, ErrInvalidParams},
		{"non-ASCII session", server, client, IssueParams{SessionID: "sé", Now: now}, ErrInvalidParams},
		{"negative lifetime", server, client, IssueParams{SessionID: "s", Now: now, Lifetime: -time.Hour}, ErrInvalidParams},
		{"sub-second lifetime", server, client, IssueParams{SessionID: "s", Now: now, Lifetime: time.Millisecond}, ErrInvalidParams},
		{"non-RFC serial", server, client, IssueParams{SessionID: "s", Now: now, Serial: badVariant}, ErrInvalidParams},
		{"no client", server, nil, IssueParams{SessionID: "s", Now: now}, ErrInvalidParams},
		{"public-only server key", public, client, IssueParams{SessionID: "s", Now: now}, ErrInvalidServerKey},
		{"nil server key", nil, client, IssueParams{SessionID: "s", Now: now}, ErrInvalidServerKey},
		{"zero server key", &ServerKey{}, client, IssueParams{SessionID: "s", Now: now}, ErrInvalidServerKey},
		{"zero client key", server, &ClientKey{}, IssueParams{SessionID: "s", Now: now}, ErrInvalidParams},
		{"before the server key existed", server, client, IssueParams{SessionID: "s", Now: server.Created().Add(-time.Second)}, ErrInvalidServerKey},
	}
	for _, c := range cases {
		if _, err := Issue(c.server, c.client, c.p); !errors.Is(err, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
}

func TestIssueDefaultsSerialAndTime(t *testing.T) {
	server := testServerKey(t, ServerEd25519Legacy)
	before := time.Now().Truncate(time.Second)
	c := issueFor(t, server, time.Now(), IssueParams{SessionID: "~ 32 printable ASCII characters!"})
	if c.Serial.Version() != 7 {
		t.Fatalf("serial %s is not a UUIDv7", c.Serial)
	}
	if c.IssuedAt.Before(before) || c.IssuedAt.After(time.Now()) || c.Expires.Sub(c.IssuedAt) != DefaultCertLifetime {
		t.Fatalf("issued %v expires %v", c.IssuedAt, c.Expires)
	}
	c2 := issueFor(t, server, time.Now(), IssueParams{SessionID: "s"})
	if c2.Serial == c.Serial {
		t.Fatal("two certificates got the same serial")
	}
}

// TestReissueReplacesTheServersEarlierCertification covers a client that
// uploads its ID-Cert (armored) as its key: the new certificate carries
// only the new certification, so Verify is not left to choose.
func TestReissueReplacesTheServersEarlierCertification(t *testing.T) {
	now := time.Now()
	server := testServerKey(t, ServerEd25519Legacy)
	first := issueFor(t, server, now, IssueParams{SessionID: "old", Now: now})
	client, err := ParseClientKey(armorOf(t, openpgp.PublicKeyType, first.Raw), "alice@example.com", now, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	second, err := Issue(server, client, IssueParams{SessionID: "new", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(second.Raw, server, now)
	if err != nil || got.SessionID != "new" || got.Serial != second.Serial {
		t.Fatalf("%+v %v", got, err)
	}
	if n := countServerSigs(t, second.Raw, server); n != 1 {
		t.Fatalf("%d certifications by the server", n)
	}
	// A certificate carrying both certifications is ambiguous and refused.
	both := insertAfterPacket(t, first.Raw, certPacket(t, second.Raw, server), certIndex(t, first.Raw, server))
	if _, err := Verify(both, server, now); !errors.Is(err, ErrInvalidCert) || !strings.Contains(err.Error(), "2 certifications") {
		t.Fatalf("got %v", err)
	}
	if _, err := ParseCert(both); !errors.Is(err, ErrInvalidCert) {
		t.Fatalf("ParseCert: %v", err)
	}
}

func countServerSigs(t *testing.T, raw []byte, server *ServerKey) int {
	t.Helper()
	pkts, err := splitPackets(raw)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range pkts {
		if p.tag == tagSignature && issuedBy(p, server) {
			n++
		}
	}
	return n
}

func certIndex(t *testing.T, raw []byte, server *ServerKey) int {
	t.Helper()
	pkts, _ := splitPackets(raw)
	for i, p := range pkts {
		if p.tag == tagSignature && issuedBy(p, server) {
			return i
		}
	}
	t.Fatal("no certification by the server")
	return -1
}

func certPacket(t *testing.T, raw []byte, server *ServerKey) []byte {
	t.Helper()
	pkts, _ := splitPackets(raw)
	return pkts[certIndex(t, raw, server)].full
}

func insertAfterPacket(t *testing.T, raw, pkt []byte, index int) []byte {
	t.Helper()
	pkts, err := splitPackets(raw)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for i, p := range pkts {
		b.Write(p.full)
		if i == index {
			b.Write(pkt)
		}
	}
	return b.Bytes()
}

// craftCert signs a certification like Issue does, after letting mutate
// change it, so that Verify's checks of each field can be exercised.
func craftCert(t *testing.T, server *ServerKey, now time.Time, mutate func(*packet.Signature)) []byte {
	t.Helper()
	client, err := ParseClientKey(openpgpjsKey(t, "legacy"), "alice@example.com", now, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	secs := uint32(3600)
	sig := &packet.Signature{
		Version: server.pub.Version, SigType: packet.SigTypeGenericCert, PubKeyAlgo: server.pub.PubKeyAlgo,
		Hash: crypto.SHA256, CreationTime: now.Truncate(time.Second), SigLifetimeSecs: &secs,
		IssuerKeyId: &server.pub.KeyId,
		Notations: []*packet.Notation{
			{Name: NotationSessionID, Value: []byte("s"), IsHumanReadable: true},
			{Name: NotationSerial, Value: []byte(uuid.Must(uuid.NewV7()).String()), IsHumanReadable: true},
		},
	}
	mutate(sig)
	cfg := &packet.Config{NonDeterministicSignaturesViaNotation: packet.BoolPointer(false)}
	h, err := sig.PrepareSign(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeCertifiedData(h, sig.Version, client.pkts[0].body, client.uid); err != nil {
		t.Fatal(err)
	}
	if err := sig.Sign(h, server.priv, cfg); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := sig.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return attachCertification(client, server, b.Bytes())
}

func TestVerifyChecksEveryFieldOfTheCertification(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	server := testServerKey(t, ServerEd25519Legacy)
	expiring, err := GenerateServerKey("example.com", ServerEd25519Legacy, now.Add(-time.Hour), 2*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	notation := func(name, value string, readable, critical bool) *packet.Notation {
		return &packet.Notation{Name: name, Value: []byte(value), IsHumanReadable: readable, IsCritical: critical}
	}
	cases := []struct {
		name    string
		server  *ServerKey
		mutate  func(*packet.Signature)
		message string
	}{
		{"as issued", server, func(*packet.Signature) {}, ""},
		{"no session notation", server, func(s *packet.Signature) { s.Notations = s.Notations[1:] }, "exactly once"},
		{"no serial notation", server, func(s *packet.Signature) { s.Notations = s.Notations[:1] }, "exactly once"},
		{"duplicate serial", server, func(s *packet.Signature) { s.Notations = append(s.Notations, s.Notations[1]) }, "exactly once"},
		{"session too long", server, func(s *packet.Signature) {
			s.Notations[0] = notation(NotationSessionID, strings.Repeat("s", 33), true, false)
		}, "printable ASCII"},
		{"binary session notation", server, func(s *packet.Signature) { s.Notations[0].IsHumanReadable = false }, "printable ASCII"},
		{"serial not a UUID", server, func(s *packet.Signature) { s.Notations[1] = notation(NotationSerial, "42", true, false) }, "canonical UUID"},
		{"serial in upper case", server, func(s *packet.Signature) {
			s.Notations[1].Value = []byte(strings.ToUpper(string(s.Notations[1].Value)))
		}, "canonical UUID"},
		{"serial as URN", server, func(s *packet.Signature) {
			s.Notations[1].Value = append([]byte("urn:uuid:"), s.Notations[1].Value...)
		}, "canonical UUID"},
		{"nil serial", server, func(s *packet.Signature) { s.Notations[1] = notation(NotationSerial, uuid.Nil.String(), true, false) }, "canonical UUID"},
		{"critical notation", server, func(s *packet.Signature) { s.Notations[0].IsCritical = true }, "critical notation"},
		{"unknown critical notation", server, func(s *packet.Signature) {
			s.Notations = append(s.Notations, notation("x@example.com", "y", true, true))
		}, "critical notation"},
		{"extra non-critical notation is fine", server, func(s *packet.Signature) {
			s.Notations = append(s.Notations, notation("x@example.com", "y", true, false))
		}, ""},
		{"no expiration", server, func(s *packet.Signature) { s.SigLifetimeSecs = nil }, "no expiration"},
		{"positive certification", server, func(s *packet.Signature) { s.SigType = packet.SigTypePositiveCert }, "not 0x10"},
		{"SHA-1", server, func(s *packet.Signature) { s.Hash = crypto.SHA1 }, "weak hash"},
		{"outlives the server key", expiring, func(s *packet.Signature) { v := uint32(3 * 3600); s.SigLifetimeSecs = &v }, "after the server key"},
		{"older than the server key", expiring, func(s *packet.Signature) { s.CreationTime = now.Add(-2 * time.Hour) }, "before the server key existed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := craftCert(t, c.server, now, c.mutate)
			_, err := Verify(raw, c.server, now)
			if c.message == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidCert) || !strings.Contains(err.Error(), c.message) {
				t.Fatalf("got %v, want ErrInvalidCert mentioning %q", err, c.message)
			}
		})
	}
}

func TestVerifyRejectsRevokedClientKey(t *testing.T) {
	now := time.Now()
	e := newEntity(t, aliceSpec())
	client, err := ParseClientKey(armoredPublic(t, e), "alice@example.com", now, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	server := testServerKey(t, ServerEd25519Legacy)
	c, err := Issue(server, client, IssueParams{SessionID: "s", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Revoke(packet.KeyCompromised, "stolen", nil); err != nil {
		t.Fatal(err)
	}
	var rev bytes.Buffer
	if err := e.Revocations[0].Packet.Serialize(&rev); err != nil {
		t.Fatal(err)
	}
	revoked := insertAfterPacket(t, c.Raw, rev.Bytes(), 0)
	if _, err := Verify(revoked, server, now); !errors.Is(err, ErrInvalidCert) || !strings.Contains(err.Error(), "revoked") {
		t.Fatalf("got %v", err)
	}
	flood := insertAfterPacket(t, c.Raw, bytes.Repeat(rev.Bytes(), 9), 0)
	if _, err := Verify(flood, server, now); !errors.Is(err, ErrInvalidCert) || !strings.Contains(err.Error(), "9 revocation signatures") {
		t.Fatalf("9 revocations: %v", err)
	}
}

func TestVerifyAndParseCertRefuseNonCertificates(t *testing.T) {
	now := time.Now()
	server := testServerKey(t, ServerEd25519Legacy)
	plain := publicBytes(t, newEntity(t, aliceSpec()))
	priv, _ := server.MarshalPrivate()
	for name, data := range map[string][]byte{
		"empty":                 nil,
		"garbage":               []byte("garbage"),
		"key without cert":      plain,
		"private key":           priv,
		"armored cert":          armorOf(t, openpgp.PublicKeyType, issueFor(t, server, now, IssueParams{SessionID: "s", Now: now}).Raw),
		"larger than the bound": make([]byte, MaxCertSize+1),
	} {
		if _, err := Verify(data, server, now); !errors.Is(err, ErrInvalidCert) {
			t.Errorf("Verify(%s) = %v", name, err)
		}
		if _, err := ParseCert(data); !errors.Is(err, ErrInvalidCert) {
			t.Errorf("ParseCert(%s) = %v", name, err)
		}
	}
	if _, err := Verify(plain, nil, now); !errors.Is(err, ErrInvalidServerKey) {
		t.Errorf("nil server key: %v", err)
	}
	if _, err := Verify(plain, &ServerKey{}, now); !errors.Is(err, ErrInvalidServerKey) {
		t.Errorf("zero server key: %v", err)
	}
}

// TestKeysAreSafeForConcurrentUse runs Issue and Verify on shared keys from
// many goroutines; run with -race.
func TestKeysAreSafeForConcurrentUse(t *testing.T) {
	now := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for _, alg := range []ServerKeyAlgorithm{ServerEd25519Legacy, ServerEd25519} {
		server := testServerKey(t, alg)
		client, err := ParseClientKey(openpgpjsKey(t, "legacy"), "alice@example.com", now, Policy{})
		if err != nil {
			t.Fatal(err)
		}
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 20; i++ {
					c, err := Issue(server, client, IssueParams{SessionID: fmt.Sprint(g, "-", i), Now: now})
					if err == nil {
						_, err = Verify(c.Raw, server, now)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestCertificationHashFollowsTheSignatureVersion pins RFC 9580 section
// 5.2.4: the key prefix depends on the signature's version. When server and
// client keys have the same version this is what go-crypto computes too;
// when they differ go-crypto (which uses the key's version) disagrees, and
// OpenPGP.js agrees with us (TestOpenPGPJSVerifiesIDCert).
func TestCertificationHashFollowsTheSignatureVersion(t *testing.T) {
	now := time.Now()
	for _, alg := range []ServerKeyAlgorithm{ServerEd25519Legacy, ServerEd25519} {
		server := testServerKey(t, alg)
		for _, variant := range []string{"legacy", "v6"} {
			client, err := ParseClientKey(openpgpjsKey(t, variant), "alice@example.com", now, Policy{})
			if err != nil {
				t.Fatal(err)
			}
			c, err := Issue(server, client, IssueParams{SessionID: "s", Now: now})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Verify(c.Raw, server, now); err != nil {
				t.Fatalf("%s/%s: %v", alg, variant, err)
			}
			p, err := packet.Read(bytes.NewReader(certPacket(t, c.Raw, server)))
			if err != nil {
				t.Fatal(err)
			}
			sameVersion := server.pub.Version == client.entity.PrimaryKey.Version
			goCryptoErr := server.pub.VerifyUserIdSignature(client.UserID(), client.entity.PrimaryKey, p.(*packet.Signature))
			if sameVersion != (goCryptoErr == nil) {
				t.Errorf("%s server, %s client: go-crypto verification error %v", alg, variant, goCryptoErr)
			}
		}
	}
}
