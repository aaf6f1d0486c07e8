package mls_test

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core/mls"
)

// vectorDir holds the official RFC 9420 test vectors the tests use,
// copied into the repository (see testdata/README.md for origin and
// licence).
const vectorDir = "testdata"

// readVectors decodes the JSON vector file name into v, failing the test
// (never skipping) if the file is missing: the vectors are required.
func readVectors(t testing.TB, name string, v any) {
	t.Helper()
	path := filepath.Join(vectorDir, name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("RFC 9420 test vectors are required: %v", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

// vectorKeyPackage is one KeyPackage taken from messages.json.
type vectorKeyPackage struct {
	name    string // e.g. "messages[3].mls_key_package"
	input   []byte // as in the vector (wrapped or bare)
	bare    []byte // the bare KeyPackage
	wrapped bool
}

// messageKeyPackages returns every mls_key_package (wrapped) and the
// KeyPackage of every add_proposal (bare) in messages.json.
func messageKeyPackages(t testing.TB) []vectorKeyPackage {
	t.Helper()
	var msgs []struct {
		KeyPackage  hexBytes `json:"mls_key_package"`
		AddProposal hexBytes `json:"add_proposal"`
	}
	readVectors(t, "messages.json", &msgs)
	if len(msgs) == 0 {
		t.Fatal("messages.json holds no entries")
	}
	var out []vectorKeyPackage
	for i, m := range msgs {
		if len(m.KeyPackage) < 4 || len(m.AddProposal) == 0 {
			t.Fatalf("messages[%d]: missing mls_key_package or add_proposal", i)
		}
		out = append(out,
			vectorKeyPackage{name: "messages[" + itoa(i) + "].mls_key_package", input: m.KeyPackage, bare: m.KeyPackage[4:], wrapped: true},
			// Add is struct { KeyPackage key_package; }: its encoding is the
			// bare KeyPackage.
			vectorKeyPackage{name: "messages[" + itoa(i) + "].add_proposal", input: m.AddProposal, bare: m.AddProposal},
		)
	}
	return out
}

// testNow is the clock of tests that build KeyPackages with mlstest.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// seeded returns a deterministic random stream.
func seeded(seed byte) *mrand.ChaCha8 {
	var s [32]byte
	s[0] = seed
	return mrand.NewChaCha8(s)
}

func itoa(i int) string { return string(appendInt(nil, i)) }

func appendInt(b []byte, i int) []byte {
	if i >= 10 {
		b = appendInt(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

// vectorOptions accepts kp's lifetime: clock at not_before, no lifetime cap.
func vectorOptions(kp *mls.KeyPackage) mls.Options {
	nb := kp.NotBefore
	if nb > 1<<62 {
		nb = 1 << 62
	}
	return mls.Options{
		Now:         func() time.Time { return time.Unix(int64(nb), 0) },
		MaxLifetime: -1,
	}
}

func TestMessagesVectorsDecodeAndValidate(t *testing.T) {
	kps := messageKeyPackages(t)
	suites := map[uint16]int{}
	for _, v := range kps {
		kp, err := mls.Decode(v.input)
		if err != nil {
			t.Errorf("%s: Decode: %v", v.name, err)
			continue
		}
		if !bytes.Equal(kp.Raw, v.bare) {
			t.Errorf("%s: Raw differs from the bare KeyPackage", v.name)
		}
		if kp.Wrapped != v.wrapped {
			t.Errorf("%s: Wrapped = %v, want %v", v.name, kp.Wrapped, v.wrapped)
		}
		if err := mls.Validate(kp, vectorOptions(kp)); err != nil {
			t.Errorf("%s: Validate: %v", v.name, err)
		}
		if kp.Credential.Type != mls.CredentialBasic || len(kp.Credential.Identity) == 0 {
			t.Errorf("%s: credential = %+v, want a basic credential", v.name, kp.Credential)
		}
		ref, err := kp.Ref()
		if err != nil || len(ref) != 32 {
			t.Errorf("%s: Ref = %x, %v; want 32 bytes", v.name, ref, err)
		}
		// The bare form of a wrapped vector decodes to the same KeyPackage.
		if v.wrapped {
			bare, err := mls.Decode(v.bare)
			if err != nil || !bytes.Equal(bare.Raw, kp.Raw) || bare.Wrapped {
				t.Errorf("%s: bare form: Decode = %v", v.name, err)
			}
		}
		suites[kp.CipherSuite]++
	}
	if len(suites) < 3 {
		t.Errorf("vectors cover suites %v, expected 1, 2 and 3", suites)
	}
}

// The vectors' lifetimes are long over; the default policy must say so.
func TestMessagesVectorsFailDefaultPolicy(t *testing.T) {
	for _, v := range messageKeyPackages(t)[:6] {
		_, err := mls.Parse(v.input, mls.Options{})
		if !errors.Is(err, mls.ErrInvalid) {
			t.Fatalf("%s: Parse with default options = %v, want ErrInvalid", v.name, err)
		}
		if !contains(err, "leaf_node.lifetime") {
			t.Errorf("%s: err = %v, want a lifetime failure", v.name, err)
		}
	}
}

func TestCryptoBasicsSignWithLabel(t *testing.T) {
	var suites []struct {
		Suite uint16 `json:"cipher_suite"`
		Sign  struct {
			Content   hexBytes `json:"content"`
			Label     string   `json:"label"`
			Pub       hexBytes `json:"pub"`
			Signature hexBytes `json:"signature"`
		} `json:"sign_with_label"`
	}
	readVectors(t, "crypto-basics.json", &suites)
	seen := map[uint16]bool{}
	for _, s := range suites {
		v := s.Sign
		ok, why := mls.VerifyWithLabel(s.Suite, v.Pub, v.Label, v.Content, v.Signature)
		if !ok {
			t.Errorf("suite %d: vector signature does not verify (%s)", s.Suite, why)
		}
		seen[s.Suite] = true

		bad := bytes.Clone(v.Signature)
		bad[len(bad)/2] ^= 0x01
		if ok, _ := mls.VerifyWithLabel(s.Suite, v.Pub, v.Label, v.Content, bad); ok {
			t.Errorf("suite %d: signature with a flipped bit verifies", s.Suite)
		}
		if ok, _ := mls.VerifyWithLabel(s.Suite, v.Pub, v.Label+"x", v.Content, v.Signature); ok {
			t.Errorf("suite %d: signature verifies under another label", s.Suite)
		}
		content := bytes.Clone(v.Content)
		content[0] ^= 0x80
		if ok, _ := mls.VerifyWithLabel(s.Suite, v.Pub, v.Label, content, v.Signature); ok {
			t.Errorf("suite %d: signature verifies over other content", s.Suite)
		}
	}
	for id := uint16(1); id <= 7; id++ {
		if !seen[id] {
			t.Errorf("crypto-basics.json has no vector for suite %d", id)
		}
	}
}

func TestCryptoBasicsRefHash(t *testing.T) {
	var suites []struct {
		Suite   uint16 `json:"cipher_suite"`
		RefHash struct {
			Label string   `json:"label"`
			Value hexBytes `json:"value"`
			Out   hexBytes `json:"out"`
		} `json:"ref_hash"`
	}
	readVectors(t, "crypto-basics.json", &suites)
	if len(suites) != 7 {
		t.Fatalf("crypto-basics.json: %d suites, want 7", len(suites))
	}
	for _, s := range suites {
		got := mls.RefHash(s.Suite, s.RefHash.Label, s.RefHash.Value)
		if !bytes.Equal(got, s.RefHash.Out) {
			t.Errorf("suite %d: RefHash = %x, want %x", s.Suite, got, s.RefHash.Out)
		}
	}
}

func TestDeserializationVarints(t *testing.T) {
	var vecs []struct {
		Header hexBytes `json:"vlbytes_header"`
		Length int      `json:"length"`
	}
	readVectors(t, "deserialization.json", &vecs)
	if len(vecs) == 0 {
		t.Fatal("deserialization.json holds no entries")
	}
	for _, v := range vecs {
		n, size, err := mls.ReadVarint(v.Header)
		if err != nil || n != v.Length || size != len(v.Header) {
			t.Errorf("ReadVarint(%x) = %d, %d, %v; want %d, %d", []byte(v.Header), n, size, err, v.Length, len(v.Header))
		}
		if enc := mls.AppendLength(nil, v.Length); !bytes.Equal(enc, v.Header) {
			t.Errorf("AppendLength(%d) = %x, want %x", v.Length, enc, []byte(v.Header))
		}
		// Every longer encoding of the same value is refused.
		for _, long := range nonMinimal(v.Length) {
			_, _, err := mls.ReadVarint(long)
			if !errors.Is(err, mls.ErrInvalid) || !contains(err, "non-minimal length prefix") {
				t.Errorf("ReadVarint(%x) = %v, want a non-minimal prefix error", long, err)
			}
		}
		// A truncated header is refused.
		if len(v.Header) > 1 {
			_, _, err := mls.ReadVarint(v.Header[:len(v.Header)-1])
			if !errors.Is(err, mls.ErrInvalid) || !contains(err, "truncated") {
				t.Errorf("ReadVarint(%x) = %v, want truncated", []byte(v.Header[:len(v.Header)-1]), err)
			}
		}
	}
	for _, b := range [][]byte{{0xc0}, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}} {
		if _, _, err := mls.ReadVarint(b); !contains(err, "invalid length prefix") {
			t.Errorf("ReadVarint(%x) = %v, want invalid prefix", b, err)
		}
	}
}

// nonMinimal returns the encodings of n that are longer than the minimal one.
func nonMinimal(n int) [][]byte {
	var out [][]byte
	if n < 1<<6 {
		out = append(out, []byte{0x40, byte(n)})
	}
	if n < 1<<14 {
		out = append(out, []byte{0x80, 0, byte(n >> 8), byte(n)})
	}
	return out
}

func contains(err error, sub string) bool {
	return err != nil && bytes.Contains([]byte(err.Error()), []byte(sub))
}
