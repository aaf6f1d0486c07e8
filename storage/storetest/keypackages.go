package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

func keyPackageCases() []testCase {
	return []testCase{
		{"ClaimReturnsOldestFirstAndRemovesIt", testClaimOldestFirst},
		{"ClaimWithNothingStoredIsEmpty", testClaimNothing},
		{"AddKeyPackagesWithRepeatedInitKeyStoresNothing", testAddDuplicateWithinBatch},
		{"AddKeyPackagesWithInitKeyOfStoredKeyPackageStoresNothing", testAddDuplicateOfStored},
		{"AddKeyPackagesWithInitKeyOfLastResortIsRefused", testAddDuplicateOfLastResort},
		{"AddKeyPackagesWithInitKeyOfHandedOutIsRefusedUntilNotAfter", testAddDuplicateOfHandedOut},
		{"AddKeyPackagesOverTheUsersCapIsRefused", testAddOverCap},
		{"AddKeyPackagesWithEmptyBatchIsNoop", testAddEmptyBatch},
		{"ClaimReturnsOnePerSessionOrderedBySessionID", testClaimPerSessionOrdered},
		{"ClaimFiltersByCipherSuite", testClaimSuiteFilter},
		{"ClaimNeverReturnsExpiredKeyPackages", testClaimSkipsExpired},
		{"ClaimFallsBackToLastResortAndKeepsIt", testClaimLastResort},
		{"ClaimSkipsExpiredLastResort", testClaimExpiredLastResort},
		{"SetLastResortReplacesItAndClearsUsedFlag", testSetLastResortReplaces},
		{"SetLastResortWithInitKeyInUseIsRefused", testSetLastResortDuplicate},
		{"ReplacedOrEndedUsedLastResortKeepsInitKeyBlockedUntilNotAfter", testUsedLastResortInitKey},
		{"KeyPackageStatusReportsSupplyAtNow", testKeyPackageStatus},
		{"ClaimRemainingCountsUnexpiredRegularKeyPackages", testClaimRemaining},
		{"PurgeExpiredKeyPackagesDeletesAndCountsExpiredOnly", testPurgeKeyPackages},
		{"Claims100GoroutinesHandOutEachOfPool1000ExactlyOnce", testClaimConcurrent},
		{"UploadsRacingClaimsLoseNothing", testUploadsRacingClaims},
		{"ConcurrentUploadsOfOneInitKeyExactlyOneSucceeds", testConcurrentSameInitKey},
	}
}

func testClaimOldestFirst(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	first := g.kps(3, 7, "laptop", 1, now.Add(24*time.Hour))
	// A later upload with an earlier NotAfter is still handed out later.
	second := g.kps(1, 7, "laptop", 1, now.Add(time.Hour))
	ok(t, s.AddKeyPackages(ctx, first, 100, now), "AddKeyPackages")
	ok(t, s.AddKeyPackages(ctx, second, 100, now), "AddKeyPackages")
	for i, want := range append(first, second...) {
		got := claimOne(t, s, 7, 0, now)
		sameKP(t, want, got.KeyPackage)
		if got.LastResort {
			t.Fatalf("claim %d: LastResort set for a regular KeyPackage", i)
		}
		count(t, got.Remaining, 3-i, fmt.Sprintf("Remaining after claim %d", i))
	}
	claimNone(t, s, 7, 0, now)
}

func testClaimNothing(t *testing.T, s p2core.Store) {
	claimNone(t, s, 7, 0, base())
	claimNone(t, s, 7, 1, base())
}

func testAddDuplicateWithinBatch(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	batch := g.kps(3, 7, "laptop", 1, now.Add(time.Hour))
	dup := g.kp(7, "laptop", 1, now.Add(time.Hour))
	dup.InitKey = batch[0].InitKey
	err := s.AddKeyPackages(ctx, append(batch, dup), 100, now)
	isErr(t, err, p2core.ErrDuplicateKeyPackage, "AddKeyPackages with a repeated init key")
	wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{})
	claimNone(t, s, 7, 0, now)
	// Nothing was kept: the same batch without the repeat goes in.
	ok(t, s.AddKeyPackages(ctx, batch, 100, now), "AddKeyPackages without the repeat")
	wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{Available: 3})
}

func testAddDuplicateOfStored(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	stored := g.kp(8, "phone", 1, now.Add(time.Hour))
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{stored}, 100, now), "AddKeyPackages")
	batch := g.kps(2, 7, "laptop", 1, now.Add(time.Hour))
	dup := g.kp(7, "laptop", 1, now.Add(time.Hour))
	dup.InitKey = stored.InitKey
	err := s.AddKeyPackages(ctx, append(batch, dup), 100, now)
	isErr(t, err, p2core.ErrDuplicateKeyPackage, "AddKeyPackages with another user's stored init key")
	wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{})
	dup.UserID, dup.SessionID = 8, "phone"
	err = s.AddKeyPackages(ctx, []p2core.KeyPackage{dup}, 100, now)
	isErr(t, err, p2core.ErrDuplicateKeyPackage, "AddKeyPackages with the session's own stored init key")
	wantStatus(t, s, 8, "phone", now, p2core.KeyPackageStatus{Available: 1})
}

func testAddDuplicateOfLastResort(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	lr := g.kp(8, "phone", 1, now.Add(time.Hour))
	ok(t, s.SetLastResort(ctx, lr, now), "SetLastResort")
	dup := g.kp(7, "laptop", 1, now.Add(time.Hour))
	dup.InitKey = lr.InitKey
	isErr(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{dup}, 100, now), p2core.ErrDuplicateKeyPackage,
		"AddKeyPackages with a last resort's init key")
	dup.UserID, dup.SessionID = 8, "phone"
	isErr(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{dup}, 100, now), p2core.ErrDuplicateKeyPackage,
		"AddKeyPackages with the session's own last resort's init key")
	wantStatus(t, s, 8, "phone", now, p2core.KeyPackageStatus{LastResort: true})
}

func testAddDuplicateOfHandedOut(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	x := g.kp(7, "laptop", 1, now.Add(time.Hour))
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{x}, 100, now), "AddKeyPackages")
	claimOne(t, s, 7, 0, now)
	again := g.kp(8, "phone", 1, now.Add(48*time.Hour))
	again.InitKey = x.InitKey
	isErr(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{again}, 100, now), p2core.ErrDuplicateKeyPackage,
		"AddKeyPackages with a handed-out init key")
	isErr(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{again}, 100, x.NotAfter.Add(-time.Microsecond)), p2core.ErrDuplicateKeyPackage,
		"AddKeyPackages with a handed-out init key just before its NotAfter")
	isErr(t, s.SetLastResort(ctx, again, now), p2core.ErrDuplicateKeyPackage,
		"SetLastResort with a handed-out init key")
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{again}, 100, x.NotAfter), "AddKeyPackages at the handed-out NotAfter")

	// And after a purge has forgotten it.
	y := g.kp(7, "laptop", 1, now.Add(time.Hour))
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{y}, 100, now), "AddKeyPackages")
	claimOne(t, s, 7, 0, now)
	n, err := s.PurgeExpiredKeyPackages(ctx, y.NotAfter)
	ok(t, err, "PurgeExpiredKeyPackages")
	count(t, n, 0, "purged KeyPackages (handed-out init keys do not count)")
	reuse := g.kp(7, "laptop", 1, now.Add(48*time.Hour))
	reuse.InitKey = y.InitKey
	ok(t, s.SetLastResort(ctx, reuse, y.NotAfter), "SetLastResort with a purged handed-out init key")
}

func testAddOverCap(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	// Expired KeyPackages, stored or uploaded, do not count toward the cap.
	ok(t, s.AddKeyPackages(ctx, g.kps(4, 7, "laptop", 1, now), 3, now), "AddKeyPackages of more expired KeyPackages than the cap")
	ok(t, s.AddKeyPackages(ctx, g.kps(3, 7, "laptop", 1, now.Add(time.Hour)), 3, now), "AddKeyPackages up to the cap")
	isErr(t, s.AddKeyPackages(ctx, g.kps(1, 7, "laptop", 1, now.Add(time.Hour)), 3, now), p2core.ErrTooManyKeyPackages,
		"AddKeyPackages over the cap")
	wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{Available: 3})
	ok(t, s.AddKeyPackages(ctx, g.kps(3, 8, "laptop", 1, now.Add(time.Hour)), 3, now), "AddKeyPackages to another session")
	claimOne(t, s, 7, 1, now.Add(-2*time.Hour)) // hands out the oldest: an expired-at-now one
	isErr(t, s.AddKeyPackages(ctx, g.kps(1, 7, "laptop", 1, now.Add(time.Hour)), 3, now), p2core.ErrTooManyKeyPackages,
		"AddKeyPackages over the cap after handing out an expired one")
	claimOne(t, s, 7, 0, now)
	ok(t, s.AddKeyPackages(ctx, g.kps(1, 7, "laptop", 1, now.Add(time.Hour)), 3, now), "AddKeyPackages after a claim")
	// The cap is the user's, across sessions: logging in again does not
	// multiply it.
	isErr(t, s.AddKeyPackages(ctx, g.kps(1, 7, "tablet", 1, now.Add(time.Hour)), 3, now), p2core.ErrTooManyKeyPackages,
		"AddKeyPackages to another session of a user at the cap")
	isErr(t, s.AddKeyPackages(ctx, g.kps(4, 7, "tablet", 1, now.Add(time.Hour)), 3, now), p2core.ErrTooManyKeyPackages,
		"AddKeyPackages of a batch over the cap")
	wantStatus(t, s, 7, "tablet", now, p2core.KeyPackageStatus{})
}

func testAddEmptyBatch(t *testing.T, s p2core.Store) {
	ok(t, s.AddKeyPackages(t.Context(), nil, 100, base()), "AddKeyPackages of nothing")
	claimNone(t, s, 7, 0, base())
}

func testClaimPerSessionOrdered(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	want := map[p2core.SessionID]p2core.KeyPackage{}
	for _, sid := range []p2core.SessionID{"b", "c", "A", "a"} {
		kps := g.kps(2, 7, sid, 1, now.Add(time.Hour))
		ok(t, s.AddKeyPackages(ctx, kps, 100, now), "AddKeyPackages")
		want[sid] = kps[0]
	}
	ok(t, s.AddKeyPackages(ctx, g.kps(1, 7, "d", 1, now), 100, now), "AddKeyPackages expired")
	ok(t, s.AddKeyPackages(ctx, g.kps(1, 8, "0", 1, now.Add(time.Hour)), 100, now), "AddKeyPackages other user")
	got, err := s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{})
	ok(t, err, "ClaimKeyPackages")
	order := []p2core.SessionID{"A", "a", "b", "c"}
	count(t, len(got), len(order), "claimed KeyPackages")
	for i, sid := range order {
		if got[i].SessionID != sid {
			t.Fatalf("result %d is of session %q, want %q", i, got[i].SessionID, sid)
		}
		sameKP(t, want[sid], got[i].KeyPackage)
		count(t, got[i].Remaining, 1, "Remaining")
	}
	wantStatus(t, s, 8, "0", now, p2core.KeyPackageStatus{Available: 1})
}

func testClaimSuiteFilter(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	na := now.Add(time.Hour)
	kp1 := g.kp(7, "laptop", 3, na)
	kp2 := g.kp(7, "laptop", 1, na)
	kp3 := g.kp(7, "laptop", 3, na)
	kp4 := g.kp(7, "laptop", 1, na)
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{kp1, kp2, kp3, kp4}, 100, now), "AddKeyPackages")
	lr := g.kp(7, "laptop", 3, na)
	ok(t, s.SetLastResort(ctx, lr, now), "SetLastResort")

	got := claimOne(t, s, 7, 0, now) // oldest of any suite
	sameKP(t, kp1, got.KeyPackage)
	got = claimOne(t, s, 7, 1, now)
	sameKP(t, kp2, got.KeyPackage)
	got = claimOne(t, s, 7, 0, now)
	sameKP(t, kp3, got.KeyPackage)
	got = claimOne(t, s, 7, 3, now)
	if !got.LastResort {
		t.Fatal("claim of suite 3 with no suite-3 KeyPackage left: want the suite-3 last resort")
	}
	sameKP(t, lr, got.KeyPackage)
	count(t, got.Remaining, 1, "Remaining (all suites)")
	claimNone(t, s, 7, 2, now) // no KeyPackage and no last resort of suite 2
	got = claimOne(t, s, 7, 1, now)
	sameKP(t, kp4, got.KeyPackage)
	claimNone(t, s, 7, 1, now) // the last resort is of suite 3
	got = claimOne(t, s, 7, 0, now)
	if !got.LastResort {
		t.Fatal("want the last resort")
	}
}

func testClaimSkipsExpired(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	expired := g.kp(7, "laptop", 1, now) // NotAfter == now: expired
	live := g.kp(7, "laptop", 1, now.Add(time.Microsecond))
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{expired, live}, 100, now), "AddKeyPackages")
	got := claimOne(t, s, 7, 0, now)
	sameKP(t, live, got.KeyPackage)
	count(t, got.Remaining, 0, "Remaining")
	claimNone(t, s, 7, 0, now)
	wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{})
	n, err := s.PurgeExpiredKeyPackages(ctx, now)
	ok(t, err, "PurgeExpiredKeyPackages")
	count(t, n, 1, "purged")
}

func testClaimLastResort(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	reg := g.kp(7, "laptop", 1, now.Add(time.Hour))
	lr := g.kp(7, "laptop", 1, now.Add(time.Hour))
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{reg}, 100, now), "AddKeyPackages")
	ok(t, s.SetLastResort(ctx, lr, now), "SetLastResort")
	got := claimOne(t, s, 7, 0, now)
	if got.LastResort {
		t.Fatal("last resort handed out while a regular KeyPackage was left")
	}
	sameKP(t, reg, got.KeyPackage)
	wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{LastResort: true})
	for i := range 2 {
		got = claimOne(t, s, 7, 0, now)
		if !got.LastResort {
			t.Fatalf("claim %d: want the last resort", i)
		}
		sameKP(t, lr, got.KeyPackage)
		count(t, got.Remaining, 0, "Remaining")
		wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{LastResort: true, LastResortUsed: true})
	}
}

func testClaimExpiredLastResort(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	ok(t, s.SetLastResort(ctx, g.kp(7, "laptop", 1, now), now), "SetLastResort")
	claimNone(t, s, 7, 0, now)
	wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{LastResort: true})
}

func testSetLastResortReplaces(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	lr1 := g.kp(7, "laptop", 1, now.Add(time.Hour))
	ok(t, s.SetLastResort(ctx, lr1, now), "SetLastResort")
	claimOne(t, s, 7, 0, now)
	wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{LastResort: true, LastResortUsed: true})
	lr2 := g.kp(7, "laptop", 1, now.Add(2*time.Hour))
	ok(t, s.SetLastResort(ctx, lr2, now), "SetLastResort replacing")
	wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{LastResort: true})
	got := claimOne(t, s, 7, 0, now)
	sameKP(t, lr2, got.KeyPackage)

	// The replaced last resort does not count: setting the same init key
	// again is allowed.
	lr3 := g.kp(7, "laptop", 1, now.Add(3*time.Hour))
	lr3.InitKey = lr2.InitKey
	ok(t, s.SetLastResort(ctx, lr3, now), "SetLastResort with the replaced last resort's init key")
	wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{LastResort: true})
	got = claimOne(t, s, 7, 0, now)
	sameKP(t, lr3, got.KeyPackage)

	// An unused replaced last resort frees its init key.
	lr4 := g.kp(7, "laptop", 1, now.Add(time.Hour))
	lr5 := g.kp(7, "laptop", 1, now.Add(time.Hour))
	ok(t, s.SetLastResort(ctx, lr4, now), "SetLastResort")
	ok(t, s.SetLastResort(ctx, lr5, now), "SetLastResort")
	reuse := g.kp(8, "phone", 1, now.Add(time.Hour))
	reuse.InitKey = lr4.InitKey
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{reuse}, 100, now), "AddKeyPackages with an unused replaced last resort's init key")
}

func testSetLastResortDuplicate(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	own := g.kp(7, "laptop", 1, now.Add(time.Hour))
	other := g.kp(8, "phone", 1, now.Add(time.Hour))
	otherLR := g.kp(8, "phone", 1, now.Add(time.Hour))
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{own}, 100, now), "AddKeyPackages")
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{other}, 100, now), "AddKeyPackages")
	ok(t, s.SetLastResort(ctx, otherLR, now), "SetLastResort")
	lr := g.kp(7, "laptop", 1, now.Add(time.Hour))
	ok(t, s.SetLastResort(ctx, lr, now), "SetLastResort")
	for _, taken := range []p2core.KeyPackage{own, other, otherLR} {
		dup := g.kp(7, "laptop", 1, now.Add(time.Hour))
		dup.InitKey = taken.InitKey
		isErr(t, s.SetLastResort(ctx, dup, now), p2core.ErrDuplicateKeyPackage, "SetLastResort with an init key in use")
	}
	wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{Available: 1, LastResort: true})
	claimOne(t, s, 7, 0, now)
	got := claimOne(t, s, 7, 0, now)
	sameKP(t, lr, got.KeyPackage) // the old last resort is still in place
}

func testUsedLastResortInitKey(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	for _, end := range []string{"replaced", "ended"} {
		sid := p2core.SessionID(end)
		lr := g.kp(7, sid, 1, now.Add(time.Hour))
		ok(t, s.SetLastResort(ctx, lr, now), "SetLastResort")
		claimOne(t, s, 7, 0, now) // hands it out
		if end == "replaced" {
			ok(t, s.SetLastResort(ctx, g.kp(7, sid, 1, now.Add(time.Hour)), now), "SetLastResort")
		} else {
			ok(t, s.EndSession(ctx, 7, sid, now), "EndSession")
		}
		reuse := g.kp(8, "phone", 1, now.Add(48*time.Hour))
		reuse.InitKey = lr.InitKey
		isErr(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{reuse}, 100, now), p2core.ErrDuplicateKeyPackage,
			"AddKeyPackages with the init key of a handed-out, "+end+" last resort")
		ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{reuse}, 100, lr.NotAfter),
			"AddKeyPackages with the init key of a "+end+" last resort after its NotAfter")
		if end == "replaced" {
			ok(t, s.EndSession(ctx, 7, sid, now), "EndSession")
		}
	}
}

func testKeyPackageStatus(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{})
	ok(t, s.AddKeyPackages(ctx, g.kps(2, 7, "laptop", 1, now.Add(time.Hour)), 100, now), "AddKeyPackages")
	ok(t, s.AddKeyPackages(ctx, g.kps(1, 7, "laptop", 1, now.Add(time.Minute)), 100, now), "AddKeyPackages")
	ok(t, s.AddKeyPackages(ctx, g.kps(1, 7, "laptop", 1, now), 100, now), "AddKeyPackages expired")
	ok(t, s.AddKeyPackages(ctx, g.kps(5, 7, "phone", 1, now.Add(time.Hour)), 100, now), "AddKeyPackages other session")
	wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{Available: 3})
	wantStatus(t, s, 7, "laptop", now.Add(time.Minute), p2core.KeyPackageStatus{Available: 2})
	wantStatus(t, s, 7, "laptop", now.Add(-time.Hour), p2core.KeyPackageStatus{Available: 4})
	ok(t, s.SetLastResort(ctx, g.kp(7, "laptop", 1, now.Add(time.Hour)), now), "SetLastResort")
	wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{Available: 3, LastResort: true})
	wantStatus(t, s, 7, "phone", now, p2core.KeyPackageStatus{Available: 5})
	wantStatus(t, s, 8, "laptop", now, p2core.KeyPackageStatus{})
}

func testClaimRemaining(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	ok(t, s.AddKeyPackages(ctx, g.kps(1, 7, "laptop", 1, now.Add(time.Hour)), 100, now), "AddKeyPackages")
	ok(t, s.AddKeyPackages(ctx, g.kps(2, 7, "laptop", 1, now.Add(time.Minute)), 100, now), "AddKeyPackages")
	ok(t, s.AddKeyPackages(ctx, g.kps(2, 7, "laptop", 2, now.Add(time.Hour)), 100, now), "AddKeyPackages")
	// At now+1m the two middle ones are expired: 3 usable, of which the
	// claim takes one.
	later := now.Add(time.Minute)
	for want := 2; want >= 0; want-- {
		got := claimOne(t, s, 7, 0, later)
		count(t, got.Remaining, want, "Remaining")
		count(t, status(t, s, 7, "laptop", later).Available, want, "Available after claim")
	}
	claimNone(t, s, 7, 0, later)
}

func testPurgeKeyPackages(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	// A handed-out KeyPackage (claimed while valid) does not count.
	handed := g.kp(7, "c", 1, now.Add(-30*time.Minute))
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{handed}, 100, now.Add(-2*time.Hour)), "AddKeyPackages")
	claimOne(t, s, 7, 0, now.Add(-2*time.Hour))

	r1 := g.kp(7, "a", 1, now.Add(-time.Hour))
	r2 := g.kp(7, "a", 1, now) // NotAfter == now: purged
	r3 := g.kp(7, "a", 1, now.Add(time.Microsecond))
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{r1, r2, r3}, 100, now), "AddKeyPackages")
	ok(t, s.SetLastResort(ctx, g.kp(7, "a", 1, now.Add(-time.Second)), now), "SetLastResort expired")
	r4 := g.kp(7, "b", 1, now.Add(-time.Hour))
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{r4}, 100, now), "AddKeyPackages")
	lrB := g.kp(7, "b", 1, now.Add(time.Hour))
	ok(t, s.SetLastResort(ctx, lrB, now), "SetLastResort")

	// Until purged, an expired KeyPackage is still stored: its init key is
	// taken.
	taken := g.kp(8, "x", 1, now.Add(time.Hour))
	taken.InitKey = r1.InitKey
	isErr(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{taken}, 100, now), p2core.ErrDuplicateKeyPackage,
		"AddKeyPackages with the init key of a stored, expired KeyPackage")

	n, err := s.PurgeExpiredKeyPackages(ctx, now)
	ok(t, err, "PurgeExpiredKeyPackages")
	count(t, n, 4, "purged KeyPackages")
	n, err = s.PurgeExpiredKeyPackages(ctx, now)
	ok(t, err, "second PurgeExpiredKeyPackages")
	count(t, n, 0, "purged by the second call")
	wantStatus(t, s, 7, "a", now.Add(-2*time.Hour), p2core.KeyPackageStatus{Available: 1})
	wantStatus(t, s, 7, "b", now.Add(-2*time.Hour), p2core.KeyPackageStatus{LastResort: true})

	// Purged init keys are free again.
	for _, kp := range []p2core.KeyPackage{handed, r1, r2, r4} {
		reuse := g.kp(8, "x", 1, now.Add(time.Hour))
		reuse.InitKey = kp.InitKey
		ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{reuse}, 100, now), "AddKeyPackages with a purged init key")
	}
	got, err := s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{})
	ok(t, err, "ClaimKeyPackages")
	count(t, len(got), 2, "claimed")
	sameKP(t, r3, got[0].KeyPackage)
	sameKP(t, lrB, got[1].KeyPackage)
}

// claimedSet records which KeyPackages were handed out, by init key.
type claimedSet struct {
	mu   sync.Mutex
	seen map[string]int
	errs []error
}

func (c *claimedSet) add(kps []p2core.ClaimedKeyPackage) (regular int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]int{}
	}
	for _, kp := range kps {
		if kp.LastResort {
			continue
		}
		regular++
		c.seen[string(kp.InitKey)]++
	}
	return regular
}

func (c *claimedSet) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, err)
}

// check verifies that every KeyPackage of want was handed out exactly once
// and nothing else was.
func (c *claimedSet) check(t *testing.T, want []p2core.KeyPackage) {
	t.Helper()
	ok(t, errors.Join(c.errs...), "concurrent calls")
	for _, kp := range want {
		if n := c.seen[string(kp.InitKey)]; n != 1 {
			t.Fatalf("KeyPackage %x of session %q handed out %d times, want once", kp.InitKey[:4], kp.SessionID, n)
		}
	}
	count(t, len(c.seen), len(want), "distinct KeyPackages handed out")
}

func testClaimConcurrent(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	sessions := []p2core.SessionID{"s0", "s1", "s2", "s3"}
	var pool []p2core.KeyPackage
	for _, sid := range sessions {
		kps := g.kps(250, 7, sid, 1, now.Add(time.Hour))
		ok(t, s.AddKeyPackages(ctx, kps, 1000, now), "AddKeyPackages")
		ok(t, s.SetLastResort(ctx, g.kp(7, sid, 1, now.Add(time.Hour)), now), "SetLastResort")
		pool = append(pool, kps...)
	}
	var claimed claimedSet
	run(100, func(int) {
		for {
			got, err := s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{})
			if err != nil {
				claimed.fail(err)
				return
			}
			if len(got) != len(sessions) {
				claimed.fail(fmt.Errorf("claim returned %d results, want one per session (%d)", len(got), len(sessions)))
				return
			}
			if claimed.add(got) == 0 {
				return // only last resorts left
			}
		}
	})
	claimed.check(t, pool)
	got, err := s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{})
	ok(t, err, "ClaimKeyPackages after the pool is empty")
	count(t, len(got), len(sessions), "last resorts")
	for _, kp := range got {
		if !kp.LastResort || kp.Remaining != 0 {
			t.Fatalf("session %q: got LastResort %v Remaining %d, want a last resort and 0", kp.SessionID, kp.LastResort, kp.Remaining)
		}
	}
}

func testUploadsRacingClaims(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	const uploaders, batches, perBatch, claimers = 4, 20, 5, 16
	uploads := make([][][]p2core.KeyPackage, uploaders)
	var all []p2core.KeyPackage
	for u := range uploads {
		for range batches {
			b := g.kps(perBatch, 7, p2core.SessionID(fmt.Sprintf("s%d", u)), 1, now.Add(time.Hour))
			uploads[u] = append(uploads[u], b)
			all = append(all, b...)
		}
	}
	var claimed claimedSet
	var done atomic.Bool
	var wg sync.WaitGroup
	for range claimers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !done.Load() {
				got, err := s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{})
				if err != nil {
					claimed.fail(err)
					return
				}
				claimed.add(got)
			}
		}()
	}
	run(uploaders, func(u int) {
		for _, b := range uploads[u] {
			if err := s.AddKeyPackages(ctx, b, 1000, now); err != nil {
				claimed.fail(err)
				return
			}
		}
	})
	done.Store(true)
	wg.Wait()
	for {
		got, err := s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{})
		ok(t, err, "ClaimKeyPackages draining")
		if claimed.add(got) == 0 {
			break
		}
	}
	claimed.check(t, all)
}

func testConcurrentSameInitKey(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	shared := g.bytesN("initkey", 32)
	batches := make([][]p2core.KeyPackage, 100)
	for i := range batches {
		sid := p2core.SessionID(fmt.Sprintf("s%02d", i))
		kp := g.kp(7, sid, 1, now.Add(time.Hour))
		kp.InitKey = bytes.Clone(shared)
		batches[i] = []p2core.KeyPackage{g.kp(7, sid, 1, now.Add(time.Hour)), kp}
	}
	errs := make([]error, 100)
	var wins, dups atomic.Int32
	run(100, func(i int) {
		err := s.AddKeyPackages(ctx, batches[i], 100, now)
		switch {
		case err == nil:
			wins.Add(1)
		case errors.Is(err, p2core.ErrDuplicateKeyPackage):
			dups.Add(1)
		default:
			errs[i] = err
		}
	})
	ok(t, errors.Join(errs...), "concurrent AddKeyPackages")
	count(t, int(wins.Load()), 1, "uploads that succeeded")
	count(t, int(dups.Load()), 99, "uploads refused as duplicate")
	// Only the winner's two KeyPackages are stored.
	first := claimOne(t, s, 7, 0, now)
	second := claimOne(t, s, 7, 0, now)
	claimNone(t, s, 7, 0, now)
	if first.SessionID != second.SessionID || !bytes.Equal(second.InitKey, shared) {
		t.Fatalf("claimed %q then %q (init key %x), want both of the winner and the shared init key last",
			first.SessionID, second.SessionID, second.InitKey[:4])
	}
}
