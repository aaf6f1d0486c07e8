package boltstore

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/p2kit/p2kit/p2core"
)

// fixtureKP is a KeyPackage of testdata/format1.db: init key sha256(n).
func fixtureKP(user p2core.UserID, sid p2core.SessionID, suite uint16, n uint64, notAfter time.Time) p2core.KeyPackage {
	var seed [8]byte
	binary.BigEndian.PutUint64(seed[:], n)
	ik := sha256.Sum256(seed[:])
	data := append([]byte("kp-"), ik[:]...)
	ref := sha256.Sum256(data)
	return p2core.KeyPackage{UserID: user, SessionID: sid, CipherSuite: suite, Ref: ref[:], InitKey: ik[:], Data: data,
		NotAfter: notAfter, UploadedAt: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// testdata/format1.db was written by the format-1 code (commit 7b4a563)
// at now = 2031-01-01T00:00Z, with h = one hour:
//
//	AddKeyPackages(7/laptop: KP 1 suite 1 until now+h, KP 2 suite 1 until +2h, KP 3 suite 2 until +3h)
//	SetLastResort(7/laptop: KP 4 suite 1 until +5h)
//	SetLastResort(7/phone: KP 5 suite 1 until +5h)
//	AddKeyPackages(8/x: KP 6 until +h, KP 7 until +2h)
//	ClaimKeyPackages(7) -> KP 1 from laptop, last resort KP 5 from phone
//	CreateToken(hash sha256({i}), user 7 for i = 0, 2 and 8 for i = 1, expiring at now+5m)
//	PutIDCert(user 7: serial ...0001 laptop at now, ...0002 laptop at now+h, ...0003 phone at now+2h; all until now+24h)
//
// Open must convert it so that every promise holds as if it had never
// been converted.
func TestOpenConvertsFormat1(t *testing.T) {
	defer func(n int) { sessionsPerStep = n }(sessionsPerStep)
	for _, step := range []int{1, 2, 1000} {
		sessionsPerStep = step
		t.Run(fmt.Sprintf("sessions-per-step=%d", step), func(t *testing.T) { testOpenConvertsFormat1(t, nil) })
	}
	// A conversion cut short by a crash after its first step goes on at
	// the next Open.
	sessionsPerStep = 1000
	t.Run("resumed", func(t *testing.T) {
		testOpenConvertsFormat1(t, func(path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			err = db.Update(func(tx *bolt.Tx) error {
				done, err := convertStep(tx, 1)
				if err == nil && done {
					err = errors.New("one step of one session finished the conversion")
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	})
}

func testOpenConvertsFormat1(t *testing.T, interrupted func(path string)) {
	ctx := t.Context()
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	h := time.Hour
	raw, err := os.ReadFile("testdata/format1.db")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "p2kit.db")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if interrupted != nil {
		interrupted(path)
	}
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte(v1KeyPackages)) != nil {
			return errors.New("the format-1 bucket is still there")
		}
		if v := tx.Bucket([]byte(bMeta)).Get([]byte(kFormat)); binary.BigEndian.Uint64(v) != formatVersion {
			return errors.New("format not updated")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Reopening a converted file is a no-op.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path, nil); err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// Tokens are as they were: user 7's two go with DeleteUserTokens,
	// user 8's redeems.
	if n, err := s.DeleteUserTokens(ctx, 7); err != nil || n != 2 {
		t.Fatalf("DeleteUserTokens(7) = %d, %v; want 2", n, err)
	}
	for i, want := range []error{p2core.ErrTokenInvalid, nil, p2core.ErrTokenInvalid} {
		if _, err := s.RedeemToken(ctx, sha256.Sum256([]byte{byte(i)}), "https://b.example", now); !errors.Is(err, want) {
			t.Fatalf("redeem token %d: %v, want %v", i, err, want)
		}
	}

	// Cert history: the superseded mark the conversion sets must not hide
	// the first laptop cert before its replacement, nor show it after.
	for _, tc := range []struct {
		at   time.Time
		want []string
	}{
		{now, []string{"1"}},
		{now.Add(h), []string{"2"}},
		{now.Add(3 * h), []string{"2", "3"}},
	} {
		got, err := s.IDCertsAt(ctx, 7, tc.at)
		if err != nil || len(got) != len(tc.want) {
			t.Fatalf("IDCertsAt(%s) = %d certs, %v; want %v", tc.at, len(got), err, tc.want)
		}
		for i, c := range got {
			if c.Serial[len(c.Serial)-1:] != tc.want[i] {
				t.Fatalf("IDCertsAt(%s)[%d] = %s, want serial ending %s", tc.at, i, c.Serial, tc.want[i])
			}
		}
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		if mark := tx.Bucket([]byte(bCertCurrent)).Get(u64(7)); string(mark) != string(timeKey(now.Add(h))) {
			return fmt.Errorf("user 7's superseded mark is %x, want the replacement time", mark)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	status := func(u p2core.UserID, sid p2core.SessionID, want p2core.KeyPackageStatus) {
		t.Helper()
		got, err := s.KeyPackageStatus(ctx, u, sid, now)
		if err != nil || got != want {
			t.Fatalf("status %d/%s: %+v %v, want %+v", u, sid, got, err, want)
		}
	}
	status(7, "laptop", p2core.KeyPackageStatus{Available: 2, LastResort: true})
	status(7, "phone", p2core.KeyPackageStatus{LastResort: true, LastResortUsed: true})
	status(8, "x", p2core.KeyPackageStatus{Available: 2})
	status(7, "none", p2core.KeyPackageStatus{})

	// Init keys stay taken: stored (2), the handed-out KP 1 and the used
	// last resort KP 5 until their NotAfter. KP 1's is free after it.
	for _, n := range []uint64{1, 2, 5} {
		err := s.AddKeyPackages(ctx, []p2core.KeyPackage{fixtureKP(9, "y", 1, n, now.Add(h))}, 100, now)
		if !errors.Is(err, p2core.ErrDuplicateKeyPackage) {
			t.Fatalf("init key of KP %d: %v, want ErrDuplicateKeyPackage", n, err)
		}
	}
	if err := s.AddKeyPackages(ctx, []p2core.KeyPackage{fixtureKP(9, "y", 1, 1, now.Add(3*h))}, 100, now.Add(h)); err != nil {
		t.Fatalf("KP 1's init key after its NotAfter: %v", err)
	}

	// Sequence numbers go on: a new KeyPackage of laptop comes after the
	// old ones.
	if err := s.AddKeyPackages(ctx, []p2core.KeyPackage{fixtureKP(7, "laptop", 1, 10, now.Add(4*h))}, 100, now); err != nil {
		t.Fatal(err)
	}
	claim := func(u p2core.UserID, suite uint16, want ...uint64) {
		t.Helper()
		got, err := s.ClaimKeyPackages(ctx, u, suite, now)
		if err != nil || len(got) != len(want) {
			t.Fatalf("claim %d: %d results, %v; want %d", u, len(got), err, len(want))
		}
		for i, n := range want {
			ik := fixtureKP(0, "", 0, n, now).InitKey
			if string(got[i].InitKey) != string(ik) {
				t.Fatalf("claim %d result %d (%s): not KP %d", u, i, got[i].SessionID, n)
			}
		}
	}
	claim(7, 0, 2, 5)  // laptop's oldest left, phone's last resort again
	claim(7, 0, 3, 5)  // then the suite-2 one
	claim(7, 0, 10, 5) // then the new one
	claim(7, 0, 4, 5)  // then laptop's last resort
	status(7, "laptop", p2core.KeyPackageStatus{LastResort: true, LastResortUsed: true})
	claim(8, 1, 6)
	claim(8, 1, 7)
	claim(8, 1)

	// The purge finds everything through the init-key index.
	if _, err := s.PurgeExpiredKeyPackages(ctx, now.Add(6*h)); err != nil {
		t.Fatal(err)
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		for _, name := range []string{bKP, bKPSessions, bInitKeys, bInitKeyExpiry} {
			if k, _ := tx.Bucket([]byte(name)).Cursor().First(); k != nil {
				return errors.New("bucket " + name + " still holds records")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
