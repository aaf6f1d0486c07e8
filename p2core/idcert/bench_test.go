package idcert

import (
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
	"time"
)

// The benchmarks compare Issue and Verify (ServerEd25519Legacy server key,
// OpenPGP.js client key) with the raw Ed25519 operation each is built on.
// BenchmarkRawEd25519Sign/Verify measure that operation on its own; Issue
// and Verify also time it inline, right after their own loop, and report
// the ratio as the x-raw-sign / x-raw-verify metric.

// rawNsPerOp times n runs (at least 1000) of op and returns ns per run.
func rawNsPerOp(n int, op func()) float64 {
	n = max(n, 1000)
	start := time.Now()
	for i := 0; i < n; i++ {
		op()
	}
	return float64(time.Since(start).Nanoseconds()) / float64(n)
}

func rawEd25519() (sign, verify func()) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	digest := sha256.Sum256([]byte("certification"))
	sig := ed25519.Sign(priv, digest[:])
	return func() { ed25519.Sign(priv, digest[:]) },
		func() {
			if !ed25519.Verify(pub, digest[:], sig) {
				panic("bad signature")
			}
		}
}

func BenchmarkIssue(b *testing.B) {
	now := time.Now()
	server := testServerKey(b, ServerEd25519Legacy)
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
	sign, _ := rawEd25519()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/rawNsPerOp(b.N, sign), "x-raw-sign")
}

func BenchmarkVerify(b *testing.B) {
	now := time.Now()
	server := testServerKey(b, ServerEd25519Legacy)
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
	_, verify := rawEd25519()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/rawNsPerOp(b.N, verify), "x-raw-verify")
}

// BenchmarkRawEd25519Sign signs a SHA-256 digest with crypto/ed25519, the
// core of an EdDSA OpenPGP signature.
func BenchmarkRawEd25519Sign(b *testing.B) {
	sign, _ := rawEd25519()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		sign()
	}
}

// BenchmarkRawEd25519Verify verifies such a signature.
func BenchmarkRawEd25519Verify(b *testing.B) {
	_, verify := rawEd25519()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		verify()
	}
}
