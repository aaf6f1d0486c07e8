package memstore_test

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/memstore"
)

// The benchmarks match storage/boltstore's (same names, shapes and
// metrics), so the two backends compare with benchstat:
//
//	go test -run '^$' -bench . ./storage/memstore/ ./storage/boltstore/
//
// Each runs at 1 goroutine and at 64 (RunParallel with SetParallelism)
// and reports operations per second; at 64 goroutines it also reports
// x-single, the rate over the single goroutine's rate in the same run.

var goroutineModes = []int{1, 64}

// runModes runs fn at each concurrency and reports unit/s, and at more
// than one goroutine the speed-up over one goroutine.
func runModes(b *testing.B, unit string, perOp int, fn func(b *testing.B, goroutines int)) {
	var single float64
	for _, g := range goroutineModes {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			fn(b, g)
			rate := float64(b.N*perOp) / b.Elapsed().Seconds()
			b.ReportMetric(rate, unit+"/s")
			if g == 1 {
				single = rate
			} else if single > 0 {
				b.ReportMetric(rate/single, "x-single")
			}
		})
	}
}

// parallel makes b.N calls of fn(i), i = 0..b.N-1, from n goroutines.
func parallel(b *testing.B, n int, fn func(i int)) {
	if n == 1 {
		for i := range b.N {
			fn(i)
		}
		return
	}
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((n + procs - 1) / procs)
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			fn(int(next.Add(1) - 1))
		}
	})
}

func benchNow() time.Time { return time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC) }

// benchKP returns a KeyPackage of realistic size (275 bytes) with init
// key n.
func benchKP(user p2core.UserID, sid p2core.SessionID, n uint64) p2core.KeyPackage {
	ik := sha256.Sum256(binary.BigEndian.AppendUint64(nil, n))
	data := make([]byte, 275)
	copy(data, ik[:])
	ref := sha256.Sum256(data)
	return p2core.KeyPackage{UserID: user, SessionID: sid, CipherSuite: 1, Ref: ref[:], InitKey: ik[:], Data: data,
		NotAfter: benchNow().Add(90 * 24 * time.Hour), UploadedAt: benchNow()}
}

func benchToken(hash [32]byte, i int) p2core.FederationToken {
	return p2core.FederationToken{Hash: hash, UserID: p2core.UserID(i%1000 + 1), FID: "alice@home.example",
		Server: "https://b.example", IssuedAt: benchNow(), ExpiresAt: benchNow().Add(5 * time.Minute)}
}

func tokenHash(i int) [32]byte { return sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i))) }

// BenchmarkClaim measures ClaimKeyPackages from a pre-seeded pool: 64
// users, one session each; every claim hands out one KeyPackage.
func BenchmarkClaim(b *testing.B) {
	const users = 64
	runModes(b, "claims", 1, func(b *testing.B, g int) {
		s := memstore.New()
		defer s.Close()
		n := uint64(0)
		for u := 1; u <= users; u++ {
			kps := make([]p2core.KeyPackage, b.N/users+1)
			for i := range kps {
				n++
				kps[i] = benchKP(p2core.UserID(u), "s", n)
			}
			if err := s.AddKeyPackages(b.Context(), kps, 1<<30, benchNow()); err != nil {
				b.Fatal(err)
			}
		}
		ctx := b.Context()
		b.ResetTimer()
		parallel(b, g, func(i int) {
			got, err := s.ClaimKeyPackages(ctx, p2core.UserID(i%users+1), 0, benchNow(), p2core.SessionEnds{})
			if err != nil || len(got) != 1 || got[0].LastResort {
				b.Errorf("claim %d: %d results, %v", i, len(got), err)
			}
		})
	})
}

// BenchmarkAddKeyPackages measures uploads of 10 KeyPackages each (one
// session per upload).
func BenchmarkAddKeyPackages(b *testing.B) {
	const per = 10
	runModes(b, "KeyPackages", per, func(b *testing.B, g int) {
		s := memstore.New()
		defer s.Close()
		batches := make([][]p2core.KeyPackage, b.N)
		for i := range batches {
			batches[i] = make([]p2core.KeyPackage, per)
			for j := range batches[i] {
				batches[i][j] = benchKP(p2core.UserID(i%1000+1), p2core.SessionID(fmt.Sprint("s", i)), uint64(i*per+j))
			}
		}
		ctx := b.Context()
		b.ResetTimer()
		parallel(b, g, func(i int) {
			if err := s.AddKeyPackages(ctx, batches[i], 1000, benchNow()); err != nil {
				b.Error(err)
			}
		})
	})
}

// BenchmarkCreateToken measures CreateToken.
func BenchmarkCreateToken(b *testing.B) {
	runModes(b, "tokens", 1, func(b *testing.B, g int) {
		s := memstore.New()
		defer s.Close()
		ctx := b.Context()
		b.ResetTimer()
		parallel(b, g, func(i int) {
			if err := s.CreateToken(ctx, benchToken(tokenHash(i), i)); err != nil {
				b.Error(err)
			}
		})
	})
}

// BenchmarkRedeemToken measures RedeemToken of pre-created tokens.
func BenchmarkRedeemToken(b *testing.B) {
	runModes(b, "redeems", 1, func(b *testing.B, g int) {
		s := memstore.New()
		defer s.Close()
		hashes := make([][32]byte, b.N)
		for i := range hashes {
			hashes[i] = tokenHash(i)
			if err := s.CreateToken(b.Context(), benchToken(hashes[i], i)); err != nil {
				b.Fatal(err)
			}
		}
		ctx := b.Context()
		b.ResetTimer()
		parallel(b, g, func(i int) {
			if _, err := s.RedeemToken(ctx, hashes[i], "https://b.example", benchNow()); err != nil {
				b.Error(err)
			}
		})
	})
}
