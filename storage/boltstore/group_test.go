package boltstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/p2kit/p2kit/p2core"
)

func openTest(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "p2kit.db"), &Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// holdCommit starts a write that keeps its transaction open until release
// is called, so that later writes queue up behind it.
func holdCommit(t *testing.T, s *Store) (release func()) {
	t.Helper()
	started, hold, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- s.update(t.Context(), func(tx *bolt.Tx) error {
			close(started)
			<-hold
			return tx.Bucket([]byte(bSettings)).Put([]byte("khold"), []byte("v"))
		})
	}()
	<-started
	return func() {
		close(hold)
		if err := <-done; err != nil {
			t.Errorf("held write: %v", err)
		}
	}
}

// waitQueued waits until n writes are queued.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		got := len(s.queue)
		s.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// batch queues the ops in order behind a held commit, releases it and
// returns each op's result.
func batch(t *testing.T, s *Store, ops ...func() error) []error {
	t.Helper()
	release := holdCommit(t, s)
	results := make([]chan error, len(ops))
	for i, op := range ops {
		results[i] = make(chan error, 1)
		go func() {
			defer func() {
				if r := recover(); r != nil {
					results[i] <- fmt.Errorf("panic: %v", r)
				}
			}()
			results[i] <- op()
		}()
		waitQueued(t, s, i+1)
	}
	release()
	errs := make([]error, len(ops))
	for i, ch := range results {
		errs[i] = <-ch
	}
	return errs
}

func kp(user p2core.UserID, sid p2core.SessionID, initKey string) p2core.KeyPackage {
	return p2core.KeyPackage{UserID: user, SessionID: sid, CipherSuite: 1, InitKey: []byte(initKey),
		Data: []byte("data-" + initKey), Ref: []byte("ref-" + initKey), NotAfter: time.Now().Add(time.Hour)}
}

func TestGroupCommitDomainErrorFailsOnlyItsOwnOp(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	now := time.Now()
	existing := p2core.FederationToken{Hash: [32]byte{1}, UserID: 7, Server: "https://a.example", IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateToken(ctx, existing); err != nil {
		t.Fatal(err)
	}
	if err := s.AddKeyPackages(ctx, []p2core.KeyPackage{kp(8, "x", "taken")}, 100, now); err != nil {
		t.Fatal(err)
	}
	fresh := existing
	fresh.Hash = [32]byte{2}
	dup := existing
	dup.UserID = 9
	var firstTx, lastTx int
	errs := batch(t, s,
		func() error {
			return s.update(ctx, func(tx *bolt.Tx) error { firstTx = tx.ID(); return nil })
		},
		func() error { return s.CreateToken(ctx, dup) },
		func() error {
			return s.AddKeyPackages(ctx, []p2core.KeyPackage{kp(7, "a", "new1"), kp(7, "a", "taken")}, 100, now)
		},
		func() error { return s.CreateToken(ctx, fresh) },
		func() error { return s.AddKeyPackages(ctx, []p2core.KeyPackage{kp(7, "b", "new2")}, 100, now) },
		func() error { _, err := s.RedeemToken(ctx, [32]byte{3}, "https://a.example", now); return err },
		func() error {
			return s.update(ctx, func(tx *bolt.Tx) error { lastTx = tx.ID(); return nil })
		},
	)
	want := []error{nil, p2core.ErrConflict, p2core.ErrDuplicateKeyPackage, nil, nil, p2core.ErrTokenInvalid, nil}
	for i := range want {
		if (want[i] == nil) != (errs[i] == nil) || !errors.Is(errs[i], want[i]) {
			t.Fatalf("op %d: got %v, want %v", i, errs[i], want[i])
		}
	}
	if firstTx != lastTx {
		t.Fatalf("the queued ops ran in transactions %d and %d, want one shared transaction", firstTx, lastTx)
	}
	// The successful ops committed.
	if _, err := s.RedeemToken(ctx, fresh.Hash, fresh.Server, now); err != nil {
		t.Fatalf("token created in the batch: %v", err)
	}
	if st, _ := s.KeyPackageStatus(ctx, 7, "b", now); st.Available != 1 {
		t.Fatalf("session b holds %d KeyPackages, want the 1 added in the batch", st.Available)
	}
	// The refused ones wrote nothing.
	got, err := s.RedeemToken(ctx, existing.Hash, existing.Server, now)
	if err != nil || got.UserID != 7 {
		t.Fatalf("existing token after a refused duplicate: %+v, %v", got, err)
	}
	if st, _ := s.KeyPackageStatus(ctx, 7, "a", now); st != (p2core.KeyPackageStatus{}) {
		t.Fatalf("session a after a refused upload: %+v, want nothing stored", st)
	}
	if err := s.AddKeyPackages(ctx, []p2core.KeyPackage{kp(9, "z", "new1")}, 100, now); err != nil {
		t.Fatalf("init key of the refused upload is blocked: %v", err)
	}
}

func TestGroupCommitInternalErrorRerunsOthersAlone(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	boom := errors.New("boom")
	var badRuns atomic.Int32
	errs := batch(t, s,
		func() error { return s.PutSetting(ctx, "a", []byte("1")) },
		func() error {
			return s.update(ctx, func(tx *bolt.Tx) error {
				badRuns.Add(1)
				if err := tx.Bucket([]byte(bSettings)).Put([]byte("kbad"), []byte("vwritten")); err != nil {
					return err
				}
				return boom
			})
		},
		func() error { return s.PutSetting(ctx, "b", []byte("2")) },
	)
	if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], boom) {
		t.Fatalf("results %v, want nil, boom, nil", errs)
	}
	if n := badRuns.Load(); n != 2 {
		t.Fatalf("failing op ran %d times, want 2 (shared, then alone)", n)
	}
	for k, want := range map[string]string{"a": "1", "b": "2"} {
		if v, err := s.Setting(ctx, k); err != nil || string(v) != want {
			t.Fatalf("setting %s = %q, %v; want %q", k, v, err, want)
		}
	}
	if _, err := s.Setting(ctx, "bad"); !errors.Is(err, p2core.ErrNotFound) {
		t.Fatalf("the failing op's write was kept: %v", err)
	}
}

func TestGroupCommitPanicStaysWithItsCaller(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	errs := batch(t, s,
		func() error { return s.PutSetting(ctx, "a", []byte("1")) },
		func() error {
			return s.update(ctx, func(tx *bolt.Tx) error {
				if err := tx.Bucket([]byte(bSettings)).Put([]byte("kbad"), []byte("v")); err != nil {
					return err
				}
				panic("bad op")
			})
		},
		func() error { return s.PutSetting(ctx, "b", []byte("2")) },
	)
	if errs[0] != nil || errs[2] != nil || errs[1] == nil || errs[1].Error() != "panic: bad op" {
		t.Fatalf("results %v, want nil, the panic, nil", errs)
	}
	for _, k := range []string{"a", "b"} {
		if _, err := s.Setting(ctx, k); err != nil {
			t.Fatalf("setting %s: %v", k, err)
		}
	}
	if _, err := s.Setting(ctx, "bad"); !errors.Is(err, p2core.ErrNotFound) {
		t.Fatalf("the panicking op's write was kept: %v", err)
	}
	// The store still works.
	if err := s.PutSetting(ctx, "c", []byte("3")); err != nil {
		t.Fatal(err)
	}
}

// A write cancelled while queued leaves the others of the queue to share
// the next commit.
func TestGroupCommitCancelledQueuedOpWritesNothing(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	cctx, cancel := context.WithCancel(ctx)
	release := holdCommit(t, s)
	results := make([]chan error, 3)
	for i := range results {
		results[i] = make(chan error, 1)
	}
	go func() { results[0] <- s.PutSetting(ctx, "a", []byte("1")) }()
	waitQueued(t, s, 1)
	go func() {
		results[1] <- s.update(cctx, func(tx *bolt.Tx) error {
			return tx.Bucket([]byte(bSettings)).Put([]byte("kcancelled"), []byte("v"))
		})
	}()
	waitQueued(t, s, 2)
	go func() { results[2] <- s.PutSetting(ctx, "b", []byte("2")) }()
	waitQueued(t, s, 3)
	cancel()
	waitQueued(t, s, 2)
	release()
	errs := []error{<-results[0], <-results[1], <-results[2]}
	if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], context.Canceled) {
		t.Fatalf("results %v, want nil, context.Canceled, nil", errs)
	}
	if _, err := s.Setting(ctx, "cancelled"); !errors.Is(err, p2core.ErrNotFound) {
		t.Fatalf("the cancelled op's write was kept: %v", err)
	}
}

// A queued write whose ctx ends returns ctx.Err() at once, while the
// commit it waits behind is still running, and never runs.
func TestGroupCommitQueuedWriteReturnsWhenItsContextEnds(t *testing.T) {
	s := openTest(t)
	release := holdCommit(t, s)
	cctx, cancel := context.WithCancel(t.Context())
	var ran atomic.Bool
	done := make(chan error, 1)
	go func() {
		done <- s.update(cctx, func(tx *bolt.Tx) error {
			ran.Store(true)
			return tx.Bucket([]byte(bSettings)).Put([]byte("kqueued"), []byte("v"))
		})
	}()
	waitQueued(t, s, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) { // the held commit is still running
		t.Fatalf("queued write after its ctx ended: %v, want context.Canceled", err)
	}
	waitQueued(t, s, 0)
	release()
	if _, err := s.Setting(t.Context(), "queued"); !errors.Is(err, p2core.ErrNotFound) || ran.Load() {
		t.Fatalf("the cancelled queued write ran (%v) or was kept: %v", ran.Load(), err)
	}
}

func TestGroupCommitBatchesQueuedWritesUpToMaxBatch(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	const n = maxBatch + 500
	var mu sync.Mutex
	perTx := map[int]int{}
	release := holdCommit(t, s)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			errs <- s.update(ctx, func(tx *bolt.Tx) error {
				mu.Lock()
				perTx[tx.ID()]++
				mu.Unlock()
				return tx.Bucket([]byte(bSettings)).Put([]byte(fmt.Sprint("k", i)), []byte("v"))
			})
		}()
	}
	waitQueued(t, s, n)
	release()
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if len(perTx) != 2 {
		t.Fatalf("%d queued writes ran in %d transactions %v, want 2", n, len(perTx), perTx)
	}
	for id, k := range perTx {
		if k != maxBatch && k != n-maxBatch {
			t.Fatalf("transaction %d ran %d writes, want batches of %d and %d", id, k, maxBatch, n-maxBatch)
		}
	}
}

// A context cancelled while its operation runs (after the check at the
// start) must still keep the operation from committing, alone or in a
// shared transaction.
func TestContextCancelledDuringWriteNeverCommits(t *testing.T) {
	for _, grouped := range []bool{true, false} {
		t.Run(fmt.Sprint("grouped=", grouped), func(t *testing.T) {
			s, err := Open(filepath.Join(t.TempDir(), "p2kit.db"), &Options{NoSync: true, noGroupCommit: !grouped})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := t.Context()
			cctx, cancel := context.WithCancel(ctx)
			cancelling := func() error {
				return s.update(cctx, func(tx *bolt.Tx) error {
					cancel()
					return tx.Bucket([]byte(bSettings)).Put([]byte("klate"), []byte("v"))
				})
			}
			var errs []error
			if grouped {
				errs = batch(t, s,
					func() error { return s.PutSetting(ctx, "a", []byte("1")) },
					cancelling,
					func() error { return s.PutSetting(ctx, "b", []byte("2")) },
				)
			} else {
				errs = []error{nil, cancelling(), nil}
			}
			if errs[0] != nil || errs[2] != nil || !errors.Is(errs[1], context.Canceled) {
				t.Fatalf("results %v, want nil, context.Canceled, nil", errs)
			}
			if _, err := s.Setting(ctx, "late"); !errors.Is(err, p2core.ErrNotFound) {
				t.Fatalf("write of an operation cancelled while running was committed: %v", err)
			}
			if grouped {
				for _, k := range []string{"a", "b"} {
					if _, err := s.Setting(ctx, k); err != nil {
						t.Fatalf("setting %s of the same batch: %v", k, err)
					}
				}
			}
		})
	}
}

// Once everything has expired and been purged, and every session ended,
// the KeyPackage indexes hold nothing: no garbage is left behind.
func TestPurgeAndEndSessionLeaveNoIndexEntries(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	now := time.Now()
	var n byte
	mk := func(user p2core.UserID, sid p2core.SessionID, notAfter time.Time) p2core.KeyPackage {
		n++
		k := kp(user, sid, fmt.Sprint("ik", n))
		k.NotAfter = notAfter
		return k
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// Session a: regular KeyPackages (one handed out) and a used last resort.
	must(s.AddKeyPackages(ctx, []p2core.KeyPackage{mk(7, "a", now.Add(time.Hour)), mk(7, "a", now.Add(2*time.Hour))}, 100, now))
	must(s.SetLastResort(ctx, mk(7, "a", now.Add(time.Hour)), now))
	if _, err := s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{}); err != nil {
		t.Fatal(err)
	}
	// Session b: replaced last resorts, used and unused, and an ended session.
	must(s.SetLastResort(ctx, mk(8, "b", now.Add(time.Hour)), now))
	if _, err := s.ClaimKeyPackages(ctx, 8, 0, now, p2core.SessionEnds{}); err != nil {
		t.Fatal(err)
	}
	must(s.SetLastResort(ctx, mk(8, "b", now.Add(time.Hour)), now))
	must(s.SetLastResort(ctx, mk(8, "b", now.Add(time.Hour)), now))
	must(s.AddKeyPackages(ctx, []p2core.KeyPackage{mk(9, "c", now.Add(time.Hour))}, 100, now))
	must(s.SetLastResort(ctx, mk(9, "c", now.Add(time.Hour)), now))
	if _, err := s.ClaimKeyPackages(ctx, 9, 0, now, p2core.SessionEnds{}); err != nil {
		t.Fatal(err)
	}
	must(s.EndSession(ctx, 9, "c", now))

	if _, err := s.PurgeExpiredKeyPackages(ctx, now.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		for _, name := range []string{bKP, bKPSessions, bInitKeys, bInitKeyExpiry} {
			if k, _ := tx.Bucket([]byte(name)).Cursor().First(); k != nil {
				return fmt.Errorf("bucket %s still holds %q", name, k)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
