package mls

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// Decode parses b as an RFC 9420 KeyPackage, either bare or wrapped in an
// MLSMessage (version mls10, wire_format mls_key_package). It checks
// structure only; use Validate (or Parse) for the semantic checks.
//
// Decoding is strict: every variable-length integer prefix must be minimal
// (RFC 9420 section 2.1.2), every length is checked against the remaining
// input before use, trailing bytes are refused, inputs over MaxSize are
// refused, and so are credential types other than basic and x509 and leaf
// nodes whose leaf_node_source is not key_package. Decode never panics and
// allocates nothing proportional to a claimed length.
//
// The prefix 00 01 00 05 starts both a wrapped KeyPackage and a bare
// KeyPackage of cipher suite 5, so Decode considers both readings. If only
// one reading succeeds it is used. If both succeed, the wrapped reading is
// chosen when the wrapped KeyPackage's own version is mls10, and the bare
// reading otherwise. This picks the only reading that can pass Validate: when
// the inner version is mls10 (bytes 00 01 at offset 4) the bare reading has
// an empty init_key, which no suite-5 KeyPackage can have (it needs 133
// bytes); when it is not, the wrapped reading fails Validate's version check.
//
// The returned KeyPackage holds a copy of the input; b may be reused.
// Every error matches ErrInvalid.
func Decode(b []byte) (*KeyPackage, error) {
	if len(b) > MaxSize {
		return nil, &Error{Offset: -1, Reason: "input is " + strconv.Itoa(len(b)) + " bytes, more than the " + strconv.Itoa(MaxSize) + "-byte limit"}
	}
	if len(b) == 0 {
		return nil, &Error{Offset: 0, Reason: "empty input"}
	}
	buf := make([]byte, len(b))
	copy(buf, b)
	if len(buf) < 4 || binary.BigEndian.Uint16(buf) != VersionMLS10 || binary.BigEndian.Uint16(buf[2:]) != WireFormatKeyPackage {
		kp := new(KeyPackage)
		if err := decodeBare(kp, buf, 0); err != nil {
			return nil, err
		}
		return kp, nil
	}
	// Both readings are possible. By the rule above the wrapped reading
	// wins whenever it decodes with an mls10 KeyPackage, so it is tried
	// first and the bare reading only when needed.
	wrapped := new(KeyPackage)
	errW := decodeBare(wrapped, buf[4:], 4)
	if errW == nil && wrapped.Version == VersionMLS10 {
		wrapped.Wrapped = true
		return wrapped, nil
	}
	bare := new(KeyPackage)
	errB := decodeBare(bare, buf, 0)
	switch {
	case errB == nil:
		return bare, nil
	case errW == nil:
		wrapped.Wrapped = true
		return wrapped, nil
	}
	return nil, &Error{Offset: -1, Reason: "neither an MLSMessage-wrapped KeyPackage (" +
		errW.detail() + ") nor a bare KeyPackage of cipher suite 5 (" + errB.detail() + ")"}
}

// decodeBare decodes the bare KeyPackage b into kp; base is b's offset in
// the caller's input, for error messages. On success every slice in kp
// aliases b and kp.Raw is b.
func decodeBare(kp *KeyPackage, b []byte, base int) *Error {
	r := reader{b: b, end: len(b), base: base}
	var ok bool

	if kp.Version, ok = r.u16(); !ok {
		return r.fail("version")
	}
	if kp.CipherSuite, ok = r.u16(); !ok {
		return r.fail("cipher_suite")
	}
	if kp.InitKey, ok = r.opaque(); !ok {
		return r.fail("init_key")
	}

	// LeafNode.
	leafStart := r.off
	if kp.EncryptionKey, ok = r.opaque(); !ok {
		return r.fail("leaf_node.encryption_key")
	}
	if kp.SignatureKey, ok = r.opaque(); !ok {
		return r.fail("leaf_node.signature_key")
	}
	if err := r.credential(&kp.Credential); err != nil {
		return err
	}
	if err := r.capabilities(&kp.Capabilities); err != nil {
		return err
	}
	srcOff := r.off
	src, ok := r.u8()
	if !ok {
		return r.fail("leaf_node.leaf_node_source")
	}
	switch src {
	case LeafNodeSourceKeyPackage:
	case 2:
		return r.failAt("leaf_node.leaf_node_source", srcOff, "source update (2) is not allowed in a KeyPackage, which needs key_package (1)")
	case 3:
		return r.failAt("leaf_node.leaf_node_source", srcOff, "source commit (3) is not allowed in a KeyPackage, which needs key_package (1)")
	default:
		return r.failAt("leaf_node.leaf_node_source", srcOff, "unknown leaf_node_source "+strconv.Itoa(int(src)))
	}
	if kp.NotBefore, ok = r.u64(); !ok {
		return r.fail("leaf_node.lifetime.not_before")
	}
	if kp.NotAfter, ok = r.u64(); !ok {
		return r.fail("leaf_node.lifetime.not_after")
	}
	var err *Error
	if kp.LeafExtensions, err = r.extensions("leaf_node.extensions"); err != nil {
		return err
	}
	kp.LeafNodeTBS = b[leafStart:r.off:r.off]
	if kp.LeafSignature, ok = r.opaque(); !ok {
		return r.fail("leaf_node.signature")
	}

	if kp.Extensions, err = r.extensions("extensions"); err != nil {
		return err
	}
	kp.KeyPackageTBS = b[:r.off:r.off]
	if kp.Signature, ok = r.opaque(); !ok {
		return r.fail("signature")
	}
	if r.off != len(b) {
		return r.failAt("", r.off, strconv.Itoa(len(b)-r.off)+" trailing bytes after the KeyPackage")
	}
	kp.Raw = b[:len(b):len(b)]
	return nil
}

// reader is a bounds-checked cursor over a KeyPackage encoding. Its methods
// return ok=false on failure and record why in reason/at; the caller names
// the field with fail.
type reader struct {
	b      []byte
	off    int // next byte to read
	end    int // end of the innermost enclosing vector (or of b)
	base   int // offset of b[0] in the caller's input
	reason string
	at     int // offset (in b) of the failure
}

// fail turns the recorded failure into an *Error for field.
func (r *reader) fail(field string) *Error {
	return &Error{Field: field, Offset: r.base + r.at, Reason: r.reason}
}

// failAt returns an *Error at offset off (in b) with the given reason.
func (r *reader) failAt(field string, off int, reason string) *Error {
	return &Error{Field: field, Offset: r.base + off, Reason: reason}
}

// need checks that n bytes remain before r.end.
func (r *reader) need(n int) bool {
	if r.end-r.off >= n {
		return true
	}
	r.at = r.off
	if r.end == len(r.b) {
		r.reason = fmt.Sprintf("truncated: need %d bytes, %d remain", n, r.end-r.off)
	} else {
		r.reason = fmt.Sprintf("need %d bytes, %d remain in the enclosing vector", n, r.end-r.off)
	}
	return false
}

func (r *reader) u8() (uint8, bool) {
	if !r.need(1) {
		return 0, false
	}
	v := r.b[r.off]
	r.off++
	return v, true
}

func (r *reader) u16() (uint16, bool) {
	if !r.need(2) {
		return 0, false
	}
	v := binary.BigEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v, true
}

func (r *reader) u64() (uint64, bool) {
	if !r.need(8) {
		return 0, false
	}
	v := binary.BigEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v, true
}

// varint reads an RFC 9420 section 2.1.2 variable-length integer and
// requires its minimal encoding.
func (r *reader) varint() (int, bool) {
	start := r.off
	if !r.need(1) {
		r.reason = "truncated: missing length prefix"
		if r.end != len(r.b) {
			r.reason = "missing length prefix: the enclosing vector ends"
		}
		return 0, false
	}
	first := r.b[r.off]
	size := 1 << (first >> 6) // 1, 2, 4 or 8
	if size == 8 {
		r.at = start
		r.reason = fmt.Sprintf("invalid length prefix 0x%02x (the two high bits 11 are reserved)", first)
		return 0, false
	}
	if !r.need(size) {
		r.reason = fmt.Sprintf("truncated %d-byte length prefix", size)
		return 0, false
	}
	n := int(first & 0x3f)
	for _, c := range r.b[r.off+1 : r.off+size] {
		n = n<<8 | int(c)
	}
	if (size == 2 && n < 1<<6) || (size == 4 && n < 1<<14) {
		r.at = start
		r.reason = fmt.Sprintf("non-minimal length prefix (%d bytes for length %d)", size, n)
		return 0, false
	}
	r.off += size
	return n, true
}

// length reads a vector length with varint and requires the vector to fit
// before r.end. r.off is left on the vector body.
func (r *reader) length() (int, bool) {
	start := r.off
	n, ok := r.varint()
	if !ok {
		return 0, false
	}
	if n > r.end-r.off {
		r.at = start
		r.reason = fmt.Sprintf("length %d exceeds the %d bytes remaining", n, r.end-r.off)
		if r.end != len(r.b) {
			r.reason += " in the enclosing vector"
		}
		return 0, false
	}
	return n, true
}

// opaque reads an opaque<V> and returns it as a sub-slice of r.b.
func (r *reader) opaque() ([]byte, bool) {
	n, ok := r.length()
	if !ok {
		return nil, false
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v, true
}

// credential decodes leaf_node.credential.
func (r *reader) credential(c *Credential) *Error {
	typeOff := r.off
	t, ok := r.u16()
	if !ok {
		return r.fail("leaf_node.credential.credential_type")
	}
	c.Type = t
	switch t {
	case CredentialBasic:
		if c.Identity, ok = r.opaque(); !ok {
			return r.fail("leaf_node.credential.identity")
		}
		return nil
	case CredentialX509:
	default:
		return r.failAt("leaf_node.credential.credential_type", typeOff, fmt.Sprintf("unknown credential type 0x%04x (only basic (1) and x509 (2) are supported)", t))
	}
	listOff := r.off
	n, ok := r.length()
	if !ok {
		return r.fail("leaf_node.credential.certificates")
	}
	if n == 0 {
		return r.failAt("leaf_node.credential.certificates", listOff, "empty certificate chain")
	}
	// Count first so the chain is allocated once, bounded by the input.
	saved := r.end
	r.end = r.off + n
	count := 0
	for probe := *r; probe.off < probe.end; count++ {
		if _, ok := probe.opaque(); !ok {
			r.reason, r.at = probe.reason, probe.at
			return r.fail("leaf_node.credential.certificates[" + strconv.Itoa(count) + "]")
		}
	}
	c.Certificates = make([][]byte, count)
	for i := range c.Certificates {
		c.Certificates[i], _ = r.opaque() // cannot fail: probed above
	}
	r.end = saved
	return nil
}

var capabilityFields = [5]string{
	"leaf_node.capabilities.versions",
	"leaf_node.capabilities.cipher_suites",
	"leaf_node.capabilities.extensions",
	"leaf_node.capabilities.proposals",
	"leaf_node.capabilities.credentials",
}

// capabilities decodes leaf_node.capabilities: five uint16 vectors, backed
// by a single allocation.
func (r *reader) capabilities(c *Capabilities) *Error {
	var bodies [5][]byte
	total := 0
	for i := range bodies {
		start := r.off
		v, ok := r.opaque()
		if !ok {
			return r.fail(capabilityFields[i])
		}
		if len(v)%2 != 0 {
			return r.failAt(capabilityFields[i], start, fmt.Sprintf("odd length %d for a list of uint16", len(v)))
		}
		bodies[i] = v
		total += len(v) / 2
	}
	if total == 0 {
		return nil
	}
	all := make([]uint16, total)
	lists := [5]*[]uint16{&c.Versions, &c.CipherSuites, &c.Extensions, &c.Proposals, &c.Credentials}
	k := 0
	for i, v := range bodies {
		if len(v) == 0 {
			continue
		}
		s := all[k : k+len(v)/2 : k+len(v)/2]
		for j := range s {
			s[j] = binary.BigEndian.Uint16(v[2*j:])
		}
		*lists[i] = s
		k += len(s)
	}
	return nil
}

// extensions decodes an Extension<V> vector named field.
func (r *reader) extensions(field string) ([]Extension, *Error) {
	n, ok := r.length()
	if !ok {
		return nil, r.fail(field)
	}
	if n == 0 {
		return nil, nil
	}
	saved := r.end
	r.end = r.off + n
	// Count first so the slice is allocated once, bounded by the input.
	count := 0
	for probe := *r; probe.off < probe.end; count++ {
		if _, ok := probe.u16(); !ok {
			r.reason, r.at = probe.reason, probe.at
			return nil, r.fail(field + "[" + strconv.Itoa(count) + "].extension_type")
		}
		if _, ok := probe.opaque(); !ok {
			r.reason, r.at = probe.reason, probe.at
			return nil, r.fail(field + "[" + strconv.Itoa(count) + "].extension_data")
		}
	}
	exts := make([]Extension, count)
	for i := range exts {
		exts[i].Type, _ = r.u16()    // cannot fail: probed above
		exts[i].Data, _ = r.opaque() // cannot fail: probed above
	}
	r.end = saved
	return exts, nil
}
