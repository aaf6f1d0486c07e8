package boltstore_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

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
		o := boltstore.WithoutGroupCommit(boltstore.Options{NoSync: true})
		return open(t, filepath.Join(t.TempDir(), "p2kit.db"), &o)
	})
}

func TestPersistent(t *testing.T) {
	storetest.RunPersistent(t, func(t *testing.T, dir string) p2core.Store {
		return open(t, filepath.Join(dir, "p2kit.db"), nil)
	})
}

// freelistPages counts the pages of the file at path that hold bbolt's
// list of free pages, opening it read-only.
func freelistPages(t *testing.T, path string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	err = db.View(func(tx *bolt.Tx) error {
		for id := 2; ; id++ {
			p, err := tx.Page(id)
			if err != nil || p == nil {
				return err
			}
			if p.Type == "freelist" {
				n++
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Commits do not write the free-page list; Close does, so that the next
// Open reads it instead of walking the whole file. A store that was not
// closed (a crash) has none, and opens by walking the file.
func TestCloseWritesFreePageList(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "p2kit.db")
	s, err := boltstore.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 20 {
		kp := p2core.KeyPackage{UserID: 7, SessionID: "s", CipherSuite: 1, Ref: []byte{byte(i)}, InitKey: []byte{byte(i), 1},
			Data: make([]byte, 300), NotAfter: now.Add(time.Hour), UploadedAt: now}
		if err := s.AddKeyPackages(ctx, []p2core.KeyPackage{kp}, 100, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{}); err != nil {
		t.Fatal(err)
	}
	// A copy taken while the store is open is what a crash leaves.
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(crashed, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if n := freelistPages(t, crashed); n != 0 {
		t.Fatalf("an open store's file holds %d free-page list pages; commits should write none", n)
	}
	if n := freelistPages(t, path); n != 1 {
		t.Fatalf("a closed store's file holds %d free-page list pages, want 1", n)
	}
	for _, p := range []string{crashed, path} {
		s := open(t, p, nil)
		st, err := s.KeyPackageStatus(ctx, 7, "s", now)
		if err != nil || st.Available != 19 {
			t.Fatalf("%s reopened: %+v, %v; want 19 available", filepath.Base(p), st, err)
		}
	}
}

// Session IDs are at most 32 bytes in p2core; the store keeps KeyPackages
// of IDs up to 255 bytes and refuses longer ones rather than mixing their
// records up with another session's.
func TestKeyPackagesOfOverlongSessionIDRefused(t *testing.T) {
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "p2kit.db"), nil)
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	kp := func(sid string) p2core.KeyPackage {
		return p2core.KeyPackage{UserID: 7, SessionID: p2core.SessionID(sid), CipherSuite: 1, Ref: []byte{1}, InitKey: []byte(sid[:1] + "ik"),
			Data: []byte{1}, NotAfter: now.Add(time.Hour), UploadedAt: now}
	}
	long := strings.Repeat("a", 256)
	if err := s.AddKeyPackages(ctx, []p2core.KeyPackage{kp(long)}, 10, now); err == nil {
		t.Fatal("AddKeyPackages with a 256-byte session ID succeeded")
	}
	if err := s.SetLastResort(ctx, kp(long), now); err == nil {
		t.Fatal("SetLastResort with a 256-byte session ID succeeded")
	}
	if err := s.AddKeyPackages(ctx, []p2core.KeyPackage{kp(long[:255])}, 10, now); err != nil {
		t.Fatalf("255-byte session ID: %v", err)
	}
	if st, err := s.KeyPackageStatus(ctx, 7, p2core.SessionID(long), now); err != nil || st != (p2core.KeyPackageStatus{}) {
		t.Fatalf("status of the 256-byte session: %+v, %v", st, err)
	}
	if st, err := s.KeyPackageStatus(ctx, 7, p2core.SessionID(long[:255]), now); err != nil || st.Available != 1 {
		t.Fatalf("status of the 255-byte session: %+v, %v", st, err)
	}
}
