package mls_test

import (
	"bytes"
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core/mls"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

// wantInvalid fails unless err matches ErrInvalid and its text contains
// every one of subs.
func wantInvalid(t *testing.T, what string, err error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want one containing %q", what, subs)
		return
	}
	if !errors.Is(err, mls.ErrInvalid) {
		t.Errorf("%s: error %v does not match ErrInvalid", what, err)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: error %q does not contain %q", what, err, s)
		}
	}
}

// oneVectorPerSuite returns the first bare and wrapped message vector of
// each cipher suite.
func oneVectorPerSuite(t *testing.T) []vectorKeyPackage {
	t.Helper()
	seen := map[[2]uint16]bool{}
	var out []vectorKeyPackage
	for _, v := range messageKeyPackages(t) {
		kp, err := mls.Decode(v.input)
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		w := uint16(0)
		if v.wrapped {
			w = 1
		}
		if k := [2]uint16{kp.CipherSuite, w}; !seen[k] {
			seen[k] = true
			out = append(out, v)
		}
	}
	return out
}

func decodeVector(t *testing.T, v vectorKeyPackage) *mls.KeyPackage {
	t.Helper()
	kp, err := mls.Decode(v.input)
	if err != nil {
		t.Fatalf("%s: %v", v.name, err)
	}
	return kp
}

// Every proper prefix of every vector is refused, as truncated.
func TestDecodeRefusesEveryTruncation(t *testing.T) {
	for _, v := range messageKeyPackages(t) {
		for n := range len(v.input) {
			_, err := mls.Decode(v.input[:n])
			switch {
			case n == 0:
				wantInvalid(t, v.name+"[:0]", err, "empty input")
			case err == nil:
				t.Fatalf("%s[:%d]: decoded", v.name, n)
			case !strings.Contains(err.Error(), "truncated") && !strings.Contains(err.Error(), "exceeds the"):
				t.Errorf("%s[:%d]: %v; want a truncation error", v.name, n, err)
			}
		}
	}
}

func TestDecodeRefusesTrailingBytes(t *testing.T) {
	for _, v := range oneVectorPerSuite(t) {
		for _, extra := range [][]byte{{0}, {0xff}, {0, 1, 0, 5}, v.bare} {
			in := append(bytes.Clone(v.input), extra...)
			_, err := mls.Decode(in)
			wantInvalid(t, v.name+"+trailing", err, itoa(len(extra))+" trailing bytes after the KeyPackage")
		}
	}
}

// Each length prefix of each vector, written non-minimally, is refused at
// its own field and offset.
func TestDecodeRefusesNonMinimalPrefixes(t *testing.T) {
	for _, v := range oneVectorPerSuite(t) {
		kp := decodeVector(t, v)
		count := 0
		for i := 0; ; i++ {
			m, err := mlstest.MarshalMutated(kp, i, mlstest.NonMinimal)
			if errors.Is(err, mlstest.ErrNoPrefix) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			count++
			in, base := m.Bytes, 0
			if v.wrapped {
				in, base = mlstest.Wrap(m.Bytes), 4
			}
			_, err = mls.Decode(in)
			wantInvalid(t, v.name+" "+m.Field, err, m.Field+": non-minimal length prefix", "at offset "+itoa(base+m.Offset))
			var e *mls.Error
			if !v.wrapped && (!errors.As(err, &e) || e.Field != m.Field || e.Offset != m.Offset) {
				t.Errorf("%s: error %#v, want field %s offset %d", v.name, e, m.Field, m.Offset)
			}
		}
		// init_key, encryption_key, signature_key, identity, 5 capability
		// lists, leaf extensions, leaf signature, extensions, signature.
		if count < 13 {
			t.Errorf("%s: only %d length prefixes mutated", v.name, count)
		}
	}
}

// A length prefix claiming 2^30-1 bytes is refused before any allocation.
func TestDecodeRefusesOversizedLengths(t *testing.T) {
	for _, v := range oneVectorPerSuite(t) {
		kp := decodeVector(t, v)
		for i := 0; ; i++ {
			m, err := mlstest.MarshalMutated(kp, i, mlstest.Oversized)
			if errors.Is(err, mlstest.ErrNoPrefix) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			in, base := m.Bytes, 0
			if v.wrapped {
				in, base = mlstest.Wrap(m.Bytes), 4
			}
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err = mls.Decode(in)
			runtime.ReadMemStats(&after)
			wantInvalid(t, v.name+" "+m.Field, err, m.Field+": length 1073741823 exceeds the", "at offset "+itoa(base+m.Offset))
			if n := after.TotalAlloc - before.TotalAlloc; n > uint64(4*len(in)+8192) {
				t.Errorf("%s %s: %d bytes allocated for a %d-byte input", v.name, m.Field, n, len(in))
			}
		}
	}
	// A bare 0xc0 prefix (8-byte form) is refused.
	in := []byte{0, 1, 0, 1, 0xc0, 0, 0, 0, 0, 0, 0, 0x20}
	_, err := mls.Decode(in)
	wantInvalid(t, "0xc0 prefix", err, "init_key: invalid length prefix 0xc0", "at offset 4")
}

func TestDecodeRefusesOversizedInput(t *testing.T) {
	_, err := mls.Decode(make([]byte, mls.MaxSize+1))
	wantInvalid(t, "MaxSize+1", err, "more than the 65536-byte limit")
}

func TestDecodeRefusesUnknownCredentialType(t *testing.T) {
	for _, v := range oneVectorPerSuite(t) {
		for _, typ := range []uint16{0, 3, 0x0A0A, 0xffff} {
			kp := decodeVector(t, v)
			kp.Credential.Type = typ
			_, err := mls.Decode(mlstest.Marshal(kp))
			wantInvalid(t, v.name, err, "leaf_node.credential.credential_type: unknown credential type")
		}
	}
}

func TestDecodeRefusesEmptyCertificateChain(t *testing.T) {
	kp := decodeVector(t, oneVectorPerSuite(t)[0])
	kp.Credential = mls.Credential{Type: mls.CredentialX509}
	_, err := mls.Decode(mlstest.Marshal(kp))
	wantInvalid(t, "empty chain", err, "leaf_node.credential.certificates: empty certificate chain")

	kp.Credential.Certificates = [][]byte{[]byte("cert")}
	got, err := mls.Decode(mlstest.Marshal(kp))
	if err != nil || len(got.Credential.Certificates) != 1 || string(got.Credential.Certificates[0]) != "cert" {
		t.Errorf("one-certificate chain: %v", err)
	}
}

func TestDecodeRefusesOddCapabilityList(t *testing.T) {
	kp := decodeVector(t, oneVectorPerSuite(t)[0])
	raw := mlstest.Marshal(kp)
	// Find the versions list (first capabilities vector) by re-encoding
	// with a mutated prefix: its offset is where the list starts.
	m, err := mlstest.MarshalMutated(kp, 4, mlstest.NonMinimal)
	if err != nil || m.Field != "leaf_node.capabilities.versions" {
		t.Fatalf("prefix 4 is %q, %v", m.Field, err)
	}
	off := m.Offset
	if raw[off] != 2 || raw[off+1] != 0 || raw[off+2] != 1 {
		t.Fatalf("unexpected versions list % x", raw[off:off+3])
	}
	// Turn "02 00 01" (one version) into "01 00" + a shifted remainder: the
	// list now has an odd length.
	bad := slices.Concat(raw[:off], []byte{1, 0}, raw[off+3:])
	_, err = mls.Decode(bad)
	wantInvalid(t, "odd list", err, "leaf_node.capabilities.versions: odd length 1 for a list of uint16", "at offset "+itoa(off))
}

// leafSourceOffset returns the offset in kp.Raw of leaf_node_source: the
// leaf's TBS ends with the source, the 16-byte lifetime and the extensions.
func leafSourceOffset(t *testing.T, kp *mls.KeyPackage) int {
	t.Helper()
	leafStart := 4 + len(mlstest.AppendVarint(nil, len(kp.InitKey))) + len(kp.InitKey)
	n := 0
	for _, e := range kp.LeafExtensions {
		n += 2 + len(mlstest.AppendOpaque(nil, e.Data))
	}
	leafExts := len(mlstest.AppendVarint(nil, n)) + n
	off := leafStart + len(kp.LeafNodeTBS) - leafExts - 16 - 1
	if kp.Raw[off] != mls.LeafNodeSourceKeyPackage {
		t.Fatalf("leaf_node_source not found at %d", off)
	}
	return off
}

func TestDecodeRefusesOtherLeafNodeSources(t *testing.T) {
	for _, v := range oneVectorPerSuite(t) {
		kp := decodeVector(t, v)
		off := leafSourceOffset(t, kp)
		for src, want := range map[byte]string{
			0:    "unknown leaf_node_source 0",
			2:    "source update (2) is not allowed in a KeyPackage",
			3:    "source commit (3) is not allowed in a KeyPackage",
			4:    "unknown leaf_node_source 4",
			0xff: "unknown leaf_node_source 255",
		} {
			raw := bytes.Clone(kp.Raw)
			raw[off] = src
			_, err := mls.Decode(raw)
			wantInvalid(t, v.name, err, "leaf_node.leaf_node_source: "+want, "at offset "+itoa(off))
		}
	}
}

// The prefix 00 01 00 05 starts both a wrapped KeyPackage and a bare one of
// suite 5; suite 5 KeyPackages decode bare and wrapped.
func TestDecodeSuite5BareAndWrapped(t *testing.T) {
	b, err := mlstest.New(5, seeded(5))
	if err != nil {
		t.Fatal(err)
	}
	b.Now = func() time.Time { return testNow }
	bare, _ := b.Build()
	if !bytes.HasPrefix(bare, []byte{0, 1, 0, 5}) {
		t.Fatalf("suite 5 KeyPackage starts % x", bare[:4])
	}
	kp, err := mls.Parse(bare, mls.Options{Now: b.Now})
	if err != nil || kp.Wrapped || !bytes.Equal(kp.Raw, bare) {
		t.Fatalf("bare suite 5: %v, wrapped=%v", err, kp != nil && kp.Wrapped)
	}
	kp, err = mls.Parse(mlstest.Wrap(bare), mls.Options{Now: b.Now})
	if err != nil || !kp.Wrapped || !bytes.Equal(kp.Raw, bare) {
		t.Fatalf("wrapped suite 5: %v", err)
	}
}

// When both readings of a 00 01 00 05 input decode, Decode takes the
// wrapped one if its KeyPackage is mls10 and the bare one otherwise.
func TestDecodeAmbiguousInputTieBreak(t *testing.T) {
	zeros := func(n int) []byte { return make([]byte, n) }
	// Wrapped reading: KeyPackage version 1 suite 1 whose 29-byte init_key
	// holds the tail of the bare reading (credential, capabilities,
	// source, lifetime, extensions, signature prefix 0x1f) and whose
	// remaining 31 bytes are a minimal leaf node, extensions, signature.
	bareTail := slices.Concat([]byte{0, 1, 0}, zeros(5), []byte{1}, zeros(16), []byte{0, 0, 0, 31})
	innerRest := slices.Concat([]byte{0, 0, 0, 1, 0}, zeros(5), []byte{1}, zeros(16), []byte{0, 0, 0, 0})
	mls10 := slices.Concat([]byte{0, 1, 0, 5}, []byte{0, 1, 0, 1, byte(len(bareTail))}, bareTail, innerRest)

	// Wrapped reading: KeyPackage version 0 suite 0 with a 1-byte init_key
	// (29) and a 27-byte leaf signature holding the tail of the bare
	// reading, whose basic identity spans the 29 bytes after init_key.
	leafSig := slices.Concat(zeros(5), []byte{1}, zeros(16), []byte{0, 0, 0, 2})
	inner0 := slices.Concat([]byte{0, 0, 0, 0, 1, 29, 0, 0, 0, 1, 0}, zeros(5), []byte{1}, zeros(16), []byte{0, byte(len(leafSig))}, leafSig, []byte{0, 0})
	version0 := slices.Concat([]byte{0, 1, 0, 5}, inner0)

	for _, c := range []struct {
		name        string
		in          []byte
		wantWrapped bool
		wantVersion uint16
	}{
		{"inner mls10", mls10, true, 1},
		{"inner version 0", version0, false, 1},
	} {
		// Both readings decode on their own.
		if _, err := mls.DecodeBare(c.in); err != nil {
			t.Fatalf("%s: bare reading: %v", c.name, err)
		}
		if _, err := mls.DecodeBare(c.in[4:]); err != nil {
			t.Fatalf("%s: wrapped reading: %v", c.name, err)
		}
		kp, err := mls.Decode(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if kp.Wrapped != c.wantWrapped || kp.Version != c.wantVersion {
			t.Errorf("%s: Wrapped=%v Version=%d, want %v %d", c.name, kp.Wrapped, kp.Version, c.wantWrapped, c.wantVersion)
		}
		if c.wantWrapped && !bytes.Equal(kp.Raw, c.in[4:]) || !c.wantWrapped && !bytes.Equal(kp.Raw, c.in) {
			t.Errorf("%s: Raw is not the chosen reading's bytes", c.name)
		}
	}
}

// When neither reading of a 00 01 00 05 input decodes, the error names both.
func TestDecodeAmbiguousPrefixErrorNamesBothReadings(t *testing.T) {
	_, err := mls.Decode([]byte{0, 1, 0, 5, 0, 1})
	wantInvalid(t, "short", err, "neither an MLSMessage-wrapped KeyPackage (cipher_suite: truncated", "nor a bare KeyPackage of cipher suite 5 (leaf_node.encryption_key: length 1 exceeds")
}

func TestDecodeCopiesInput(t *testing.T) {
	v := oneVectorPerSuite(t)[0]
	in := bytes.Clone(v.input)
	kp, err := mls.Decode(in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		in[i] = 0
	}
	if !bytes.Equal(kp.Raw, v.bare) || mls.Validate(kp, vectorOptions(kp)) != nil {
		t.Error("KeyPackage changed when the input buffer was reused")
	}
}

func TestErrorText(t *testing.T) {
	e := &mls.Error{Field: "leaf_node.capabilities.extensions", Offset: 57, Reason: "non-minimal length prefix (2 bytes for length 5)"}
	want := "mls: invalid KeyPackage: leaf_node.capabilities.extensions: non-minimal length prefix (2 bytes for length 5) at offset 57"
	if e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
	if !errors.Is(e, mls.ErrInvalid) || errors.Is(e, errors.New("mls: invalid KeyPackage")) {
		t.Error("Is must match ErrInvalid and nothing else")
	}
	e = &mls.Error{Field: "signature", Offset: -1, Reason: "does not verify"}
	if e.Error() != "mls: invalid KeyPackage: signature: does not verify" {
		t.Errorf("Error() = %q", e.Error())
	}
}

func TestIsGREASE(t *testing.T) {
	var grease []uint16
	for v := range 1 << 16 {
		if mls.IsGREASE(uint16(v)) {
			grease = append(grease, uint16(v))
		}
	}
	want := []uint16{0x0A0A, 0x1A1A, 0x2A2A, 0x3A3A, 0x4A4A, 0x5A5A, 0x6A6A, 0x7A7A, 0x8A8A, 0x9A9A, 0xAAAA, 0xBABA, 0xCACA, 0xDADA, 0xEAEA}
	if !slices.Equal(grease, want) {
		t.Errorf("GREASE values = %04x, want %04x", grease, want)
	}
}
