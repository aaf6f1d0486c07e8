package idcert

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// fuzzNow is after the OpenPGP.js test keys were made, so they are valid.
var fuzzNow = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)

func FuzzParseClientKey(f *testing.F) {
	for _, v := range []string{"legacy", "v6", "p256"} {
		f.Add(openpgpjsKey(f, v))
	}
	created := fuzzNow.Add(-time.Hour)
	alice := newEntity(f, keySpec{name: "Alice", email: "alice@example.com", created: created})
	f.Add(armoredPublic(f, alice))
	f.Add(armoredPublic(f, newEntity(f, keySpec{name: "Alice", email: "alice@example.com", created: created, alg: packet.PubKeyAlgoEd448, v6: true})))
	f.Add(armoredPublic(f, newEntity(f, keySpec{name: "Alice", email: "alice@example.com", created: created, alg: packet.PubKeyAlgoECDSA, curve: packet.CurveNistP384})))
	f.Add(armorOf(f, openpgp.PrivateKeyType, privateBytes(f, alice)))
	f.Add(armorOf(f, openpgp.PublicKeyType, privateBytes(f, alice)))
	if c, err := issueSeed(f, "legacy"); err == nil {
		f.Add(armorOf(f, openpgp.PublicKeyType, c))
	}
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxjMEaQk=\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	f.Fuzz(func(t *testing.T, armored []byte) {
		k, err := ParseClientKey(armored, "alice@example.com", fuzzNow, Policy{})
		if err != nil {
			if !errors.Is(err, ErrInvalidPublicKey) {
				t.Fatalf("error not matching ErrInvalidPublicKey: %v", err)
			}
			return
		}
		email, err := userIDEmail(k.UserID())
		if err != nil || !strings.EqualFold(email, "alice@example.com") || len(k.Fingerprint()) < 20 {
			t.Fatalf("accepted key with User ID %q", k.UserID())
		}
		if _, err := k.MLSSignatureKey(); (err == nil) == (k.Algorithm() == ClientRSA) {
			t.Fatalf("MLSSignatureKey for %s: %v", k.Algorithm(), err)
		}
	})
}

// issueSeed issues an ID-Cert with the deterministic fuzz server key for an
// OpenPGP.js test key.
func issueSeed(tb testing.TB, variant string) ([]byte, error) {
	server := deterministicServerKey(tb)
	client, err := ParseClientKey(openpgpjsKey(tb, variant), "alice@example.com", fuzzNow, Policy{})
	if err != nil {
		return nil, err
	}
	c, err := Issue(server, client, IssueParams{SessionID: "fuzz", Now: fuzzNow})
	if err != nil {
		return nil, err
	}
	return c.Raw, nil
}

func FuzzVerify(f *testing.F) {
	server := deterministicServerKey(f)
	for _, v := range []string{"legacy", "v6", "p256"} {
		c, err := issueSeed(f, v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(c)
	}
	e := newEntity(f, keySpec{name: "Alice", email: "alice@example.com", created: fuzzNow.Add(-time.Hour), alg: packet.PubKeyAlgoECDSA, curve: packet.CurveNistP521})
	client, err := ParseClientKey(armoredPublic(f, e), "alice@example.com", fuzzNow, Policy{})
	if err != nil {
		f.Fatal(err)
	}
	c, err := Issue(server, client, IssueParams{SessionID: "fuzz", Now: fuzzNow})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.Raw)
	f.Add(publicBytes(f, e))
	f.Add(server.PublicBinary())
	f.Fuzz(func(t *testing.T, cert []byte) {
		verified, err := Verify(cert, server, fuzzNow)
		if err != nil && !errors.Is(err, ErrInvalidCert) {
			t.Fatalf("Verify error not matching ErrInvalidCert: %v", err)
		}
		parsed, perr := ParseCert(cert)
		if perr != nil && !errors.Is(perr, ErrInvalidCert) {
			t.Fatalf("ParseCert error not matching ErrInvalidCert: %v", perr)
		}
		if err != nil {
			return
		}
		if perr != nil || parsed.Serial != verified.Serial || parsed.FID != verified.FID {
			t.Fatalf("Verify accepted what ParseCert reads differently: %v", perr)
		}
		if !validFID(verified.FID) || !validSessionID(verified.SessionID) || VerifyFID(verified, verified.FID) != nil {
			t.Fatalf("Verify accepted a malformed certificate: %+v", verified)
		}
	})
}
