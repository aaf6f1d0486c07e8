package idcert

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

func TestGenerateServerKeyHasTheShapeOfEachAlgorithm(t *testing.T) {
	want := map[ServerKeyAlgorithm]struct {
		version int
		algo    packet.PublicKeyAlgorithm
		fpLen   int
	}{
		ServerEd25519Legacy: {4, packet.PubKeyAlgoEdDSA, 20},
		ServerEd25519:       {6, packet.PubKeyAlgoEd25519, 32},
		ServerEd448:         {6, packet.PubKeyAlgoEd448, 32},
		ServerRSA3072:       {4, packet.PubKeyAlgoRSA, 20},
	}
	for _, alg := range allServerAlgorithms {
		t.Run(string(alg), func(t *testing.T) {
			k := testServerKey(t, alg)
			w := want[alg]
			if k.Algorithm() != alg || k.Domain() != "example.com" || len(k.Fingerprint()) != w.fpLen {
				t.Fatalf("got %s %q fingerprint %d bytes", k.Algorithm(), k.Domain(), len(k.Fingerprint()))
			}
			if !k.Expires().IsZero() || !k.HasPrivate() {
				t.Fatalf("expires %v, private %v", k.Expires(), k.HasPrivate())
			}
			// Read the public key back with go-crypto and inspect it.
			e, err := openpgp.ReadEntity(packet.NewReader(bytes.NewReader(k.PublicBinary())))
			if err != nil {
				t.Fatal(err)
			}
			if e.PrivateKey != nil {
				t.Fatal("PublicBinary contains a private key")
			}
			if e.PrimaryKey.Version != w.version || e.PrimaryKey.PubKeyAlgo != w.algo {
				t.Fatalf("version %d algorithm %d", e.PrimaryKey.Version, e.PrimaryKey.PubKeyAlgo)
			}
			if len(e.Subkeys) != 0 || len(e.Identities) != 1 || e.Identities["example.com"] == nil {
				t.Fatalf("%d subkeys, identities %v", len(e.Subkeys), e.Identities)
			}
			sig, err := e.PrimarySelfSignature(time.Time{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !sig.FlagsValid || !sig.FlagCertify || !sig.FlagSign || sig.FlagEncryptCommunications || sig.FlagEncryptStorage {
				t.Fatalf("key flags: certify %v sign %v", sig.FlagCertify, sig.FlagSign)
			}
			if sig.Hash.Size() < 32 {
				t.Fatalf("self-signature hash %v", sig.Hash)
			}
		})
	}
}

func mustMarshalPrivate(t *testing.T, k *ServerKey) []byte {
	t.Helper()
	b, err := k.MarshalPrivate()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestServerKeyRoundTripsThroughStorageForms(t *testing.T) {
	for _, alg := range allServerAlgorithms {
		t.Run(string(alg), func(t *testing.T) {
			k := testServerKey(t, alg)
			priv, err := ParseServerKey(mustMarshalPrivate(t, k))
			if err != nil {
				t.Fatal(err)
			}
			pubBin, err := ParsePublicServerKey(k.PublicBinary())
			if err != nil {
				t.Fatal(err)
			}
			pubArm, err := ParsePublicServerKey(k.PublicArmored())
			if err != nil {
				t.Fatal(err)
			}
			for _, got := range []*ServerKey{priv, pubBin, pubArm} {
				if !bytes.Equal(got.Fingerprint(), k.Fingerprint()) || got.Algorithm() != alg ||
					!got.Created().Equal(k.Created()) || got.Domain() != k.Domain() || !bytes.Equal(got.PublicBinary(), k.PublicBinary()) {
					t.Fatalf("round trip changed the key: %v vs %v", got, k)
				}
			}
			if !priv.HasPrivate() || pubBin.HasPrivate() || pubArm.HasPrivate() {
				t.Fatal("HasPrivate wrong after parsing")
			}
			if _, err := pubBin.MarshalPrivate(); !errors.Is(err, ErrInvalidServerKey) {
				t.Fatalf("MarshalPrivate on a public key: %v", err)
			}
			armored := string(k.PublicArmored())
			if !strings.HasPrefix(armored, "-----BEGIN PGP PUBLIC KEY BLOCK-----") || strings.Contains(armored, "PRIVATE") {
				t.Fatalf("armor: %.60q", armored)
			}
		})
	}
}

func TestGenerateServerKeyRecordsLifetime(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC)
	k, err := GenerateServerKey("example.com", "", now, 10*24*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if k.Algorithm() != ServerEd25519Legacy {
		t.Fatalf("default algorithm %s", k.Algorithm())
	}
	if want := now.Truncate(time.Second); !k.Created().Equal(want) || !k.Expires().Equal(want.Add(10*24*time.Hour)) {
		t.Fatalf("created %v expires %v", k.Created(), k.Expires())
	}
	back, err := ParsePublicServerKey(k.PublicArmored())
	if err != nil || !back.Expires().Equal(k.Expires()) {
		t.Fatalf("expiry lost in round trip: %v %v", back, err)
	}
}

func TestGenerateServerKeyRefusesBadArguments(t *testing.T) {
	now := time.Now()
	for name, call := range map[string]func() error{
		"bad domain":        func() error { _, err := GenerateServerKey("exa mple.com", "", now, 0, nil); return err },
		"unknown algorithm": func() error { _, err := GenerateServerKey("example.com", "dsa", now, 0, nil); return err },
		"negative lifetime": func() error { _, err := GenerateServerKey("example.com", "", now, -time.Hour, nil); return err },
		"zero time":         func() error { _, err := GenerateServerKey("example.com", "", time.Time{}, 0, nil); return err },
	} {
		if err := call(); !errors.Is(err, ErrInvalidServerKey) {
			t.Errorf("%s: got %v, want ErrInvalidServerKey", name, err)
		}
	}
}

func TestParseServerKeyRefusals(t *testing.T) {
	k := testServerKey(t, ServerEd25519Legacy)
	other := testServerKey(t, ServerEd25519)
	client := newEntity(t, aliceSpec())
	addUserID(t, client, "second", time.Now().Add(-time.Minute))
	cases := map[string]struct {
		data    []byte
		public  bool
		message string
	}{
		"public key given as private": {k.PublicBinary(), false, "no private key"},
		"private key given as public": {mustMarshalPrivate(t, k), true, "private key material"},
		"garbage":                     {[]byte("hello"), true, "not an OpenPGP packet"},
		"two keys":                    {append(k.PublicBinary(), other.PublicBinary()...), true, "more than one key"},
		"key with two User IDs":       {publicBytes(t, client), true, "exactly one User ID"},
		"empty":                       {nil, true, "does not start with a key packet"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			var err error
			if c.public {
				_, err = ParsePublicServerKey(c.data)
			} else {
				_, err = ParseServerKey(c.data)
			}
			if !errors.Is(err, ErrInvalidServerKey) || !strings.Contains(err.Error(), c.message) {
				t.Fatalf("got %v, want ErrInvalidServerKey mentioning %q", err, c.message)
			}
		})
	}
}

func TestServerKeyFormattingNeverShowsPrivateKey(t *testing.T) {
	k := testServerKey(t, ServerEd25519Legacy)
	want := fmt.Sprintf("idcert.ServerKey{ed25519-legacy example.com %X}", k.Fingerprint())
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		if got := fmt.Sprintf(verb, k); got != want {
			t.Errorf("%s: %q, want %q", verb, got, want)
		}
	}
}
