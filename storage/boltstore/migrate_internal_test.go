package boltstore

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/p2kit/p2kit/p2core"
)

// fileFormat reads the format version recorded in the file at path.
func fileFormat(t *testing.T, path string) uint64 {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v []byte
	if err := db.View(func(tx *bolt.Tx) error {
		v = append(v, tx.Bucket([]byte(bMeta)).Get([]byte(kFormat))...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(v) != 8 {
		t.Fatalf("format record %x", v)
	}
	return binary.BigEndian.Uint64(v)
}

// The migration mechanism, on a synthetic version 2: a format-1 file is
// converted on Open (the step runs once and the version is recorded, the
// data stays), a new file starts at the latest version, and a format-1
// boltstore then refuses the converted file.
func TestOpenMigratesToSyntheticVersion2(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "p2kit.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.PutSetting(ctx, "kept", []byte("yes")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if v := fileFormat(t, path); v != 1 {
		t.Fatalf("a new file has format %d, want 1", v)
	}

	runs := 0
	v2 := []migration{{version: 2, name: "synthetic test step", step: func(tx *bolt.Tx) error {
		runs++
		return tx.Bucket([]byte(bSettings)).Put([]byte("ksynthetic"), []byte("v2"))
	}}}
	for range 2 {
		s, err := open(path, nil, v2)
		if err != nil {
			t.Fatalf("Open with version 2: %v", err)
		}
		for key, want := range map[string]string{"kept": "yes", "synthetic": "2"} {
			if got, err := s.Setting(ctx, key); err != nil || string(got) != want {
				t.Fatalf("setting %q after the migration: %q, %v; want %q", key, got, err, want)
			}
		}
		s.Close()
	}
	if runs != 1 {
		t.Fatalf("the version-2 step ran %d times, want once", runs)
	}
	if v := fileFormat(t, path); v != 2 {
		t.Fatalf("format after the migration %d, want 2", v)
	}
	if s, err := Open(path, nil); err == nil {
		s.Close()
		t.Fatal("a format-1 boltstore opened a format-2 file")
	} else if !strings.Contains(err.Error(), "format 2, which this boltstore does not know") {
		t.Fatalf("Open of a newer file: %v, want an error naming the unknown format", err)
	}

	fresh := filepath.Join(t.TempDir(), "new.db")
	s, err = open(fresh, nil, v2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Setting(ctx, "synthetic"); err == nil {
		t.Fatal("the step ran on a new file, which starts at the latest layout")
	} else if !errors.Is(err, p2core.ErrNotFound) {
		t.Fatal(err)
	}
	s.Close()
	if v := fileFormat(t, fresh); v != 2 {
		t.Fatalf("a new file under version 2 has format %d, want 2", v)
	}
}
