package mls_test

import (
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core/mls"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

// BenchmarkDecode decodes a suite-1 KeyPackage from the official vectors,
// bare and wrapped, and one of suite 5 (whose 00 01 00 05 prefix makes
// Decode try both readings).
func BenchmarkDecode(b *testing.B) {
	var bare, wrapped []byte
	for _, v := range messageKeyPackages(b) {
		if v.wrapped && wrapped == nil && v.bare[3] == 1 {
			wrapped, bare = v.input, v.bare
		}
	}
	bld, err := mlstest.New(5, seeded(5))
	if err != nil {
		b.Fatal(err)
	}
	suite5, err := bld.Build()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		in   []byte
	}{{"bare", bare}, {"wrapped", wrapped}, {"suite5-bare", suite5}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.in)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := mls.Decode(c.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkValidate validates an Ed25519 (suite 1) KeyPackage from the
// official vectors and reports, as "x-floor", its cost relative to the
// floor it cannot go below: the two ed25519.Verify calls over the same
// messages, timed in the same run.
func BenchmarkValidate(b *testing.B) {
	var kp *mls.KeyPackage
	for _, v := range messageKeyPackages(b) {
		if k, err := mls.Decode(v.input); err == nil && k.CipherSuite == 1 {
			kp = k
			break
		}
	}
	opts := vectorOptions(kp)
	leafMsg := signContent("LeafNodeTBS", kp.LeafNodeTBS)
	kpMsg := signContent("KeyPackageTBS", kp.KeyPackageTBS)
	b.ReportAllocs()
	for b.Loop() {
		if err := mls.Validate(kp, opts); err != nil {
			b.Fatal(err)
		}
	}
	n, elapsed := b.N, b.Elapsed()
	start := time.Now()
	for range n {
		if !ed25519.Verify(kp.SignatureKey, leafMsg, kp.LeafSignature) || !ed25519.Verify(kp.SignatureKey, kpMsg, kp.Signature) {
			b.Fatal("floor: signature does not verify")
		}
	}
	b.ReportMetric(float64(elapsed)/float64(time.Since(start)), "x-floor")
}

func signContent(label string, content []byte) []byte {
	return mlstest.AppendOpaque(mlstest.AppendOpaque(nil, []byte("MLS 1.0 "+label)), content)
}
