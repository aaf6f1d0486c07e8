package storetest_test

import (
	"testing"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/memstore"
	"github.com/p2kit/p2kit/storage/storetest"
)

// A custom backend proves itself with one test in its own _test.go file:
// Run calls the factory for every subtest, so each gets a fresh, empty
// store, closed when the subtest ends. The suite does not run subtests in
// parallel, so a factory may empty and reuse one shared database instead.
// A backend that persists data also calls RunPersistent, whose factory
// opens the store kept in a folder (examples/customstore runs the suite on
// a Store wrapper). This example is compiled, not run: only go test has a
// *testing.T to give it.
func ExampleRun() {
	// In mystore_test.go, as func TestConformance(t *testing.T) { ... }:
	TestConformance := func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) p2core.Store {
			s := memstore.New() // your backend: mystore.Open(...)
			t.Cleanup(func() { s.Close() })
			return s
		})
	}
	_ = TestConformance
}
