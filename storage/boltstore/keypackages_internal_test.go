package boltstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/p2kit/p2kit/p2core"
)

// Once a session's expired KeyPackages are purged, the next write to its
// header tightens the NotAfter bound again, so claims stop walking the
// queue to count expired ones.
func TestNotAfterBoundHealsAfterPurge(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	h := time.Hour
	s, err := Open(filepath.Join(t.TempDir(), "p2kit.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kps := []p2core.KeyPackage{fixtureKP(7, "a", 1, 1, now.Add(h)), fixtureKP(7, "a", 1, 2, now.Add(5*h)), fixtureKP(7, "a", 1, 3, now.Add(6*h))}
	if err := s.AddKeyPackages(ctx, kps, 100, now); err != nil {
		t.Fatal(err)
	}
	bound := func() []byte {
		var b []byte
		err := s.db.View(func(tx *bolt.Tx) error {
			sp, err := openSupply(tx, kpBase(userSessionKey(7, "a")))
			b = sp.h.minAfter
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if got := bound(); string(got) != string(timeKey(now.Add(h))) {
		t.Fatalf("bound after upload %x, want the first KeyPackage's NotAfter", got)
	}
	later := now.Add(2 * h)
	if n, err := s.PurgeExpiredKeyPackages(ctx, later); err != nil || n != 1 {
		t.Fatalf("purge: %d, %v", n, err)
	}
	if got, err := s.ClaimKeyPackages(ctx, 7, 0, later, p2core.SessionEnds{}); err != nil || len(got) != 1 || got[0].Remaining != 1 {
		t.Fatalf("claim: %+v, %v", got, err)
	}
	if got := bound(); string(got) != string(timeKey(now.Add(6*h))) {
		t.Fatalf("bound after purge and claim %x, want the last KeyPackage's NotAfter %x", got, timeKey(now.Add(6*h)))
	}
}

// queueKeys returns the keys of every record in the session's queue,
// spent or not, and the session's header.
func queueKeys(t *testing.T, s *Store, user p2core.UserID, sid p2core.SessionID) (keys []string, h header) {
	t.Helper()
	err := s.db.View(func(tx *bolt.Tx) error {
		sp, err := openSupply(tx, kpBase(userSessionKey(user, sid)))
		if err != nil {
			return err
		}
		h = sp.h
		prefix := kpKey(sp.base, tagQueue)
		c := sp.b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, string(k))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys, h
}

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "p2kit.db")
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

// claimInitKeys claims once for user at now and returns the init keys of
// what came back.
func claimInitKeys(t *testing.T, s *Store, user p2core.UserID, now time.Time) []string {
	t.Helper()
	got, err := s.ClaimKeyPackages(t.Context(), user, 0, now, p2core.SessionEnds{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range got {
		out = append(out, string(c.InitKey))
	}
	return out
}

func ik(n uint64) string { return string(fixtureKP(0, "", 0, n, time.Time{}).InitKey) }

// A claim moves the head and leaves the record; the record is spent for
// every read (counts, duplicate init keys, later claims, a reopened
// file), and the session's next upload deletes it.
func TestClaimLeavesSpentRecordForNextUpload(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	later := now.Add(24 * time.Hour)
	s, path := openTemp(t)
	kps := []p2core.KeyPackage{fixtureKP(7, "a", 1, 1, later), fixtureKP(7, "a", 1, 2, later), fixtureKP(7, "a", 1, 3, later)}
	if err := s.AddKeyPackages(ctx, kps, 100, now); err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint64{1, 2} {
		if got := claimInitKeys(t, s, 7, now); len(got) != 1 || got[0] != ik(want) {
			t.Fatalf("claim %d: got %d KeyPackages, want KP %d", i, len(got), want)
		}
	}
	keys, h := queueKeys(t, s, 7, "a")
	if len(keys) != 3 || h.count != 1 || len(h.heads) != 1 || h.heads[0].suite != 1 {
		t.Fatalf("after two claims: %d records, header %+v; want 3 records (2 spent), count 1, one head", len(keys), h)
	}
	if st, err := s.KeyPackageStatus(ctx, 7, "a", now); err != nil || st.Available != 1 {
		t.Fatalf("status %+v, %v; want 1 available", st, err)
	}
	// A handed-out init key stays blocked while its record is spent.
	if err := s.AddKeyPackages(ctx, []p2core.KeyPackage{fixtureKP(7, "a", 1, 1, later)}, 100, now); !errors.Is(err, p2core.ErrDuplicateKeyPackage) {
		t.Fatalf("re-upload of a claimed init key: %v, want ErrDuplicateKeyPackage", err)
	}
	// The head survives a reopen: nothing is handed out twice.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := s2.AddKeyPackages(ctx, []p2core.KeyPackage{fixtureKP(7, "a", 1, 4, later)}, 100, now); err != nil {
		t.Fatal(err)
	}
	keys, h = queueKeys(t, s2, 7, "a")
	if len(keys) != 2 || h.count != 2 {
		t.Fatalf("after an upload: %d records, count %d; want the 2 unspent ones", len(keys), h.count)
	}
	for i, want := range []uint64{3, 4} {
		if got := claimInitKeys(t, s2, 7, now); len(got) != 1 || got[0] != ik(want) {
			t.Fatalf("claim %d after reopen: got %d KeyPackages, want KP %d", i, len(got), want)
		}
	}
	// The last regular KeyPackage's claim clears the queue and the header.
	if keys, h = queueKeys(t, s2, 7, "a"); len(keys) != 0 || len(h.heads) != 0 {
		t.Fatalf("drained: %d records, heads %+v", len(keys), h.heads)
	}
	if got := claimInitKeys(t, s2, 7, now); len(got) != 0 {
		t.Fatalf("claim from a drained session: %d KeyPackages", len(got))
	}
}

// A claim that skips expired KeyPackages deletes the one it hands out and
// keeps the head before the expired ones, which a caller with an earlier
// now may still be given.
func TestClaimPastExpiredKeepsHead(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	h := time.Hour
	s, _ := openTemp(t)
	kps := []p2core.KeyPackage{fixtureKP(7, "a", 1, 1, now.Add(h)), fixtureKP(7, "a", 1, 2, now.Add(5*h)), fixtureKP(7, "a", 1, 3, now.Add(5*h))}
	if err := s.AddKeyPackages(ctx, kps, 100, now); err != nil {
		t.Fatal(err)
	}
	if got := claimInitKeys(t, s, 7, now.Add(2*h)); len(got) != 1 || got[0] != ik(2) {
		t.Fatal("claim after KP 1 expired did not hand out KP 2")
	}
	if keys, hd := queueKeys(t, s, 7, "a"); len(keys) != 2 || len(hd.heads) != 0 {
		t.Fatalf("%d records, heads %+v; want KP 2 deleted and no head", len(keys), hd.heads)
	}
	for _, want := range []uint64{1, 3} {
		if got := claimInitKeys(t, s, 7, now); len(got) != 1 || got[0] != ik(want) {
			t.Fatalf("claim at the earlier now: want KP %d", want)
		}
	}
}

// Spent records go when they expire even if the session never uploads
// again, and ending a session keeps their init keys blocked.
func TestSpentRecordsPurgedAndKeptBlocked(t *testing.T) {
	ctx := t.Context()
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	h := time.Hour
	s, _ := openTemp(t)
	add := func(sid p2core.SessionID, n ...uint64) {
		var kps []p2core.KeyPackage
		for _, i := range n {
			kps = append(kps, fixtureKP(7, sid, 1, i, now.Add(time.Duration(i)*h)))
		}
		if err := s.AddKeyPackages(ctx, kps, 100, now); err != nil {
			t.Fatal(err)
		}
	}
	add("a", 1, 5)
	if got := claimInitKeys(t, s, 7, now); len(got) != 1 || got[0] != ik(1) {
		t.Fatal("first claim did not hand out KP 1")
	}
	if n, err := s.PurgeExpiredKeyPackages(ctx, now.Add(2*h)); err != nil || n != 0 {
		t.Fatalf("purge: %d, %v; want 0 (the only expired one was handed out)", n, err)
	}
	if keys, _ := queueKeys(t, s, 7, "a"); len(keys) != 1 {
		t.Fatalf("after purge %d records, want KP 5 only", len(keys))
	}
	// KP 1's init key expired and was forgotten: it may come back.
	if err := s.AddKeyPackages(ctx, []p2core.KeyPackage{fixtureKP(7, "b", 1, 1, now.Add(9*h))}, 100, now.Add(2*h)); err != nil {
		t.Fatalf("re-upload after expiry: %v", err)
	}

	add("c", 10, 11)
	if got := claimInitKeys(t, s, 7, now); len(got) != 3 {
		t.Fatalf("claim over three sessions: %d", len(got))
	}
	if err := s.EndSession(ctx, 7, "c", now); err != nil {
		t.Fatal(err)
	}
	if err := s.AddKeyPackages(ctx, []p2core.KeyPackage{fixtureKP(7, "d", 1, 10, now.Add(20*h))}, 100, now); !errors.Is(err, p2core.ErrDuplicateKeyPackage) {
		t.Fatalf("handed-out init key of an ended session: %v, want ErrDuplicateKeyPackage", err)
	}
	if err := s.AddKeyPackages(ctx, []p2core.KeyPackage{fixtureKP(7, "d", 1, 11, now.Add(20*h))}, 100, now); err != nil {
		t.Fatalf("init key of an ended session's unclaimed KeyPackage: %v", err)
	}
}

// fixtureKP is a KeyPackage whose init key is sha256(n).
func fixtureKP(user p2core.UserID, sid p2core.SessionID, suite uint16, n uint64, notAfter time.Time) p2core.KeyPackage {
	var seed [8]byte
	binary.BigEndian.PutUint64(seed[:], n)
	ik := sha256.Sum256(seed[:])
	data := append([]byte("kp-"), ik[:]...)
	ref := sha256.Sum256(data)
	return p2core.KeyPackage{UserID: user, SessionID: sid, CipherSuite: suite, Ref: ref[:], InitKey: ik[:], Data: data,
		NotAfter: notAfter, UploadedAt: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)}
}
