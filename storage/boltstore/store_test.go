package boltstore_test

import (
	"bytes"
	"crypto/sha256"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/boltstore"
)

func TestSecondOpenFailsWithinTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p2kit.db")
	open(t, path, nil)
	for _, tc := range []struct {
		name    string
		opts    *boltstore.Options
		atLeast time.Duration
		atMost  time.Duration
	}{
		{"Timeout100ms", &boltstore.Options{Timeout: 100 * time.Millisecond}, 50 * time.Millisecond, 900 * time.Millisecond},
		{"DefaultTimeout1s", nil, 500 * time.Millisecond, 4 * time.Second},
		{"NegativeTimeoutFailsAtOnce", &boltstore.Options{Timeout: -1}, 0, 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			s, err := boltstore.Open(path, tc.opts)
			took := time.Since(start)
			if err == nil {
				s.Close()
				t.Fatal("second Open of a file in use succeeded")
			}
			if took < tc.atLeast || took > tc.atMost {
				t.Fatalf("second Open failed after %v, want between %v and %v", took, tc.atLeast, tc.atMost)
			}
		})
	}
}

func TestReopenAfterCloseSucceeds(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p2kit.db")
	s := open(t, path, &boltstore.Options{Timeout: 100 * time.Millisecond})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, path, &boltstore.Options{Timeout: 100 * time.Millisecond})
}

func TestNewFileHasFileMode(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		mode, want os.FileMode
	}{{0, 0o600}, {0o640, 0o640}} {
		path := filepath.Join(dir, tc.want.String())
		open(t, path, &boltstore.Options{FileMode: tc.mode})
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != tc.want {
			t.Fatalf("FileMode %v: file has mode %v, want %v", tc.mode, got, tc.want)
		}
	}
}

func TestOpenRefusesUnknownFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p2kit.db")
	s := open(t, path, nil)
	s.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("meta")).Put([]byte("format"), []byte{0, 0, 0, 0, 0, 0, 0, 99})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if s, err := boltstore.Open(path, nil); err == nil {
		s.Close()
		t.Fatal("Open of a file in an unknown format succeeded")
	}
}

// The Service hands the Store only hashes of bearer tokens; the Store must
// write nothing else. The clear text must not be in the file, the hash
// (the proof that we look at the right bytes) must.
func TestFileHoldsTokenHashesNotClearText(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p2kit.db")
	s := open(t, path, nil)
	ctx := t.Context()
	fedToken := []byte("federation-token-clear-text-6Qv3xJ0pZ")
	sessToken := []byte("session-token-clear-text-Lw8sKd2Yq")
	now := time.Now()
	fh, sh := sha256.Sum256(fedToken), sha256.Sum256(sessToken)
	if err := s.CreateToken(ctx, p2core.FederationToken{Hash: fh, UserID: 7, FID: "alice@home.example",
		Server: "https://b.example", IssuedAt: now, ExpiresAt: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateSession(ctx, p2core.NewSession{Session: p2core.Session{UserID: 7, SessionID: "laptop", FID: "alice@home.example",
		TokenHash: sh, CreatedAt: now}}, p2core.Limits{MaxSessions: 1}, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range [][]byte{fedToken, sessToken} {
		if bytes.Contains(raw, secret) {
			t.Fatalf("file contains the clear-text token %q", secret)
		}
	}
	for _, h := range [][32]byte{fh, sh} {
		if !bytes.Contains(raw, h[:]) {
			t.Fatalf("file does not contain the token hash %x: the check looks at the wrong bytes", h[:4])
		}
	}
}

// A lone writer must commit at once, not wait for a batching timer (bbolt's
// db.Batch waits 10ms before committing). With NoSync, the fastest of 50
// sequential writes must take well under a timer period, however loaded the
// machine is.
func TestLoneWriterDoesNotWaitForTimer(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "p2kit.db"), &boltstore.Options{NoSync: true})
	fastest := time.Hour
	for i := range 50 {
		start := time.Now()
		if err := s.PutSetting(t.Context(), "k", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		fastest = min(fastest, time.Since(start))
	}
	if fastest > 3*time.Millisecond {
		t.Fatalf("the fastest of 50 lone writes took %v: writes seem to wait for a timer", fastest)
	}
}
