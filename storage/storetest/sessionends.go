package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// sessionEndCases check that a claim leaves out, in its own atomic step,
// the sessions that p2core.SessionEnds says have ended by themselves.
func sessionEndCases() []testCase {
	return []testCase{
		{"ClaimLeavesOutSessionsEndedByEachBoundAndChangesNothingOfThem", testClaimLeavesOutEndedSessions},
		{"ClaimWithZeroSessionEndsLeavesOutOnlyForeignSessionsWithoutCert", testClaimZeroSessionEnds},
	}
}

// endsFixture is one user (7) with a session ended by each bound of
// endsAt(now), and sessions that last. Every session holds two regular
// KeyPackages (NotAfter now+1h) and a last resort (NotAfter now+48h).
type endsFixture struct {
	now  time.Time
	live []p2core.SessionID // by ID
	// ended are the sessions endsAt(now) ends, by ID: created before its
	// CreatedBy; last used before its UsedBy; foreign with a current cert
	// expiring at its CertExpiredBy (an earlier, superseded cert would
	// still be valid); foreign with no cert.
	ended []p2core.SessionID
	all   []p2core.SessionID // by ID
}

// endsAt is the SessionEnds the fixture is built around: sessions end
// created an hour before now, unused for ten minutes, or with a cert
// expired at now.
func endsAt(now time.Time) p2core.SessionEnds {
	return p2core.SessionEnds{CreatedBy: now.Add(-time.Hour), UsedBy: now.Add(-10 * time.Minute), CertExpiredBy: now}
}

func newEndsFixture(t *testing.T, s p2core.Store) *endsFixture {
	var g gen
	ctx := t.Context()
	now := base()
	f := &endsFixture{now: now}
	supply := func(sid p2core.SessionID) ([]p2core.KeyPackage, *p2core.KeyPackage) {
		lr := g.kp(7, sid, 1, now.Add(48*time.Hour))
		return g.kps(2, 7, sid, 1, now.Add(time.Hour)), &lr
	}
	local := func(sid p2core.SessionID, created time.Time) {
		kps, lr := supply(sid)
		_, err := s.CreateSession(ctx, p2core.NewSession{Session: g.session(7, sid, created), KeyPackages: kps, LastResort: lr}, roomy, now)
		ok(t, err, fmt.Sprintf("CreateSession %s", sid))
	}
	foreign := func(sid p2core.SessionID, cert *p2core.IDCert) {
		ss := g.session(0, sid, now.Add(-5*time.Minute))
		ss.FID, ss.Home = "dave@foreign.example", "foreign.example"
		kps, lr := supply(sid)
		got, err := s.CreateSession(ctx, p2core.NewSession{Session: ss, ForeignCandidate: 7, Cert: cert, KeyPackages: kps, LastResort: lr}, roomy, now)
		ok(t, err, fmt.Sprintf("CreateSession %s", sid))
		count(t, int(got.UserID), 7, "the foreign FID's user")
	}
	cert := func(issued, expires time.Duration) *p2core.IDCert {
		c := g.cert(7, "", now.Add(issued), now.Add(expires))
		return &c
	}

	// Over by its lifetime: created at CreatedBy (used a minute ago, so
	// no other bound ends it).
	local("a-created", now.Add(-time.Hour))
	ok(t, s.TouchSession(ctx, 7, "a-created", now.Add(-time.Minute)), "TouchSession a-created")
	// Over by idleness: created 30 min ago, last used 10 min ago.
	local("b-idle", now.Add(-30*time.Minute))
	ok(t, s.TouchSession(ctx, 7, "b-idle", now.Add(-10*time.Minute)), "TouchSession b-idle")
	// Over by its current cert, which expires at now; the one it
	// superseded would still be valid.
	foreign("c-cert-expired", cert(-5*time.Minute, time.Hour))
	ok(t, s.PutIDCert(ctx, g.cert(7, "c-cert-expired", now.Add(-time.Minute), now)), "PutIDCert c-cert-expired")
	// Over: foreign without a current cert.
	foreign("d-no-cert", nil)
	// Lasts: created 50 min ago (CreatedAt alone would be idle), used 5
	// min ago.
	local("e-used", now.Add(-50*time.Minute))
	ok(t, s.TouchSession(ctx, 7, "e-used", now.Add(-5*time.Minute)), "TouchSession e-used")
	// Lasts: foreign whose first cert has expired but whose current one
	// has not.
	foreign("f-cert-renewed", cert(-5*time.Minute, -time.Minute))
	ok(t, s.PutIDCert(ctx, g.cert(7, "f-cert-renewed", now.Add(-2*time.Minute), now.Add(time.Hour))), "PutIDCert f-cert-renewed")
	// Lasts: KeyPackages of a session the Store has no record of (an
	// embedder's own session).
	kps, lr := supply("g-no-record")
	ok(t, s.AddKeyPackages(ctx, kps, roomy.MaxKeyPackages, now), "AddKeyPackages g-no-record")
	ok(t, s.SetLastResort(ctx, *lr, now), "SetLastResort g-no-record")

	f.ended = []p2core.SessionID{"a-created", "b-idle", "c-cert-expired", "d-no-cert"}
	f.live = []p2core.SessionID{"e-used", "f-cert-renewed", "g-no-record"}
	f.all = append(slices.Clone(f.ended), f.live...)
	return f
}

// claimedSessions claims from user 7 at at with ends and returns the
// sessions that gave something, checking that each gave a last resort
// when lastResort is set and a regular KeyPackage (one left) otherwise.
func claimedSessions(t *testing.T, s p2core.Store, at time.Time, ends p2core.SessionEnds, lastResort bool) []p2core.SessionID {
	t.Helper()
	got, err := s.ClaimKeyPackages(t.Context(), 7, 0, at, ends)
	ok(t, err, "ClaimKeyPackages")
	var out []p2core.SessionID
	for _, c := range got {
		out = append(out, c.SessionID)
		if c.LastResort != lastResort {
			t.Fatalf("session %s: LastResort %v, want %v", c.SessionID, c.LastResort, lastResort)
		}
		if !lastResort {
			count(t, c.Remaining, 1, fmt.Sprintf("Remaining of %s", c.SessionID))
		}
	}
	return out
}

func sameSessions(t *testing.T, what string, got, want []p2core.SessionID) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: sessions %q, want %q", what, got, want)
	}
}

func testClaimLeavesOutEndedSessions(t *testing.T, s p2core.Store) {
	ctx := t.Context()
	f := newEndsFixture(t, s)
	ends := endsAt(f.now)
	sameSessions(t, "claim", claimedSessions(t, s, f.now, ends, false), f.live)
	for _, sid := range f.ended {
		wantStatus(t, s, 7, sid, f.now, p2core.KeyPackageStatus{Available: 2, LastResort: true})
	}
	// Two hours on, every regular KeyPackage has expired: the live
	// sessions give their last resorts, the ended ones still nothing (the
	// bounds are the same), and their last resorts are not marked used.
	later := f.now.Add(2 * time.Hour)
	sameSessions(t, "claim of last resorts", claimedSessions(t, s, later, ends, true), f.live)
	for _, sid := range f.ended {
		wantStatus(t, s, 7, sid, f.now, p2core.KeyPackageStatus{Available: 2, LastResort: true})
	}
	for _, sid := range f.live {
		wantStatus(t, s, 7, sid, f.now, p2core.KeyPackageStatus{Available: 1, LastResort: true, LastResortUsed: true})
	}
	// The claim skipped the ended sessions; it did not end them.
	ss, err := s.Sessions(ctx, 7)
	ok(t, err, "Sessions")
	count(t, len(ss), len(f.all)-1, "stored sessions (all but the one without a record)")
	c, err := s.CurrentIDCert(ctx, 7, "c-cert-expired")
	ok(t, err, "CurrentIDCert of the session whose cert expired")
	if !c.SupersededAt.IsZero() {
		t.Fatalf("the expired session's cert was superseded at %v", c.SupersededAt)
	}
}

func testClaimZeroSessionEnds(t *testing.T, s p2core.Store) {
	f := newEndsFixture(t, s)
	var want []p2core.SessionID
	for _, sid := range f.all {
		if sid != "d-no-cert" {
			want = append(want, sid)
		}
	}
	slices.Sort(want)
	sameSessions(t, "claim", claimedSessions(t, s, f.now, p2core.SessionEnds{}, false), want)
	wantStatus(t, s, 7, "d-no-cert", f.now, p2core.KeyPackageStatus{Available: 2, LastResort: true})
}
