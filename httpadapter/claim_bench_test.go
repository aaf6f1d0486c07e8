package httpadapter_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/boltstore"
	"github.com/p2kit/p2kit/storage/memstore"
)

// BenchmarkClaimHTTP measures route 14 through the Handler (behind an
// httptest server, one keep-alive HTTP client, bearer sessions checked by
// SessionAuthenticator, rate limits off) at 64 concurrent clients, next to
// the raw Store.ClaimKeyPackages at 64 goroutines in the same run. The
// "http" sub-benchmark reports x-store, its rate over the store's: the
// share of the store's claim rate the HTTP layer keeps. boltstore runs
// with the options the example server uses (fsync on, group commit on).
//
//	go test -run '^$' -bench ClaimHTTP ./httpadapter/
func BenchmarkClaimHTTP(b *testing.B) {
	const clients = 64
	backends := []struct {
		name string
		open func(b *testing.B, seed func(p2core.Store)) p2core.Store
	}{
		{"memstore", func(b *testing.B, seed func(p2core.Store)) p2core.Store {
			s := memstore.New()
			seed(s)
			b.Cleanup(func() { s.Close() })
			return s
		}},
		{"boltstore", func(b *testing.B, seed func(p2core.Store)) p2core.Store {
			// Seeded without fsync (not what is measured), then reopened
			// as the example server opens it.
			path := filepath.Join(b.TempDir(), "p2kit.db")
			s, err := boltstore.Open(path, &boltstore.Options{NoSync: true})
			if err != nil {
				b.Fatal(err)
			}
			seed(s)
			if err := s.Close(); err != nil {
				b.Fatal(err)
			}
			if s, err = boltstore.Open(path, nil); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
	}
	for _, be := range backends {
		var storeRate float64
		b.Run(be.name+"/store", func(b *testing.B) {
			s := be.open(b, func(s p2core.Store) { seedClaimPool(b, s, clients, b.N) })
			ctx := b.Context()
			b.ResetTimer()
			runClients(b, clients, func(i int) error {
				got, err := s.ClaimKeyPackages(ctx, p2core.UserID(i%clients+1), 0, time.Now(), p2core.SessionEnds{})
				if err == nil && len(got) != 1 {
					err = fmt.Errorf("claim %d: %d results", i, len(got))
				}
				return err
			})
			storeRate = float64(b.N) / b.Elapsed().Seconds()
			b.ReportMetric(storeRate, "claims/s")
		})
		b.Run(be.name+"/http", func(b *testing.B) {
			var requester string
			s := be.open(b, func(s p2core.Store) { seedClaimPool(b, s, clients, b.N) })
			svc, err := p2core.NewService(s, p2core.Config{Domain: "home.test"})
			if err != nil {
				b.Fatal(err)
			}
			requester, _, err = svc.CreateSession(b.Context(), 1000, "bob@home.test")
			if err != nil {
				b.Fatal(err)
			}
			h := httpadapter.New(svc, httpadapter.Options{
				Authenticator: httpadapter.SessionAuthenticator{Service: svc},
				RateLimits:    httpadapter.RateLimits{Disabled: true},
			})
			srv := httptest.NewServer(h)
			defer srv.Close()
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * clients, MaxIdleConns: 2 * clients}}
			defer hc.CloseIdleConnections()
			urls := make([]string, clients)
			for u := range urls {
				urls[u] = srv.URL + "/p2core/keypackage/" + p2core.UserID(u+1).String()
			}
			auth := "Bearer " + requester
			ctx := context.Background()
			b.ResetTimer()
			runClients(b, clients, func(i int) error {
				req, err := http.NewRequestWithContext(ctx, "GET", urls[i%clients], nil)
				if err != nil {
					return err
				}
				req.Header["Authorization"] = []string{auth}
				resp, err := hc.Do(req)
				if err != nil {
					return err
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n < 300 {
					return fmt.Errorf("claim %d: status %d, %d bytes", i, resp.StatusCode, n)
				}
				return nil
			})
			rate := float64(b.N) / b.Elapsed().Seconds()
			b.ReportMetric(rate, "claims/s")
			if storeRate > 0 {
				b.ReportMetric(rate/storeRate, "x-store")
			}
		})
	}
}

// seedClaimPool gives users 1..users one session each with enough
// KeyPackages (275 bytes, like real Ed25519 ones) for n round-robin claims.
func seedClaimPool(b *testing.B, s p2core.Store, users, n int) {
	b.Helper()
	now := time.Now()
	seq := uint64(0)
	for u := 1; u <= users; u++ {
		for left := n/users + 1; left > 0; {
			k := min(left, 1000)
			kps := make([]p2core.KeyPackage, k)
			for i := range kps {
				seq++
				ik := sha256.Sum256(binary.BigEndian.AppendUint64(nil, seq))
				data := make([]byte, 275)
				copy(data, ik[:])
				ref := sha256.Sum256(data)
				kps[i] = p2core.KeyPackage{UserID: p2core.UserID(u), SessionID: "s", CipherSuite: 1, Ref: ref[:], InitKey: ik[:],
					Data: data, NotAfter: now.Add(30 * 24 * time.Hour), UploadedAt: now}
			}
			if err := s.AddKeyPackages(b.Context(), kps, 1<<30, now); err != nil {
				b.Fatal(err)
			}
			left -= k
		}
	}
}

// runClients makes b.N calls of fn(i), i = 0..b.N-1, from clients
// goroutines (RunParallel with SetParallelism).
func runClients(b *testing.B, clients int, fn func(i int) error) {
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((clients + procs - 1) / procs)
	var next atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := fn(int(next.Add(1) - 1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
