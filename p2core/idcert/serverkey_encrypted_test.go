package idcert

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// secretMaterial returns the serialised secret part of k's private key
// packet (what an unencrypted key stores in clear).
func secretMaterial(t *testing.T, k *ServerKey) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := k.priv.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	// An unencrypted secret key packet ends with the secret material (v4
	// adds a 2-byte checksum); 32 bytes before the end lie inside it for
	// every algorithm here.
	raw := b.Bytes()
	return raw[len(raw)-34 : len(raw)-2]
}

// TestServerKeyEncryptedAtRest checks, for every algorithm, that the
// encrypted form holds no usable private key, names its S2K, and decrypts
// back to the same key with the passphrase only.
func TestServerKeyEncryptedAtRest(t *testing.T) {
	pass := []byte("correct horse battery staple")
	for _, alg := range allServerAlgorithms {
		t.Run(string(alg), func(t *testing.T) {
			k := testServerKey(t, alg)
			enc, err := k.MarshalPrivateEncrypted(pass, nil)
			if err != nil {
				t.Fatal(err)
			}
			// The stored form is no unencrypted private key, and the
			// secret material does not appear in it.
			if _, err := ParseServerKey(enc); !errors.Is(err, ErrInvalidServerKey) {
				t.Fatalf("the encrypted key parses as an unencrypted one: %v", err)
			}
			if bytes.Contains(enc, secretMaterial(t, k)) {
				t.Fatal("the encrypted form holds the secret key material in clear")
			}
			e, err := openpgp.ReadEntity(packet.NewReader(bytes.NewReader(enc)))
			if err != nil || e.PrivateKey == nil || !e.PrivateKey.Encrypted {
				t.Fatalf("not an OpenPGP key with an encrypted private part: %v", err)
			}
			// Argon2 where the key version allows it (v6), iterated and
			// salted otherwise.
			want := byte(s2kIterated)
			if alg == ServerEd25519 || alg == ServerEd448 {
				want = s2kArgon2
			}
			if got := s2kOf(t, k, enc); got != want {
				t.Errorf("S2K type %d, want %d", got, want)
			}
			// The right passphrase gives the same key back, able to issue.
			got, err := ParseEncryptedServerKey(enc, pass)
			if err != nil {
				t.Fatal(err)
			}
			if !got.HasPrivate() || !got.WasEncrypted() || !bytes.Equal(got.Fingerprint(), k.Fingerprint()) {
				t.Fatalf("decrypted key %v, private %v, was encrypted %v", got, got.HasPrivate(), got.WasEncrypted())
			}
			client, err := ParseClientKey(openpgpjsKey(t, "legacy"), "alice@example.com", time.Now(), Policy{})
			if err != nil {
				t.Fatal(err)
			}
			c, err := Issue(got, client, IssueParams{SessionID: "s1"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Verify(c.Raw, k, time.Now()); err != nil {
				t.Fatalf("a cert issued with the decrypted key does not verify: %v", err)
			}
			// A wrong or missing passphrase is named as such.
			for _, wrong := range [][]byte{[]byte("correct horse battery stapl"), nil} {
				_, err := ParseEncryptedServerKey(enc, wrong)
				if !errors.Is(err, ErrWrongPassphrase) || !errors.Is(err, ErrInvalidServerKey) {
					t.Fatalf("passphrase %q: %v, want ErrWrongPassphrase", wrong, err)
				}
			}
		})
	}
}

// S2K specifier types (RFC 9580 3.7.1).
const (
	s2kIterated = 3
	s2kArgon2   = 4
)

// s2kOf returns the S2K specifier type of the secret key packet that
// starts enc, the encrypted form of k (RFC 9580 5.5.3: the public key
// fields, the usage octet, for v6 a count octet, the cipher, for usage 253
// the AEAD mode, for v6 the specifier's length, then the specifier).
func s2kOf(t *testing.T, k *ServerKey, enc []byte) byte {
	t.Helper()
	pub, err := splitPackets(k.PublicBinary())
	if err != nil {
		t.Fatal(err)
	}
	sec, err := splitPackets(enc)
	if err != nil {
		t.Fatal(err)
	}
	body, i := sec[0].body, len(pub[0].body)
	if !bytes.Equal(body[:i], pub[0].body) {
		t.Fatal("the secret key packet does not start with the public key fields")
	}
	usage := body[i]
	i++
	if k.pub.Version == 6 {
		i++
	}
	i++ // cipher
	if usage == 253 {
		i++
	}
	if k.pub.Version == 6 {
		i++
	}
	return body[i]
}
