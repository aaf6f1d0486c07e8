package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

func certCases() []testCase {
	return []testCase{
		{"PutIDCertThenCurrentIDCertReturnsIt", testPutIDCertCurrent},
		{"CurrentIDCertOfSessionWithoutCertIsNotFound", testCurrentIDCertMissing},
		{"PutIDCertSupersedesPreviousAtNewIssuedAt", testPutIDCertSupersedes},
		{"PutIDCertWithExistingSerialIsConflictAndChangesNothing", testPutIDCertDuplicateSerial},
		{"CurrentIDCertReturnsExpiredCert", testCurrentIDCertExpired},
		{"IDCertsAtHonoursIssueExpiryAndSupersede", testIDCertsAtInstants},
		{"IDCertsAtOfUserWithNoneIsEmpty", testIDCertsAtNone},
		{"IDCertsAtLongAfterHistoryReturnsCurrentByIssue", testIDCertsAtAfterHistory},
		{"PutIDCertUnder100GoroutinesLeavesOneCurrentAndFullHistory", testPutIDCertConcurrent},
	}
}

func testPutIDCertCurrent(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	c := g.cert(7, "laptop", base(), base().Add(30*24*time.Hour))
	in := c
	in.SupersededAt = base().Add(time.Hour) // ignored: a new cert is current
	ok(t, s.PutIDCert(ctx, in), "PutIDCert")
	got, err := s.CurrentIDCert(ctx, 7, "laptop")
	ok(t, err, "CurrentIDCert")
	sameCert(t, c, got)

	// A cert without an MLS signature key round-trips as nil/empty.
	c2 := g.cert(7, "phone", base(), base().Add(time.Hour))
	c2.SignatureKey = nil
	ok(t, s.PutIDCert(ctx, c2), "PutIDCert without SignatureKey")
	got, err = s.CurrentIDCert(ctx, 7, "phone")
	ok(t, err, "CurrentIDCert")
	sameCert(t, c2, got)
}

func testCurrentIDCertMissing(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	_, err := s.CurrentIDCert(ctx, 7, "laptop")
	isErr(t, err, p2core.ErrNotFound, "CurrentIDCert with no certs")
	ok(t, s.PutIDCert(ctx, g.cert(7, "phone", base(), base().Add(time.Hour))), "PutIDCert")
	ok(t, s.PutIDCert(ctx, g.cert(8, "laptop", base(), base().Add(time.Hour))), "PutIDCert")
	_, err = s.CurrentIDCert(ctx, 7, "laptop")
	isErr(t, err, p2core.ErrNotFound, "CurrentIDCert of a session without cert")
}

func testPutIDCertSupersedes(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	c1 := g.cert(7, "laptop", now, now.Add(30*24*time.Hour))
	other := g.cert(7, "phone", now.Add(time.Minute), now.Add(30*24*time.Hour))
	c2 := g.cert(7, "laptop", now.Add(time.Hour), now.Add(31*24*time.Hour))
	for _, c := range []p2core.IDCert{c1, other, c2} {
		ok(t, s.PutIDCert(ctx, c), "PutIDCert")
	}
	got, err := s.CurrentIDCert(ctx, 7, "laptop")
	ok(t, err, "CurrentIDCert")
	sameCert(t, c2, got)
	got, err = s.CurrentIDCert(ctx, 7, "phone")
	ok(t, err, "CurrentIDCert of the other session")
	sameCert(t, other, got)
	wantCerts(t, s, 7, now.Add(30*time.Minute), superseded(c1, c2.IssuedAt), other)
	wantCerts(t, s, 7, c2.IssuedAt, other, c2)
}

func testPutIDCertDuplicateSerial(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	c1 := g.cert(7, "laptop", now, now.Add(30*24*time.Hour))
	ok(t, s.PutIDCert(ctx, c1), "PutIDCert")
	same := g.cert(7, "laptop", now.Add(time.Hour), now.Add(30*24*time.Hour))
	same.Serial = c1.Serial
	isErr(t, s.PutIDCert(ctx, same), p2core.ErrConflict, "PutIDCert with the serial of the session's cert")
	otherSession := g.cert(8, "phone", now.Add(time.Hour), now.Add(30*24*time.Hour))
	otherSession.Serial = c1.Serial
	isErr(t, s.PutIDCert(ctx, otherSession), p2core.ErrConflict, "PutIDCert with a serial of another user's cert")

	got, err := s.CurrentIDCert(ctx, 7, "laptop")
	ok(t, err, "CurrentIDCert")
	sameCert(t, c1, got) // not superseded
	_, err = s.CurrentIDCert(ctx, 8, "phone")
	isErr(t, err, p2core.ErrNotFound, "CurrentIDCert of the refused cert's session")
	wantCerts(t, s, 7, now.Add(2*time.Hour), c1)
	wantCerts(t, s, 8, now.Add(2*time.Hour))
}

func testCurrentIDCertExpired(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	c := g.cert(7, "laptop", base().Add(-48*time.Hour), base().Add(-24*time.Hour))
	ok(t, s.PutIDCert(ctx, c), "PutIDCert")
	got, err := s.CurrentIDCert(ctx, 7, "laptop")
	ok(t, err, "CurrentIDCert of an expired cert")
	sameCert(t, c, got)
}

func testIDCertsAtInstants(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	T := base()
	day := 24 * time.Hour
	c1 := g.cert(7, "laptop", T, T.Add(10*day))
	c2 := g.cert(7, "phone", T.Add(time.Hour), T.Add(2*time.Hour))
	c3 := g.cert(7, "laptop", T.Add(5*day), T.Add(15*day))
	stranger := g.cert(8, "laptop", T, T.Add(10*day))
	for _, c := range []p2core.IDCert{c1, c2, stranger, c3} {
		ok(t, s.PutIDCert(ctx, c), "PutIDCert")
	}
	old := superseded(c1, c3.IssuedAt)
	wantCerts(t, s, 7, T.Add(-time.Microsecond))                     // before any issue
	wantCerts(t, s, 7, T, old)                                       // at issue
	wantCerts(t, s, 7, T.Add(time.Hour), old, c2)                    // both, by IssuedAt
	wantCerts(t, s, 7, T.Add(2*time.Hour-time.Microsecond), old, c2) // just before c2's expiry
	wantCerts(t, s, 7, T.Add(2*time.Hour), old)                      // at c2's expiry
	wantCerts(t, s, 7, T.Add(5*day-time.Microsecond), old)           // just before supersede
	wantCerts(t, s, 7, T.Add(5*day), c3)                             // at supersede
	wantCerts(t, s, 7, T.Add(15*day))                                // at c3's expiry
	wantCerts(t, s, 8, T.Add(time.Hour), stranger)
}

// A store may answer the present from its current certs alone; they must
// still come ordered by IssuedAt, not by session, and leave out what was
// superseded or whose session's cert expired.
func testIDCertsAtAfterHistory(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	T := base()
	day := 24 * time.Hour
	var certs []p2core.IDCert
	for i := range 5 { // "zz" renewed daily: only the last one is current
		certs = append(certs, g.cert(7, "zz", T.Add(time.Duration(i)*day), T.Add(30*day)))
	}
	late := g.cert(7, "aa", T.Add(6*day), T.Add(30*day))
	gone := g.cert(7, "mm", T.Add(time.Hour), T.Add(2*day))
	for _, c := range append(certs, late, gone) {
		ok(t, s.PutIDCert(ctx, c), "PutIDCert")
	}
	wantCerts(t, s, 7, T.Add(10*day), certs[4], late)
	wantCerts(t, s, 7, T.Add(4*day), certs[4])
	wantCerts(t, s, 7, T.Add(3*day), superseded(certs[3], certs[4].IssuedAt))
	wantCerts(t, s, 7, T.Add(30*day))
}

func testIDCertsAtNone(t *testing.T, s p2core.Store) {
	got, err := s.IDCertsAt(t.Context(), 7, base())
	ok(t, err, "IDCertsAt")
	count(t, len(got), 0, "certs of a user without certs")
}

func testPutIDCertConcurrent(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	certs := make([]p2core.IDCert, 100)
	for i := range certs {
		certs[i] = g.cert(7, "laptop", now.Add(time.Duration(i)*time.Second), now.Add(30*24*time.Hour))
	}
	errs := make([]error, 100)
	run(100, func(i int) { errs[i] = s.PutIDCert(ctx, certs[i]) })
	ok(t, errors.Join(errs...), "concurrent PutIDCert")

	cur, err := s.CurrentIDCert(ctx, 7, "laptop")
	ok(t, err, "CurrentIDCert")
	if !cur.SupersededAt.IsZero() {
		t.Fatalf("current cert has SupersededAt %v", cur.SupersededAt)
	}
	// After the last issue, only a cert without SupersededAt is valid:
	// exactly one means every other one was superseded.
	valid, err := s.IDCertsAt(ctx, 7, now.Add(200*time.Second))
	ok(t, err, "IDCertsAt")
	count(t, len(valid), 1, "certs valid after all issues")
	if valid[0].Serial != cur.Serial {
		t.Fatalf("valid cert %s is not the current cert %s", valid[0].Serial, cur.Serial)
	}
	// Every cert is kept: its serial is taken.
	for _, c := range certs {
		c2 := g.cert(9, "x", now, now.Add(time.Hour))
		c2.Serial = c.Serial
		isErr(t, s.PutIDCert(ctx, c2), p2core.ErrConflict, "PutIDCert with the serial of a raced cert")
	}
}
