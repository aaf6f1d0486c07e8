package mls

// Internals exposed to the external tests of this package.

// VerifyWithLabel reports whether sig is a SignWithLabel(label, content)
// signature of suite under pub, or why pub is unusable.
func VerifyWithLabel(suite uint16, pub []byte, label string, content, sig []byte) (bool, string) {
	s := lookupSuite(suite)
	if s == nil {
		return false, "unknown suite"
	}
	v, why := newVerifier(s, pub)
	if why != "" {
		return false, why
	}
	return v.verifyWithLabel(label, content, sig), ""
}

// RefHash computes RefHash(label, value) with suite's hash.
func RefHash(suite uint16, label string, value []byte) []byte {
	return lookupSuite(suite).refHash(label, value)
}

// ReadVarint decodes the variable-length integer at the start of b,
// returning its value and encoded size.
func ReadVarint(b []byte) (n, size int, err error) {
	r := reader{b: b, end: len(b)}
	n, ok := r.varint()
	if !ok {
		return 0, 0, r.fail("varint")
	}
	return n, r.off, nil
}

// AppendLength exposes appendLength.
var AppendLength = appendLength

// DecodeBare decodes b as a bare KeyPackage only, without the MLSMessage
// detection of Decode.
func DecodeBare(b []byte) (*KeyPackage, error) {
	kp := new(KeyPackage)
	if err := decodeBare(kp, b, 0); err != nil {
		return nil, err
	}
	return kp, nil
}
