package httpadapter_test

import (
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/memstore"
)

func TestTokenBucketsRefillAtTheRate(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	tb := httpadapter.NewTokenBuckets(c.Now)
	rate := httpadapter.Rate{PerSecond: 2, Burst: 3}
	for i := 0; i < 3; i++ {
		if ok, _ := tb.Allow("k", rate, 1); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, wait := tb.Allow("k", rate, 1)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("4th = %v, wait %v; want refused, 500ms", ok, wait)
	}
	if ok, _ := tb.Allow("other", rate, 1); !ok {
		t.Fatal("another key shares the bucket")
	}
	c.Add(500 * time.Millisecond)
	if ok, _ := tb.Allow("k", rate, 1); !ok {
		t.Fatal("not refilled after 1/rate")
	}
	if ok, _ := tb.Allow("k", rate, 1); ok {
		t.Fatal("refilled more than one token in 500ms")
	}
	c.Add(time.Hour)
	for i := 0; i < 3; i++ {
		if ok, _ := tb.Allow("k", rate, 1); !ok {
			t.Fatalf("after an hour, request %d refused: the bucket must be full (and no fuller)", i)
		}
	}
	if ok, _ := tb.Allow("k", rate, 1); ok {
		t.Fatal("bucket grew past its burst")
	}
}

func TestClaimsAreLimitedPerRequesterAndTarget(t *testing.T) {
	e := newEnvWithLimits(t, httpadapter.RateLimits{Claim: httpadapter.Rate{PerSecond: 1, Burst: 2}})
	alice := e.login(101, "alice", false)
	bob := e.login(102, "bob", false)
	for i := 0; i < 2; i++ {
		if _, err := bob.c.ClaimKeyPackages(ctx, 101, 0); err != nil {
			t.Fatal(err)
		}
	}
	status, hdr, body := e.raw("GET", "/p2core/keypackage/101", bob.token, "")
	wantError(t, status, body, 429, "P2CORE_RATE_LIMITED")
	if n, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || n < 1 {
		t.Fatalf("Retry-After = %q", hdr.Get("Retry-After"))
	}
	// Another target, or another requester, has its own budget.
	if _, err := bob.c.ClaimKeyPackages(ctx, 103, 0); err != nil {
		t.Fatalf("other target limited too: %v", err)
	}
	if _, err := alice.c.ClaimKeyPackages(ctx, 101, 0); err != nil {
		t.Fatalf("other requester limited too: %v", err)
	}
}

func TestAnonymousRoutesAreLimitedPerAddress(t *testing.T) {
	e := newEnvWithLimits(t, httpadapter.RateLimits{Address: httpadapter.Rate{PerSecond: 1, Burst: 3}})
	for i := 0; i < 3; i++ {
		if _, err := e.anon().TokenGenerationEnabled(ctx); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.anon().TokenGenerationEnabled(ctx)
	apiErr(t, err, 429, "P2CORE_RATE_LIMITED")
}

func TestPrincipalLimitAndDisabling(t *testing.T) {
	e := newEnvWithLimits(t, httpadapter.RateLimits{Principal: httpadapter.Rate{PerSecond: 1, Burst: 2}})
	alice := e.login(101, "alice", false)
	for i := 0; i < 2; i++ {
		if _, err := alice.c.KeyPackageStatus(ctx); err != nil {
			t.Fatal(err)
		}
	}
	_, err := alice.c.KeyPackageStatus(ctx)
	apiErr(t, err, 429, "P2CORE_RATE_LIMITED")

	off := newEnvWithLimits(t, httpadapter.RateLimits{Principal: httpadapter.Rate{PerSecond: 1, Burst: 1}, Disabled: true})
	bob := off.login(102, "bob", false)
	for i := 0; i < 20; i++ {
		if _, err := bob.c.KeyPackageStatus(ctx); err != nil {
			t.Fatalf("disabled limits still refused request %d: %v", i, err)
		}
	}
}

// TestZeroRateTakesTheDefaultAndNegativeLiftsIt checks Rate's doc: a
// RateLimits field left zero is the default limit (20 claims at once per
// pair), one with a negative PerSecond is no limit.
func TestZeroRateTakesTheDefaultAndNegativeLiftsIt(t *testing.T) {
	burst := httpadapter.DefaultRateLimits().Claim.Burst
	for _, c := range []struct {
		name    string
		claim   httpadapter.Rate
		limited bool
	}{{"zero", httpadapter.Rate{}, true}, {"negative", httpadapter.Rate{PerSecond: -1}, false}} {
		e := newEnvWithLimits(t, httpadapter.RateLimits{Claim: c.claim})
		alice := e.login(101, "alice", false)
		var err error
		for i := 0; i <= burst && err == nil; i++ {
			_, err = alice.c.ClaimKeyPackages(ctx, 102, 0)
		}
		if c.limited {
			apiErr(t, err, 429, "P2CORE_RATE_LIMITED")
		} else if err != nil {
			t.Errorf("%s Claim rate: %v", c.name, err)
		}
	}
}

// newEnvWithLimits is newEnv with explicit rate limits and a frozen clock
// for the limiter, so refills never happen during the test.
func newEnvWithLimits(t *testing.T, limits httpadapter.RateLimits) *env {
	t.Helper()
	frozen := &clock{t: time.Unix(1000, 0)}
	return newEnvOpts(t, nil, httpadapter.Options{RateLimits: limits, Limiter: httpadapter.NewTokenBuckets(frozen.Now)})
}

func TestTokenBucketsChargeTheCostAndNothingWhenRefused(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	tb := httpadapter.NewTokenBuckets(c.Now)
	rate := httpadapter.Rate{PerSecond: 10, Burst: 100}
	if ok, _ := tb.Allow("k", rate, 60); !ok {
		t.Fatal("60 of a full 100 refused")
	}
	ok, wait := tb.Allow("k", rate, 50)
	if ok || wait != time.Second {
		t.Fatalf("50 of the 40 left: %v, wait %v; want refused, 1s", ok, wait)
	}
	if ok, _ := tb.Allow("k", rate, 40); !ok {
		t.Fatal("the refused request consumed units")
	}
	// A cost above the burst counts as the burst: it passes once the
	// bucket is full, and empties it.
	c.Add(10 * time.Second)
	if ok, _ := tb.Allow("k", rate, 1000); !ok {
		t.Fatal("a cost above the burst can never pass")
	}
	if ok, _ := tb.Allow("k", rate, 1); ok {
		t.Fatal("a cost above the burst left units in the bucket")
	}
}

// One user's sessions share the per-user limit: logging in again buys no
// more requests.
func TestPrincipalLimitIsPerUserNotPerSession(t *testing.T) {
	e := newEnvWithLimits(t, httpadapter.RateLimits{Principal: httpadapter.Rate{PerSecond: 1, Burst: 4}})
	ok := 0
	for range 10 {
		s := e.login(101, "alice", false)
		if _, err := s.c.KeyPackageStatus(ctx); err == nil {
			ok++
		} else {
			apiErr(t, err, 429, "P2CORE_RATE_LIMITED")
		}
	}
	if ok != 4 {
		t.Fatalf("10 sessions of one user got %d requests through, want the user's burst of 4", ok)
	}
	if _, err := e.login(102, "bob", false).c.KeyPackageStatus(ctx); err != nil {
		t.Fatalf("another user is limited too: %v", err)
	}
}

// Many requesters together get no more claims against one target than
// its ClaimTarget burst.
func TestClaimsAgainstOneTargetAreLimitedAcrossRequesters(t *testing.T) {
	e := newEnvWithLimits(t, httpadapter.RateLimits{ClaimTarget: httpadapter.Rate{PerSecond: 1, Burst: 5}})
	ok := 0
	for i := range 20 {
		u := e.login(p2core.UserID(200+i), "u"+strconv.Itoa(i), false)
		if _, err := u.c.ClaimKeyPackages(ctx, 101, 0); err == nil {
			ok++
		} else {
			apiErr(t, err, 429, "P2CORE_RATE_LIMITED")
		}
	}
	if ok != 5 {
		t.Fatalf("20 requesters got %d claims against one target, want its burst of 5", ok)
	}
	u := e.login(300, "zed", false)
	if _, err := u.c.ClaimKeyPackages(ctx, 102, 0); err != nil {
		t.Fatalf("another target is limited too: %v", err)
	}
}

func TestUploadsAreLimitedPerUser(t *testing.T) {
	e := newEnvWithLimits(t, httpadapter.RateLimits{Upload: httpadapter.Rate{PerSecond: 1, Burst: 2}})
	for range 2 {
		s := e.login(101, "alice", false)
		// No ID-Cert: refused 409, but the upload was counted.
		apiErr(t, s.c.UploadKeyPackages(ctx, [][]byte{{1}}), 409, "P2CORE_NO_ID_CERT")
	}
	s := e.login(101, "alice", false)
	apiErr(t, s.c.UploadKeyPackages(ctx, [][]byte{{1}}), 429, "P2CORE_RATE_LIMITED")
	apiErr(t, s.c.SetLastResort(ctx, []byte{1}), 429, "P2CORE_RATE_LIMITED")
}

// The default address key groups an IPv6 client's /64, so rotating through
// the addresses of one's own prefix buys nothing; IPv4 addresses stay
// apart.
func TestDefaultAddressKeyGroupsIPv6By64(t *testing.T) {
	svc, err := p2core.NewService(memstore.New(), p2core.Config{Domain: "home.test"})
	if err != nil {
		t.Fatal(err)
	}
	frozen := &clock{t: time.Unix(1000, 0)}
	h := httpadapter.New(svc, httpadapter.Options{RateLimits: httpadapter.RateLimits{Address: httpadapter.Rate{PerSecond: 1, Burst: 2}}, Limiter: httpadapter.NewTokenBuckets(frozen.Now)})
	status := func(remote string) int {
		r := httptest.NewRequest("GET", "/p2core/token/status", nil)
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	got := []int{status("[2001:db8::1]:1"), status("[2001:db8::2]:1"), status("[2001:db8::ffff:1]:1"), status("[2001:db8:0:1::1]:1"), status("192.0.2.1:1"), status("192.0.2.2:1")}
	want := []int{200, 200, 429, 200, 200, 200}
	if !slices.Equal(got, want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
}
