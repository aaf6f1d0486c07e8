package memstore_test

import (
	"testing"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/memstore"
	"github.com/p2kit/p2kit/storage/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) p2core.Store {
		s := memstore.New()
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// The compiler checks that *Store is a p2core.Store.
var _ p2core.Store = (*memstore.Store)(nil)
