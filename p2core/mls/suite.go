package mls

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"hash"
	"strconv"

	"github.com/cloudflare/circl/sign/ed448"
)

// sigScheme is a SignatureScheme used by an RFC 9420 cipher suite.
type sigScheme uint8

const (
	sigEd25519 sigScheme = iota + 1
	sigEd448
	sigECDSA
)

// suite holds what Validate needs to know about a cipher suite.
type suite struct {
	name      string
	newHash   func() hash.Hash
	hpkeLen   int            // Npk of the suite's KEM
	hpkeCurve ecdh.Curve     // non-nil for NIST KEMs, whose keys are checked on-curve
	sig       sigScheme      // signature scheme
	sigCurve  elliptic.Curve // for sigECDSA
	sigKeyLen int            // encoded signature public key length
	// verifyCost is the CPU cost of checking a KeyPackage's two
	// signatures in this suite, relative to Ed25519 (see VerifyCost).
	verifyCost int
}

var suites = [8]*suite{
	1: {name: "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519", newHash: sha256.New, hpkeLen: 32, sig: sigEd25519, sigKeyLen: ed25519.PublicKeySize, verifyCost: 1},
	2: {name: "MLS_128_DHKEMP256_AES128GCM_SHA256_P256", newHash: sha256.New, hpkeLen: 65, hpkeCurve: ecdh.P256(), sig: sigECDSA, sigCurve: elliptic.P256(), sigKeyLen: 65, verifyCost: 2},
	3: {name: "MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519", newHash: sha256.New, hpkeLen: 32, sig: sigEd25519, sigKeyLen: ed25519.PublicKeySize, verifyCost: 1},
	4: {name: "MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448", newHash: sha512.New, hpkeLen: 56, sig: sigEd448, sigKeyLen: ed448.PublicKeySize, verifyCost: 4},
	5: {name: "MLS_256_DHKEMP521_AES256GCM_SHA512_P521", newHash: sha512.New, hpkeLen: 133, hpkeCurve: ecdh.P521(), sig: sigECDSA, sigCurve: elliptic.P521(), sigKeyLen: 133, verifyCost: 24},
	6: {name: "MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448", newHash: sha512.New, hpkeLen: 56, sig: sigEd448, sigKeyLen: ed448.PublicKeySize, verifyCost: 4},
	7: {name: "MLS_256_DHKEMP384_AES256GCM_SHA384_P384", newHash: sha512.New384, hpkeLen: 97, hpkeCurve: ecdh.P384(), sig: sigECDSA, sigCurve: elliptic.P384(), sigKeyLen: 97, verifyCost: 8},
}

// lookupSuite returns the parameters of cipher suite id, or nil if this
// package does not implement it.
func lookupSuite(id uint16) *suite {
	if int(id) < len(suites) {
		return suites[id]
	}
	return nil
}

// checkHPKEKey reports why key is not a valid HPKE public key of s, or "".
func (s *suite) checkHPKEKey(key []byte) string {
	if len(key) != s.hpkeLen {
		return "is " + strconv.Itoa(len(key)) + " bytes, " + s.name + " needs " + strconv.Itoa(s.hpkeLen)
	}
	if s.hpkeCurve != nil {
		if _, err := s.hpkeCurve.NewPublicKey(key); err != nil {
			return "is not an uncompressed point on the suite's curve"
		}
	}
	return ""
}

// verifier checks SignWithLabel signatures under one signature public key.
type verifier struct {
	s  *suite
	pk []byte           // Ed25519 / Ed448
	ec *ecdsa.PublicKey // ECDSA
}

// newVerifier parses pub as a signature public key of s. It returns a
// reason ("" on success).
func newVerifier(s *suite, pub []byte) (verifier, string) {
	if len(pub) != s.sigKeyLen {
		return verifier{}, "is " + strconv.Itoa(len(pub)) + " bytes, " + s.name + " needs " + strconv.Itoa(s.sigKeyLen)
	}
	v := verifier{s: s, pk: pub}
	if s.sig == sigECDSA {
		ec, err := ecdsa.ParseUncompressedPublicKey(s.sigCurve, pub)
		if err != nil {
			return verifier{}, "is not an uncompressed point on the suite's curve"
		}
		v.ec = ec
	}
	return v, ""
}

// verifyWithLabel reports whether sig is a valid SignWithLabel(., label,
// content) signature (RFC 9420 section 5.1.2): a signature over the
// encoded SignContent{opaque label<V> = "MLS 1.0 " + label; opaque
// content<V>}. ECDSA signatures are DER-encoded.
func (v verifier) verifyWithLabel(label string, content, sig []byte) bool {
	switch v.s.sig {
	case sigECDSA:
		if v.ec == nil {
			return false
		}
		h := v.s.newHash()
		var pre [4]byte
		h.Write(appendLength(pre[:0], len(labelPrefix)+len(label)))
		h.Write([]byte(labelPrefix))
		h.Write([]byte(label))
		h.Write(appendLength(pre[:0], len(content)))
		h.Write(content)
		return ecdsa.VerifyASN1(v.ec, h.Sum(nil), sig)
	case sigEd25519:
		if len(v.pk) != ed25519.PublicKeySize {
			return false
		}
		return ed25519.Verify(v.pk, signContent(label, content), sig)
	case sigEd448:
		return ed448.Verify(v.pk, signContent(label, content), sig, "")
	}
	return false
}

const labelPrefix = "MLS 1.0 "

// signContent encodes SignContent for label and content.
func signContent(label string, content []byte) []byte {
	n := len(labelPrefix) + len(label)
	buf := make([]byte, 0, 8+n+len(content))
	buf = appendLength(buf, n)
	buf = append(buf, labelPrefix...)
	buf = append(buf, label...)
	buf = appendLength(buf, len(content))
	return append(buf, content...)
}

// refHash computes RefHash(label, value) (RFC 9420 section 5.2) with the
// suite's hash: Hash(RefHashInput{opaque label<V>; opaque value<V>}).
func (s *suite) refHash(label string, value []byte) []byte {
	h := s.newHash()
	var pre [4]byte
	h.Write(appendLength(pre[:0], len(label)))
	h.Write([]byte(label))
	h.Write(appendLength(pre[:0], len(value)))
	h.Write(value)
	return h.Sum(nil)
}

// appendLength appends the minimal RFC 9420 variable-length encoding of n,
// which must be below 2^30.
func appendLength(b []byte, n int) []byte {
	switch {
	case n < 1<<6:
		return append(b, byte(n))
	case n < 1<<14:
		return append(b, 0x40|byte(n>>8), byte(n))
	default:
		return append(b, 0x80|byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
}
