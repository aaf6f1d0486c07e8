package boltstore

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/memstore"
)

// TestKeyPackagesAgainstMemstore runs random sequences of KeyPackage
// operations (uploads with reused init keys and mixed suites, last
// resorts, claims at times that go back and forth, statuses, purges,
// ended sessions, reopens of the file) on a boltstore and on memstore,
// the reference semantics, and requires the same answer to every call.
// Spent records, heads and their clean-up must be invisible.
func TestKeyPackagesAgainstMemstore(t *testing.T) {
	seeds := 60
	if testing.Short() {
		seeds = 10
	}
	for seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) { runKPModel(t, uint64(seed), 400) })
	}
}

func runKPModel(t *testing.T, seed uint64, steps int) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	path := filepath.Join(t.TempDir(), "p2kit.db")
	bs, err := Open(path, &Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { bs.Close() }()
	ms := memstore.New()
	defer ms.Close()
	stores := []p2core.KeyPackageStore{bs, ms}

	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	users := []p2core.UserID{1, 2}
	sessions := []p2core.SessionID{"a", "b", "c"}
	suites := []uint16{1, 2}
	kp := func(u p2core.UserID, sid p2core.SessionID) p2core.KeyPackage {
		k := fixtureKP(u, sid, suites[rng.IntN(2)], uint64(rng.IntN(60)), now.Add(time.Duration(rng.IntN(8)-1)*time.Hour))
		k.UploadedAt = now
		return k
	}
	errClass := func(err error) string {
		switch {
		case err == nil:
			return "ok"
		case errors.Is(err, p2core.ErrDuplicateKeyPackage):
			return "duplicate"
		case errors.Is(err, p2core.ErrTooManyKeyPackages):
			return "too many"
		}
		return "error: " + err.Error()
	}
	for step := range steps {
		u, sid := users[rng.IntN(2)], sessions[rng.IntN(3)]
		var op string
		var got [2]string
		switch r := rng.IntN(100); {
		case r < 25:
			n := 1 + rng.IntN(4)
			kps := make([]p2core.KeyPackage, n)
			for i := range kps {
				kps[i] = kp(u, sid)
			}
			op = fmt.Sprintf("AddKeyPackages(%d/%s, %d)", u, sid, n)
			for i, s := range stores {
				got[i] = errClass(s.AddKeyPackages(ctx, kps, 6, now))
			}
		case r < 32:
			k := kp(u, sid)
			op = fmt.Sprintf("SetLastResort(%d/%s)", u, sid)
			for i, s := range stores {
				got[i] = errClass(s.SetLastResort(ctx, k, now))
			}
		case r < 70:
			suite := uint16(rng.IntN(3))
			at := now.Add(time.Duration(rng.IntN(5)-2) * time.Hour)
			op = fmt.Sprintf("ClaimKeyPackages(%d, suite %d, now%+v)", u, suite, at.Sub(now))
			for i, s := range stores {
				c, err := s.ClaimKeyPackages(ctx, u, suite, at)
				got[i] = errClass(err)
				for _, x := range c {
					got[i] += fmt.Sprintf(" [%s ik=%x lr=%v rem=%d]", x.SessionID, x.InitKey[:4], x.LastResort, x.Remaining)
				}
			}
		case r < 82:
			at := now.Add(time.Duration(rng.IntN(5)-2) * time.Hour)
			op = fmt.Sprintf("KeyPackageStatus(%d/%s, now%+v)", u, sid, at.Sub(now))
			for i, s := range stores {
				st, err := s.KeyPackageStatus(ctx, u, sid, at)
				got[i] = fmt.Sprintf("%s %+v", errClass(err), st)
			}
		case r < 87:
			op = "PurgeExpiredKeyPackages"
			for i, s := range stores {
				n, err := s.PurgeExpiredKeyPackages(ctx, now)
				got[i] = fmt.Sprintf("%s %d", errClass(err), n)
			}
		case r < 91:
			op = fmt.Sprintf("EndSession(%d/%s)", u, sid)
			got[0] = errClass(bs.EndSession(ctx, u, sid, now))
			got[1] = errClass(ms.EndSession(ctx, u, sid, now))
		case r < 97:
			d := time.Duration(rng.IntN(90)) * time.Minute
			now = now.Add(d)
			op = fmt.Sprintf("time +%v", d)
		default:
			op = "reopen"
			if err := bs.Close(); err != nil {
				t.Fatal(err)
			}
			if bs, err = Open(path, &Options{NoSync: true}); err != nil {
				t.Fatal(err)
			}
			stores[0] = bs
		}
		if got[0] != got[1] {
			t.Fatalf("step %d: %s:\n boltstore: %s\n memstore:  %s", step, op, got[0], got[1])
		}
	}
}
