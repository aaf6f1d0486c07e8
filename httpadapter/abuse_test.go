package httpadapter_test

// The attack suite of issue 15: each attack an adversarial review ran
// against the server, bounded by counting work, never by timing it.

import (
	"context"
	"crypto/elliptic"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/broker"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/p2core/mls"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

// TestVictimHearsOfIntruderAfterTenThousandClaims: an intruder logs in as
// the victim while her session is offline, then 10,000 claims against her
// hand out her last resort, each emitting LOW_KEY_PACKAGES for her
// session. When the session reconnects it is still sent the intruder's
// NEW_SESSION (before, 280 claims flushed it out of a 256-event buffer),
// and one LOW_KEY_PACKAGES, the latest.
func TestVictimHearsOfIntruderAfterTenThousandClaims(t *testing.T) {
	const claims = 10_000
	events := broker.New(broker.Options{})
	e := newEnv(t, func(c *p2core.Config) { c.Events = events })
	victim := e.login(101, "alice", false)
	if err := victim.c.SetLastResort(ctx, build(t, certified(t, e, victim), 1)[0]); err != nil {
		t.Fatal(err)
	}
	// The victim's session was connected, and went offline.
	sub, cancel := context.WithCancel(ctx)
	drainNow(events.Subscribe(sub, victim.id, victim.session, 0))
	cancel()

	intruder := e.login(101, "alice", false)
	claimer := p2core.Principal{UserID: 102, FID: "bob@home.test", SessionID: "s"}
	for i := range claims {
		got, err := e.svc.ClaimKeyPackages(ctx, claimer, victim.id, 0)
		if err != nil || len(got) != 1 || !got[0].LastResort {
			t.Fatalf("claim %d: %+v, %v", i, got, err)
		}
	}

	n := map[p2core.EventType]int{}
	var newSession string
	for _, d := range drainNow(events.Subscribe(context.Background(), victim.id, victim.session, 0)) {
		n[d.Type]++
		if d.Type == p2core.EventNewSession {
			newSession = string(d.Data)
		}
	}
	if n[p2core.EventNewSession] != 1 || !strings.Contains(newSession, string(intruder.session)) {
		t.Fatalf("after %d claims the victim's session reconnects to %v without the intruder's NEW_SESSION", claims, n)
	}
	if n[p2core.EventLowKeyPackages] != 1 {
		t.Fatalf("%d LOW_KEY_PACKAGES kept for one session, want the latest only", n[p2core.EventLowKeyPackages])
	}
}

// drainNow returns what ch holds right now.
func drainNow(ch <-chan broker.Delivery) []broker.Delivery {
	var out []broker.Delivery
	for {
		select {
		case d, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, d)
		default:
			return out
		}
	}
}

// TestFreshSessionsGetNoMoreClaimsThanOne: with the default limits, one
// requester claims against a victim with 200 KeyPackages until refused,
// then logs in ten more times. The fresh sessions get no claim at all
// (before, limits were per session and ten logins drained all 200).
func TestFreshSessionsGetNoMoreClaimsThanOne(t *testing.T) {
	frozen := &clock{t: time.Unix(1000, 0)}
	e := newEnvOpts(t, nil, httpadapter.Options{Limiter: httpadapter.NewTokenBuckets(frozen.Now)})
	victim := e.login(101, "alice", false)
	b := certified(t, e, victim)
	vp := p2core.Principal{UserID: victim.id, FID: victim.fid, SessionID: victim.session}
	for range 2 {
		if err := e.svc.UploadKeyPackages(ctx, vp, build(t, b, 100)); err != nil {
			t.Fatal(err)
		}
	}
	claimUntilRefused := func(u *user) int {
		n := 0
		for {
			got, err := u.c.ClaimKeyPackages(ctx, victim.id, 0)
			if err != nil {
				apiErr(t, err, 429, "P2CORE_RATE_LIMITED")
				return n
			}
			n += len(got)
		}
	}
	one := claimUntilRefused(e.login(102, "bob", false))
	if one == 0 || one >= 200 {
		t.Fatalf("one session claimed %d of 200", one)
	}
	more := 0
	for range 10 {
		more += claimUntilRefused(e.login(102, "bob", false))
	}
	if more != 0 {
		t.Fatalf("ten fresh sessions of the same requester claimed %d more after the first's %d", more, one)
	}
	if st, err := e.svc.KeyPackageStatus(ctx, vp); err != nil || st.Available != 200-one {
		t.Fatalf("victim has %d left (%v), want %d", st.Available, err, 200-one)
	}
}

// countingLimiter is a Limiter that admits everything and sums the units
// charged per key prefix (the part before ':'), so tests count the work a
// request was charged for.
type countingLimiter struct {
	mu    sync.Mutex
	units map[string]int
	inner httpadapter.Limiter
}

func newCountingLimiter(inner httpadapter.Limiter) *countingLimiter {
	return &countingLimiter{units: map[string]int{}, inner: inner}
}

func (c *countingLimiter) Allow(key string, rate httpadapter.Rate, n int) (bool, time.Duration) {
	ok, wait := c.inner.Allow(key, rate, n)
	if ok {
		prefix, _, _ := strings.Cut(key, ":")
		c.mu.Lock()
		c.units[prefix] += n
		c.mu.Unlock()
	}
	return ok, wait
}

func (c *countingLimiter) charged(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.units[prefix]
}

// TestSignatureWorkIsChargedPerUserBySuiteBeforeVerifying: an upload is
// charged mls.VerifyCost per KeyPackage to the user's SignatureWork
// budget once its cheap checks pass; a batch with a malformed KeyPackage
// anywhere is charged nothing; and a user whose budget is spent is
// refused 429 before any signature is verified, whichever session asks.
func TestSignatureWorkIsChargedPerUserBySuiteBeforeVerifying(t *testing.T) {
	frozen := &clock{t: time.Unix(1000, 0)}
	lim := newCountingLimiter(httpadapter.NewTokenBuckets(frozen.Now))
	e := newEnvOpts(t, nil, httpadapter.Options{Limiter: lim, RateLimits: httpadapter.RateLimits{SignatureWork: httpadapter.Rate{PerSecond: 1, Burst: 30}}})
	alice := e.login(101, "alice", false)
	b := certified(t, e, alice)

	// A malformed KeyPackage at the end: refused 400, nothing charged or
	// verified.
	bad := append(build(t, b, 20), []byte{0, 1, 0, 1})
	apiErr(t, alice.c.UploadKeyPackages(ctx, bad), 400, "P2CORE_INVALID_KEYPACKAGE")
	if lim.charged("w") != 0 {
		t.Fatalf("a batch refused by a cheap check was charged %d units", lim.charged("w"))
	}
	if err := alice.c.UploadKeyPackages(ctx, build(t, b, 20)); err != nil {
		t.Fatal(err)
	}
	if lim.charged("w") != 20*mls.VerifyCost(1) {
		t.Fatalf("20 Ed25519 KeyPackages charged %d units, want 20", lim.charged("w"))
	}
	// 10 units left: a new session of the same user cannot upload 11.
	other := e.login(101, "alice", false)
	ob := certified(t, e, other)
	apiErr(t, other.c.UploadKeyPackages(ctx, build(t, ob, 11)), 429, "P2CORE_RATE_LIMITED")
	if err := other.c.UploadKeyPackages(ctx, build(t, ob, 10)); err != nil {
		t.Fatalf("10 units left, 10 refused: %v", err)
	}
}

// TestForeignLoginsAreLimitedPerHomeDomain: route 16 counts logins per
// verified home domain, before the federation token is redeemed, so a
// refused login leaves its token usable; another home is not affected.
func TestForeignLoginsAreLimitedPerHomeDomain(t *testing.T) {
	clk := newClock()
	a, b, c := newFedServer(t, "a.localhost", clk), newFedServer(t, "b.localhost", clk), newFedServer(t, "c.localhost", clk)
	b.knows(a)
	b.knows(c)
	a.knows(b)
	c.knows(b)
	// A second front for B's Service, with a tight per-home limit.
	frozen := &clock{t: time.Unix(1000, 0)}
	front := httptest.NewServer(httpadapter.New(b.svc, httpadapter.Options{
		RateLimits: httpadapter.RateLimits{ForeignLogin: httpadapter.Rate{PerSecond: 1, Burst: 2}},
		Limiter:    httpadapter.NewTokenBuckets(frozen.Now)}))
	t.Cleanup(front.Close)
	anon := &httpadapter.Client{BaseURL: front.URL}

	for i := range 2 {
		tr := a.traveller(p2core.UserID(101+i), "user"+strconv.Itoa(i))
		if _, err := anon.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tr.token(t, b.url), IDCert: tr.cert}); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	tr := a.traveller(103, "third")
	tok := tr.token(t, b.url)
	_, err := anon.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: tr.cert})
	apiErr(t, err, 429, "P2CORE_RATE_LIMITED")
	if _, err := a.anon().RedeemToken(ctx, tok, b.url); err != nil {
		t.Fatalf("the refused login spent its token: %v", err)
	}
	other := c.traveller(201, "carol")
	if _, err := anon.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: other.token(t, b.url), IDCert: other.cert}); err != nil {
		t.Fatalf("another home is limited too: %v", err)
	}
}

// TestEventStreamsAreCappedPerSessionAndPerUser: one token opened 1,000
// /events streams before; now a session gets MaxStreamsPerSession and a
// user MaxStreamsPerUser, and one more is refused 429 with Retry-After.
func TestEventStreamsAreCappedPerSessionAndPerUser(t *testing.T) {
	e := newEnv(t, nil)
	h := httpadapter.New(e.svc, httpadapter.Options{
		Authenticator:        httpadapter.SessionAuthenticator{Service: e.svc},
		RateLimits:           httpadapter.RateLimits{Disabled: true},
		MaxStreamsPerSession: 2, MaxStreamsPerUser: 3,
	})
	srv := httptest.NewServer(h.EventStream(broker.New(broker.Options{})))
	t.Cleanup(srv.Close)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	open := func(u *user) (int, http.Header) {
		t.Helper()
		req, _ := http.NewRequestWithContext(sctx, "GET", srv.URL, nil)
		req.Header.Set("Authorization", "Bearer "+u.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 {
			resp.Body.Close()
		}
		return resp.StatusCode, resp.Header
	}
	a1 := e.login(101, "alice", false)
	a2 := e.login(101, "alice", false)
	a3 := e.login(101, "alice", false)
	var got []int
	for _, u := range []*user{a1, a1, a1, a2, a3} {
		status, hdr := open(u)
		got = append(got, status)
		if status == 429 {
			if n, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || n < 1 {
				t.Fatalf("429 without Retry-After: %q", hdr.Get("Retry-After"))
			}
		}
	}
	// a1: 2 streams then refused (per session); a2: the user's third;
	// a3: refused (per user).
	if want := []int{200, 200, 429, 200, 429}; !slices.Equal(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
	if status, _ := open(e.login(102, "bob", false)); status != 200 {
		t.Fatalf("another user's stream: %d", status)
	}
}

// signatureCounter counts the Service's signature verifications by kind
// (Config.SignatureChecks).
type signatureCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *signatureCounter) count(kind string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[kind]++
}

func (c *signatureCounter) get(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[kind]
}

// p521Builder gives u an ID-Cert for a new P-521 key at its server and
// returns a builder of KeyPackages of suite 5 signed by that key.
func p521Builder(t *testing.T, u *user, now func() time.Time) *mlstest.Builder {
	t.Helper()
	key, err := idcerttest.NewECDSAClientKey(string(u.fid), elliptic.P521())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.c.IssueIDCert(ctx, key.Armored); err != nil {
		t.Fatal(err)
	}
	b := mlstest.NewECDSA(key.Signer)
	b.Now = now
	b.Identity = []byte(u.fid)
	return b
}

// TestGarbageTokenWithHundredP521KeyPackagesVerifiesNoKeyPackage: route 16
// with a valid P-521 ID-Cert, a garbage federation token and 100 valid
// P-521 KeyPackages is refused 404 P2CORE_TOKEN_INVALID after one ID-Cert
// verification, with no KeyPackage signature verified and no signature
// work charged (before: both signatures of all 100 were verified first,
// 293 ms of CPU). The same request with a good token verifies and charges
// them.
func TestGarbageTokenWithHundredP521KeyPackagesVerifiesNoKeyPackage(t *testing.T) {
	clk := newClock()
	var sigs signatureCounter
	lim := newCountingLimiter(httpadapter.NewTokenBuckets(clk.Now))
	a := newFedServer(t, "a.localhost", clk)
	b := newFedServerWith(t, "b.localhost", clk, httpadapter.Options{Limiter: lim}, func(c *p2core.Config) { c.SignatureChecks = sigs.count })
	b.knows(a)
	a.knows(b)
	alice := a.login(101, "alice")
	kps := build(t, p521Builder(t, alice, clk.Now), 100)
	cert, err := alice.c.UserIDCerts(ctx, alice.id, time.Time{})
	if err != nil || len(cert) != 1 {
		t.Fatalf("alice's cert: %d, %v", len(cert), err)
	}

	garbage := strings.Repeat("x", 43)
	_, err = b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: garbage, IDCert: cert[0], KeyPackages: kps})
	apiErr(t, err, 404, "P2CORE_TOKEN_INVALID")
	if n := sigs.get("keypackage"); n != 0 || lim.charged("w") != 0 {
		t.Fatalf("a garbage token cost %d KeyPackage verifications and %d units of signature work, want none", n, lim.charged("w"))
	}
	if n := sigs.get("id_cert"); n != 1 {
		t.Fatalf("%d ID-Cert verifications, want 1", n)
	}

	// The counters count: a good token with two of the KeyPackages
	// verifies and charges both.
	tok, err := alice.c.IssueToken(ctx, b.url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: cert[0], KeyPackages: kps[:2]}); err != nil {
		t.Fatal(err)
	}
	if n := sigs.get("keypackage"); n != 2 || lim.charged("w") != 2*mls.VerifyCost(5) {
		t.Fatalf("a good login verified %d KeyPackages, charged %d units; want 2 and %d", n, lim.charged("w"), 2*mls.VerifyCost(5))
	}
}

// TestReuploadOfKnownKeyPackagesIsRefusedBeforeAnySignatureCheck: route 12
// re-uploading stored P-521 KeyPackages (20 here, for the test's time; the
// refusal does not depend on the number) is refused 409
// P2CORE_DUPLICATE_KEYPACKAGE after one Store lookup, with no signature
// verified and none charged (before: 492 ms of CPU for 100 P-521 ones);
// so is a batch with one known KeyPackage among fresh ones.
func TestReuploadOfKnownKeyPackagesIsRefusedBeforeAnySignatureCheck(t *testing.T) {
	var sigs signatureCounter
	frozen := &clock{t: time.Unix(1000, 0)}
	lim := newCountingLimiter(httpadapter.NewTokenBuckets(frozen.Now))
	e := newEnvOpts(t, func(c *p2core.Config) { c.SignatureChecks = sigs.count }, httpadapter.Options{Limiter: lim})
	alice := e.login(101, "alice", false)
	b := p521Builder(t, alice, e.clock.Now)
	kps := build(t, b, 20)
	if err := alice.c.UploadKeyPackages(ctx, kps); err != nil {
		t.Fatal(err)
	}
	verified, charged := sigs.get("keypackage"), lim.charged("w")
	if verified != 20 || charged != 20*mls.VerifyCost(5) {
		t.Fatalf("first upload: %d verified, %d charged", verified, charged)
	}
	apiErr(t, alice.c.UploadKeyPackages(ctx, kps), 409, "P2CORE_DUPLICATE_KEYPACKAGE")
	apiErr(t, alice.c.UploadKeyPackages(ctx, append(build(t, b, 2), kps[10])), 409, "P2CORE_DUPLICATE_KEYPACKAGE")
	if n, c := sigs.get("keypackage"), lim.charged("w"); n != verified || c != charged {
		t.Fatalf("a re-upload verified %d and charged %d more, want none", n-verified, c-charged)
	}
}

// TestThousandLoginsOfOneUserStayWithinTheSessionCap: 1,000 logins of one
// user (before: 1,900 raised the server's RSS from 13.7 to 48 MB) leave
// Config.MaxSessionsPerUser sessions stored; the rest are refused 409
// P2CORE_TOO_MANY_SESSIONS and leave nothing, not even an event; and the
// first session reconnects to one NEW_SESSION per other stored session.
// What memory the logins hold is so bounded by the cap (sessions) and by
// broker.Options.Security (events kept; see p2core/broker's
// TestThousandLoginsOfOneUserKeepBrokerMemoryBounded for 1,000 sessions).
func TestThousandLoginsOfOneUserStayWithinTheSessionCap(t *testing.T) {
	events := broker.New(broker.Options{})
	e := newEnv(t, func(c *p2core.Config) { c.Events = events })
	refused := 0
	for range 1000 {
		_, _, err := e.svc.CreateSession(ctx, 101, "alice@home.test")
		if errors.Is(err, p2core.ErrTooManySessions) {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	sessions, err := e.store.Sessions(ctx, 101)
	if err != nil {
		t.Fatal(err)
	}
	if len(sessions) != p2core.DefaultMaxSessionsPerUser || refused != 1000-p2core.DefaultMaxSessionsPerUser {
		t.Fatalf("1,000 logins stored %d sessions and refused %d; want the cap of %d stored", len(sessions), refused, p2core.DefaultMaxSessionsPerUser)
	}
	got := drainNow(events.Subscribe(context.Background(), 101, sessions[0].SessionID, 0))
	if len(got) != p2core.DefaultMaxSessionsPerUser-1 {
		t.Fatalf("the first session reconnects to %d events, want %d NEW_SESSION (one per other stored session)", len(got), p2core.DefaultMaxSessionsPerUser-1)
	}
}

// TestKeyPackageCapIsPerUserNotPerSession: the cap counts a user's
// KeyPackages across all her sessions, so logging in again does not
// multiply it (before: 1,000 per session).
func TestKeyPackageCapIsPerUserNotPerSession(t *testing.T) {
	e := newEnv(t, func(c *p2core.Config) { c.MaxKeyPackagesPerUser = 5 })
	first := e.login(101, "alice", false)
	if err := first.c.UploadKeyPackages(ctx, build(t, certified(t, e, first), 3)); err != nil {
		t.Fatal(err)
	}
	second := e.login(101, "alice", false)
	b := certified(t, e, second)
	apiErr(t, second.c.UploadKeyPackages(ctx, build(t, b, 3)), 409, "P2CORE_TOO_MANY_KEYPACKAGES")
	if err := second.c.UploadKeyPackages(ctx, build(t, b, 2)); err != nil {
		t.Fatalf("2 more within the user's cap of 5: %v", err)
	}
}
