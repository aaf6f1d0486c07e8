// Package mlstest builds RFC 9420 KeyPackages for tests: valid ones signed
// with a given key for every cipher suite, and deliberately broken ones.
//
// It is test support, not part of validation: package mls does not import
// it. Its encoder is independent of mls's decoder, so tests that pass one
// through the other check both.
package mlstest

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/cloudflare/circl/dh/x448"
	"github.com/cloudflare/circl/sign/ed448"

	"github.com/p2kit/p2kit/p2core/mls"
)

// Faults selects deliberate defects for Builder.Build. The zero value
// builds a valid KeyPackage. Apart from the signature faults, every
// KeyPackage is correctly signed over whatever was encoded, so exactly the
// chosen defect makes it invalid.
type Faults struct {
	// BadLeafSignature flips one bit of leaf_node.signature.
	BadLeafSignature bool
	// BadKeyPackageSignature flips one bit of the KeyPackage signature.
	BadKeyPackageSignature bool
	// InitKeyIsEncryptionKey uses the leaf's encryption_key as init_key.
	InitKeyIsEncryptionKey bool
	// DuplicateExtension repeats the first KeyPackage extension (adding a
	// private-use 0xff00 extension first if there is none).
	DuplicateExtension bool
	// DuplicateLeafExtension does the same for the leaf's extensions.
	DuplicateLeafExtension bool
	// UnlistedExtension adds leaf extension 0xff0f without listing it in
	// capabilities (only when Builder.Capabilities is nil).
	UnlistedExtension bool
	// CredentialNotListed lists only x509 (or basic, for an x509
	// credential) in capabilities.credentials (only when
	// Builder.Capabilities is nil).
	CredentialNotListed bool
	// Expired sets the lifetime to [now-48h, now-24h].
	Expired bool
	// NonMinimalPrefix encodes the init_key length with a 4-byte prefix.
	NonMinimalPrefix bool
	// TrailingBytes appends one zero byte after the KeyPackage.
	TrailingBytes bool
	// CredentialType, if non-zero, is written as credential_type, with the
	// identity as its body (so an unknown type still has a body).
	CredentialType uint16
	// LeafNodeSource, if non-zero, is written instead of key_package (1),
	// still followed by the lifetime.
	LeafNodeSource uint8
}

// Builder makes KeyPackages signed with Signer. Set the fields, then call
// Build or BuildWrapped; Build does not modify the Builder, so one Builder
// can make many KeyPackages. A Builder is not safe for concurrent use if
// its Rand is not.
//
// Output is deterministic when Rand is deterministic and the lifetime is
// fixed (NotBefore and NotAfter set, or Now fixed): the init and encryption
// keys come from Rand, and the signatures are deterministic (Ed25519,
// Ed448, and RFC 6979 ECDSA when Signer is an *ecdsa.PrivateKey).
type Builder struct {
	// Suite is the cipher suite, 1 to 7.
	Suite uint16
	// Signer signs both signatures; its public key becomes
	// leaf_node.signature_key. It must match Suite: ed25519.PrivateKey
	// for 1 and 3, *ecdsa.PrivateKey on P-256 for 2, P-521 for 5, P-384
	// for 7, ed448.PrivateKey for 4 and 6.
	Signer crypto.Signer
	// Rand is the source of the init and encryption keys (and of ECDSA
	// randomness for signers other than *ecdsa.PrivateKey); nil means
	// crypto/rand.Reader.
	Rand io.Reader
	// Now is the clock the default lifetime is relative to; nil means
	// time.Now.
	Now func() time.Time
	// Identity is the basic credential's identity; nil means "mlstest".
	Identity []byte
	// Certificates, if non-nil, makes the credential x509 with this chain.
	Certificates [][]byte
	// NotBefore and NotAfter are the lifetime; zero values mean Now()-1h
	// and Now()+30 days.
	NotBefore, NotAfter time.Time
	// Capabilities, if non-nil, is used as is. Otherwise the leaf
	// advertises version mls10, Suite, every non-default extension type
	// used, and the credential's type.
	Capabilities *mls.Capabilities
	// LeafExtensions and Extensions are the leaf's and the KeyPackage's
	// extensions.
	LeafExtensions, Extensions []mls.Extension
	// Faults breaks the result on purpose.
	Faults Faults
}

// suiteParams describes a cipher suite for building.
type suiteParams struct {
	kem      ecdh.Curve // nil for X448
	sigHash  crypto.Hash
	sigCurve elliptic.Curve // ECDSA suites
	ed448    bool
}

func params(suite uint16) (suiteParams, error) {
	switch suite {
	case 1, 3:
		return suiteParams{kem: ecdh.X25519()}, nil
	case 2:
		return suiteParams{kem: ecdh.P256(), sigHash: crypto.SHA256, sigCurve: elliptic.P256()}, nil
	case 4, 6:
		return suiteParams{ed448: true}, nil
	case 5:
		return suiteParams{kem: ecdh.P521(), sigHash: crypto.SHA512, sigCurve: elliptic.P521()}, nil
	case 7:
		return suiteParams{kem: ecdh.P384(), sigHash: crypto.SHA384, sigCurve: elliptic.P384()}, nil
	}
	return suiteParams{}, fmt.Errorf("mlstest: unsupported cipher suite %d", suite)
}

// New returns a Builder for suite with a signing key derived from rand
// (nil means crypto/rand.Reader): the same rand stream gives the same key.
// Rand is also stored in the Builder.
func New(suite uint16, random io.Reader) (*Builder, error) {
	p, err := params(suite)
	if err != nil {
		return nil, err
	}
	if random == nil {
		random = rand.Reader
	}
	b := &Builder{Suite: suite, Rand: random}
	switch {
	case p.ed448:
		seed := make([]byte, ed448.SeedSize)
		if _, err := io.ReadFull(random, seed); err != nil {
			return nil, err
		}
		b.Signer = ed448.NewKeyFromSeed(seed)
	case p.sigCurve != nil:
		if _, err := scalar(random, p.sigCurve.Params().BitSize, func(s []byte) error {
			var err error
			b.Signer, err = ecdsa.ParseRawPrivateKey(p.sigCurve, s)
			return err
		}); err != nil {
			return nil, err
		}
	default:
		seed := make([]byte, ed25519.SeedSize)
		if _, err := io.ReadFull(random, seed); err != nil {
			return nil, err
		}
		b.Signer = ed25519.NewKeyFromSeed(seed)
	}
	return b, nil
}

// NewEd25519 returns a Builder for suite 1 signing with priv.
func NewEd25519(priv ed25519.PrivateKey) *Builder { return &Builder{Suite: 1, Signer: priv} }

// NewEd448 returns a Builder for suite 4 signing with priv.
func NewEd448(priv ed448.PrivateKey) *Builder { return &Builder{Suite: 4, Signer: priv} }

// NewECDSA returns a Builder for the suite of priv's curve: 2 for P-256, 7
// for P-384, 5 for P-521. For other curves Suite is 0 and Build fails.
func NewECDSA(priv *ecdsa.PrivateKey) *Builder {
	b := &Builder{Signer: priv}
	switch priv.Curve {
	case elliptic.P256():
		b.Suite = 2
	case elliptic.P384():
		b.Suite = 7
	case elliptic.P521():
		b.Suite = 5
	}
	return b
}

// scalar reads candidate private scalars of bits bits from r until try
// accepts one.
func scalar(r io.Reader, bits int, try func([]byte) error) ([]byte, error) {
	k := make([]byte, (bits+7)/8)
	for range 100 {
		if _, err := io.ReadFull(r, k); err != nil {
			return nil, err
		}
		if extra := len(k)*8 - bits; extra > 0 {
			k[0] &= 0xff >> extra
		}
		if try(k) == nil {
			return k, nil
		}
	}
	return nil, errors.New("mlstest: no valid scalar in 100 tries")
}

// SignatureKey returns the encoded public key of b.Signer as it appears in
// leaf_node.signature_key, or an error if it does not suit b.Suite.
func (b *Builder) SignatureKey() ([]byte, error) {
	p, err := params(b.Suite)
	if err != nil {
		return nil, err
	}
	if b.Signer == nil {
		return nil, errors.New("mlstest: Builder.Signer is nil")
	}
	switch pub := b.Signer.Public().(type) {
	case ed25519.PublicKey:
		if p.sigCurve == nil && !p.ed448 {
			return bytes.Clone(pub), nil
		}
	case ed448.PublicKey:
		if p.ed448 {
			return bytes.Clone(pub), nil
		}
	case *ecdsa.PublicKey:
		if p.sigCurve != nil && pub.Curve == p.sigCurve {
			return pub.Bytes()
		}
	}
	return nil, fmt.Errorf("mlstest: signer %T does not suit cipher suite %d", b.Signer.Public(), b.Suite)
}

// hpkeKey returns a fresh HPKE public key of the suite, from b's Rand.
func (b *Builder) hpkeKey(p suiteParams) ([]byte, error) {
	r := b.rand()
	if p.kem == nil { // X448
		var priv, pub x448.Key
		if _, err := io.ReadFull(r, priv[:]); err != nil {
			return nil, err
		}
		x448.KeyGen(&pub, &priv)
		return pub[:], nil
	}
	var key *ecdh.PrivateKey
	bits := 256
	switch p.kem {
	case ecdh.P384():
		bits = 384
	case ecdh.P521():
		bits = 521
	}
	if _, err := scalar(r, bits, func(s []byte) error {
		var err error
		key, err = p.kem.NewPrivateKey(s)
		return err
	}); err != nil {
		return nil, err
	}
	return key.PublicKey().Bytes(), nil
}

func (b *Builder) rand() io.Reader {
	if b.Rand == nil {
		return rand.Reader
	}
	return b.Rand
}

func (b *Builder) now() time.Time {
	if b.Now == nil {
		return time.Now()
	}
	return b.Now()
}

// BuildWrapped is Build, wrapped in an MLSMessage (wire_format
// mls_key_package).
func (b *Builder) BuildWrapped() ([]byte, error) {
	bare, err := b.Build()
	if err != nil {
		return nil, err
	}
	return Wrap(bare), nil
}

// Build returns a bare KeyPackage with fresh init and encryption keys,
// signed with b.Signer and broken as b.Faults says. It fails only if the
// Builder is misconfigured (unknown suite, unsuitable signer) or Rand or
// the signer fails.
func (b *Builder) Build() ([]byte, error) {
	p, err := params(b.Suite)
	if err != nil {
		return nil, err
	}
	sigKey, err := b.SignatureKey()
	if err != nil {
		return nil, err
	}
	f := b.Faults
	encKey, err := b.hpkeKey(p)
	if err != nil {
		return nil, err
	}
	initKey := encKey
	if !f.InitKeyIsEncryptionKey {
		if initKey, err = b.hpkeKey(p); err != nil {
			return nil, err
		}
	}

	cred := mls.Credential{Type: mls.CredentialBasic, Identity: b.Identity}
	if cred.Identity == nil {
		cred.Identity = []byte("mlstest")
	}
	if b.Certificates != nil {
		cred = mls.Credential{Type: mls.CredentialX509, Certificates: b.Certificates}
	}
	listedCred := cred.Type
	if f.CredentialType != 0 {
		cred = mls.Credential{Type: f.CredentialType, Identity: cred.Identity}
		listedCred = f.CredentialType
	}
	if f.CredentialNotListed {
		listedCred = mls.CredentialX509
		if cred.Type == mls.CredentialX509 {
			listedCred = mls.CredentialBasic
		}
	}

	now := b.now()
	nb, na := b.NotBefore, b.NotAfter
	if nb.IsZero() {
		nb = now.Add(-time.Hour)
	}
	if na.IsZero() {
		na = now.Add(30 * 24 * time.Hour)
	}
	if f.Expired {
		nb, na = now.Add(-48*time.Hour), now.Add(-24*time.Hour)
	}

	leafExts := slices.Clone(b.LeafExtensions)
	if f.DuplicateLeafExtension {
		leafExts = duplicate(leafExts)
	}
	exts := slices.Clone(b.Extensions)
	if f.DuplicateExtension {
		exts = duplicate(exts)
	}
	caps := b.Capabilities
	if caps == nil {
		caps = &mls.Capabilities{
			Versions:     []uint16{mls.VersionMLS10},
			CipherSuites: []uint16{b.Suite},
			Extensions:   usedExtensionTypes(leafExts, exts),
			Credentials:  []uint16{listedCred},
		}
	}
	if f.UnlistedExtension {
		leafExts = append(leafExts, mls.Extension{Type: 0xff0f, Data: []byte("unlisted")})
	}

	source := mls.LeafNodeSourceKeyPackage
	if f.LeafNodeSource != 0 {
		source = f.LeafNodeSource
	}
	leafTBS := appendLeafTBS(nil, leafFields{
		encryptionKey: encKey,
		signatureKey:  sigKey,
		credential:    cred,
		capabilities:  *caps,
		source:        source,
		notBefore:     unixSeconds(nb),
		notAfter:      unixSeconds(na),
		extensions:    leafExts,
	})
	leafSig, err := b.signWithLabel(p, "LeafNodeTBS", leafTBS)
	if err != nil {
		return nil, err
	}
	if f.BadLeafSignature {
		leafSig[len(leafSig)/2] ^= 0x10
	}

	kp := binary.BigEndian.AppendUint16(nil, mls.VersionMLS10)
	kp = binary.BigEndian.AppendUint16(kp, b.Suite)
	if f.NonMinimalPrefix {
		kp = binary.BigEndian.AppendUint32(kp, 0x80000000|uint32(len(initKey)))
		kp = append(kp, initKey...)
	} else {
		kp = AppendOpaque(kp, initKey)
	}
	kp = append(kp, leafTBS...)
	kp = AppendOpaque(kp, leafSig)
	kp = appendExtensions(kp, exts)
	sig, err := b.signWithLabel(p, "KeyPackageTBS", kp)
	if err != nil {
		return nil, err
	}
	if f.BadKeyPackageSignature {
		sig[len(sig)/2] ^= 0x10
	}
	kp = AppendOpaque(kp, sig)
	if f.TrailingBytes {
		kp = append(kp, 0)
	}
	return kp, nil
}

// signWithLabel computes SignWithLabel(b.Signer, label, content).
func (b *Builder) signWithLabel(p suiteParams, label string, content []byte) ([]byte, error) {
	msg := AppendOpaque(nil, []byte("MLS 1.0 "+label))
	msg = AppendOpaque(msg, content)
	if p.sigHash == 0 { // EdDSA signs the message itself
		return b.Signer.Sign(nil, msg, crypto.Hash(0))
	}
	var digest []byte
	switch p.sigHash {
	case crypto.SHA256:
		d := sha256.Sum256(msg)
		digest = d[:]
	case crypto.SHA384:
		d := sha512.Sum384(msg)
		digest = d[:]
	default:
		d := sha512.Sum512(msg)
		digest = d[:]
	}
	var r io.Reader // nil: RFC 6979 deterministic for *ecdsa.PrivateKey
	if _, ok := b.Signer.(*ecdsa.PrivateKey); !ok {
		r = b.rand()
	}
	return b.Signer.Sign(r, digest, p.sigHash)
}

// duplicate returns exts with its first entry repeated at the end.
func duplicate(exts []mls.Extension) []mls.Extension {
	if len(exts) == 0 {
		exts = append(exts, mls.Extension{Type: 0xff00, Data: []byte("duplicate")})
	}
	return append(exts, exts[0])
}

// usedExtensionTypes returns the sorted distinct extension types of the
// lists that capabilities must advertise (not the default types 1-5, not
// GREASE).
func usedExtensionTypes(lists ...[]mls.Extension) []uint16 {
	var types []uint16
	for _, exts := range lists {
		for _, e := range exts {
			if (e.Type < 1 || e.Type > 5) && !mls.IsGREASE(e.Type) {
				types = append(types, e.Type)
			}
		}
	}
	slices.Sort(types)
	return slices.Compact(types)
}

func unixSeconds(t time.Time) uint64 {
	if s := t.Unix(); s > 0 {
		return uint64(s)
	}
	return 0
}
