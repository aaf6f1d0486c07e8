package storetest

import (
	"context"
	"errors"
	"testing"

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
