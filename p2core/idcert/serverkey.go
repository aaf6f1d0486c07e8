package idcert

import (
	"bytes"
	"crypto"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/ProtonMail/go-crypto/openpgp/s2k"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// ServerKeyAlgorithm names the kind of OpenPGP key used as a server
// identity key. Its values name the OpenPGP algorithm as
// [ClientKeyAlgorithm]'s do ("ed25519-legacy" is EdDSA, algorithm 22, for
// both), so one name never means two algorithms. The zero value means
// [ServerEd25519Legacy].
type ServerKeyAlgorithm string

const (
	// ServerEd25519Legacy is a v4 key with the EdDSA algorithm (22) on
	// Ed25519: the default, because GnuPG 2.2 verifies nothing newer.
	ServerEd25519Legacy ServerKeyAlgorithm = "ed25519-legacy"
	// ServerEd25519 is a v6 key with the Ed25519 algorithm (27) of RFC
	// 9580. GnuPG 2.2 cannot read it.
	ServerEd25519 ServerKeyAlgorithm = "ed25519"
	// ServerEd448 is a v6 key with the Ed448 algorithm (28) of RFC 9580,
	// signing with SHA-512. GnuPG 2.2 cannot read it.
	ServerEd448 ServerKeyAlgorithm = "ed448"
	// ServerRSA3072 is a v4 RSA key with a 3072-bit modulus (parsing
	// accepts larger moduli too), signing with SHA-256.
	ServerRSA3072 ServerKeyAlgorithm = "rsa3072"
)

// Check returns nil when a is "" or one of the ServerKeyAlgorithm
// constants, else an error matching [ErrInvalidServerKey] that lists them.
func (a ServerKeyAlgorithm) Check() error {
	switch a {
	case "", ServerEd25519Legacy, ServerEd25519, ServerEd448, ServerRSA3072:
		return nil
	}
	return fail(ErrInvalidServerKey, "unknown server key algorithm %q (known: %s, %s, %s, %s)", a, ServerEd25519Legacy, ServerEd25519, ServerEd448, ServerRSA3072)
}

// ServerKey is a home server's OpenPGP identity key: one primary key whose
// only User ID is the server's domain, with key flags certify and sign
// (0x03). It is immutable and safe for concurrent use. A ServerKey parsed
// with [ParsePublicServerKey] can verify ID-Certs but not issue them. Only
// the constructors of this package make usable values; the zero ServerKey is
// refused by [Issue] and [Verify] and its methods must not be called.
type ServerKey struct {
	entity    *openpgp.Entity
	pub       *packet.PublicKey
	priv      *packet.PrivateKey // nil for a public-only key
	alg       ServerKeyAlgorithm
	domain    string
	created   time.Time
	expires   time.Time // zero: never
	pubBinary []byte
	encrypted bool // read from data whose private part was encrypted
}

// GenerateServerKey creates a new server identity key for domain, created at
// now (truncated to the second, as OpenPGP stores it) and valid for lifetime
// (0 means no expiry). alg "" means [ServerEd25519Legacy]. rand is the entropy
// source (nil: crypto/rand); note that since Go 1.26 the standard library's
// RSA key generation ignores custom readers and always uses crypto/rand.
//
// The key's only User ID is domain, its self-signatures use SHA-256 (SHA-512
// for Ed448) and its flags are certify+sign, because OpenPGP.js refuses
// certifications made by a certify-only key. It has no subkeys. Errors match
// [ErrInvalidServerKey].
func GenerateServerKey(domain string, alg ServerKeyAlgorithm, now time.Time, lifetime time.Duration, rand io.Reader) (*ServerKey, error) {
	if !validFID("server@" + domain) {
		return nil, fail(ErrInvalidServerKey, "%q is not a valid domain name", domain)
	}
	if now.Unix() <= 0 || now.Unix() > math.MaxUint32 {
		return nil, fail(ErrInvalidServerKey, "creation time %v cannot be stored in OpenPGP", now)
	}
	if lifetime < 0 || lifetime/time.Second > math.MaxUint32 {
		return nil, fail(ErrInvalidServerKey, "lifetime %v is out of range", lifetime)
	}
	now = now.Truncate(time.Second)
	secs := uint32(lifetime / time.Second)
	if lifetime > 0 && secs == 0 {
		return nil, fail(ErrInvalidServerKey, "lifetime %v is shorter than one second", lifetime)
	}
	cfg := &packet.Config{
		Rand:                                  rand,
		Time:                                  func() time.Time { return now },
		KeyLifetimeSecs:                       secs,
		DefaultHash:                           crypto.SHA256,
		NonDeterministicSignaturesViaNotation: packet.BoolPointer(false),
	}
	switch alg {
	case "", ServerEd25519Legacy:
		alg = ServerEd25519Legacy
		cfg.Algorithm = packet.PubKeyAlgoEdDSA
		cfg.Curve = packet.Curve25519
	case ServerEd25519:
		cfg.Algorithm = packet.PubKeyAlgoEd25519
		cfg.V6Keys = true
	case ServerEd448:
		cfg.Algorithm = packet.PubKeyAlgoEd448
		cfg.V6Keys = true
		cfg.DefaultHash = crypto.SHA512
	case ServerRSA3072:
		cfg.Algorithm = packet.PubKeyAlgoRSA
		cfg.RSABits = 3072
	default:
		return nil, alg.Check()
	}
	e, err := openpgp.NewEntity(domain, "", "", cfg)
	if err != nil {
		return nil, fail(ErrInvalidServerKey, "generating the key: %v", err)
	}
	// NewEntity always adds an encryption subkey; nothing encrypts to a
	// server identity key, so it is dropped to keep the key minimal.
	e.Subkeys = nil
	return newServerKey(e, true)
}

// ParseServerKey reads a server key with its private part, as written by
// [ServerKey.MarshalPrivate] (binary; ASCII armor is accepted too). The key
// must be unencrypted, carry exactly one self-signed User ID and the certify
// flag, and not be revoked; it may be expired (old keys stay usable for
// verification). Errors match [ErrInvalidServerKey]; an encrypted key also
// matches [ErrWrongPassphrase] (read it with [ParseEncryptedServerKey]).
func ParseServerKey(private []byte) (k *ServerKey, err error) {
	return ParseEncryptedServerKey(private, nil)
}

// ParseEncryptedServerKey reads a server key with its private part, as
// written by [ServerKey.MarshalPrivateEncrypted], and decrypts the private
// part in memory with passphrase. A key whose private part is not
// encrypted is read as [ParseServerKey] reads it (so a key stored before a
// passphrase was configured stays usable); [ServerKey.WasEncrypted] tells
// the two apart. Errors match [ErrInvalidServerKey], and also
// [ErrWrongPassphrase] when the private part is encrypted and passphrase
// (empty included) does not decrypt it.
func ParseEncryptedServerKey(private, passphrase []byte) (k *ServerKey, err error) {
	defer recoverInto(&err, ErrInvalidServerKey)
	e, err := readServerEntity(private)
	if err != nil {
		return nil, err
	}
	if e.PrivateKey == nil {
		return nil, fail(ErrInvalidServerKey, "the data holds no private key")
	}
	encrypted := e.PrivateKey.Encrypted
	if encrypted {
		if len(passphrase) == 0 {
			return nil, fmt.Errorf("%w: %w: the private key is encrypted and no passphrase was given", ErrInvalidServerKey, ErrWrongPassphrase)
		}
		if err := e.DecryptPrivateKeys(passphrase); err != nil {
			return nil, fmt.Errorf("%w: %w: the passphrase does not decrypt the private key (or the key data is damaged)", ErrInvalidServerKey, ErrWrongPassphrase)
		}
	}
	k, err = newServerKey(e, true)
	if err != nil {
		return nil, err
	}
	k.encrypted = encrypted
	return k, nil
}

// ParsePublicServerKey reads a server public key, binary or ASCII-armored,
// for verifying ID-Certs only. The same structural checks as
// [ParseServerKey] apply, and data holding private key material is refused so
// that it is never handled as if it were public. Errors match
// [ErrInvalidServerKey].
func ParsePublicServerKey(public []byte) (k *ServerKey, err error) {
	defer recoverInto(&err, ErrInvalidServerKey)
	e, err := readServerEntity(public)
	if err != nil {
		return nil, err
	}
	if e.PrivateKey != nil {
		return nil, fail(ErrInvalidServerKey, "the data holds private key material; pass it to ParseServerKey or export the public key")
	}
	return newServerKey(e, false)
}

// maxServerKeySize bounds the input of the server key parsers.
const maxServerKeySize = 1 << 20

func readServerEntity(data []byte) (*openpgp.Entity, error) {
	if len(data) > maxServerKeySize {
		return nil, fail(ErrInvalidServerKey, "key data is larger than %d bytes", maxServerKeySize)
	}
	body := data
	if trimmed := bytes.TrimSpace(data); bytes.HasPrefix(trimmed, []byte("-----BEGIN ")) {
		block, err := armor.Decode(bytes.NewReader(trimmed))
		if err != nil {
			return nil, fail(ErrInvalidServerKey, "bad ASCII armor: %v", err)
		}
		if block.Type != openpgp.PublicKeyType && block.Type != openpgp.PrivateKeyType {
			return nil, fail(ErrInvalidServerKey, "armor block is %q, not a key", block.Type)
		}
		if body, err = io.ReadAll(block.Body); err != nil {
			return nil, fail(ErrInvalidServerKey, "bad ASCII armor: %v", err)
		}
	}
	pkts, err := splitPackets(body)
	if err != nil {
		return nil, fail(ErrInvalidServerKey, "%v", err)
	}
	if len(pkts) == 0 || (pkts[0].tag != tagPublicKey && pkts[0].tag != tagSecretKey) {
		return nil, fail(ErrInvalidServerKey, "the data does not start with a key packet")
	}
	for _, p := range pkts[1:] {
		if p.tag == tagPublicKey || p.tag == tagSecretKey {
			return nil, fail(ErrInvalidServerKey, "the data holds more than one key")
		}
	}
	r := packet.NewReader(bytes.NewReader(body))
	e, err := openpgp.ReadEntity(r)
	if err != nil {
		return nil, fail(ErrInvalidServerKey, "%v", err)
	}
	if _, err := r.Next(); err != io.EOF {
		return nil, fail(ErrInvalidServerKey, "unexpected data after the key")
	}
	return e, nil
}

// newServerKey checks e and derives the immutable ServerKey view of it. All
// verification results that go-crypto caches inside e are computed here, so
// later concurrent use only reads.
func newServerKey(e *openpgp.Entity, withPrivate bool) (*ServerKey, error) {
	pub := e.PrimaryKey
	k := &ServerKey{entity: e, pub: pub, created: pub.CreationTime.UTC()}
	switch {
	case pub.Version == 4 && pub.PubKeyAlgo == packet.PubKeyAlgoEdDSA:
		if c, err := pub.Curve(); err != nil || c != packet.Curve25519 {
			return nil, fail(ErrInvalidServerKey, "EdDSA server keys must use Ed25519")
		}
		k.alg = ServerEd25519Legacy
	case pub.Version == 6 && pub.PubKeyAlgo == packet.PubKeyAlgoEd25519:
		k.alg = ServerEd25519
	case pub.Version == 6 && pub.PubKeyAlgo == packet.PubKeyAlgoEd448:
		k.alg = ServerEd448
	case pub.Version == 4 && (pub.PubKeyAlgo == packet.PubKeyAlgoRSA || pub.PubKeyAlgo == packet.PubKeyAlgoRSASignOnly):
		if bits, err := pub.BitLength(); err != nil || bits < 3072 {
			return nil, fail(ErrInvalidServerKey, "RSA server keys need at least 3072 bits")
		}
		k.alg = ServerRSA3072
	default:
		return nil, fail(ErrInvalidServerKey, "unsupported server key: version %d, algorithm %d", pub.Version, pub.PubKeyAlgo)
	}
	if len(e.Identities) != 1 {
		return nil, fail(ErrInvalidServerKey, "a server key has exactly one User ID (its domain), this one has %d", len(e.Identities))
	}
	for name, id := range e.Identities {
		if _, err := id.Verify(time.Time{}, nil); err != nil {
			return nil, fail(ErrInvalidServerKey, "User ID %q: %v", truncateForMessage([]byte(name)), err)
		}
		k.domain = name
	}
	selfSig, err := e.VerifyPrimaryKey(time.Time{}, nil)
	if err != nil {
		return nil, fail(ErrInvalidServerKey, "%v", err)
	}
	if !selfSig.FlagsValid || !selfSig.FlagCertify {
		return nil, fail(ErrInvalidServerKey, "the key is not allowed to certify (key flags)")
	}
	if selfSig.KeyLifetimeSecs != nil && *selfSig.KeyLifetimeSecs != 0 {
		k.expires = k.created.Add(time.Duration(*selfSig.KeyLifetimeSecs) * time.Second)
	}
	if withPrivate {
		p := e.PrivateKey
		if p == nil {
			return nil, fail(ErrInvalidServerKey, "the key has no private part")
		}
		if p.Dummy() {
			return nil, fail(ErrInvalidServerKey, "the private key is a GnuPG stub without secret material")
		}
		if p.Encrypted {
			return nil, fail(ErrInvalidServerKey, "the private key is passphrase-protected; store it unencrypted")
		}
		k.priv = p
	}
	var b bytes.Buffer
	if err := e.Serialize(&b); err != nil {
		return nil, fail(ErrInvalidServerKey, "serialising the public key: %v", err)
	}
	k.pubBinary = b.Bytes()
	return k, nil
}

// Algorithm reports the kind of key.
func (k *ServerKey) Algorithm() ServerKeyAlgorithm { return k.alg }

// Domain returns the key's User ID, the server's domain.
func (k *ServerKey) Domain() string { return k.domain }

// Fingerprint returns a copy of the primary key's fingerprint: 20 bytes for
// a v4 key, 32 for a v6 key.
func (k *ServerKey) Fingerprint() []byte { return bytes.Clone(k.pub.Fingerprint) }

// Created returns the key's creation time in UTC, to the second.
func (k *ServerKey) Created() time.Time { return k.created }

// Expires returns the key's expiration time in UTC; the zero time means the
// key never expires. ID-Certs issued with the key never outlive it.
func (k *ServerKey) Expires() time.Time { return k.expires }

// HasPrivate reports whether the key can issue ID-Certs.
func (k *ServerKey) HasPrivate() bool { return k.priv != nil }

// PublicBinary returns a copy of the serialised transferable public key
// (binary OpenPGP, no private material).
func (k *ServerKey) PublicBinary() []byte { return bytes.Clone(k.pubBinary) }

// PublicArmored returns the public key in ASCII armor ("PGP PUBLIC KEY
// BLOCK"). A CRC-24 line is included for v4 keys, for GnuPG 2.2's sake, and
// left out for v6 keys as RFC 9580 recommends.
func (k *ServerKey) PublicArmored() []byte {
	var b bytes.Buffer
	w, err := armor.EncodeWithChecksumOption(&b, openpgp.PublicKeyType, nil, k.pub.Version < 6)
	if err == nil {
		_, err = w.Write(k.pubBinary)
	}
	if err == nil {
		err = w.Close()
	}
	if err != nil { // writing to a bytes.Buffer cannot fail
		panic("idcert: armoring into memory failed: " + err.Error())
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// MarshalPrivate serialises the key with its unencrypted private part, in
// binary, for storage by the embedder. Treat the result as a secret. It
// fails (matching [ErrInvalidServerKey]) on a public-only key.
func (k *ServerKey) MarshalPrivate() ([]byte, error) {
	if k.priv == nil {
		return nil, fail(ErrInvalidServerKey, "the key has no private part")
	}
	var b bytes.Buffer
	if err := k.entity.SerializePrivateWithoutSigning(&b, nil); err != nil {
		return nil, fail(ErrInvalidServerKey, "serialising the private key: %v", err)
	}
	return b.Bytes(), nil
}

// Argon2 parameters of [ServerKey.MarshalPrivateEncrypted] (RFC 9106's
// second recommended option: 3 passes, 4 lanes, 64 MiB) and the iteration
// count of its iterated and salted S2K (the most OpenPGP can encode: 65 MB
// hashed).
const (
	argon2Passes      = 3
	argon2Parallelism = 4
	argon2MemoryKiB   = 64 << 10
	iteratedS2KCount  = 65011712
)

// MarshalPrivateEncrypted serialises the key like [ServerKey.MarshalPrivate]
// but with its private part encrypted under passphrase the OpenPGP way
// (RFC 9580 5.5.3): with AES-256 and, for a v6 key, an Argon2 S2K (3
// passes, 4 lanes, 64 MiB) under AEAD (OCB); a v4 key, where GnuPG 2.2 and
// RFC 4880 readers expect it, gets an iterated and salted SHA-256 S2K
// (65,011,712 bytes hashed) with CFB and a SHA-1 check. rand supplies the
// salt and IV (nil: crypto/rand). [ParseEncryptedServerKey] reads it back.
// The key itself is not changed. An empty passphrase, or a public-only
// key, is refused (matching [ErrInvalidServerKey]).
func (k *ServerKey) MarshalPrivateEncrypted(passphrase []byte, rand io.Reader) ([]byte, error) {
	if len(passphrase) == 0 {
		return nil, fail(ErrInvalidServerKey, "an empty passphrase encrypts nothing")
	}
	plain, err := k.MarshalPrivate()
	if err != nil {
		return nil, err
	}
	e, err := readServerEntity(plain) // a copy: k's own private key stays usable
	if err != nil {
		return nil, err
	}
	cfg := &packet.Config{
		Rand:          rand,
		DefaultCipher: packet.CipherAES256,
		S2KConfig:     &s2k.Config{S2KMode: s2k.IteratedSaltedS2K, Hash: crypto.SHA256, S2KCount: iteratedS2KCount},
	}
	if k.pub.Version == 6 {
		cfg.S2KConfig = &s2k.Config{S2KMode: s2k.Argon2S2K, Argon2Config: &s2k.Argon2Config{
			NumberOfPasses: argon2Passes, DegreeOfParallelism: argon2Parallelism, Memory: argon2MemoryKiB}}
		cfg.AEADConfig = &packet.AEADConfig{DefaultMode: packet.AEADModeOCB}
	}
	if err := e.EncryptPrivateKeys(passphrase, cfg); err != nil {
		return nil, fail(ErrInvalidServerKey, "encrypting the private key: %v", err)
	}
	var b bytes.Buffer
	if err := e.SerializePrivateWithoutSigning(&b, nil); err != nil {
		return nil, fail(ErrInvalidServerKey, "serialising the encrypted private key: %v", err)
	}
	return b.Bytes(), nil
}

// WasEncrypted reports whether the key was read by
// [ParseEncryptedServerKey] from data whose private part was encrypted.
func (k *ServerKey) WasEncrypted() bool { return k.encrypted }

// String describes the key without any secret: algorithm, domain and
// fingerprint. It lets a ServerKey be logged safely.
func (k *ServerKey) String() string {
	return fmt.Sprintf("idcert.ServerKey{%s %s %X}", k.alg, k.domain, k.pub.Fingerprint)
}

// GoString is [ServerKey.String], so that %#v never dumps key material.
func (k *ServerKey) GoString() string { return k.String() }
