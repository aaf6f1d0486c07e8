package mls_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/p2kit/p2kit/p2core/mls"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

// FuzzDecode checks that Decode never panics, that every error matches
// ErrInvalid, and that every accepted input round-trips: Raw is the bare
// input, re-encoding the decoded fields gives Raw back, and Validate and
// Ref run without panicking. Seeds are every KeyPackage of the official
// vectors plus mlstest KeyPackages of all seven suites.
func FuzzDecode(f *testing.F) {
	for _, v := range messageKeyPackages(f) {
		f.Add(v.input)
	}
	for suite := uint16(1); suite <= 7; suite++ {
		b, err := mlstest.New(suite, seeded(byte(suite)))
		if err != nil {
			f.Fatal(err)
		}
		b.Certificates = [][]byte{[]byte("leaf"), []byte("ca")}
		b.LeafExtensions = []mls.Extension{{Type: 0xff01, Data: []byte{1, 2}}}
		b.Extensions = []mls.Extension{{Type: 0x0A0A}}
		raw, err := b.Build()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
		f.Add(mlstest.Wrap(raw))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		kp, err := mls.Decode(in)
		if err != nil {
			if !errors.Is(err, mls.ErrInvalid) || kp != nil {
				t.Fatalf("Decode = %v, %v; want nil and an ErrInvalid error", kp, err)
			}
			return
		}
		bare := in
		if kp.Wrapped {
			if !bytes.HasPrefix(in, []byte{0, 1, 0, 5}) {
				t.Fatalf("Wrapped set for input starting % x", in[:min(4, len(in))])
			}
			bare = in[4:]
		}
		if !bytes.Equal(kp.Raw, bare) {
			t.Fatal("Raw is not the bare input")
		}
		if enc := mlstest.Marshal(kp); !bytes.Equal(enc, kp.Raw) {
			t.Fatalf("re-encoding differs:\n got % x\nwant % x", enc, kp.Raw)
		}
		if len(kp.LeafNodeTBS) == 0 || !bytes.HasPrefix(kp.Raw, kp.KeyPackageTBS) || len(kp.KeyPackageTBS) >= len(kp.Raw) {
			t.Fatal("TBS ranges inconsistent with Raw")
		}
		if err := mls.Validate(kp, vectorOptions(kp)); err != nil && !errors.Is(err, mls.ErrInvalid) {
			t.Fatalf("Validate error %v does not match ErrInvalid", err)
		}
		_, _ = kp.Ref()
		_, _ = kp.NotBeforeTime(), kp.NotAfterTime()
	})
}
