package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
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
		{"ForeignLoginMapsFIDOnceAndKeepsIt", testForeignLoginMapsFID},
		{"ConcurrentForeignLoginsOfOneFIDGetOneUserID", testForeignLoginConcurrent},
		{"CreateSessionStoresCertKeyPackagesAndLastResort", testCreateSessionStoresEverything},
		{"FailedCreateSessionLeavesNothing", testCreateSessionAllOrNothing},
		{"SessionCapHoldsUnderConcurrentCreates", testSessionCap},
		{"TouchSessionRecordsTheLatestUseOnly", testTouchSession},
	}
}

func testSessionByToken(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	local := g.session(7, "laptop", base())
	foreign := g.session(8, "phone", base().Add(time.Second))
	foreign.FID = "bob@foreign.example"
	foreign.Home = "https://foreign.example"
	ok(t, create(ctx, s, local), "CreateSession")
	ok(t, create(ctx, s, foreign), "CreateSession foreign")
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
	ok(t, create(ctx, s, first), "CreateSession")
	dup := g.session(7, "laptop", base().Add(time.Second))
	isErr(t, create(ctx, s, dup), p2core.ErrConflict, "CreateSession with a taken session ID")
	_, err := s.SessionByToken(ctx, dup.TokenHash)
	isErr(t, err, p2core.ErrNotFound, "SessionByToken of the refused session")
	got, err := s.SessionByToken(ctx, first.TokenHash)
	ok(t, err, "SessionByToken of the first session")
	sameSession(t, first, got)

	// The same session ID is free for another user.
	ok(t, create(ctx, s, g.session(8, "laptop", base())), "CreateSession of another user with the same session ID")
}

func testCreateSessionDuplicateHash(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	first := g.session(7, "laptop", base())
	ok(t, create(ctx, s, first), "CreateSession")
	dup := g.session(8, "phone", base())
	dup.TokenHash = first.TokenHash
	isErr(t, create(ctx, s, dup), p2core.ErrConflict, "CreateSession with a taken token hash")
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
		ok(t, create(ctx, s, ss), "CreateSession")
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
	ok(t, create(ctx, s, gone), "CreateSession")
	ok(t, create(ctx, s, kept), "CreateSession")
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
	ok(t, create(ctx, s, ss), "CreateSession")
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
	ok(t, create(ctx, s, ss), "CreateSession")
	ok(t, s.EndSession(ctx, 7, "laptop", base()), "EndSession")
	ss.CreatedAt = base().Add(time.Hour)
	ok(t, create(ctx, s, ss), "CreateSession with the ended session's ID and token hash")
	got, err := s.SessionByToken(ctx, ss.TokenHash)
	ok(t, err, "SessionByToken")
	sameSession(t, ss, got)
}

func testForeignLoginMapsFID(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	id, err := login(ctx, s, &g, "bob@foreign.example", 1001, "a", base())
	ok(t, err, "first login")
	count(t, int(id), 1001, "first mapping takes the candidate")
	id, err = login(ctx, s, &g, "bob@foreign.example", 1002, "b", base())
	ok(t, err, "second login")
	count(t, int(id), 1001, "second login keeps the first mapping")
	id, err = login(ctx, s, &g, "carol@foreign.example", 1003, "c", base())
	ok(t, err, "login of another FID")
	count(t, int(id), 1003, "another FID gets its own candidate")
	ss, err := s.Sessions(ctx, 1001)
	ok(t, err, "Sessions")
	count(t, len(ss), 2, "sessions of the mapped user")
	if ss[0].FID != "bob@foreign.example" || ss[0].Home != "foreign.example" {
		t.Fatalf("stored session %+v, want bob's with his home", ss[0])
	}
}

func testForeignLoginConcurrent(t *testing.T, s p2core.Store) {
	ctx := t.Context()
	const n = 100
	var mu sync.Mutex
	g := &gen{}
	sessions := make([]p2core.Session, n)
	for i := range sessions {
		sessions[i] = g.session(0, p2core.SessionID(fmt.Sprintf("s%03d", i)), base())
		sessions[i].FID, sessions[i].Home = "dave@foreign.example", "foreign.example"
	}
	ids := make([]p2core.UserID, n)
	errs := make([]error, n)
	run(n, func(i int) {
		mu.Lock()
		c := g.cert(0, "", base(), base().Add(time.Hour))
		kps := g.kps(2, 0, "", 1, base().Add(time.Hour))
		mu.Unlock()
		got, err := s.CreateSession(ctx, p2core.NewSession{Session: sessions[i], ForeignCandidate: p2core.UserID(5000 + i),
			Cert: &c, KeyPackages: kps}, roomy, base())
		ids[i], errs[i] = got.UserID, err
	})
	ok(t, errors.Join(errs...), "concurrent logins")
	for i, id := range ids {
		if id != ids[0] {
			t.Fatalf("login %d got user %d, login 0 got %d", i, id, ids[0])
		}
	}
	if ids[0] < 5000 || ids[0] >= 5000+n {
		t.Fatalf("mapped user %d is none of the candidates", ids[0])
	}
	ss, err := s.Sessions(ctx, ids[0])
	ok(t, err, "Sessions")
	count(t, len(ss), n, "sessions of the one user")
	certs, err := s.IDCertsAt(ctx, ids[0], base())
	ok(t, err, "IDCertsAt")
	count(t, len(certs), n, "current certs of the user")
	res, err := s.ClaimKeyPackages(ctx, ids[0], 0, base(), p2core.SessionEnds{})
	ok(t, err, "ClaimKeyPackages")
	count(t, len(res), n, "claimed KeyPackages, one per session")
	id, err := login(ctx, s, g, "dave@foreign.example", 1, "after", base())
	ok(t, err, "login after the race")
	count(t, int(id), int(ids[0]), "mapping after the race")
}

func testCreateSessionStoresEverything(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	ss := g.session(0, "new", now)
	ss.FID, ss.Home = "erin@foreign.example", "foreign.example"
	c := g.cert(99, "other", now, now.Add(time.Hour))
	kps := g.kps(3, 99, "other", 1, now.Add(time.Hour))
	lr := g.kp(99, "other", 1, now.Add(time.Hour))
	got, err := s.CreateSession(ctx, p2core.NewSession{Session: ss, ForeignCandidate: 4004, Cert: &c, KeyPackages: kps, LastResort: &lr}, roomy, now)
	ok(t, err, "CreateSession")
	ss.UserID = 4004
	sameSession(t, ss, got)
	byTok, err := s.SessionByToken(ctx, ss.TokenHash)
	ok(t, err, "SessionByToken")
	sameSession(t, ss, byTok)
	c.UserID, c.SessionID = 4004, "new"
	cur, err := s.CurrentIDCert(ctx, 4004, "new")
	ok(t, err, "CurrentIDCert")
	sameCert(t, c, cur)
	wantStatus(t, s, 4004, "new", now, p2core.KeyPackageStatus{Available: 3, LastResort: true})
	for _, want := range kps {
		want.UserID, want.SessionID = 4004, "new"
		sameKP(t, want, claimOne(t, s, 4004, 0, now).KeyPackage)
	}
	res := claimOne(t, s, 4004, 0, now)
	if !res.LastResort {
		t.Fatal("the fourth claim did not hand out the last resort")
	}
}

// testCreateSessionAllOrNothing makes CreateSession fail at each of its
// steps and checks that nothing of it remains: no session, no FID
// mapping, no cert, no KeyPackage, no init key held.
func testCreateSessionAllOrNothing(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	// What the failing logins collide with.
	taken := g.session(50, "taken", now)
	ok(t, create(ctx, s, taken), "CreateSession")
	takenCert := g.cert(50, "taken", now, now.Add(time.Hour))
	ok(t, s.PutIDCert(ctx, takenCert), "PutIDCert")
	takenKP := g.kp(50, "taken", 1, now.Add(time.Hour))
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{takenKP}, 100, now), "AddKeyPackages")

	type attempt struct {
		name  string
		edit  func(n *p2core.NewSession, lim *p2core.Limits)
		want  error
		count int
	}
	attempts := []attempt{
		{"TokenHashInUse", func(n *p2core.NewSession, _ *p2core.Limits) { n.TokenHash = taken.TokenHash }, p2core.ErrConflict, 0},
		{"SerialInUse", func(n *p2core.NewSession, _ *p2core.Limits) { n.Cert.Serial = takenCert.Serial }, p2core.ErrConflict, 0},
		{"InitKeyOfStoredKeyPackage", func(n *p2core.NewSession, _ *p2core.Limits) { n.KeyPackages[1].InitKey = takenKP.InitKey }, p2core.ErrDuplicateKeyPackage, 0},
		{"LastResortInitKeyStored", func(n *p2core.NewSession, _ *p2core.Limits) { n.LastResort.InitKey = takenKP.InitKey }, p2core.ErrDuplicateKeyPackage, 0},
		{"LastResortSharesInitKeyWithKeyPackage", func(n *p2core.NewSession, _ *p2core.Limits) { n.LastResort.InitKey = n.KeyPackages[0].InitKey }, p2core.ErrDuplicateKeyPackage, 0},
		{"KeyPackageCap", func(_ *p2core.NewSession, lim *p2core.Limits) { lim.MaxKeyPackages = 2 }, p2core.ErrTooManyKeyPackages, 0},
		{"SessionCap", func(_ *p2core.NewSession, lim *p2core.Limits) { lim.MaxSessions = 1 }, p2core.ErrTooManySessions, 1},
	}
	for i, a := range attempts {
		t.Run(a.name, func(t *testing.T) {
			fid := p2core.FID(fmt.Sprintf("u%d@foreign.example", i))
			if a.count > 0 {
				_, err := login(ctx, s, &g, fid, p2core.UserID(7000+i), "first", now)
				ok(t, err, "first login")
			}
			ss := g.session(0, "s", now)
			ss.FID, ss.Home = fid, "foreign.example"
			c := g.cert(0, "", now, now.Add(time.Hour))
			kps := g.kps(3, 0, "", 1, now.Add(time.Hour))
			lr := g.kp(0, "", 1, now.Add(time.Hour))
			n := p2core.NewSession{Session: ss, ForeignCandidate: p2core.UserID(6000 + i), Cert: &c, KeyPackages: kps, LastResort: &lr}
			lim := roomy
			a.edit(&n, &lim)
			_, err := s.CreateSession(ctx, n, lim, now)
			isErr(t, err, a.want, "CreateSession")

			user := p2core.UserID(6000 + i)
			if a.count > 0 {
				user = p2core.UserID(7000 + i)
			}
			sessions, err := s.Sessions(ctx, user)
			ok(t, err, "Sessions")
			count(t, len(sessions), a.count, "sessions after the failed login")
			if n.TokenHash != taken.TokenHash {
				_, err = s.SessionByToken(ctx, n.TokenHash)
				isErr(t, err, p2core.ErrNotFound, "SessionByToken of the failed login")
			}
			if c.Serial != takenCert.Serial {
				_, err = s.IDCertBySerial(ctx, c.Serial)
				isErr(t, err, p2core.ErrNotFound, "IDCertBySerial of the failed login's cert")
			}
			wantStatus(t, s, user, "s", now, p2core.KeyPackageStatus{})
			var fresh [][]byte
			for _, kp := range append(kps, lr) {
				if !bytes.Equal(kp.InitKey, takenKP.InitKey) {
					fresh = append(fresh, kp.InitKey)
				}
			}
			idx, err := s.InitKeyInUse(ctx, fresh, now)
			ok(t, err, "InitKeyInUse")
			count(t, idx, -1, "init keys of the failed login held")
			if a.count == 0 {
				// The FID was not mapped: a new login takes its own candidate.
				id, err := login(ctx, s, &g, fid, p2core.UserID(8000+i), "later", now)
				ok(t, err, "later login")
				count(t, int(id), 8000+i, "user of the later login (a failed login left a FID mapping)")
			}
		})
	}
	// The collided-with data is untouched.
	got, err := s.SessionByToken(ctx, taken.TokenHash)
	ok(t, err, "SessionByToken")
	sameSession(t, taken, got)
	sameKP(t, takenKP, claimOne(t, s, 50, 0, now).KeyPackage)
}

func testSessionCap(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	lim := p2core.Limits{MaxSessions: 5, MaxKeyPackages: 100}
	const n = 20
	sessions := make([]p2core.Session, n)
	for i := range sessions {
		sessions[i] = g.session(7, p2core.SessionID(fmt.Sprintf("s%02d", i)), base())
	}
	errs := make([]error, n)
	run(n, func(i int) {
		_, errs[i] = s.CreateSession(ctx, p2core.NewSession{Session: sessions[i]}, lim, base())
	})
	created := 0
	for _, err := range errs {
		switch {
		case err == nil:
			created++
		case !errors.Is(err, p2core.ErrTooManySessions):
			t.Fatalf("CreateSession beyond the cap: %v, want ErrTooManySessions", err)
		}
	}
	count(t, created, 5, "sessions created by 20 concurrent calls with a cap of 5")
	ss, err := s.Sessions(ctx, 7)
	ok(t, err, "Sessions")
	count(t, len(ss), 5, "sessions stored")
	_, err = s.CreateSession(ctx, p2core.NewSession{Session: g.session(8, "other", base())}, lim, base())
	ok(t, err, "CreateSession of another user")
	ok(t, s.EndSession(ctx, 7, ss[0].SessionID, base()), "EndSession")
	_, err = s.CreateSession(ctx, p2core.NewSession{Session: g.session(7, "again", base())}, lim, base())
	ok(t, err, "CreateSession after one ended")
}

func testTouchSession(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	a := g.session(7, "laptop", base())
	a.LastUsedAt = base().Add(time.Hour) // CreateSession ignores it
	b := g.session(7, "phone", base().Add(time.Second))
	ok(t, create(ctx, s, a), "CreateSession")
	ok(t, create(ctx, s, b), "CreateSession")
	a.LastUsedAt = time.Time{}
	got, err := s.SessionByToken(ctx, a.TokenHash)
	ok(t, err, "SessionByToken")
	sameSession(t, a, got)

	used := base().Add(time.Minute)
	ok(t, s.TouchSession(ctx, 7, "laptop", used), "TouchSession")
	ok(t, s.TouchSession(ctx, 7, "laptop", used.Add(-30*time.Second)), "TouchSession with an earlier time")
	a.LastUsedAt = used
	got, err = s.SessionByToken(ctx, a.TokenHash)
	ok(t, err, "SessionByToken")
	sameSession(t, a, got)
	list, err := s.Sessions(ctx, 7)
	ok(t, err, "Sessions")
	if len(list) != 2 {
		t.Fatalf("Sessions: %d, want 2", len(list))
	}
	sameSession(t, a, list[0])
	sameSession(t, b, list[1]) // untouched: no last use

	// Unknown and ended sessions are no error, and touching does not
	// bring an ended one back.
	ok(t, s.TouchSession(ctx, 7, "nowhere", used), "TouchSession of an unknown session")
	ok(t, s.EndSession(ctx, 7, "laptop", used), "EndSession")
	ok(t, s.TouchSession(ctx, 7, "laptop", used.Add(time.Minute)), "TouchSession of an ended session")
	_, err = s.SessionByToken(ctx, a.TokenHash)
	isErr(t, err, p2core.ErrNotFound, "SessionByToken of the ended, touched session")
}
