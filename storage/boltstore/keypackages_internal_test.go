package boltstore

import (
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/p2kit/p2kit/p2core"
)

// Once a session's expired KeyPackages are purged, the next write to its
// header tightens the NotAfter bound again, so claims stop walking the
// queue to count expired ones.
func TestNotAfterBoundHealsAfterPurge(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	h := time.Hour
	s, err := Open(filepath.Join(t.TempDir(), "p2kit.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kps := []p2core.KeyPackage{fixtureKP(7, "a", 1, 1, now.Add(h)), fixtureKP(7, "a", 1, 2, now.Add(5*h)), fixtureKP(7, "a", 1, 3, now.Add(6*h))}
	if err := s.AddKeyPackages(ctx, kps, 100, now); err != nil {
		t.Fatal(err)
	}
	bound := func() []byte {
		var b []byte
		err := s.db.View(func(tx *bolt.Tx) error {
			sp, err := openSupply(tx, kpBase(userSessionKey(7, "a")))
			b = sp.h.minAfter
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if got := bound(); string(got) != string(timeKey(now.Add(h))) {
		t.Fatalf("bound after upload %x, want the first KeyPackage's NotAfter", got)
	}
	later := now.Add(2 * h)
	if n, err := s.PurgeExpiredKeyPackages(ctx, later); err != nil || n != 1 {
		t.Fatalf("purge: %d, %v", n, err)
	}
	if got, err := s.ClaimKeyPackages(ctx, 7, 0, later); err != nil || len(got) != 1 || got[0].Remaining != 1 {
		t.Fatalf("claim: %+v, %v", got, err)
	}
	if got := bound(); string(got) != string(timeKey(now.Add(6*h))) {
		t.Fatalf("bound after purge and claim %x, want the last KeyPackage's NotAfter %x", got, timeKey(now.Add(6*h)))
	}
}
