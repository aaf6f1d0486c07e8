package p2core_test

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/storage/memstore"
)

// BenchmarkIssueIDCert measures Service.IssueIDCert (route 8 without
// HTTP: parse and check the client key, sign, serialise, store over
// memstore, publish the event) against the limit it is built on,
// idcert.ParseClientKey followed by idcert.Issue, in the same run: first
// on one goroutine, then on every core. The "service" sub-benchmarks
// report x-raw, their time per issue over the raw one's.
//
//	go test -run '^$' -bench IssueIDCert ./p2core/
func BenchmarkIssueIDCert(b *testing.B) {
	const fid = "alice@home.example"
	// One client key per goroutine slot, generated outside the timed loop.
	keys := make([][]byte, 2*runtime.GOMAXPROCS(0))
	for i := range keys {
		k, err := idcerttest.NewClientKey(fid, nil, time.Time{})
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = []byte(k.Armored)
	}
	server, err := idcert.GenerateServerKey("home.example", idcert.ServerEd25519Legacy, time.Now().Add(-time.Hour), 0, nil)
	if err != nil {
		b.Fatal(err)
	}
	raw := func(_ context.Context, slot int) error {
		now := time.Now()
		ck, err := idcert.ParseClientKey(keys[slot], fid, now, idcert.Policy{})
		if err != nil {
			return err
		}
		_, err = idcert.Issue(server, ck, idcert.IssueParams{SessionID: fmt.Sprint("s", slot), Now: now})
		return err
	}
	svc, err := p2core.NewService(memstore.New(), p2core.Config{Domain: "home.example"})
	if err != nil {
		b.Fatal(err)
	}
	if err := svc.Init(b.Context()); err != nil {
		b.Fatal(err)
	}
	service := func(ctx context.Context, slot int) error {
		p := p2core.Principal{UserID: p2core.UserID(slot + 1), FID: fid, SessionID: p2core.SessionID(fmt.Sprint("s", slot))}
		_, err := svc.IssueIDCert(ctx, p, keys[slot])
		return err
	}
	for _, mode := range []string{"goroutines=1", "all-cores"} {
		var rawNs float64
		for _, impl := range []struct {
			name string
			op   func(context.Context, int) error
		}{{"raw", raw}, {"service", service}} {
			b.Run(mode+"/"+impl.name, func(b *testing.B) {
				ctx := b.Context()
				b.ReportAllocs()
				if mode == "goroutines=1" {
					for range b.N {
						if err := impl.op(ctx, 0); err != nil {
							b.Fatal(err)
						}
					}
				} else {
					var slots atomic.Int64
					b.RunParallel(func(pb *testing.PB) {
						slot := int(slots.Add(1)-1) % len(keys)
						for pb.Next() {
							if err := impl.op(ctx, slot); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
				b.ReportMetric(1e9/ns, "issues/s")
				if impl.name == "raw" {
					rawNs = ns
				} else if rawNs > 0 {
					b.ReportMetric(ns/rawNs, "x-raw")
				}
			})
		}
	}
}
