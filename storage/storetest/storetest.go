// Package storetest is the conformance suite every p2core.Store backend
// runs. A backend's test calls Run with a factory that returns a fresh,
// empty store, and persistent backends also call RunPersistent:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) p2core.Store {
//			s := memstore.New()
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// The suite checks the semantics documented on the interfaces in
// p2core/store.go: missing is ErrNotFound, duplicates are ErrConflict,
// atomic methods are exactly-once under 100 concurrent goroutines, a
// cancelled context changes nothing, byte slices are copied in and out,
// times come back in UTC, and a closed store answers ErrClosed. Each
// subtest is named after the behaviour it checks.
//
// The suite does not call t.Parallel, so factories may share an external
// resource (a database they empty per test).
package storetest

import (
	"testing"

	"github.com/p2kit/p2kit/p2core"
)

// testCase is one behaviour, checked against a fresh store.
type testCase struct {
	name string
	fn   func(t *testing.T, s p2core.Store)
}

// group is a set of behaviours of one feature.
type group struct {
	name  string
	cases []testCase
}

// Run runs the whole conformance suite. Every subtest gets a fresh, empty
// store from newStore; newStore must register whatever cleanup the store
// needs (for example t.Cleanup(func() { s.Close() })). The suite may call
// Close itself: Close must be safe to call twice.
func Run(t *testing.T, newStore func(t *testing.T) p2core.Store) {
	t.Helper()
	groups := []group{
		{"Tokens", tokenCases()},
		{"Settings", settingCases()},
		{"Sessions", sessionCases()},
		{"Certs", certCases()},
		{"ServerKeys", serverKeyCases()},
		{"KeyPackages", keyPackageCases()},
		{"SessionEnds", sessionEndCases()},
		{"KeyPackageModel", modelCases()},
		{"CancelledContext", cancelCases()},
		{"ContextCancelledDuringCall", duringCallCases()},
		{"ContextCancelledUnderLoad", concurrentCancelCases()},
		{"ReturnedBytesAreCopies", returnedCopyCases()},
		{"InputBytesMayBeReused", inputCopyCases()},
		{"TimesComeBackInUTC", utcCases()},
		{"Closed", closedCases()},
	}
	for _, g := range groups {
		t.Run(g.name, func(t *testing.T) {
			for _, c := range g.cases {
				t.Run(c.name, func(t *testing.T) {
					s := newStore(t)
					if s == nil {
						t.Fatal("factory returned a nil store")
					}
					c.fn(t, s)
				})
			}
		})
	}
}
