package storetest

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

func serverKeyCases() []testCase {
	return []testCase{
		{"ServerKeysOfEmptyStoreIsEmpty", testServerKeysEmpty},
		{"AddServerKeyWithNilPreviousToEmptyStoreMakesItCurrent", testAddFirstServerKey},
		{"AddServerKeyWithNilPreviousWhenKeyExistsIsConflict", testAddServerKeyNilConflict},
		{"AddServerKeyFromCurrentRetiresItAndKeepsHistory", testRotateServerKey},
		{"AddServerKeyWithWrongPreviousIsConflictAndChangesNothing", testRotateServerKeyWrongPrevious},
		{"AddServerKeyUnder100GoroutinesExactlyOneWins", testRotateServerKeyConcurrent},
	}
}

func wantServerKeys(t *testing.T, s p2core.Store, want ...p2core.ServerKey) {
	t.Helper()
	got, err := s.ServerKeys(t.Context())
	ok(t, err, "ServerKeys")
	count(t, len(got), len(want), "number of server keys")
	for i := range want {
		sameServerKey(t, want[i], got[i])
	}
}

func testServerKeysEmpty(t *testing.T, s p2core.Store) {
	wantServerKeys(t, s)
}

func testAddFirstServerKey(t *testing.T, s p2core.Store) {
	var g gen
	k := g.serverKey(base())
	ok(t, s.AddServerKey(t.Context(), k, nil), "AddServerKey")
	wantServerKeys(t, s, k)
}

func testAddServerKeyNilConflict(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	k1 := g.serverKey(base())
	ok(t, s.AddServerKey(ctx, k1, nil), "AddServerKey")
	isErr(t, s.AddServerKey(ctx, g.serverKey(base().Add(time.Hour)), nil), p2core.ErrConflict, "second AddServerKey with nil previous")
	wantServerKeys(t, s, k1)
}

func testRotateServerKey(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	k1 := g.serverKey(base())
	k2 := g.serverKey(base().Add(24 * time.Hour))
	k3 := g.serverKey(base().Add(48 * time.Hour))
	ok(t, s.AddServerKey(ctx, k1, nil), "AddServerKey")
	ok(t, s.AddServerKey(ctx, k2, k1.Fingerprint), "rotate to k2")
	wantServerKeys(t, s, retired(k1, k2.CreatedAt), k2)
	ok(t, s.AddServerKey(ctx, k3, k2.Fingerprint), "rotate to k3")
	wantServerKeys(t, s, retired(k1, k2.CreatedAt), retired(k2, k3.CreatedAt), k3)
}

func testRotateServerKeyWrongPrevious(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	k1 := g.serverKey(base())
	isErr(t, s.AddServerKey(ctx, k1, []byte("no such key")), p2core.ErrConflict, "AddServerKey with a previous key to an empty store")
	wantServerKeys(t, s)
	ok(t, s.AddServerKey(ctx, k1, nil), "AddServerKey")
	k2 := g.serverKey(base().Add(time.Hour))
	ok(t, s.AddServerKey(ctx, k2, k1.Fingerprint), "rotate")
	isErr(t, s.AddServerKey(ctx, g.serverKey(base().Add(2*time.Hour)), k1.Fingerprint), p2core.ErrConflict, "rotate from a retired key")
	isErr(t, s.AddServerKey(ctx, g.serverKey(base().Add(2*time.Hour)), []byte("unknown")), p2core.ErrConflict, "rotate from an unknown key")
	wantServerKeys(t, s, retired(k1, k2.CreatedAt), k2)
}

func testRotateServerKeyConcurrent(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()

	// Two instances starting at once: exactly one first key.
	firsts := make([]p2core.ServerKey, 100)
	for i := range firsts {
		firsts[i] = g.serverKey(now)
	}
	var wins, conflicts atomic.Int32
	errs := make([]error, 100)
	tally := func(i int, err error) {
		switch {
		case err == nil:
			wins.Add(1)
		case errors.Is(err, p2core.ErrConflict):
			conflicts.Add(1)
		default:
			errs[i] = err
		}
	}
	run(100, func(i int) { tally(i, s.AddServerKey(ctx, firsts[i], nil)) })
	ok(t, errors.Join(errs...), "concurrent first AddServerKey")
	count(t, int(wins.Load()), 1, "first keys added")
	count(t, int(conflicts.Load()), 99, "first keys refused")
	keys, err := s.ServerKeys(ctx)
	ok(t, err, "ServerKeys")
	count(t, len(keys), 1, "server keys")
	first := keys[0]

	// Instances rotating at once from the same key: exactly one wins.
	nexts := make([]p2core.ServerKey, 100)
	for i := range nexts {
		nexts[i] = g.serverKey(now.Add(time.Hour))
	}
	wins.Store(0)
	conflicts.Store(0)
	run(100, func(i int) { tally(i, s.AddServerKey(ctx, nexts[i], first.Fingerprint)) })
	ok(t, errors.Join(errs...), "concurrent rotations")
	count(t, int(wins.Load()), 1, "rotations that won")
	count(t, int(conflicts.Load()), 99, "rotations refused")
	keys, err = s.ServerKeys(ctx)
	ok(t, err, "ServerKeys")
	count(t, len(keys), 2, "server keys after the rotations")
	sameServerKey(t, retired(first, now.Add(time.Hour)), keys[0])
	if !keys[1].RetiredAt.IsZero() {
		t.Fatalf("new current key is retired at %v", keys[1].RetiredAt)
	}
}
