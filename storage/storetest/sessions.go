package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

func sessionCases() []testCase {
	return []testCase{
		{"CreateSessionThenSessionByTokenReturnsIt", testSessionByToken},
		{"SessionByUnknownTokenIsNotFound", testSessionByTokenMissing},
		{"CreateSessionWithTakenSessionIDIsConflict", testCreateSessionDuplicateID},
		{"CreateSessionWithTakenTokenHashIsConflict", testCreateSessionDuplicateHash},
		{"SessionsAreOldestFirstAndOnlyThatUsers", testSessionsOrdered},
		{"SessionsOfUserWithNoneIsEmpty", testSessionsNone},
		{"EndSessionRemovesSessionKeyPackagesAndEndsCurrentCert", testEndSession},
		{"EndSessionIsIdempotentAndAcceptsUnknownSessions", testEndSessionIdempotent},
		{"EndSessionFreesSessionIDAndTokenHash", testEndSessionFrees},
		{"UserIDForFIDCreatesMappingOnceAndKeepsIt", testUserIDForFID},
		{"UserIDForFIDConcurrentCallsGetOneID", testUserIDForFIDConcurrent},
	}
}

func testSessionByToken(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	local := g.session(7, "laptop", base())
	foreign := g.session(8, "phone", base().Add(time.Second))
	foreign.FID = "bob@foreign.example"
	foreign.Home = "https://foreign.example"
	ok(t, s.CreateSession(ctx, local), "CreateSession")
	ok(t, s.CreateSession(ctx, foreign), "CreateSession foreign")
	for _, want := range []p2core.Session{local, foreign} {
		got, err := s.SessionByToken(ctx, want.TokenHash)
		ok(t, err, "SessionByToken")
		sameSession(t, want, got)
	}
}

func testSessionByTokenMissing(t *testing.T, s p2core.Store) {
	var g gen
	_, err := s.SessionByToken(t.Context(), g.hash())
	isErr(t, err, p2core.ErrNotFound, "SessionByToken of an unknown hash")
}

func testCreateSessionDuplicateID(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	first := g.session(7, "laptop", base())
	ok(t, s.CreateSession(ctx, first), "CreateSession")
	dup := g.session(7, "laptop", base().Add(time.Second))
	isErr(t, s.CreateSession(ctx, dup), p2core.ErrConflict, "CreateSession with a taken session ID")
	_, err := s.SessionByToken(ctx, dup.TokenHash)
	isErr(t, err, p2core.ErrNotFound, "SessionByToken of the refused session")
	got, err := s.SessionByToken(ctx, first.TokenHash)
	ok(t, err, "SessionByToken of the first session")
	sameSession(t, first, got)

	// The same session ID is free for another user.
	ok(t, s.CreateSession(ctx, g.session(8, "laptop", base())), "CreateSession of another user with the same session ID")
}

func testCreateSessionDuplicateHash(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	first := g.session(7, "laptop", base())
	ok(t, s.CreateSession(ctx, first), "CreateSession")
	dup := g.session(8, "phone", base())
	dup.TokenHash = first.TokenHash
	isErr(t, s.CreateSession(ctx, dup), p2core.ErrConflict, "CreateSession with a taken token hash")
	ss, err := s.Sessions(ctx, 8)
	ok(t, err, "Sessions")
	count(t, len(ss), 0, "sessions of the refused user")
	got, err := s.SessionByToken(ctx, first.TokenHash)
	ok(t, err, "SessionByToken")
	sameSession(t, first, got)
}

func testSessionsOrdered(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	b := g.session(7, "b", now.Add(2*time.Hour))
	a := g.session(7, "z", now)
	c := g.session(7, "a", now.Add(3*time.Hour))
	for _, ss := range []p2core.Session{b, a, c, g.session(8, "x", now.Add(time.Minute))} {
		ok(t, s.CreateSession(ctx, ss), "CreateSession")
	}
	got, err := s.Sessions(ctx, 7)
	ok(t, err, "Sessions")
	want := []p2core.Session{a, b, c}
	count(t, len(got), len(want), "number of sessions")
	for i := range want {
		sameSession(t, want[i], got[i])
	}
}

func testSessionsNone(t *testing.T, s p2core.Store) {
	got, err := s.Sessions(t.Context(), 7)
	ok(t, err, "Sessions of a user without sessions")
	count(t, len(got), 0, "number of sessions")
}

func testEndSession(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	gone := g.session(7, "gone", now.Add(-time.Hour))
	kept := g.session(7, "kept", now.Add(-time.Hour))
	ok(t, s.CreateSession(ctx, gone), "CreateSession")
	ok(t, s.CreateSession(ctx, kept), "CreateSession")
	goneKPs := g.kps(2, 7, "gone", 1, now.Add(24*time.Hour))
	ok(t, s.AddKeyPackages(ctx, goneKPs, 100, now), "AddKeyPackages")
	ok(t, s.SetLastResort(ctx, g.kp(7, "gone", 1, now.Add(24*time.Hour)), now), "SetLastResort")
	keptKP := g.kp(7, "kept", 1, now.Add(24*time.Hour))
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{keptKP}, 100, now), "AddKeyPackages")
	goneCert := g.cert(7, "gone", now.Add(-time.Hour), now.Add(30*24*time.Hour))
	keptCert := g.cert(7, "kept", now.Add(-time.Minute), now.Add(30*24*time.Hour))
	ok(t, s.PutIDCert(ctx, goneCert), "PutIDCert")
	ok(t, s.PutIDCert(ctx, keptCert), "PutIDCert")

	ok(t, s.EndSession(ctx, 7, "gone", now), "EndSession")

	_, err := s.SessionByToken(ctx, gone.TokenHash)
	isErr(t, err, p2core.ErrNotFound, "SessionByToken of the ended session")
	ss, err := s.Sessions(ctx, 7)
	ok(t, err, "Sessions")
	count(t, len(ss), 1, "sessions left")
	sameSession(t, kept, ss[0])

	wantStatus(t, s, 7, "gone", now, p2core.KeyPackageStatus{})
	got := claimOne(t, s, 7, 0, now)
	sameKP(t, keptKP, got.KeyPackage)
	claimNone(t, s, 7, 0, now)

	_, err = s.CurrentIDCert(ctx, 7, "gone")
	isErr(t, err, p2core.ErrNotFound, "CurrentIDCert of the ended session")
	wantCerts(t, s, 7, now.Add(-time.Microsecond), superseded(goneCert, now), keptCert)
	wantCerts(t, s, 7, now, keptCert)
	wantCerts(t, s, 7, now.Add(-30*time.Minute), superseded(goneCert, now))

	// Removed (never handed out) KeyPackages free their init keys.
	reuse := g.kp(7, "kept", 1, now.Add(24*time.Hour))
	reuse.InitKey = goneKPs[0].InitKey
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{reuse}, 100, now), "AddKeyPackages reusing an init key of an ended session")
}

func testEndSessionIdempotent(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	ok(t, s.EndSession(ctx, 7, "never", base()), "EndSession of an unknown session")
	ss := g.session(7, "laptop", base())
	ok(t, s.CreateSession(ctx, ss), "CreateSession")
	ok(t, s.EndSession(ctx, 7, "laptop", base()), "EndSession")
	ok(t, s.EndSession(ctx, 7, "laptop", base()), "second EndSession")
	got, err := s.Sessions(ctx, 7)
	ok(t, err, "Sessions")
	count(t, len(got), 0, "sessions left")
}

func testEndSessionFrees(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	ss := g.session(7, "laptop", base())
	ok(t, s.CreateSession(ctx, ss), "CreateSession")
	ok(t, s.EndSession(ctx, 7, "laptop", base()), "EndSession")
	ss.CreatedAt = base().Add(time.Hour)
	ok(t, s.CreateSession(ctx, ss), "CreateSession with the ended session's ID and token hash")
	got, err := s.SessionByToken(ctx, ss.TokenHash)
	ok(t, err, "SessionByToken")
	sameSession(t, ss, got)
}

func testUserIDForFID(t *testing.T, s p2core.Store) {
	ctx := t.Context()
	id, err := s.UserIDForFID(ctx, "bob@foreign.example", 1001)
	ok(t, err, "UserIDForFID")
	count(t, int(id), 1001, "first mapping takes the candidate")
	id, err = s.UserIDForFID(ctx, "bob@foreign.example", 1002)
	ok(t, err, "UserIDForFID again")
	count(t, int(id), 1001, "second call keeps the first mapping")
	id, err = s.UserIDForFID(ctx, "carol@foreign.example", 1003)
	ok(t, err, "UserIDForFID other FID")
	count(t, int(id), 1003, "another FID gets its own candidate")
}

func testUserIDForFIDConcurrent(t *testing.T, s p2core.Store) {
	ctx := t.Context()
	ids := make([]p2core.UserID, 100)
	errs := make([]error, 100)
	run(100, func(i int) {
		ids[i], errs[i] = s.UserIDForFID(ctx, "dave@foreign.example", p2core.UserID(5000+i))
	})
	ok(t, errors.Join(errs...), "concurrent UserIDForFID")
	for i, id := range ids {
		if id != ids[0] {
			t.Fatalf("call %d got user %d, call 0 got %d", i, id, ids[0])
		}
	}
	if ids[0] < 5000 || ids[0] >= 5100 {
		t.Fatalf("mapped user %d is none of the candidates", ids[0])
	}
	id, err := s.UserIDForFID(ctx, "dave@foreign.example", 1)
	ok(t, err, "UserIDForFID after the race")
	if id != ids[0] {
		t.Fatalf("mapping changed after the race: %d, want %d", id, ids[0])
	}
}
