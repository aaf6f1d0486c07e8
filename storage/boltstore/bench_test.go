package boltstore_test

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/boltstore"
)

// Benchmarks run with fsync on (the default), in the default temporary
// directory; point TMPDIR at the disk you care about.
//
//	go test -run '^$' -bench . ./storage/boltstore/

type benchMode struct {
	name       string
	goroutines int
	opts       boltstore.Options
}

// benchModes lists each concurrency without, then with, group commit.
func benchModes() []benchMode {
	return []benchMode{
		{"goroutines=1/nogroupcommit", 1, boltstore.WithoutGroupCommit(boltstore.Options{})},
		{"goroutines=1", 1, boltstore.Options{}},
		{"goroutines=64/nogroupcommit", 64, boltstore.WithoutGroupCommit(boltstore.Options{})},
		{"goroutines=64", 64, boltstore.Options{}},
	}
}

// runModes runs fn in every mode and reports unit/s; with group commit it
// also reports x-nogroupcommit, the rate over the rate of one commit per
// operation at the same concurrency in the same run.
func runModes(b *testing.B, unit string, perOp int, fn func(b *testing.B, m benchMode)) {
	alone := map[int]float64{}
	for _, m := range benchModes() {
		b.Run(m.name, func(b *testing.B) {
			fn(b, m)
			rate := float64(b.N*perOp) / b.Elapsed().Seconds()
			b.ReportMetric(rate, unit+"/s")
			if !boltstore.GroupCommit(m.opts) {
				alone[m.goroutines] = rate
			} else if r := alone[m.goroutines]; r > 0 {
				b.ReportMetric(rate/r, "x-nogroupcommit")
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

// seeded creates a store in a new file, fills it through a NoSync store
// (seeding is not what is measured), and reopens it with m's options.
func seeded(b *testing.B, m benchMode, seed func(s *boltstore.Store)) *boltstore.Store {
	b.Helper()
	path := filepath.Join(b.TempDir(), "p2kit.db")
	s, err := boltstore.Open(path, &boltstore.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	seed(s)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	opts := m.opts
	s, err = boltstore.Open(path, &opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func benchNow() time.Time { return time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC) }

// benchKP returns a KeyPackage of realistic size with init key n.
func benchKP(user p2core.UserID, sid p2core.SessionID, n uint64) p2core.KeyPackage {
	var seed [8]byte
	binary.BigEndian.PutUint64(seed[:], n)
	ik := sha256.Sum256(seed[:])
	data := make([]byte, 280)
	copy(data, ik[:])
	ref := sha256.Sum256(data)
	return p2core.KeyPackage{UserID: user, SessionID: sid, CipherSuite: 1, Ref: ref[:], InitKey: ik[:], Data: data,
		NotAfter: benchNow().Add(90 * 24 * time.Hour), UploadedAt: benchNow()}
}

// seedPool gives each of users one session holding per KeyPackages.
func seedPool(b *testing.B, s p2core.Store, users, per int) {
	b.Helper()
	n := uint64(0)
	for u := 1; u <= users; u++ {
		for left := per; left > 0; {
			k := min(left, 1000)
			kps := make([]p2core.KeyPackage, k)
			for i := range kps {
				n++
				kps[i] = benchKP(p2core.UserID(u), "s", n)
			}
			if err := s.AddKeyPackages(b.Context(), kps, 1<<30, benchNow()); err != nil {
				b.Fatal(err)
			}
			left -= k
		}
	}
}

// BenchmarkClaim measures ClaimKeyPackages from a pre-seeded pool: 64
// users, one session each; every claim hands out one KeyPackage.
func BenchmarkClaim(b *testing.B) {
	const users = 64
	runModes(b, "claims", 1, func(b *testing.B, m benchMode) {
		s := seeded(b, m, func(s *boltstore.Store) { seedPool(b, s, users, b.N/users+1) })
		ctx := b.Context()
		b.ResetTimer()
		parallel(b, m.goroutines, func(i int) {
			got, err := s.ClaimKeyPackages(ctx, p2core.UserID(i%users+1), 0, benchNow(), p2core.SessionEnds{})
			if err != nil || len(got) != 1 || got[0].LastResort {
				b.Errorf("claim %d: %d results, %v", i, len(got), err)
			}
		})
	})
}

// BenchmarkClaimLargePool measures claims at 64 goroutines with group
// commit from a store holding 1,000,000 KeyPackages (1,000 users with one
// session of 1,000 each): the cost of a claim must not grow with the pool.
// Seeding takes a while.
func BenchmarkClaimLargePool(b *testing.B) {
	const users, per = 1000, 1000
	path := filepath.Join(b.TempDir(), "p2kit.db")
	s, err := boltstore.Open(path, &boltstore.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	seedPool(b, s, users, per)
	b.Logf("seeded %d KeyPackages in %v", users*per, time.Since(start))
	s.Close()
	start = time.Now()
	s, err = boltstore.Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("reopened in %v", time.Since(start))
	defer s.Close()
	for _, g := range []int{1, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", g), func(b *testing.B) {
			if b.N > users*per/4 {
				b.Skip("pool too small for b.N")
			}
			ctx := b.Context()
			b.ResetTimer()
			parallel(b, g, func(i int) {
				got, err := s.ClaimKeyPackages(ctx, p2core.UserID(i%users+1), 0, benchNow(), p2core.SessionEnds{})
				if err != nil || len(got) != 1 {
					b.Errorf("claim: %d results, %v", len(got), err)
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "claims/s")
		})
	}
}

// BenchmarkRedeemToken measures RedeemToken of pre-created tokens.
func BenchmarkRedeemToken(b *testing.B) {
	runModes(b, "redeems", 1, func(b *testing.B, m benchMode) {
		hashes := make([][32]byte, b.N)
		s := seeded(b, m, func(s *boltstore.Store) {
			for i := range hashes {
				hashes[i] = sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
				if err := s.CreateToken(b.Context(), benchToken(hashes[i], i)); err != nil {
					b.Fatal(err)
				}
			}
		})
		ctx := b.Context()
		b.ResetTimer()
		parallel(b, m.goroutines, func(i int) {
			if _, err := s.RedeemToken(ctx, hashes[i], "https://b.example", benchNow()); err != nil {
				b.Error(err)
			}
		})
	})
}

func benchToken(hash [32]byte, i int) p2core.FederationToken {
	return p2core.FederationToken{Hash: hash, UserID: p2core.UserID(i%1000 + 1), FID: "alice@home.example",
		Server: "https://b.example", IssuedAt: benchNow(), ExpiresAt: benchNow().Add(5 * time.Minute)}
}

// BenchmarkCreateToken measures CreateToken.
func BenchmarkCreateToken(b *testing.B) {
	runModes(b, "tokens", 1, func(b *testing.B, m benchMode) {
		s := seeded(b, m, func(*boltstore.Store) {})
		ctx := b.Context()
		b.ResetTimer()
		parallel(b, m.goroutines, func(i int) {
			h := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
			if err := s.CreateToken(ctx, benchToken(h, i)); err != nil {
				b.Error(err)
			}
		})
	})
}

// BenchmarkAddKeyPackages measures uploads of 10 KeyPackages each (one
// session per upload).
func BenchmarkAddKeyPackages(b *testing.B) {
	const per = 10
	runModes(b, "KeyPackages", per, func(b *testing.B, m benchMode) {
		s := seeded(b, m, func(*boltstore.Store) {})
		batches := make([][]p2core.KeyPackage, b.N)
		for i := range batches {
			batches[i] = make([]p2core.KeyPackage, per)
			for j := range batches[i] {
				batches[i][j] = benchKP(p2core.UserID(i%1000+1), p2core.SessionID(fmt.Sprint("s", i)), uint64(i*per+j))
			}
		}
		ctx := b.Context()
		b.ResetTimer()
		parallel(b, m.goroutines, func(i int) {
			if err := s.AddKeyPackages(ctx, batches[i], 1000, benchNow()); err != nil {
				b.Error(err)
			}
		})
	})
}

// BenchmarkRefill measures the upload of 100 KeyPackages, one goroutine,
// into a session holding 100 (spent=0), or 200 of which the first 100 were
// claimed (spent=100): a claim leaves its record for the session's next
// upload to delete, so this is where claims pay for their records.
func BenchmarkRefill(b *testing.B) {
	const batch = 100
	var rate0 float64
	for _, spent := range []int{0, batch} {
		b.Run(fmt.Sprintf("spent=%d", spent), func(b *testing.B) {
			n := uint64(1 << 40)
			kps := func(sid p2core.SessionID, k int) []p2core.KeyPackage {
				out := make([]p2core.KeyPackage, k)
				for i := range out {
					n++
					out[i] = benchKP(1, sid, n)
				}
				return out
			}
			ctx := b.Context()
			s := seeded(b, benchMode{opts: boltstore.Options{}}, func(s *boltstore.Store) {
				for i := range b.N {
					sid := p2core.SessionID(fmt.Sprint("s", i))
					if err := s.AddKeyPackages(ctx, kps(sid, spent+batch), 1000, benchNow()); err != nil {
						b.Fatal(err)
					}
				}
				for range spent {
					if _, err := s.ClaimKeyPackages(ctx, 1, 0, benchNow(), p2core.SessionEnds{}); err != nil {
						b.Fatal(err)
					}
				}
			})
			uploads := make([][]p2core.KeyPackage, b.N)
			for i := range uploads {
				uploads[i] = kps(p2core.SessionID(fmt.Sprint("s", i)), batch)
			}
			b.ResetTimer()
			for i := range b.N {
				if err := s.AddKeyPackages(ctx, uploads[i], 1000, benchNow()); err != nil {
					b.Fatal(err)
				}
			}
			rate := float64(b.N) / b.Elapsed().Seconds()
			b.ReportMetric(rate, "uploads/s")
			if spent == 0 {
				rate0 = rate
			} else if rate0 > 0 {
				b.ReportMetric(rate/rate0, "x-spent0")
			}
		})
	}
}
