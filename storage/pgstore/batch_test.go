package pgstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/pgstore"
)

// These tests make calls wait for a batch: with one batch in flight
// (BatchesInFlight 1) held by a call blocked on another connection's
// lock, the calls that follow queue up and run together once it ends.

// waitQueued waits until n calls are queued (queued reports how many).
func waitQueued(t *testing.T, n int, queued func() int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for queued() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d calls queued, want %d", queued(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

type claimResult struct {
	got []p2core.ClaimedKeyPackage
	err error
}

func claimAsync(ctx context.Context, s *pgstore.Store, user p2core.UserID) <-chan claimResult {
	done := make(chan claimResult, 1)
	go func() {
		got, err := s.ClaimKeyPackages(ctx, user, 0, now, p2core.SessionEnds{})
		done <- claimResult{got, err}
	}()
	return done
}

// storeKPs stores n KeyPackages for user's session "s" and returns them in
// upload order.
func storeKPs(t *testing.T, s *pgstore.Store, user p2core.UserID, n int) []p2core.KeyPackage {
	t.Helper()
	kps := make([]p2core.KeyPackage, n)
	for i := range kps {
		kps[i] = kp(user, "s", now.Add(time.Hour))
	}
	must(t, s.AddKeyPackages(t.Context(), kps, 100, now), "AddKeyPackages")
	return kps
}

// Claims that wait for a batch run in one transaction: every one gets its
// own KeyPackage (two claims of one user in the batch get the first two,
// in order, with the right Remaining), and the session rows they update
// carry one transaction ID.
func TestClaimsThatWaitRunTogetherInOneTransaction(t *testing.T) {
	testDSN(t)
	b := newBlocker(t, &pgstore.Options{BatchesInFlight: 1, MaxBatch: 16})
	s, ctx := b.s, t.Context()
	stored := map[p2core.UserID][]p2core.KeyPackage{9: storeKPs(t, s, 9, 1)}
	users := []p2core.UserID{5, 1, 3, 2, 4, 6}
	for _, u := range users {
		stored[u] = storeKPs(t, s, u, 3)
	}

	tx := b.lock(t, `SELECT 1 FROM `+b.table("p2kit_kp_sessions")+` WHERE user_id = 9 FOR UPDATE`)
	lead := claimAsync(ctx, s, 9)
	b.waitBlocked(t)
	batch := append(users, 1, 3) // users 1 and 3 claim twice
	results := make([]<-chan claimResult, len(batch))
	for i, u := range batch {
		results[i] = claimAsync(ctx, s, u)
	}
	waitQueued(t, len(batch), func() int { return pgstore.QueuedClaims(s) })
	must(t, tx.Rollback(ctx), "Rollback")
	if r := <-lead; r.err != nil || len(r.got) != 1 || !bytes.Equal(r.got[0].Data, stored[9][0].Data) {
		t.Fatalf("the blocked claim: %v, %+v", r.err, r.got)
	}

	got := map[p2core.UserID][]p2core.ClaimedKeyPackage{}
	for i, u := range batch {
		r := <-results[i]
		if r.err != nil || len(r.got) != 1 || r.got[0].LastResort {
			t.Fatalf("claim of user %d: %v, %+v", u, r.err, r.got)
		}
		got[u] = append(got[u], r.got[0])
	}
	for u, cs := range got {
		seen := map[int]bool{}
		for _, c := range cs {
			idx := -1
			for j, k := range stored[u] {
				if bytes.Equal(k.Data, c.Data) {
					idx = j
				}
			}
			if idx < 0 || seen[idx] {
				t.Fatalf("user %d: claimed %x, not one of its stored KeyPackages or claimed twice", u, c.Data[:4])
			}
			seen[idx] = true
			if want := 2 - idx; c.Remaining != want {
				t.Errorf("user %d: KeyPackage %d claimed with Remaining %d, want %d", u, idx, c.Remaining, want)
			}
		}
		for j := range len(cs) {
			if !seen[j] {
				t.Errorf("user %d: %d claims did not take its first %d KeyPackages in order: %v", u, len(cs), len(cs), seen)
			}
		}
	}

	var xids int
	must(t, adminPool(t).QueryRow(ctx, `SELECT count(DISTINCT xmin::text) FROM `+b.table("p2kit_kp_sessions")+`
		WHERE user_id = ANY($1)`, users).Scan(&xids), "xmin")
	if xids != 1 {
		t.Fatalf("the %d claims that waited committed in %d transactions, want 1", len(batch), xids)
	}
}

// A claim whose ctx ends while its batch waits for a lock aborts the
// batch: it reports the cancellation and changes nothing, and the other
// claims of the batch run again on their own, so no KeyPackage is lost.
func TestCancelledClaimAbortsItsBatchAndTheOthersRunOnTheirOwn(t *testing.T) {
	testDSN(t)
	b := newBlocker(t, &pgstore.Options{BatchesInFlight: 1, MaxBatch: 16})
	s, ctx := b.s, t.Context()
	storeKPs(t, s, 9, 1)
	one := storeKPs(t, s, 1, 2)
	storeKPs(t, s, 5, 2)

	first := b.lock(t, `SELECT 1 FROM `+b.table("p2kit_kp_sessions")+` WHERE user_id = 9 FOR UPDATE`)
	held := b.lock(t, `SELECT 1 FROM `+b.table("p2kit_kp_sessions")+` WHERE user_id = 5 FOR UPDATE`)
	lead := claimAsync(ctx, s, 9)
	b.waitBlocked(t)
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	five := claimAsync(cctx, s, 5)
	waitQueued(t, 1, func() int { return pgstore.QueuedClaims(s) })
	other := claimAsync(ctx, s, 1)
	waitQueued(t, 2, func() int { return pgstore.QueuedClaims(s) })
	must(t, first.Rollback(ctx), "Rollback")
	if r := <-lead; r.err != nil {
		t.Fatalf("the first claim: %v", r.err)
	}
	// The batch (user 1, then user 5) has taken user 1's KeyPackage and
	// waits for user 5's row.
	b.waitBlocked(t)
	cancel()
	if r := <-five; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled claim: %v, %+v; want context.Canceled", r.err, r.got)
	}
	r := <-other
	if r.err != nil || len(r.got) != 1 || !bytes.Equal(r.got[0].Data, one[0].Data) || r.got[0].Remaining != 1 {
		t.Fatalf("the other claim of the aborted batch: %v, %+v; want user 1's first KeyPackage", r.err, r.got)
	}
	must(t, held.Rollback(ctx), "Rollback")
	for u, want := range map[p2core.UserID]int{1: 1, 5: 2} {
		st, err := s.KeyPackageStatus(ctx, u, "s", now)
		must(t, err, "KeyPackageStatus")
		if st.Available != want {
			t.Errorf("user %d: %d KeyPackages left, want %d", u, st.Available, want)
		}
	}
}

// Session-token lookups that wait for a batch run as one statement, and
// each gets its own session, or ErrNotFound.
func TestLookupsThatWaitRunTogether(t *testing.T) {
	testDSN(t)
	b := newBlocker(t, &pgstore.Options{BatchesInFlight: 1, MaxBatch: 16})
	s, ctx := b.s, t.Context()
	sessions := make([]p2core.Session, 3)
	for i := range sessions {
		sessions[i] = p2core.Session{UserID: p2core.UserID(i + 1), SessionID: "s", FID: p2core.FID(fmt.Sprintf("u%d@example.com", i+1)),
			TokenHash: [32]byte(randomBytes(32)), CreatedAt: now}
		_, err := s.CreateSession(ctx, p2core.NewSession{Session: sessions[i]}, p2core.Limits{MaxSessions: 1}, now)
		must(t, err, "CreateSession")
	}

	tx, err := adminPool(t).Begin(ctx)
	must(t, err, "Begin")
	defer tx.Rollback(context.Background())
	_, err = tx.Exec(ctx, `LOCK TABLE `+b.table("p2kit_sessions")+` IN ACCESS EXCLUSIVE MODE`)
	must(t, err, "LOCK TABLE")
	type result struct {
		sess p2core.Session
		err  error
	}
	lookup := func(h [32]byte) <-chan result {
		done := make(chan result, 1)
		go func() {
			ss, err := s.SessionByToken(ctx, h)
			done <- result{ss, err}
		}()
		return done
	}
	lead := lookup(sessions[0].TokenHash)
	b.waitBlocked(t)
	unknown := [32]byte(randomBytes(32))
	hashes := [][32]byte{sessions[1].TokenHash, unknown, sessions[2].TokenHash, sessions[1].TokenHash}
	results := make([]<-chan result, len(hashes))
	for i, h := range hashes {
		results[i] = lookup(h)
	}
	waitQueued(t, len(hashes), func() int { return pgstore.QueuedLookups(s) })
	must(t, tx.Rollback(ctx), "Rollback")
	if r := <-lead; r.err != nil || r.sess.TokenHash != sessions[0].TokenHash {
		t.Fatalf("the blocked lookup: %v, %+v", r.err, r.sess)
	}
	for i, h := range hashes {
		r := <-results[i]
		if h == unknown {
			if !errors.Is(r.err, p2core.ErrNotFound) {
				t.Errorf("lookup of an unknown hash: %v, %+v; want ErrNotFound", r.err, r.sess)
			}
			continue
		}
		if r.err != nil || r.sess.TokenHash != h || r.sess.UserID == 0 {
			t.Errorf("lookup %d: %v, %+v", i, r.err, r.sess)
		}
	}
	if n := pgstore.GatheredLookups(s); n != int64(len(hashes)) {
		t.Fatalf("%d lookups ran in batches, want the %d that waited", n, len(hashes))
	}
}
