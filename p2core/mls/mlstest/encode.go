package mlstest

import (
	"encoding/binary"
	"errors"
	"slices"
	"strconv"

	"github.com/p2kit/p2kit/p2core/mls"
)

// AppendVarint appends the minimal RFC 9420 section 2.1.2 encoding of n,
// which must be in [0, 2^30); it panics otherwise (a test bug).
func AppendVarint(b []byte, n int) []byte {
	switch {
	case n < 0 || n >= 1<<30:
		panic("mlstest: varint out of range")
	case n < 1<<6:
		return append(b, byte(n))
	case n < 1<<14:
		return append(b, 0x40|byte(n>>8), byte(n))
	default:
		return append(b, 0x80|byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}

// AppendOpaque appends v as an opaque<V>: a minimal length prefix, then v.
func AppendOpaque(b, v []byte) []byte {
	return append(AppendVarint(b, len(v)), v...)
}

// Wrap returns bare wrapped in an MLSMessage: version mls10 (00 01),
// wire_format mls_key_package (00 05), then bare.
func Wrap(bare []byte) []byte {
	return append([]byte{0, 1, 0, 5}, bare...)
}

// Marshal encodes kp from its fields (not from kp.Raw) as a bare
// KeyPackage with minimal length prefixes, a key_package leaf source and the
// signatures in kp.LeafSignature and kp.Signature as they are. For any
// KeyPackage produced by mls.Decode, Marshal(kp) equals kp.Raw; tests use it
// to re-encode a decoded KeyPackage after changing a field. A credential
// type other than x509 is encoded with kp.Credential.Identity as its body.
func Marshal(kp *mls.KeyPackage) []byte {
	e := encoder{target: -1}
	e.keyPackage(kp)
	return e.buf
}

// PrefixMutation says how MarshalMutated rewrites one length prefix.
type PrefixMutation int

const (
	// NonMinimal writes the length with the next longer encoding (2 bytes
	// for lengths below 64, 4 bytes for lengths below 16384).
	NonMinimal PrefixMutation = iota + 1
	// Oversized writes 0xbfffffff, the largest length (2^30-1) the
	// encoding allows, whatever the real length.
	Oversized
)

// Mutated is the result of MarshalMutated.
type Mutated struct {
	// Bytes is the bare KeyPackage with one prefix rewritten.
	Bytes []byte
	// Field is the rewritten vector's name, as mls errors name it (for
	// example "leaf_node.capabilities.versions" or
	// "extensions[0].extension_data").
	Field string
	// Offset is the rewritten prefix's offset in Bytes.
	Offset int
}

// ErrNoPrefix is returned by MarshalMutated when the KeyPackage has fewer
// length prefixes than the index asked for.
var ErrNoPrefix = errors.New("mlstest: no such length prefix")

// MarshalMutated is Marshal with the i-th length prefix (0-based, in
// output order) rewritten as m says. It returns ErrNoPrefix when i is past
// the last prefix, so callers can loop over every prefix until then, and
// another error if NonMinimal is asked for a length of 16384 or more (which
// has no longer encoding).
func MarshalMutated(kp *mls.KeyPackage, i int, m PrefixMutation) (Mutated, error) {
	if i < 0 {
		return Mutated{}, ErrNoPrefix
	}
	e := encoder{target: i, mutation: m}
	e.keyPackage(kp)
	if e.err != nil {
		return Mutated{}, e.err
	}
	if !e.hit {
		return Mutated{}, ErrNoPrefix
	}
	return Mutated{Bytes: e.buf, Field: e.field, Offset: e.offset}, nil
}

// encoder writes a KeyPackage, numbering length prefixes in output order so
// that one of them (target) can be mutated.
type encoder struct {
	buf      []byte
	count    int // prefixes numbered so far
	target   int
	mutation PrefixMutation

	hit    bool   // target was written
	field  string // its field name
	offset int    // its offset in buf
	err    error
}

// vector writes a vector named field whose body body appends.
func (e *encoder) vector(field string, body func()) {
	idx := e.count
	e.count++
	start := len(e.buf)
	body()
	n := len(e.buf) - start
	prefix := AppendVarint(nil, n)
	if idx == e.target {
		switch e.mutation {
		case NonMinimal:
			switch {
			case n < 1<<6:
				prefix = []byte{0x40, byte(n)}
			case n < 1<<14:
				prefix = binary.BigEndian.AppendUint32(nil, 0x80000000|uint32(n))
			default:
				e.err = errors.New("mlstest: length " + strconv.Itoa(n) + " of " + field + " has no longer encoding")
			}
		case Oversized:
			prefix = []byte{0xbf, 0xff, 0xff, 0xff}
		}
		e.hit, e.field, e.offset = true, field, start
	} else if e.hit && start <= e.offset {
		e.offset += len(prefix) // an enclosing prefix goes before the target
	}
	e.buf = slices.Insert(e.buf, start, prefix...)
}

func (e *encoder) opaque(field string, v []byte) {
	e.vector(field, func() { e.buf = append(e.buf, v...) })
}

func (e *encoder) u16(v uint16) { e.buf = binary.BigEndian.AppendUint16(e.buf, v) }

func (e *encoder) keyPackage(kp *mls.KeyPackage) {
	e.u16(kp.Version)
	e.u16(kp.CipherSuite)
	e.opaque("init_key", kp.InitKey)
	e.leafTBS(leafFields{
		encryptionKey: kp.EncryptionKey,
		signatureKey:  kp.SignatureKey,
		credential:    kp.Credential,
		capabilities:  kp.Capabilities,
		source:        mls.LeafNodeSourceKeyPackage,
		notBefore:     kp.NotBefore,
		notAfter:      kp.NotAfter,
		extensions:    kp.LeafExtensions,
	})
	e.opaque("leaf_node.signature", kp.LeafSignature)
	e.extensions("extensions", kp.Extensions)
	e.opaque("signature", kp.Signature)
}

// leafFields are the parts of a key_package LeafNodeTBS.
type leafFields struct {
	encryptionKey, signatureKey []byte
	credential                  mls.Credential
	capabilities                mls.Capabilities
	source                      uint8
	notBefore, notAfter         uint64
	extensions                  []mls.Extension
}

// leafTBS writes a LeafNodeTBS for a KeyPackage (the leaf node without its
// signature).
func (e *encoder) leafTBS(l leafFields) {
	e.opaque("leaf_node.encryption_key", l.encryptionKey)
	e.opaque("leaf_node.signature_key", l.signatureKey)
	e.u16(l.credential.Type)
	if l.credential.Type != mls.CredentialX509 {
		e.opaque("leaf_node.credential.identity", l.credential.Identity)
	} else {
		e.vector("leaf_node.credential.certificates", func() {
			for i, c := range l.credential.Certificates {
				e.opaque("leaf_node.credential.certificates["+strconv.Itoa(i)+"]", c)
			}
		})
	}
	c := l.capabilities
	for i, list := range [][]uint16{c.Versions, c.CipherSuites, c.Extensions, c.Proposals, c.Credentials} {
		e.vector(capabilityFields[i], func() {
			for _, v := range list {
				e.u16(v)
			}
		})
	}
	e.buf = append(e.buf, l.source)
	e.buf = binary.BigEndian.AppendUint64(e.buf, l.notBefore)
	e.buf = binary.BigEndian.AppendUint64(e.buf, l.notAfter)
	e.extensions("leaf_node.extensions", l.extensions)
}

var capabilityFields = [5]string{
	"leaf_node.capabilities.versions",
	"leaf_node.capabilities.cipher_suites",
	"leaf_node.capabilities.extensions",
	"leaf_node.capabilities.proposals",
	"leaf_node.capabilities.credentials",
}

func (e *encoder) extensions(field string, exts []mls.Extension) {
	e.vector(field, func() {
		for i, x := range exts {
			e.u16(x.Type)
			e.opaque(field+"["+strconv.Itoa(i)+"].extension_data", x.Data)
		}
	})
}

// appendLeafTBS appends a minimally encoded LeafNodeTBS.
func appendLeafTBS(b []byte, l leafFields) []byte {
	e := encoder{buf: b, target: -1}
	e.leafTBS(l)
	return e.buf
}

// appendExtensions appends a minimally encoded Extension<V>.
func appendExtensions(b []byte, exts []mls.Extension) []byte {
	e := encoder{buf: b, target: -1}
	e.extensions("", exts)
	return e.buf
}
