package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/p2kit/p2kit/p2core"
)

// RunPersistent runs the persistence checks of a backend that keeps its data
// in a directory. open must open (creating if needed) the store kept in dir;
// it may register cleanup, but the suite closes every store it opens before
// opening the same dir again, and Close must be safe to call twice.
func RunPersistent(t *testing.T, open func(t *testing.T, dir string) p2core.Store) {
	t.Helper()
	cases := []struct {
		name string
		fn   func(t *testing.T, reopen func() p2core.Store)
	}{
		{"EveryFeatureSurvivesReopen", func(t *testing.T, reopen func() p2core.Store) {
			s := reopen()
			f := seed(t, s)
			ok(t, s.Close(), "Close")
			s = reopen()
			f.verify(t, s)
			ok(t, s.Close(), "Close")
		}},
		{"RandomKeyPackageOperationsMatchTheModelAcrossReopens", func(t *testing.T, reopen func() p2core.Store) {
			steps := 300
			if testing.Short() {
				steps = 80
			}
			s := reopen()
			runModel(t, s, func(old p2core.Store) p2core.Store {
				ok(t, old.Close(), "Close")
				return reopen()
			}, 1000, steps)
		}},
		{"ReopenAfterCloseWorksRepeatedly", func(t *testing.T, reopen func() p2core.Store) {
			for i := range 3 {
				s := reopen()
				ok(t, s.PutSetting(t.Context(), fmt.Sprint("k", i), []byte{byte(i)}), "PutSetting")
				ok(t, s.Close(), "Close")
			}
			s := reopen()
			for i := range 3 {
				wantSetting(t, s, fmt.Sprint("k", i), []byte{byte(i)})
			}
			ok(t, s.Close(), "Close")
		}},
		{"ClaimsAndDeletesStayDoneAfterReopen", func(t *testing.T, reopen func() p2core.Store) {
			s := reopen()
			f := seed(t, s)
			f.verify(t, s) // consumes the token and the KeyPackages
			ok(t, s.Close(), "Close")
			s = reopen()
			_, err := s.RedeemToken(t.Context(), f.token.Hash, serverA, f.now)
			isErr(t, err, p2core.ErrTokenInvalid, "RedeemToken of a token redeemed before reopening")
			wantStatus(t, s, 7, "laptop", f.now, p2core.KeyPackageStatus{LastResort: true, LastResortUsed: true})
			ok(t, s.Close(), "Close")
		}},
		{"CancelledWritesLeaveNothingAfterReopen", func(t *testing.T, reopen func() p2core.Store) {
			s := reopen()
			f := seed(t, s)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			for _, c := range everyMethod() {
				if err := c.fn(ctx, s, f); !errors.Is(err, context.Canceled) {
					t.Fatalf("%s with a cancelled context: got %v", c.name, err)
				}
			}
			ok(t, s.Close(), "Close")
			s = reopen()
			f.verify(t, s)
			ok(t, s.Close(), "Close")
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			c.fn(t, func() p2core.Store {
				t.Helper()
				s := open(t, dir)
				if s == nil {
					t.Fatal("open returned a nil store")
				}
				return s
			})
		})
	}
}
