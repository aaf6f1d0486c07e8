package pgstore_test

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/pgstore"
)

// BenchmarkClaim measures ClaimKeyPackages of one user with one session
// holding a KeyPackage for every claim, from 1 goroutine and from 64
// goroutines at once (the SKIP LOCKED path), and logs the ratio.
func BenchmarkClaim(b *testing.B) {
	testDSN(b)
	rates := map[int]float64{}
	for _, goroutines := range []int{1, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", goroutines), func(b *testing.B) {
			s := openStore(b, freshSchema(b), &pgstore.Options{MaxConns: int32(min(goroutines, 32))})
			ctx := b.Context()
			for left := b.N; left > 0; left -= 1000 {
				batch := make([]p2core.KeyPackage, min(left, 1000))
				for i := range batch {
					batch[i] = kp(7, "phone", now.Add(time.Hour))
				}
				if err := s.AddKeyPackages(ctx, batch, b.N, now); err != nil {
					b.Fatal(err)
				}
			}
			var bad atomic.Int64
			claim := func() {
				got, err := s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{})
				if err != nil || len(got) != 1 || got[0].LastResort {
					bad.Add(1)
				}
			}
			b.ResetTimer()
			if goroutines == 1 {
				for range b.N {
					claim()
				}
			} else {
				procs := runtime.GOMAXPROCS(0)
				b.SetParallelism((goroutines + procs - 1) / procs)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						claim()
					}
				})
			}
			b.StopTimer()
			if n := bad.Load(); n > 0 {
				b.Fatalf("%d of %d claims failed or did not return exactly one regular KeyPackage", n, b.N)
			}
			rate := float64(b.N) / b.Elapsed().Seconds()
			b.ReportMetric(rate, "claims/s")
			rates[goroutines] = rate
		})
	}
	if rates[1] > 0 && rates[64] > 0 {
		b.Logf("claims/s: %.0f from 1 goroutine, %.0f from 64 (%.1fx)", rates[1], rates[64], rates[64]/rates[1])
	}
}

// BenchmarkRedeemToken measures RedeemToken of distinct live tokens from
// one goroutine.
func BenchmarkRedeemToken(b *testing.B) {
	testDSN(b)
	schema := freshSchema(b)
	s := openStore(b, schema, nil)
	ctx := b.Context()
	hashes := make([][]byte, b.N)
	for i := range hashes {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(i))
		h := sha256.Sum256(n[:])
		hashes[i] = h[:]
	}
	// Load the tokens in one statement: b.N calls of CreateToken would
	// take longer than the benchmark.
	if _, err := adminPool(b).Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "p2kit_tokens"}.Sanitize()+`
		(hash, user_id, fid, server, issued_at, expires_at)
		SELECT h, 7, 'alice@home.example', 'https://b.example', $2, $3 FROM unnest($1::BYTEA[]) AS h`,
		hashes, now, now.Add(time.Hour)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		var h [32]byte
		copy(h[:], hashes[i])
		if _, err := s.RedeemToken(ctx, h, "https://b.example", now); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "redeems/s")
}

// BenchmarkIDCertsAtAfterHistory measures IDCertsAt(now) of a user whose
// one session's ID-Cert was renewed history times: route 9's read, which
// must cost the current certs, not the history.
func BenchmarkIDCertsAtAfterHistory(b *testing.B) {
	testDSN(b)
	for _, history := range []int{1, 1000} {
		b.Run(fmt.Sprintf("history=%d", history), func(b *testing.B) {
			s := openStore(b, freshSchema(b), nil)
			ctx := b.Context()
			cert := make([]byte, 1200) // about an ID-Cert's size
			for i := range history {
				at := now.Add(time.Duration(i) * time.Second)
				c := p2core.IDCert{UserID: 7, SessionID: "laptop", FID: "alice@home.example", Serial: fmt.Sprint("serial-", i),
					Cert: cert, IssuedAt: at, ExpiresAt: at.Add(30 * 24 * time.Hour)}
				if err := s.PutIDCert(ctx, c); err != nil {
					b.Fatal(err)
				}
			}
			at := now.Add(time.Duration(history) * time.Second)
			b.ResetTimer()
			for range b.N {
				got, err := s.IDCertsAt(ctx, 7, at)
				if err != nil || len(got) != 1 {
					b.Fatalf("IDCertsAt: %d certs, %v", len(got), err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "reads/s")
		})
	}
}
