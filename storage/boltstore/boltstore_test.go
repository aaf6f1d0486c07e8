package boltstore_test

import (
	"path/filepath"
	"testing"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/boltstore"
	"github.com/p2kit/p2kit/storage/storetest"
)

// The compiler checks that *Store is a p2core.Store.
var _ p2core.Store = (*boltstore.Store)(nil)

func open(t testing.TB, path string, opts *boltstore.Options) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConformance runs the suite on the default configuration: group
// commit, fsync on.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) p2core.Store {
		return open(t, filepath.Join(t.TempDir(), "p2kit.db"), nil)
	})
}

// TestConformanceNoGroupCommit runs the suite with one commit per
// operation. Without fsync: what it checks does not depend on it, and a
// commit per operation with fsync would make it slow.
func TestConformanceNoGroupCommit(t *testing.T) {
	storetest.Run(t, func(t *testing.T) p2core.Store {
		return open(t, filepath.Join(t.TempDir(), "p2kit.db"), &boltstore.Options{NoGroupCommit: true, NoSync: true})
	})
}

func TestPersistent(t *testing.T) {
	storetest.RunPersistent(t, func(t *testing.T, dir string) p2core.Store {
		return open(t, filepath.Join(dir, "p2kit.db"), nil)
	})
}
