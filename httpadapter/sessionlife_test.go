package httpadapter_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/memstore"
)

func TestLocalSessionPastItsTTLGets401(t *testing.T) {
	e := newEnv(t, func(c *p2core.Config) { c.SessionTTL = time.Hour })
	alice := e.login(101, "alice", false)
	b := certified(t, e, alice)
	if err := alice.c.UploadKeyPackages(ctx, build(t, b, 2)); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(59 * time.Minute)
	if _, err := alice.c.KeyPackageStatus(ctx); err != nil {
		t.Fatalf("a minute before its TTL: %v", err)
	}
	carol := e.login(103, "carol", false) // created later: still valid below
	e.clock.Add(time.Minute)
	_, err := alice.c.KeyPackageStatus(ctx)
	apiErr(t, err, 401, "P2CORE_UNAUTHORIZED")
	// The expired session drops out of claims, as an ended one does.
	got, err := carol.c.ClaimKeyPackages(ctx, 101, 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("claiming an expired session's KeyPackages: %d handed out, %v", len(got), err)
	}
	sessions, err := e.svc.Sessions(ctx, p2core.Principal{UserID: 101, FID: "alice@home.test", SessionID: alice.session})
	if err != nil || len(sessions) != 0 {
		t.Fatalf("the expired session is still listed: %d, %v", len(sessions), err)
	}
}

func TestExpiredSessionDropsOutOfClaimsBeforeAnyoneAuthenticatesWithIt(t *testing.T) {
	e := newEnv(t, func(c *p2core.Config) { c.SessionTTL = time.Hour })
	alice := e.login(101, "alice", false)
	if err := alice.c.UploadKeyPackages(ctx, build(t, certified(t, e, alice), 1)); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(30 * time.Minute)
	alice2 := e.login(101, "alice", false)
	if err := alice2.c.UploadKeyPackages(ctx, build(t, certified(t, e, alice2), 1)); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(30 * time.Minute)
	carol := e.login(103, "carol", false)
	got, err := carol.c.ClaimKeyPackages(ctx, 101, 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %d KeyPackages, %v; want only the live session's", len(got), err)
	}
}

func TestSessionTTLDefaultsToThirtyDays(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(101, "alice", false)
	for day := 1; day < 30; day++ {
		e.clock.Add(24 * time.Hour)
		if _, err := alice.c.KeyPackageStatus(ctx); err != nil {
			t.Fatalf("day %d: %v", day, err)
		}
	}
	e.clock.Add(24 * time.Hour)
	_, err := alice.c.KeyPackageStatus(ctx)
	apiErr(t, err, 401, "P2CORE_UNAUTHORIZED")
}

// foreignPair is pair with home A issuing ID-Certs that live certLife.
func foreignPair(t *testing.T, certLife time.Duration) (a, b *fedServer) {
	clk := newClock()
	a = newFedServer(t, "a.localhost", clk, func(c *p2core.Config) { c.IDCertLifetime = certLife })
	b = newFedServer(t, "b.localhost", clk)
	b.knows(a)
	a.knows(b)
	return a, b
}

func TestForeignSessionEndsWhenItsIDCertExpires(t *testing.T) {
	a, b := foreignPair(t, 2*time.Minute)
	alice := a.traveller(101, "alice")
	resp, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: alice.token(t, b.url), IDCert: alice.cert, KeyPackages: build(t, alice.kp, 1)})
	if err != nil {
		t.Fatal(err)
	}
	aliceB := b.anon().WithToken(resp.SessionToken)
	b.clock.Add(2*time.Minute - time.Second)
	if _, err := aliceB.KeyPackageStatus(ctx); err != nil {
		t.Fatalf("a second before the cert expires: %v", err)
	}
	bob := b.login(201, "bob")
	b.clock.Add(time.Second)
	_, err = aliceB.KeyPackageStatus(ctx)
	apiErr(t, err, 401, "P2CORE_UNAUTHORIZED")
	if got, err := bob.c.ClaimKeyPackages(ctx, resp.Extra.UserID, 0); err != nil || len(got) != 0 {
		t.Fatalf("claim after the session's cert expired: %d, %v", len(got), err)
	}
}

func TestForeignSessionContinuesWithANewerIDCert(t *testing.T) {
	a, b := foreignPair(t, 2*time.Minute)
	alice := a.traveller(101, "alice")
	resp, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: alice.token(t, b.url), IDCert: alice.cert})
	if err != nil {
		t.Fatal(err)
	}
	aliceB := b.anon().WithToken(resp.SessionToken)
	b.clock.Add(time.Minute)
	cert2, err := alice.c.IssueIDCert(ctx, clientKey(t, "alice@a.localhost").Armored) // expires at 3 min
	if err != nil {
		t.Fatal(err)
	}
	if _, err := aliceB.PresentIDCert(ctx, cert2); err != nil {
		t.Fatal(err)
	}
	b.clock.Add(2*time.Minute - time.Second)
	if _, err := aliceB.KeyPackageStatus(ctx); err != nil {
		t.Fatalf("past the first cert's expiry, within the newer one's: %v", err)
	}
	b.clock.Add(time.Second)
	_, err = aliceB.KeyPackageStatus(ctx)
	apiErr(t, err, 401, "P2CORE_UNAUTHORIZED")
}

func TestIdleSessionEndsAfterSevenDaysByDefault(t *testing.T) {
	e := newEnv(t, nil)
	busy := e.login(101, "alice", false)
	idle := e.login(102, "bob", false)
	b := certified(t, e, idle)
	if err := idle.c.UploadKeyPackages(ctx, build(t, b, 1)); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(6 * 24 * time.Hour)
	for _, u := range []*user{idle, busy} { // both used on day 6
		if _, err := u.c.KeyPackageStatus(ctx); err != nil {
			t.Fatalf("after 6 idle days: %v", err)
		}
	}
	for day := 7; day <= 13; day++ {
		e.clock.Add(24 * time.Hour)
		if _, err := busy.c.KeyPackageStatus(ctx); err != nil {
			t.Fatalf("day %d of a session used daily: %v", day, err)
		}
	}
	// bob's last use was day 6: by day 13 the idle bound has passed, his
	// KeyPackages drop out of claims and his token answers 401.
	if got, err := busy.c.ClaimKeyPackages(ctx, 102, 0); err != nil || len(got) != 0 {
		t.Fatalf("claim of an idle-expired session: %d, %v", len(got), err)
	}
	_, err := idle.c.KeyPackageStatus(ctx)
	apiErr(t, err, 401, "P2CORE_UNAUTHORIZED")
}

// touchCounter counts TouchSession calls reaching the Store.
type touchCounter struct {
	p2core.Store
	mu      sync.Mutex
	touches int
}

func (s *touchCounter) TouchSession(ctx context.Context, user p2core.UserID, sid p2core.SessionID, at time.Time) error {
	s.mu.Lock()
	s.touches++
	s.mu.Unlock()
	return s.Store.TouchSession(ctx, user, sid, at)
}

func TestSessionUseIsWrittenAtMostOnceAMinute(t *testing.T) {
	clk := newClock()
	store := &touchCounter{Store: memstore.New()}
	svc, err := p2core.NewService(store, p2core.Config{Domain: "home.test", Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := svc.CreateSession(ctx, 101, "alice@home.test")
	if err != nil {
		t.Fatal(err)
	}
	// 600 requests over 10 minutes, one a second.
	for range 600 {
		if _, err := svc.AuthenticateSession(ctx, tok); err != nil {
			t.Fatal(err)
		}
		clk.Add(time.Second)
	}
	if store.touches < 9 || store.touches > 10 {
		t.Fatalf("%d last-use writes for 600 requests over 10 minutes, want one a minute", store.touches)
	}
}

// readCounter counts the reads of sessions and certs reaching the Store.
type readCounter struct {
	p2core.Store
	mu             sync.Mutex
	sessions, cert int
}

func (s *readCounter) Sessions(ctx context.Context, user p2core.UserID) ([]p2core.Session, error) {
	s.mu.Lock()
	s.sessions++
	s.mu.Unlock()
	return s.Store.Sessions(ctx, user)
}

func (s *readCounter) CurrentIDCert(ctx context.Context, user p2core.UserID, sid p2core.SessionID) (p2core.IDCert, error) {
	s.mu.Lock()
	s.cert++
	s.mu.Unlock()
	return s.Store.CurrentIDCert(ctx, user, sid)
}

func TestClaimSkipsAnExpiredSessionInTheStoreWithoutEndingIt(t *testing.T) {
	clk := newClock()
	store := &readCounter{Store: memstore.New()}
	svc, err := p2core.NewService(store, p2core.Config{Domain: "home.test", Now: clk.Now, SessionTTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_, old, err := svc.CreateSession(ctx, 101, "alice@home.test")
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(30 * time.Minute)
	_, live, err := svc.CreateSession(ctx, 101, "alice@home.test")
	if err != nil {
		t.Fatal(err)
	}
	for i, sid := range []p2core.SessionID{old.SessionID, live.SessionID} {
		kp := p2core.KeyPackage{UserID: 101, SessionID: sid, CipherSuite: 1, Ref: []byte{byte(i)}, InitKey: []byte{byte(i)},
			Data: []byte{byte(i)}, NotAfter: clk.Now().Add(24 * time.Hour), UploadedAt: clk.Now()}
		if err := store.AddKeyPackages(ctx, []p2core.KeyPackage{kp}, 10, clk.Now()); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(30 * time.Minute) // the first session's hour is over
	carol := p2core.Principal{UserID: 103, FID: "carol@home.test", SessionID: "carol"}
	got, err := svc.ClaimKeyPackages(ctx, carol, 101, 0)
	if err != nil || len(got) != 1 || got[0].SessionID != live.SessionID {
		t.Fatalf("claim: %d KeyPackages, %v; want only the live session's", len(got), err)
	}
	if store.sessions != 0 || store.cert != 0 {
		t.Fatalf("the claim read %d session lists and %d certs; the Store's claim decides alone", store.sessions, store.cert)
	}
	// Skipped, not ended: its KeyPackage stays until something ends it.
	if st, err := store.KeyPackageStatus(ctx, 101, old.SessionID, clk.Now()); err != nil || st.Available != 1 {
		t.Fatalf("the expired session's supply after the claim: %+v, %v", st, err)
	}
	if _, err := svc.Sessions(ctx, p2core.Principal{UserID: 101, FID: "alice@home.test", SessionID: live.SessionID}); err != nil {
		t.Fatal(err)
	}
	if st, err := store.KeyPackageStatus(ctx, 101, old.SessionID, clk.Now()); err != nil || st.Available != 0 {
		t.Fatalf("the expired session's supply once Sessions ended it: %+v, %v", st, err)
	}
}
