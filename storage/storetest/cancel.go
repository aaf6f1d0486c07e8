package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// cancelCases checks, for every method, that a cancelled context gives an
// error matching context.Canceled and changes nothing.
func cancelCases() []testCase {
	var cases []testCase
	for _, c := range everyMethod() {
		cases = append(cases, testCase{c.name + "ReturnsCanceledAndChangesNothing", func(t *testing.T, s p2core.Store) {
			f := seed(t, s)
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			err := c.fn(ctx, s, f)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("%s with a cancelled context: got error %v, want one matching context.Canceled", c.name, err)
			}
			f.verify(t, s)
		}})
	}
	return cases
}

// cancelAt is a context that cancels itself the n-th time the Store asks
// it whether it is done (Err or Done), so that the cancellation lands
// inside the call: after the Store's first check, while it waits for a
// lock or a queue, or before it commits.
type cancelAt struct {
	context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	left   int
}

func newCancelAt(parent context.Context, n int) *cancelAt {
	ctx, cancel := context.WithCancel(parent)
	return &cancelAt{Context: ctx, cancel: cancel, left: n}
}

func (c *cancelAt) tick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.left--; c.left == 0 {
		c.cancel()
	}
}

func (c *cancelAt) Err() error {
	c.tick()
	return c.Context.Err()
}

func (c *cancelAt) Done() <-chan struct{} {
	c.tick()
	return c.Context.Done()
}

// maxCancelPoint bounds how deep into a call duringCallCases cancels.
const maxCancelPoint = 4

// duringCallCases checks, for every method, that a context cancelled
// during the call (at its 1st, 2nd, ... look at the context) gives either
// success (the work was done before the cancellation was seen) or an
// error matching context.Canceled with nothing changed.
func duringCallCases() []testCase {
	var cases []testCase
	for _, c := range everyMethod() {
		for n := 2; n <= maxCancelPoint; n++ {
			cases = append(cases, testCase{fmt.Sprintf("%sCancelledAtItsLook%dChangesNothing", c.name, n), func(t *testing.T, s p2core.Store) {
				f := seed(t, s)
				ctx := newCancelAt(t.Context(), n)
				defer ctx.cancel()
				err := c.fn(ctx, s, f)
				switch {
				case err == nil:
					// Done before the n-th look: nothing to check.
				case errors.Is(err, context.Canceled):
					f.verify(t, s)
				default:
					t.Fatalf("%s cancelled during the call: got error %v, want nil or one matching context.Canceled", c.name, err)
				}
			}})
		}
	}
	return cases
}

// concurrentCancelCases cancels one context shared by many concurrent
// writers as soon as the first of them returns, while the others run (queued behind each other's commits, waiting
// for locks): each call either took effect and returned nil, or returned
// an error matching context.Canceled and left nothing.
func concurrentCancelCases() []testCase {
	return []testCase{{"ConcurrentWritersCancelledMidwayEachAllOrNothing", func(t *testing.T, s p2core.Store) {
		var g gen
		const n = 64
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		tokens := make([]p2core.FederationToken, n)
		for i := range tokens {
			tokens[i] = g.token(p2core.UserID(100+i), serverA, base(), base().Add(time.Hour))
		}
		errs := make([]error, n)
		run(n, func(i int) {
			errs[i] = s.CreateToken(ctx, tokens[i])
			cancel() // as soon as the first returns, while the others run or wait
		})
		cancelled := 0
		for i, err := range errs {
			_, rerr := s.RedeemToken(t.Context(), tokens[i].Hash, serverA, base())
			switch {
			case err == nil:
				ok(t, rerr, "RedeemToken of a token whose CreateToken succeeded")
			case errors.Is(err, context.Canceled):
				cancelled++
				isErr(t, rerr, p2core.ErrTokenInvalid, "RedeemToken of a token whose CreateToken was cancelled")
			default:
				t.Fatalf("CreateToken %d: %v, want nil or context.Canceled", i, err)
			}
		}
		t.Logf("%d of %d writers cancelled", cancelled, n)
	}}}
}

// closedCases checks that a closed store answers ErrClosed and that Close is
// safe to call twice.
func closedCases() []testCase {
	return []testCase{
		{"EveryMethodReturnsErrClosedAfterClose", func(t *testing.T, s p2core.Store) {
			f := seed(t, s)
			ok(t, s.Close(), "Close")
			for _, c := range everyMethod() {
				isErr(t, c.fn(t.Context(), s, f), p2core.ErrClosed, c.name+" after Close")
			}
		}},
		{"CloseTwiceIsSafe", func(t *testing.T, s p2core.Store) {
			ok(t, s.Close(), "Close")
			ok(t, s.Close(), "second Close")
		}},
	}
}
