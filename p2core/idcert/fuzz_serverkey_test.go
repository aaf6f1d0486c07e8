package idcert_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core/idcert"
)

// FuzzParsePublicServerKey checks ParsePublicServerKey, which reads the
// key a foreign home server sends (route 10): every refusal matches
// ErrInvalidServerKey, and an accepted key has no private part and
// re-parses from its own binary and armored forms to the same key. Seeds
// are real server keys of every algorithm, public (binary and armored) and
// private.
func FuzzParsePublicServerKey(f *testing.F) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, alg := range []idcert.ServerKeyAlgorithm{idcert.ServerEd25519Legacy, idcert.ServerEd25519, idcert.ServerEd448, idcert.ServerRSA3072} {
		k, err := idcert.GenerateServerKey("home.example", alg, now, 0, rand.Reader)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(k.PublicBinary())
		f.Add(k.PublicArmored())
		priv, err := k.MarshalPrivate()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(priv)
	}
	expiring, err := idcert.GenerateServerKey("home.example", idcert.ServerEd25519Legacy, now, time.Hour, rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(expiring.PublicBinary())
	f.Add([]byte("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nxjMEaQk=\n-----END PGP PUBLIC KEY BLOCK-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := idcert.ParsePublicServerKey(data)
		if err != nil {
			if !errors.Is(err, idcert.ErrInvalidServerKey) || k != nil {
				t.Fatalf("ParsePublicServerKey = %v, %v; want nil and an ErrInvalidServerKey error", k, err)
			}
			return
		}
		if k.HasPrivate() {
			t.Fatal("a public key parse kept private material")
		}
		if k.Domain() == "" || len(k.Fingerprint()) < 20 {
			t.Fatalf("accepted key with domain %q and fingerprint %x", k.Domain(), k.Fingerprint())
		}
		for form, b := range map[string][]byte{"binary": k.PublicBinary(), "armored": k.PublicArmored()} {
			again, err := idcert.ParsePublicServerKey(b)
			if err != nil {
				t.Fatalf("the %s form of an accepted key does not parse: %v", form, err)
			}
			if !bytes.Equal(again.Fingerprint(), k.Fingerprint()) || again.Domain() != k.Domain() ||
				again.Algorithm() != k.Algorithm() || !again.Created().Equal(k.Created()) || !again.Expires().Equal(k.Expires()) {
				t.Fatalf("the %s form re-parses to another key: %v vs %v", form, again, k)
			}
		}
	})
}
