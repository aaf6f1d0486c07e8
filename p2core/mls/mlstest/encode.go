package mlstest

import (
	"encoding/binary"

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
	b := binary.BigEndian.AppendUint16(nil, kp.Version)
	b = binary.BigEndian.AppendUint16(b, kp.CipherSuite)
	b = AppendOpaque(b, kp.InitKey)
	b = appendLeafTBS(b, leafFields{
		encryptionKey: kp.EncryptionKey,
		signatureKey:  kp.SignatureKey,
		credential:    kp.Credential,
		capabilities:  kp.Capabilities,
		source:        mls.LeafNodeSourceKeyPackage,
		notBefore:     kp.NotBefore,
		notAfter:      kp.NotAfter,
		extensions:    kp.LeafExtensions,
	})
	b = AppendOpaque(b, kp.LeafSignature)
	b = appendExtensions(b, kp.Extensions)
	return AppendOpaque(b, kp.Signature)
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

// appendLeafTBS appends a LeafNodeTBS for a KeyPackage (the leaf node
// without its signature).
func appendLeafTBS(b []byte, l leafFields) []byte {
	b = AppendOpaque(b, l.encryptionKey)
	b = AppendOpaque(b, l.signatureKey)
	b = appendCredential(b, l.credential)
	for _, list := range [][]uint16{
		l.capabilities.Versions, l.capabilities.CipherSuites, l.capabilities.Extensions,
		l.capabilities.Proposals, l.capabilities.Credentials,
	} {
		b = appendUint16s(b, list)
	}
	b = append(b, l.source)
	b = binary.BigEndian.AppendUint64(b, l.notBefore)
	b = binary.BigEndian.AppendUint64(b, l.notAfter)
	return appendExtensions(b, l.extensions)
}

func appendCredential(b []byte, c mls.Credential) []byte {
	b = binary.BigEndian.AppendUint16(b, c.Type)
	if c.Type != mls.CredentialX509 {
		return AppendOpaque(b, c.Identity)
	}
	n := 0
	for _, cert := range c.Certificates {
		n += len(AppendVarint(nil, len(cert))) + len(cert)
	}
	b = AppendVarint(b, n)
	for _, cert := range c.Certificates {
		b = AppendOpaque(b, cert)
	}
	return b
}

func appendUint16s(b []byte, list []uint16) []byte {
	b = AppendVarint(b, 2*len(list))
	for _, v := range list {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return b
}

func appendExtensions(b []byte, exts []mls.Extension) []byte {
	n := 0
	for _, e := range exts {
		n += 2 + len(AppendVarint(nil, len(e.Data))) + len(e.Data)
	}
	b = AppendVarint(b, n)
	for _, e := range exts {
		b = binary.BigEndian.AppendUint16(b, e.Type)
		b = AppendOpaque(b, e.Data)
	}
	return b
}
