package idcert

import (
	"crypto/ed25519"
	"crypto/sha256"
	"sync"
	"testing"
	"time"
)

// The benchmarks compare Issue and Verify (Ed25519Legacy server key,
// OpenPGP.js client key) with the raw Ed25519 operation they are built on,
// measured in the same run; the x-raw metric is the ratio.

var (
	rawOnce                sync.Once
	rawSignNs, rawVerifyNs float64
)

func rawEd25519NsPerOp() (sign, verify float64) {
	rawOnce.Do(func() {
		rawSignNs = float64(testing.Benchmark(BenchmarkRawEd25519Sign).NsPerOp())
		rawVerifyNs = float64(testing.Benchmark(BenchmarkRawEd25519Verify).NsPerOp())
	})
	return rawSignNs, rawVerifyNs
}

func BenchmarkIssue(b *testing.B) {
	now := time.Now()
	server := testServerKey(b, Ed25519Legacy)
	client, err := ParseClientKey(openpgpjsKey(b, "legacy"), "alice@example.com", now, Policy{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Issue(server, client, IssueParams{SessionID: "bench", Now: now}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	sign, _ := rawEd25519NsPerOp()
	b.ReportMetric(perOp/sign, "x-raw-sign")
}

func BenchmarkVerify(b *testing.B) {
	now := time.Now()
	server := testServerKey(b, Ed25519Legacy)
	client, err := ParseClientKey(openpgpjsKey(b, "legacy"), "alice@example.com", now, Policy{})
	if err != nil {
		b.Fatal(err)
	}
	c, err := Issue(server, client, IssueParams{SessionID: "bench", Now: now})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Verify(c.Raw, server, now); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	_, verify := rawEd25519NsPerOp()
	b.ReportMetric(perOp/verify, "x-raw-verify")
}

// BenchmarkRawEd25519Sign signs a SHA-256 digest with crypto/ed25519, the
// core of an EdDSA OpenPGP signature.
func BenchmarkRawEd25519Sign(b *testing.B) {
	_, priv, _ := ed25519.GenerateKey(nil)
	digest := sha256.Sum256([]byte("certification"))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = ed25519.Sign(priv, digest[:])
	}
}

func BenchmarkRawEd25519Verify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	digest := sha256.Sum256([]byte("certification"))
	sig := ed25519.Sign(priv, digest[:])
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if !ed25519.Verify(pub, digest[:], sig) {
			b.Fatal("bad signature")
		}
	}
}
