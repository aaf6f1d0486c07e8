package idcert

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/ed25519"
	"github.com/ProtonMail/go-crypto/openpgp/ed448"
	"github.com/ProtonMail/go-crypto/openpgp/eddsa"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	openpgp "github.com/ProtonMail/go-crypto/openpgp/v2"
)

// ClientKeyAlgorithm names a family of client primary keys that a [Policy] may
// allow.
type ClientKeyAlgorithm string

const (
	// ClientEd25519Legacy is EdDSA (algorithm 22) on Ed25519, as made by
	// GnuPG 2.2 and by OpenPGP.js's default "ecc" keys.
	ClientEd25519Legacy ClientKeyAlgorithm = "ed25519-legacy"
	// ClientEd25519 is the Ed25519 algorithm (27) of RFC 9580.
	ClientEd25519 ClientKeyAlgorithm = "ed25519"
	// ClientEd448 is the Ed448 algorithm (28) of RFC 9580.
	ClientEd448 ClientKeyAlgorithm = "ed448"
	// ClientECDSAP256 is ECDSA (algorithm 19) on NIST P-256.
	ClientECDSAP256 ClientKeyAlgorithm = "ecdsa-p256"
	// ClientECDSAP384 is ECDSA on NIST P-384.
	ClientECDSAP384 ClientKeyAlgorithm = "ecdsa-p384"
	// ClientECDSAP521 is ECDSA on NIST P-521.
	ClientECDSAP521 ClientKeyAlgorithm = "ecdsa-p521"
	// ClientRSA is RSA (algorithms 1 and 3) with at least Policy.MinRSABits
	// and at most 8192 bits. MLS has no RSA cipher suite, so such keys
	// cannot back MLS KeyPackages.
	ClientRSA ClientKeyAlgorithm = "rsa"
)

// DefaultClientKeyAlgorithms is the set a zero [Policy] allows: every
// [ClientKeyAlgorithm] this package knows.
func DefaultClientKeyAlgorithms() []ClientKeyAlgorithm {
	return []ClientKeyAlgorithm{ClientEd25519Legacy, ClientEd25519, ClientEd448, ClientECDSAP256, ClientECDSAP384, ClientECDSAP521, ClientRSA}
}

// DefaultMaxArmoredSize is the armored-size cap a zero Policy applies.
const DefaultMaxArmoredSize = 64 << 10

// DefaultMinRSABits is the RSA modulus size a zero Policy requires.
const DefaultMinRSABits = 2048

// Limits that keep the work spent on one untrusted key or certificate
// small: RSA moduli above maxRSABits are refused, and so are keys carrying
// more than maxKeyRevocations key revocation signatures (each one costs a
// signature verification). certificationRoom is kept free below MaxCertSize
// so that every key ParseClientKey accepts can be certified and verified.
const (
	maxRSABits        = 8192
	maxKeyRevocations = 8
	certificationRoom = 8 << 10
)

// Policy says which client keys [ParseClientKey] accepts. The zero value is
// the documented default of every field.
type Policy struct {
	// MaxArmoredSize caps the armored input in bytes, checked before any
	// parsing. 0 means DefaultMaxArmoredSize (64 KiB).
	MaxArmoredSize int
	// Algorithms lists the allowed primary-key algorithms. nil or empty
	// means DefaultClientKeyAlgorithms().
	Algorithms []ClientKeyAlgorithm
	// MinRSABits is the smallest RSA modulus accepted when ClientRSA is
	// allowed. 0 means DefaultMinRSABits (2048).
	MinRSABits int
	// ClockSkew is how far after now the key's creation time may be:
	// clients stamp a new key with their own clock (GnuPG and RNP use
	// now), so one running a little fast would otherwise be refused. Such
	// a key, with its self-signatures, is checked as of now + ClockSkew.
	// Zero or negative allows none. p2core passes its Config.ClockSkew
	// (default 5 minutes).
	ClockSkew time.Duration
}

// Check returns an error naming the first field of pol that
// [ParseClientKey] could not apply: a negative size, an algorithm that is
// not one of the ClientKeyAlgorithm constants, or a MinRSABits outside 0
// to the largest RSA modulus accepted (8192).
func (pol Policy) Check() error {
	if pol.MaxArmoredSize < 0 {
		return fmt.Errorf("idcert: Policy.MaxArmoredSize %d is negative", pol.MaxArmoredSize)
	}
	if pol.MinRSABits < 0 || pol.MinRSABits > maxRSABits {
		return fmt.Errorf("idcert: Policy.MinRSABits %d is outside 0 to %d", pol.MinRSABits, maxRSABits)
	}
	for _, a := range pol.Algorithms {
		if !slices.Contains(DefaultClientKeyAlgorithms(), a) {
			return fmt.Errorf("idcert: unknown client key algorithm %q in Policy.Algorithms (known: %s)", a, joinAlgs(DefaultClientKeyAlgorithms()))
		}
	}
	return nil
}

// ClientKey is a client's public key that passed the checks of route 8,
// together with the User ID that names the client's FID. It is immutable and
// safe for concurrent use. Only [ParseClientKey] makes usable values; the
// zero ClientKey is refused by [Issue] and its methods must not be called.
type ClientKey struct {
	pkts     []rawPacket
	uidIndex int // index in pkts of the FID User ID packet
	entity   *openpgp.Entity
	uid      string
	fid      string
	alg      ClientKeyAlgorithm
	mlsKey   []byte // nil for RSA
	expires  time.Time
}

// ParseClientKey checks an ASCII-armored client public key as route 8
// requires and returns it with the User ID that names fid. In order:
//
//   - the input is at most pol.MaxArmoredSize bytes (checked before parsing);
//   - it is exactly one armored "PGP PUBLIC KEY BLOCK" (a private key block,
//     or private key packets inside a public block, are refused as such);
//   - it holds exactly one key, whose packets all belong in a public key;
//   - the primary key's algorithm is allowed by pol;
//   - the key was not created after now + pol.ClockSkew; one created after
//     now (by a client whose clock runs ahead) is judged as of now +
//     pol.ClockSkew in the checks below;
//   - the key is neither revoked nor expired at now, and has a valid
//     self-signature at now;
//   - one of its User IDs is exactly "alice@example.com" or
//     "Alice <alice@example.com>" with the address equal to fid (compared
//     case-insensitively), carries a valid self-signature at now made with
//     a hash stronger than SHA-1, and is not revoked. Other User IDs may
//     exist and are left alone. If several qualify, the first one in the
//     key wins.
//
// Keys made by GnuPG and by OpenPGP.js (critical creation-time and
// key-flags subpackets, salt notations, SHA-512, cv25519 subkeys) pass as
// they are. A zero now means time.Now(). Every error matches
// [ErrInvalidPublicKey] and says what is wrong.
func ParseClientKey(armored []byte, fid string, now time.Time, pol Policy) (k *ClientKey, err error) {
	maxSize := pol.MaxArmoredSize
	if maxSize <= 0 {
		maxSize = DefaultMaxArmoredSize
	}
	if len(armored) > maxSize {
		return nil, fail(ErrInvalidPublicKey, "the key is %d bytes long, more than the %d allowed", len(armored), maxSize)
	}
	if now.IsZero() {
		now = time.Now()
	}
	if !validFID(fid) {
		return nil, fail(ErrInvalidPublicKey, "%q is not a federation ID of the form name@domain", fid)
	}
	defer recoverInto(&err, ErrInvalidPublicKey)

	body, err := dearmorPublicKey(armored)
	if err != nil {
		return nil, err
	}
	if len(body) > MaxCertSize-certificationRoom {
		return nil, fail(ErrInvalidPublicKey, "the key is too large to be certified (%d bytes)", len(body))
	}
	pkts, err := splitPackets(body)
	if err != nil {
		return nil, fail(ErrInvalidPublicKey, "%v", err)
	}
	if err := checkKeyPacketTags(pkts); err != nil {
		return nil, fail(ErrInvalidPublicKey, "%v", err)
	}
	e, err := readSingleEntity(body)
	if err != nil {
		return nil, fail(ErrInvalidPublicKey, "%v", err)
	}
	if !canonicalKeyPacket(e.PrimaryKey, pkts[0].body) {
		return nil, fail(ErrInvalidPublicKey, "the primary key packet is not canonically encoded")
	}
	alg, mlsKey, err := classifyClientKey(e.PrimaryKey, pol)
	if err != nil {
		return nil, err
	}
	if len(e.Revocations) > maxKeyRevocations {
		return nil, fail(ErrInvalidPublicKey, "the key carries %d revocation signatures, more than the %d accepted", len(e.Revocations), maxKeyRevocations)
	}

	cfg := clientKeyConfig()
	if created := e.PrimaryKey.CreationTime; created.Unix() > now.Unix() {
		skew := max(pol.ClockSkew, 0).Truncate(time.Second)
		if ahead := time.Duration(created.Unix()-now.Unix()) * time.Second; ahead > skew {
			return nil, fail(ErrInvalidPublicKey, "the key claims to be created at %s, %s in the future of this server's clock (%s): more than the allowed clock skew of %s (check the clock)", created.UTC().Format(time.RFC3339), ahead, now.UTC().Format(time.RFC3339), skew)
		}
		// A key from a clock running ahead: its self-signatures carry
		// that clock's time too, so the key is judged as of then.
		now = now.Add(skew)
	}
	if e.Revoked(now) {
		return nil, fail(ErrInvalidPublicKey, "the key is revoked")
	}
	k = &ClientKey{pkts: pkts, entity: e, alg: alg, mlsKey: mlsKey, uidIndex: -1}
	var reasons []string
	for i, p := range pkts {
		if p.tag != tagUserID {
			continue
		}
		uid := string(p.body)
		email, err := userIDEmail(uid)
		if err != nil || !strings.EqualFold(email, fid) {
			switch {
			case !strings.Contains(strings.ToLower(uid), strings.ToLower(fid)):
			case err != nil && !errors.Is(err, errUserIDForm):
				reasons = append(reasons, fmt.Sprintf("User ID %q: %v", truncateForMessage(p.body), err))
			default:
				reasons = append(reasons, fmt.Sprintf("User ID %q does not have the form %q or %q", truncateForMessage(p.body), fid, "Name <"+fid+">"))
			}
			continue
		}
		id := e.Identities[uid]
		if id == nil {
			reasons = append(reasons, fmt.Sprintf("User ID %q has no self-signature", truncateForMessage(p.body)))
			continue
		}
		if h, weak := onlyWeakSelfSignatures(id.SelfCertifications, cfg); weak {
			reasons = append(reasons, fmt.Sprintf("User ID %q is self-signed only with %v, which is no longer accepted; sign it again with SHA-256 or better", truncateForMessage(p.body), h))
			continue
		}
		selfSig, err := id.LatestValidSelfCertification(now, cfg)
		if err != nil {
			reasons = append(reasons, fmt.Sprintf("User ID %q has no valid self-signature at %s", truncateForMessage(p.body), now.UTC().Format(time.RFC3339)))
			continue
		}
		if id.Revoked(selfSig, now, cfg) {
			reasons = append(reasons, fmt.Sprintf("User ID %q is revoked", truncateForMessage(p.body)))
			continue
		}
		if e.PrimaryKey.KeyExpired(selfSig, now) {
			reasons = append(reasons, fmt.Sprintf("the key has expired according to the self-signature of User ID %q", truncateForMessage(p.body)))
			continue
		}
		k.uid, k.fid, k.uidIndex = uid, strings.ToLower(email), i
		if s := selfSig.KeyLifetimeSecs; s != nil && *s != 0 {
			k.expires = e.PrimaryKey.CreationTime.Add(time.Duration(*s) * time.Second).UTC()
		}
		break
	}
	if k.uidIndex < 0 {
		if len(reasons) == 0 {
			return nil, fail(ErrInvalidPublicKey, "no User ID names %s; it must read exactly %q or %q", fid, fid, "Name <"+fid+">")
		}
		return nil, fail(ErrInvalidPublicKey, "no valid User ID names %s: %s", fid, strings.Join(reasons, "; "))
	}
	// The key as a whole: its primary self-signature (the primary User
	// ID's, or the direct-key signature of a v6 key) must be valid too.
	if _, err := e.VerifyPrimaryKey(now, cfg); err != nil {
		switch {
		case errors.Is(err, pgperrors.ErrKeyExpired):
			return nil, fail(ErrInvalidPublicKey, "the key has expired")
		default:
			return nil, fail(ErrInvalidPublicKey, "the key has no valid self-signature at %s: %v", now.UTC().Format(time.RFC3339), err)
		}
	}
	// The primary self-signature (and, for v6 keys, the direct-key
	// signature) may carry their own expiration; VerifyPrimaryKey checked
	// them. Record the earliest for clamping certificate lifetimes.
	if ps, err := e.PrimarySelfSignature(now, cfg); err == nil && ps.KeyLifetimeSecs != nil && *ps.KeyLifetimeSecs != 0 {
		exp := e.PrimaryKey.CreationTime.Add(time.Duration(*ps.KeyLifetimeSecs) * time.Second).UTC()
		if k.expires.IsZero() || exp.Before(k.expires) {
			k.expires = exp
		}
	}
	return k, nil
}

// onlyWeakSelfSignatures reports whether every self-signature uses a hash
// cfg rejects, and names one such hash.
func onlyWeakSelfSignatures(sigs []*packet.VerifiableSignature, cfg *packet.Config) (crypto.Hash, bool) {
	if len(sigs) == 0 {
		return 0, false
	}
	for _, s := range sigs {
		if !cfg.RejectHashAlgorithm(s.Packet.Hash) {
			return 0, false
		}
	}
	return sigs[0].Packet.Hash, true
}

// clientKeyConfig is the go-crypto policy for client self-signatures: on top
// of go-crypto's defaults, SHA-1 is refused, since SHA-1 collisions make
// such signatures forgeable.
func clientKeyConfig() *packet.Config {
	return &packet.Config{
		RejectHashAlgorithms: map[crypto.Hash]bool{crypto.MD5: true, crypto.SHA1: true, crypto.RIPEMD160: true},
	}
}

// dearmorPublicKey decodes exactly one armored public key block.
func dearmorPublicKey(armored []byte) ([]byte, error) {
	if n := bytes.Count(armored, []byte("-----BEGIN ")); n != 1 {
		if n == 0 {
			if len(armored) > 0 && armored[0]&0x80 != 0 {
				return nil, fail(ErrInvalidPublicKey, "the key is binary; send it ASCII-armored (gpg --armor --export)")
			}
			return nil, fail(ErrInvalidPublicKey, "no ASCII-armored OpenPGP block found")
		}
		return nil, fail(ErrInvalidPublicKey, "found %d armored blocks; send exactly one public key block", n)
	}
	block, err := armor.Decode(bytes.NewReader(armored))
	if err != nil {
		return nil, fail(ErrInvalidPublicKey, "bad ASCII armor: %v", err)
	}
	switch block.Type {
	case openpgp.PublicKeyType:
	case openpgp.PrivateKeyType:
		return nil, fail(ErrInvalidPublicKey, "this is a private key block; never send your private key, send the public key (gpg --armor --export)")
	default:
		return nil, fail(ErrInvalidPublicKey, "the armored block is %q, not %q", truncateForMessage([]byte(block.Type)), openpgp.PublicKeyType)
	}
	body, err := io.ReadAll(block.Body)
	if err != nil {
		return nil, fail(ErrInvalidPublicKey, "bad ASCII armor: %v", err)
	}
	if len(body) == 0 {
		return nil, fail(ErrInvalidPublicKey, "the armored block is empty")
	}
	return body, nil
}

// readSingleEntity parses body, already screened by checkKeyPacketTags, as
// exactly one entity and makes sure the parser consumed it all.
func readSingleEntity(body []byte) (*openpgp.Entity, error) {
	r := packet.NewReader(bytes.NewReader(body))
	e, err := openpgp.ReadEntity(r)
	if err != nil {
		return nil, err
	}
	if _, err := r.Next(); err != io.EOF {
		if err == nil {
			return nil, errors.New("unexpected packets after the key")
		}
		return nil, err
	}
	return e, nil
}

// classifyClientKey maps the primary key to a ClientKeyAlgorithm, applies pol and
// extracts the MLS signature_key encoding.
func classifyClientKey(pub *packet.PublicKey, pol Policy) (ClientKeyAlgorithm, []byte, error) {
	alg, mls, err := keyAlgorithm(pub)
	if err != nil {
		return "", nil, fail(ErrInvalidPublicKey, "%v", err)
	}
	if alg == ClientRSA {
		minBits := pol.MinRSABits
		if minBits <= 0 {
			minBits = DefaultMinRSABits
		}
		bits, err := pub.BitLength()
		if err != nil || int(bits) < minBits {
			return "", nil, fail(ErrInvalidPublicKey, "RSA keys need at least %d bits, this one has %d", minBits, bits)
		}
		if bits > maxRSABits {
			return "", nil, fail(ErrInvalidPublicKey, "RSA keys larger than %d bits are not accepted, this one has %d", maxRSABits, bits)
		}
	}
	allowed := pol.Algorithms
	if len(allowed) == 0 {
		allowed = DefaultClientKeyAlgorithms()
	}
	for _, a := range allowed {
		if a == alg {
			return alg, mls, nil
		}
	}
	return "", nil, fail(ErrInvalidPublicKey, "primary key algorithm %s is not allowed here (allowed: %s)", alg, joinAlgs(allowed))
}

// keyAlgorithm maps a primary key to its ClientKeyAlgorithm and MLS
// signature_key encoding (nil for RSA).
func keyAlgorithm(pub *packet.PublicKey) (ClientKeyAlgorithm, []byte, error) {
	var alg ClientKeyAlgorithm
	var mls []byte
	switch pub.PubKeyAlgo {
	case packet.PubKeyAlgoEdDSA:
		c, err := pub.Curve()
		if err != nil || c != packet.Curve25519 {
			return "", nil, errors.New("EdDSA (algorithm 22) keys are accepted on Ed25519 only")
		}
		alg = ClientEd25519Legacy
		mls = rawPoint(pub.PublicKey, 32)
	case packet.PubKeyAlgoEd25519:
		alg = ClientEd25519
		mls = rawPoint(pub.PublicKey, 32)
	case packet.PubKeyAlgoEd448:
		alg = ClientEd448
		mls = rawPoint(pub.PublicKey, 57)
	case packet.PubKeyAlgoECDSA:
		c, err := pub.Curve()
		if err != nil {
			return "", nil, errors.New("ECDSA key on an unknown curve")
		}
		switch c {
		case packet.CurveNistP256:
			alg = ClientECDSAP256
		case packet.CurveNistP384:
			alg = ClientECDSAP384
		case packet.CurveNistP521:
			alg = ClientECDSAP521
		default:
			return "", nil, fmt.Errorf("ECDSA keys are accepted on NIST P-256, P-384 and P-521 only, not %s", c)
		}
		if m, ok := pub.PublicKey.(interface{ MarshalPoint() []byte }); ok {
			mls = m.MarshalPoint()
		}
		if len(mls) == 0 || mls[0] != 0x04 {
			return "", nil, errors.New("malformed ECDSA public point")
		}
	case packet.PubKeyAlgoRSA, packet.PubKeyAlgoRSASignOnly:
		return ClientRSA, nil, nil
	default:
		return "", nil, fmt.Errorf("primary key algorithm %d is not supported", pub.PubKeyAlgo)
	}
	if mls == nil {
		return "", nil, fmt.Errorf("malformed %s public key", alg)
	}
	return alg, mls, nil
}

func joinAlgs(algs []ClientKeyAlgorithm) string {
	s := make([]string, len(algs))
	for i, a := range algs {
		s[i] = string(a)
	}
	return strings.Join(s, ", ")
}

// rawPoint returns a copy of the raw public point of an EdDSA-family key if
// it has exactly size bytes.
func rawPoint(key any, size int) []byte {
	var b []byte
	switch k := key.(type) {
	case *eddsa.PublicKey:
		b = k.X
	case *ed25519.PublicKey:
		b = k.Point
	case *ed448.PublicKey:
		b = k.Point
	}
	if len(b) != size {
		return nil
	}
	return bytes.Clone(b)
}

// Fingerprint returns a copy of the primary key's fingerprint (20 bytes for
// v4 keys, 32 for v6 keys).
func (k *ClientKey) Fingerprint() []byte { return bytes.Clone(k.entity.PrimaryKey.Fingerprint) }

// UserID returns the User ID that names the FID, exactly as in the key.
func (k *ClientKey) UserID() string { return k.uid }

// FID returns the federation ID the key was checked against, lower-cased.
func (k *ClientKey) FID() string { return k.fid }

// Algorithm returns the primary key's algorithm family.
func (k *ClientKey) Algorithm() ClientKeyAlgorithm { return k.alg }

// Expires returns when the key expires according to its self-signatures, in
// UTC; zero means never. ID-Certs over the key never outlive it.
func (k *ClientKey) Expires() time.Time { return k.expires }

// MLSSignatureKey returns the primary public key in the form MLS uses for
// LeafNode.signature_key (RFC 9420): the raw 32 bytes for Ed25519, the raw
// 57 bytes for Ed448, the uncompressed SEC1 point 0x04||X||Y for ECDSA. RSA
// keys yield an error, since MLS has no RSA cipher suite. The result is a
// fresh copy.
func (k *ClientKey) MLSSignatureKey() ([]byte, error) {
	if k.mlsKey == nil {
		return nil, fmt.Errorf("idcert: %s keys have no MLS signature key form: MLS has no RSA cipher suite", k.alg)
	}
	return bytes.Clone(k.mlsKey), nil
}
