package mls

import (
	"math"
	"time"
)

// Protocol constants of RFC 9420 used by this package.
const (
	// VersionMLS10 is ProtocolVersion mls10.
	VersionMLS10 uint16 = 1
	// WireFormatKeyPackage is WireFormat mls_key_package, the MLSMessage
	// wire format that wraps a KeyPackage.
	WireFormatKeyPackage uint16 = 5
	// CredentialBasic is CredentialType basic (an opaque identity).
	CredentialBasic uint16 = 1
	// CredentialX509 is CredentialType x509 (a DER certificate chain).
	CredentialX509 uint16 = 2
	// LeafNodeSourceKeyPackage is LeafNodeSource key_package, the only
	// source a KeyPackage's leaf node may have.
	LeafNodeSourceKeyPackage uint8 = 1
)

// MaxSize is the largest input, in bytes, that Decode accepts (wrapped or
// bare). Larger inputs are refused before any parsing.
const MaxSize = 64 << 10

// KeyPackage is a decoded RFC 9420 KeyPackage.
//
// Raw is a private copy of the bare KeyPackage bytes exactly as received
// (without any MLSMessage header). Every other []byte field, and every
// Extension.Data, is a sub-slice of Raw: callers must treat them as
// read-only. A KeyPackage returned by Decode is immutable by convention and
// then safe for concurrent use.
type KeyPackage struct {
	// Raw is the bare KeyPackage encoding, byte-identical to the input
	// (or to the input after its 4-byte MLSMessage header).
	Raw []byte
	// Wrapped reports whether the input to Decode was an MLSMessage with
	// wire_format mls_key_package rather than a bare KeyPackage.
	Wrapped bool

	// Version is the KeyPackage's ProtocolVersion (Validate requires
	// VersionMLS10).
	Version uint16
	// CipherSuite is the KeyPackage's cipher suite identifier.
	CipherSuite uint16
	// InitKey is the HPKE public key used to encrypt a Welcome.
	InitKey []byte

	// EncryptionKey is leaf_node.encryption_key (HPKE public key).
	EncryptionKey []byte
	// SignatureKey is leaf_node.signature_key; both signatures of the
	// KeyPackage verify under it once Validate succeeds. Its encoding is
	// the suite's: the 32-byte Ed25519 or 57-byte Ed448 public key, or the
	// uncompressed SEC 1 point (04 || X || Y) for ECDSA.
	SignatureKey []byte
	// Credential is leaf_node.credential.
	Credential Credential
	// Capabilities is leaf_node.capabilities.
	Capabilities Capabilities
	// NotBefore and NotAfter are leaf_node.lifetime, in seconds since the
	// Unix epoch. Decode guarantees leaf_node_source is key_package, so a
	// lifetime is always present.
	NotBefore, NotAfter uint64
	// LeafExtensions is leaf_node.extensions in wire order (nil if empty).
	LeafExtensions []Extension
	// LeafSignature is leaf_node.signature, over LeafNodeTBS.
	LeafSignature []byte

	// Extensions is the KeyPackage's own extensions in wire order (nil if
	// empty).
	Extensions []Extension
	// Signature is the KeyPackage signature, over KeyPackageTBS.
	Signature []byte

	// LeafNodeTBS is the encoded LeafNodeTBS that LeafSignature signs: for
	// a key_package leaf it is the leaf node's encoding up to, not
	// including, its signature.
	LeafNodeTBS []byte
	// KeyPackageTBS is the encoded KeyPackageTBS that Signature signs: Raw
	// up to, not including, the final signature.
	KeyPackageTBS []byte
}

// Credential is an RFC 9420 Credential. Decode only produces the two
// credential types RFC 9420 defines.
type Credential struct {
	// Type is CredentialBasic or CredentialX509.
	Type uint16
	// Identity is the basic credential's identity (nil for x509).
	Identity []byte
	// Certificates is the x509 credential's DER chain, leaf first (nil for
	// basic). Decode guarantees it is not empty. The certificates are not
	// parsed or verified by this package.
	Certificates [][]byte
}

// Capabilities is an RFC 9420 Capabilities structure. The lists are in wire
// order and may contain GREASE values; they are not deduplicated.
type Capabilities struct {
	// Versions lists the supported protocol versions.
	Versions []uint16
	// CipherSuites lists the supported cipher suites.
	CipherSuites []uint16
	// Extensions lists the supported non-default extension types.
	Extensions []uint16
	// Proposals lists the supported non-default proposal types.
	Proposals []uint16
	// Credentials lists the supported credential types.
	Credentials []uint16
}

// Extension is an RFC 9420 Extension.
type Extension struct {
	// Type is the extension type; RFC 9420 defines 1 to 5.
	Type uint16
	// Data is the extension's opaque content.
	Data []byte
}

// maxUnixTime is 9999-12-31T23:59:59Z, the clamp for the time helpers.
const maxUnixTime = 253402300799

// NotBeforeTime returns NotBefore as a UTC time. Values after year 9999 are
// clamped to 9999-12-31T23:59:59Z.
func (kp *KeyPackage) NotBeforeTime() time.Time { return unixTime(kp.NotBefore) }

// NotAfterTime returns NotAfter as a UTC time. Values after year 9999
// (including the "never expires" value 2^64-1) are clamped to
// 9999-12-31T23:59:59Z.
func (kp *KeyPackage) NotAfterTime() time.Time { return unixTime(kp.NotAfter) }

func unixTime(s uint64) time.Time {
	if s > maxUnixTime || s > math.MaxInt64 {
		s = maxUnixTime
	}
	return time.Unix(int64(s), 0).UTC()
}

// IsGREASE reports whether v is one of the GREASE values of RFC 9420
// section 13.5 (0x0A0A, 0x1A1A, ..., 0xEAEA), which implementations insert
// into type and capability lists to exercise extensibility and which this
// package tolerates.
func IsGREASE(v uint16) bool {
	return v&0x0F0F == 0x0A0A && v>>12 == (v>>4)&0xF && v>>12 != 0xF
}
