// Package idcerttest makes OpenPGP client keys for tests, examples and the
// load generator: keys whose primary key is a given Ed25519 key (or a new
// ECDSA key, for the NIST suites), so the same key can sign MLS
// KeyPackages that the server binds to the session's ID-Cert. It is test support, not part of any validation path.
package idcerttest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"net/mail"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	gcecdsa "github.com/ProtonMail/go-crypto/openpgp/ecdsa"
	"github.com/ProtonMail/go-crypto/openpgp/eddsa"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// ClientKey is a generated client key.
type ClientKey struct {
	// Armored is the ASCII-armored transferable public key, as route 8
	// takes it.
	Armored string
	// Signer is the Ed25519 private key of the OpenPGP primary key: its
	// public half is the MLS signature_key the ID-Cert certifies.
	Signer ed25519.PrivateKey
	// Entity is the full OpenPGP key, private parts included.
	Entity *openpgp.Entity
}

// NewClientKey returns a v4 EdDSA (algorithm 22) key for userID, either
// "alice@example.com" or "Alice <alice@example.com>", whose primary key is
// the Ed25519 key with the given 32-byte seed (nil: random), created at
// created (zero: an hour ago, so it is valid at once).
func NewClientKey(userID string, seed []byte, created time.Time) (*ClientKey, error) {
	if seed == nil {
		seed = make([]byte, ed25519.SeedSize)
		if _, err := rand.Read(seed); err != nil {
			return nil, err
		}
	}
	if len(seed) != ed25519.SeedSize {
		return nil, errors.New("idcerttest: seed must be 32 bytes")
	}
	name, email := "", userID
	if a, err := mail.ParseAddress(userID); err == nil && a.Name != "" {
		name, email = a.Name, a.Address
	}
	if created.IsZero() {
		created = time.Now().Add(-time.Hour)
	}
	created = created.Truncate(time.Second)
	cfg := &packet.Config{
		// The primary key is generated first and crypto/ed25519 reads
		// exactly its 32-byte seed from Rand: that makes it our key.
		Rand:      io.MultiReader(bytes.NewReader(seed), rand.Reader),
		Algorithm: packet.PubKeyAlgoEdDSA,
		Curve:     packet.Curve25519,
		Time:      func() time.Time { return created },
	}
	e, err := newEntity(name, email, cfg)
	if err != nil {
		return nil, err
	}
	signer := ed25519.NewKeyFromSeed(seed)
	pub, ok := e.PrimaryKey.PublicKey.(*eddsa.PublicKey)
	if !ok || !bytes.Equal(pub.X, signer.Public().(ed25519.PublicKey)) {
		return nil, errors.New("idcerttest: generated primary key does not match the seed")
	}
	armored, err := armorPublic(e)
	if err != nil {
		return nil, err
	}
	return &ClientKey{Armored: armored, Signer: signer, Entity: e}, nil
}

// newEntity makes the key with User ID "name <email>", or the bare email
// when name is empty.
func newEntity(name, email string, cfg *packet.Config) (*openpgp.Entity, error) {
	e, err := openpgp.NewEntity(name, "", email, cfg)
	if err != nil {
		return nil, err
	}
	if name == "" {
		// go-crypto writes "<alice@example.com>"; the bare form is
		// "alice@example.com", so re-bind the identity under that text.
		if err := bareEmailIdentity(e, email, cfg); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func bareEmailIdentity(e *openpgp.Entity, email string, cfg *packet.Config) error {
	for id, ident := range e.Identities {
		sig := ident.SelfCertifications[0].Packet
		if err := sig.SignUserId(email, &e.PrivateKey.PublicKey, e.PrivateKey, cfg); err != nil {
			return err
		}
		delete(e.Identities, id)
		ident.Name = email
		ident.UserId = &packet.UserId{Id: email, Email: email}
		ident.SelfCertifications = []*packet.VerifiableSignature{packet.NewVerifiableSig(sig)}
		e.Identities[email] = ident
		return nil
	}
	return errors.New("idcerttest: generated key has no identity")
}

// ECDSAClientKey is a generated ECDSA client key.
type ECDSAClientKey struct {
	// Armored is the ASCII-armored transferable public key, as route 8
	// takes it.
	Armored string
	// Signer is the private key of the OpenPGP primary key: its public
	// half, as an uncompressed point, is the MLS signature_key the
	// ID-Cert certifies (mlstest.NewECDSA signs with it).
	Signer *ecdsa.PrivateKey
}

// NewECDSAClientKey returns a v4 ECDSA key on curve (P-256, P-384 or
// P-521) for userID, "Name <alice@example.com>" or "alice@example.com",
// created an hour ago.
func NewECDSAClientKey(userID string, curve elliptic.Curve) (*ECDSAClientKey, error) {
	name, email := "", userID
	if a, err := mail.ParseAddress(userID); err == nil && a.Name != "" {
		name, email = a.Name, a.Address
	}
	cfg := &packet.Config{Algorithm: packet.PubKeyAlgoECDSA, Time: func() time.Time { return time.Now().Add(-time.Hour).Truncate(time.Second) }}
	switch curve {
	case elliptic.P256():
		cfg.Curve = packet.CurveNistP256
	case elliptic.P384():
		cfg.Curve = packet.CurveNistP384
	case elliptic.P521():
		cfg.Curve = packet.CurveNistP521
	default:
		return nil, errors.New("idcerttest: curve must be P-256, P-384 or P-521")
	}
	e, err := newEntity(name, email, cfg)
	if err != nil {
		return nil, err
	}
	k, ok := e.PrivateKey.PrivateKey.(*gcecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("idcerttest: generated key is not ECDSA")
	}
	signer := &ecdsa.PrivateKey{PublicKey: ecdsa.PublicKey{Curve: curve, X: k.X, Y: k.Y}, D: k.D}
	armored, err := armorPublic(e)
	if err != nil {
		return nil, err
	}
	return &ECDSAClientKey{Armored: armored, Signer: signer}, nil
}

// armorPublic returns e's transferable public key, ASCII-armored.
func armorPublic(e *openpgp.Entity) (string, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, "PGP PUBLIC KEY BLOCK", nil)
	if err != nil {
		return "", err
	}
	if err := e.Serialize(w); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return buf.String() + "\n", nil
}
