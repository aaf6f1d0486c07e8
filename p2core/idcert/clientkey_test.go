package idcert

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/rsa"
	"errors"
	"math/big"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

func TestParseClientKeyAcceptsOpenPGPJSKeysAsTheyAre(t *testing.T) {
	for variant, want := range map[string]struct {
		alg    ClientKeyAlgorithm
		mlsLen int
		fpLen  int
	}{
		"legacy": {ClientEd25519Legacy, 32, 20},
		"v6":     {ClientEd25519, 32, 32},
		"p256":   {ClientECDSAP256, 65, 20},
	} {
		t.Run(variant, func(t *testing.T) {
			k, err := ParseClientKey(openpgpjsKey(t, variant), "alice@example.com", time.Now(), Policy{})
			if err != nil {
				t.Fatal(err)
			}
			mls, err := k.MLSSignatureKey()
			if err != nil {
				t.Fatal(err)
			}
			if k.Algorithm() != want.alg || len(mls) != want.mlsLen || len(k.Fingerprint()) != want.fpLen ||
				k.UserID() != "Alice <alice@example.com>" || k.FID() != "alice@example.com" {
				t.Fatalf("got %s, MLS key %d bytes, fingerprint %d bytes, User ID %q", k.Algorithm(), len(mls), len(k.Fingerprint()), k.UserID())
			}
		})
	}
}

func TestParseClientKeyAcceptsGnuPGKeys(t *testing.T) {
	for uid, fid := range map[string]string{
		"alice@x":                   "alice@x",
		"Alice <alice@example.com>": "Alice@Example.COM",
	} {
		armored := gpgClientKey(t, uid)
		k, err := ParseClientKey(armored, fid, time.Now(), Policy{})
		if err != nil {
			t.Fatalf("%s: %v", uid, err)
		}
		if k.UserID() != uid || k.Algorithm() != ClientEd25519Legacy || k.Expires().IsZero() {
			t.Fatalf("%s: User ID %q algorithm %s expires %v", uid, k.UserID(), k.Algorithm(), k.Expires())
		}
	}
}

// TestMLSSignatureKeyMatchesThePrimaryKey checks the MLS encodings against
// independent decoders: the Ed25519 point must be the key's raw point, the
// ECDSA point must parse as an uncompressed point on the right curve.
func TestMLSSignatureKeyMatchesThePrimaryKey(t *testing.T) {
	now := time.Now()
	cases := []struct {
		spec   keySpec
		alg    ClientKeyAlgorithm
		mlsLen int
		check  func([]byte) error
	}{
		{keySpec{alg: packet.PubKeyAlgoEdDSA, curve: packet.Curve25519}, ClientEd25519Legacy, 32, nil},
		{keySpec{alg: packet.PubKeyAlgoEd25519, v6: true}, ClientEd25519, 32, nil},
		{keySpec{alg: packet.PubKeyAlgoEd448, v6: true}, ClientEd448, 57, nil},
		{keySpec{alg: packet.PubKeyAlgoECDSA, curve: packet.CurveNistP256}, ClientECDSAP256, 65, func(b []byte) error { _, err := ecdh.P256().NewPublicKey(b); return err }},
		{keySpec{alg: packet.PubKeyAlgoECDSA, curve: packet.CurveNistP384}, ClientECDSAP384, 97, func(b []byte) error { _, err := ecdh.P384().NewPublicKey(b); return err }},
		{keySpec{alg: packet.PubKeyAlgoECDSA, curve: packet.CurveNistP521}, ClientECDSAP521, 133, func(b []byte) error { _, err := ecdh.P521().NewPublicKey(b); return err }},
	}
	for _, c := range cases {
		t.Run(string(c.alg), func(t *testing.T) {
			c.spec.name, c.spec.email = "Alice", "alice@example.com"
			e := newEntity(t, c.spec)
			k, err := ParseClientKey(armoredPublic(t, e), "alice@example.com", now, Policy{})
			if err != nil {
				t.Fatal(err)
			}
			mls, err := k.MLSSignatureKey()
			if err != nil || k.Algorithm() != c.alg || len(mls) != c.mlsLen {
				t.Fatalf("%s: %d bytes, %v", k.Algorithm(), len(mls), err)
			}
			if c.check != nil {
				if err := c.check(mls); err != nil {
					t.Fatalf("not a valid SEC1 point: %v", err)
				}
			}
			// The raw point must appear in the public key packet.
			if !bytes.Contains(publicBytes(t, e), mls) {
				t.Fatal("MLS key is not the primary key's point")
			}
			mls[0] ^= 1
			if again, _ := k.MLSSignatureKey(); bytes.Equal(again, mls) {
				t.Fatal("MLSSignatureKey returned shared memory")
			}
		})
	}
}

func TestMLSSignatureKeyRefusesRSA(t *testing.T) {
	e := newEntity(t, keySpec{name: "Alice", email: "alice@example.com", alg: packet.PubKeyAlgoRSA, rsaBits: 2048})
	k, err := ParseClientKey(armoredPublic(t, e), "alice@example.com", time.Now(), Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.MLSSignatureKey(); err == nil || !strings.Contains(err.Error(), "RSA") {
		t.Fatalf("got %v, want an error about RSA", err)
	}
}

func TestParseClientKeyPicksTheFIDUserIDAmongOthers(t *testing.T) {
	e := newEntity(t, keySpec{name: "Bob", email: "bob@example.com"})
	addUserID(t, e, "Mallory <alice@example.com.evil>", time.Now().Add(-time.Minute))
	addUserID(t, e, "alice@example.com", time.Now().Add(-time.Minute))
	k, err := ParseClientKey(armoredPublic(t, e), "alice@example.com", time.Now(), Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if k.UserID() != "alice@example.com" {
		t.Fatalf("picked %q", k.UserID())
	}
}

func TestParseClientKeyRefusals(t *testing.T) {
	now := time.Now()
	alice := newEntity(t, aliceSpec())
	bob := newEntity(t, keySpec{name: "Bob", email: "bob@example.com"})
	twoKeys := armorOf(t, openpgp.PublicKeyType, append(publicBytes(t, alice), publicBytes(t, bob)...))

	expired := newEntity(t, keySpec{name: "Alice", email: "alice@example.com", created: now.Add(-2 * time.Hour), lifetime: 3600})
	revoked := newEntity(t, aliceSpec())
	if err := revoked.Revoke(packet.KeyCompromised, "lost", nil); err != nil {
		t.Fatal(err)
	}
	future := newEntity(t, keySpec{name: "Alice", email: "alice@example.com", created: now.Add(time.Hour)})
	rsa1024 := newEntity(t, keySpec{name: "Alice", email: "alice@example.com", alg: packet.PubKeyAlgoRSA, rsaBits: 1024})
	mallory := newEntity(t, keySpec{name: "Mallory", email: "alice@example.com.evil"})
	bare := newEntity(t, keySpec{email: "alice@example.com"}) // "<alice@example.com>"
	badSelfSig := publicBytes(t, alice)
	badSelfSig[len(badSelfSig)/3] ^= 0x40 // inside the User ID self-signature
	shaOne := newEntity(t, keySpec{name: "x", email: "x@example.com"})
	addUserIDWithHash(t, shaOne, "alice@example.com", now.Add(-time.Minute))

	uidRevoked := newEntity(t, aliceSpec())
	revokeUserID(t, uidRevoked, "Alice <alice@example.com>", now.Add(-time.Minute))

	cases := []struct {
		name    string
		armored []byte
		fid     string
		pol     Policy
		message string
	}{
		{"private key block", armorOf(t, openpgp.PrivateKeyType, privateBytes(t, alice)), "", Policy{}, "private key block"},
		{"private packets in a public block", armorOf(t, openpgp.PublicKeyType, privateBytes(t, alice)), "", Policy{}, "private key material"},
		{"two keys in one block", twoKeys, "", Policy{}, "more than one key"},
		{"two blocks", append(armoredPublic(t, alice), armoredPublic(t, bob)...), "", Policy{}, "2 armored blocks"},
		{"garbage", []byte("this is not a key"), "", Policy{}, "no ASCII-armored"},
		{"binary key", publicBytes(t, alice), "", Policy{}, "binary"},
		{"armored garbage", []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n"), "", Policy{}, "not an OpenPGP packet header"},
		{"signature block", []byte("-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n"), "", Policy{}, "not \"PGP PUBLIC KEY BLOCK\""},
		{"oversized", append(armoredPublic(t, alice), bytes.Repeat([]byte{' '}, 70<<10)...), "", Policy{}, "allowed"},
		{"custom size cap", armoredPublic(t, alice), "", Policy{MaxArmoredSize: 100}, "more than the 100 allowed"},
		{"no User ID for the FID", armoredPublic(t, bob), "", Policy{}, "no User ID names alice@example.com"},
		{"look-alike domain", armoredPublic(t, mallory), "", Policy{}, "does not have the form"},
		{"address without name", armoredPublic(t, bare), "", Policy{}, "does not have the form"},
		{"expired key", armoredPublic(t, expired), "", Policy{}, "expired"},
		{"revoked key", armoredPublic(t, revoked), "", Policy{}, "revoked"},
		{"revoked User ID", armoredPublic(t, uidRevoked), "", Policy{}, "is revoked"},
		{"key from the future", armoredPublic(t, future), "", Policy{}, "in the future"},
		{"broken self-signature", armorOf(t, openpgp.PublicKeyType, badSelfSig), "", Policy{}, "self-signature"},
		{"SHA-1 self-signature", armoredPublic(t, shaOne), "", Policy{}, "self-signed only with SHA-1"},
		{"RSA-1024", armoredPublic(t, rsa1024), "", Policy{}, "at least 2048 bits"},
		{"policy without EdDSA", armoredPublic(t, alice), "", Policy{Algorithms: []ClientKeyAlgorithm{ClientECDSAP256, ClientEd25519}}, "not allowed"},
		{"policy with higher RSA floor", armoredPublic(t, newEntity(t, keySpec{name: "Alice", email: "alice@example.com", alg: packet.PubKeyAlgoRSA, rsaBits: 2048})), "", Policy{MinRSABits: 3072}, "at least 3072 bits"},
		{"invalid FID argument", armoredPublic(t, alice), "alice", Policy{}, "not a federation ID"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fid := c.fid
			if fid == "" {
				fid = "alice@example.com"
			}
			k, err := ParseClientKey(c.armored, fid, now, c.pol)
			if !errors.Is(err, ErrInvalidPublicKey) || !strings.Contains(err.Error(), c.message) {
				t.Fatalf("got %v (key %v), want ErrInvalidPublicKey mentioning %q", err, k != nil, c.message)
			}
			t.Log(err)
		})
	}
}

// revokeUserID adds a certification revocation (0x30) of uid by e itself.
func revokeUserID(t *testing.T, e *openpgp.Entity, uid string, at time.Time) {
	t.Helper()
	rev := &packet.Signature{
		Version: 4, SigType: packet.SigTypeCertificationRevocation, PubKeyAlgo: e.PrimaryKey.PubKeyAlgo,
		Hash: crypto.SHA256, CreationTime: at, IssuerKeyId: &e.PrimaryKey.KeyId,
	}
	if err := rev.SignUserId(uid, e.PrimaryKey, e.PrivateKey, nil); err != nil {
		t.Fatal(err)
	}
	id := e.Identities[uid]
	id.Revocations = append(id.Revocations, packet.NewVerifiableSig(rev))
}

// addUserIDWithHash adds uid with a SHA-1 self-signature.
func addUserIDWithHash(t *testing.T, e *openpgp.Entity, uid string, created time.Time) {
	t.Helper()
	addUserID(t, e, uid, created)
	resign := &packet.Signature{
		Version: 4, SigType: packet.SigTypePositiveCert, PubKeyAlgo: e.PrimaryKey.PubKeyAlgo,
		Hash: crypto.SHA1, CreationTime: created, IssuerKeyId: &e.PrimaryKey.KeyId,
		FlagsValid: true, FlagSign: true, FlagCertify: true,
	}
	if err := resign.SignUserId(uid, e.PrimaryKey, e.PrivateKey, &packet.Config{NonDeterministicSignaturesViaNotation: packet.BoolPointer(false)}); err != nil {
		t.Fatal(err)
	}
	e.Identities[uid].SelfCertifications[0] = packet.NewVerifiableSig(resign)
}

// TestParseClientKeyChecksSizeBeforeParsing shows the size cap costs no
// parsing: refusing a 2.4 MB armored block allocates a few small objects for the
// error and nothing proportional to the input (decoding it would allocate
// megabytes).
func TestParseClientKeyChecksSizeBeforeParsing(t *testing.T) {
	huge := armorOf(t, openpgp.PublicKeyType, make([]byte, 1800<<10)) // 2.4 MB of armor
	now := time.Now()
	refuse := func() {
		if _, err := ParseClientKey(huge, "alice@example.com", now, Policy{}); !errors.Is(err, ErrInvalidPublicKey) || !strings.Contains(err.Error(), "allowed") {
			t.Fatalf("got %v", err)
		}
	}
	if allocs := testing.AllocsPerRun(20, refuse); allocs > 16 {
		t.Fatalf("%v allocations to refuse an oversized key", allocs)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < 10; i++ {
		refuse()
	}
	runtime.ReadMemStats(&after)
	if perCall := (after.TotalAlloc - before.TotalAlloc) / 10; perCall > 4096 {
		t.Fatalf("refusing an oversized key allocated %d bytes per call", perCall)
	}
}

func TestClientKeyWorkLimits(t *testing.T) {
	// RSA moduli above 8192 bits are refused before any signature check.
	n := new(big.Int).Lsh(big.NewInt(1), 9000)
	n.Add(n, big.NewInt(1))
	huge := packet.NewRSAPublicKey(time.Now(), &rsa.PublicKey{N: n, E: 65537})
	if _, _, err := classifyClientKey(huge, Policy{}); !errors.Is(err, ErrInvalidPublicKey) || !strings.Contains(err.Error(), "larger than 8192") {
		t.Fatalf("9001-bit RSA: %v", err)
	}
	// More than 8 key revocations are refused without verifying them.
	e := newEntity(t, aliceSpec())
	for i := 0; i < 9; i++ {
		if err := e.Revoke(packet.KeySuperseded, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ParseClientKey(armoredPublic(t, e), "alice@example.com", time.Now(), Policy{}); !errors.Is(err, ErrInvalidPublicKey) || !strings.Contains(err.Error(), "9 revocation signatures") {
		t.Fatalf("9 revocations: %v", err)
	}
}

func TestParseClientKeyZeroTimeMeansNow(t *testing.T) {
	e := newEntity(t, keySpec{name: "Alice", email: "alice@example.com", created: time.Now().Add(-2 * time.Hour), lifetime: 3600})
	if _, err := ParseClientKey(armoredPublic(t, e), "alice@example.com", time.Time{}, Policy{}); !errors.Is(err, ErrInvalidPublicKey) || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired key with zero now: %v", err)
	}
}

// TestParseClientKeyRefusesNamesThatPassForAnotherUser checks the display
// name before <FID>: after the PRECIS Nickname profile it may hold no
// address characters and no format characters, so a User ID cannot show
// another user's address in GnuPG or a mail client.
func TestParseClientKeyRefusesNamesThatPassForAnotherUser(t *testing.T) {
	now := time.Now()
	cases := []struct{ uid, rule string }{
		{"alice@home.localhost <eve@home.localhost>", `contains "@"`},
		{"Alice \uff1calice@home.localhost\uff1e <eve@home.localhost>", `contains "<"`},
		{"Alice \uff1cadmin\uff1e <eve@home.localhost>", `contains "<"`},
		{"Alice admin\uff1e <eve@home.localhost>", `contains ">"`},
		{"\u202Eecila <eve@home.localhost>", "format character U+202E"},
		{"Eve\u2066alice\u2069 <eve@home.localhost>", "format character U+2066"},
		{"Ev\u200de <eve@home.localhost>", "format character U+200D"},
		{"Eve\u00ad <eve@home.localhost>", "format character U+00AD"},
		{"Eve\u0007 <eve@home.localhost>", "control character U+0007"},
		{"\U000E0041 <eve@home.localhost>", "format character U+E0041"},
		{"Ev\u0378e <eve@home.localhost>", "PRECIS Nickname"},
	}
	for _, c := range cases {
		t.Run(c.uid, func(t *testing.T) {
			e := newEntity(t, keySpec{name: "Eve", email: "eve@other.example"})
			addUserID(t, e, c.uid, now.Add(-time.Minute))
			k, err := ParseClientKey(armoredPublic(t, e), "eve@home.localhost", now, Policy{})
			if !errors.Is(err, ErrInvalidPublicKey) || !strings.Contains(err.Error(), c.rule) {
				t.Fatalf("got %v (key %v), want ErrInvalidPublicKey naming the rule %q", err, k != nil, c.rule)
			}
			t.Log(err)
		})
	}
}

// TestParseClientKeyAcceptsOrdinaryNames checks names that PRECIS Nickname
// allows and that hold no address characters.
func TestParseClientKeyAcceptsOrdinaryNames(t *testing.T) {
	now := time.Now()
	for _, name := range []string{"Alice", "Alice Liddell", "Zoë", "李小龍", "علي", "Ａｌｉｃｅ", "O'Brien (work)"} {
		uid := name + " <alice@home.localhost>"
		e := newEntity(t, keySpec{name: "x", email: "x@other.example"})
		addUserID(t, e, uid, now.Add(-time.Minute))
		k, err := ParseClientKey(armoredPublic(t, e), "alice@home.localhost", now, Policy{})
		if err != nil {
			t.Fatalf("%q: %v", uid, err)
		}
		if k.UserID() != uid {
			t.Fatalf("picked %q, want %q", k.UserID(), uid)
		}
	}
}

// A client whose clock runs ahead makes a key "created" in this server's
// future. ParseClientKey accepts it up to Policy.ClockSkew ahead (its
// self-signatures carry the same future time), refuses it one second past
// with a message naming the skew, and Issue dates the certification at
// the key's creation so that the cert verifies once that time has come.
func TestParseClientKeyToleratesClockSkew(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	skew := 2 * time.Minute
	ahead30 := newEntity(t, keySpec{name: "Alice", email: "alice@example.com", created: now.Add(30 * time.Second)})
	k, err := ParseClientKey(armoredPublic(t, ahead30), "alice@example.com", now, Policy{ClockSkew: skew})
	if err != nil {
		t.Fatalf("key created 30 s ahead, skew %s: %v", skew, err)
	}
	if _, err := ParseClientKey(armoredPublic(t, ahead30), "alice@example.com", now, Policy{}); err == nil || !strings.Contains(err.Error(), "allowed clock skew of 0s") {
		t.Errorf("key created 30 s ahead, no skew: err = %v, want a refusal naming the skew 0s", err)
	}
	atEdge := newEntity(t, keySpec{name: "Alice", email: "alice@example.com", created: now.Add(skew)})
	if _, err := ParseClientKey(armoredPublic(t, atEdge), "alice@example.com", now, Policy{ClockSkew: skew}); err != nil {
		t.Errorf("key created exactly %s ahead, skew %s: %v", skew, skew, err)
	}
	past := newEntity(t, keySpec{name: "Alice", email: "alice@example.com", created: now.Add(skew + time.Second)})
	_, err = ParseClientKey(armoredPublic(t, past), "alice@example.com", now, Policy{ClockSkew: skew})
	if !errors.Is(err, ErrInvalidPublicKey) || !strings.Contains(err.Error(), "2m1s in the future") || !strings.Contains(err.Error(), "allowed clock skew of 2m0s") {
		t.Errorf("key created 1 s past the skew: err = %v, want ErrInvalidPublicKey naming 2m1s and the skew 2m0s", err)
	}

	server := testServerKey(t, ServerEd25519Legacy)
	c, err := Issue(server, k, IssueParams{SessionID: "s1", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(30 * time.Second); !c.IssuedAt.Equal(want) {
		t.Errorf("certification dated %s, want the key's creation %s", c.IssuedAt, want)
	}
	if _, err := Verify(c.Raw, server, now.Add(30*time.Second)); err != nil {
		t.Errorf("cert does not verify at the key's creation time: %v", err)
	}
}
