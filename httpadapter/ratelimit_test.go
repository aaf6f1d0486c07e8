package httpadapter_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
)

func TestTokenBucketsRefillAtTheRate(t *testing.T) {
	c := &clock{t: time.Unix(1000, 0)}
	tb := httpadapter.NewTokenBuckets(c.Now)
	rate := httpadapter.Rate{PerSecond: 2, Burst: 3}
	for i := 0; i < 3; i++ {
		if ok, _ := tb.Allow("k", rate); !ok {
			t.Fatalf("request %d of the burst refused", i)
		}
	}
	ok, wait := tb.Allow("k", rate)
	if ok || wait != 500*time.Millisecond {
		t.Fatalf("4th = %v, wait %v; want refused, 500ms", ok, wait)
	}
	if ok, _ := tb.Allow("other", rate); !ok {
		t.Fatal("another key shares the bucket")
	}
	c.Add(500 * time.Millisecond)
	if ok, _ := tb.Allow("k", rate); !ok {
		t.Fatal("not refilled after 1/rate")
	}
	if ok, _ := tb.Allow("k", rate); ok {
		t.Fatal("refilled more than one token in 500ms")
	}
	c.Add(time.Hour)
	for i := 0; i < 3; i++ {
		if ok, _ := tb.Allow("k", rate); !ok {
			t.Fatalf("after an hour, request %d refused: the bucket must be full (and no fuller)", i)
		}
	}
	if ok, _ := tb.Allow("k", rate); ok {
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

// newEnvWithLimits is newEnv with explicit rate limits and a frozen clock
// for the limiter, so refills never happen during the test.
func newEnvWithLimits(t *testing.T, limits httpadapter.RateLimits) *env {
	t.Helper()
	frozen := &clock{t: time.Unix(1000, 0)}
	return newEnvOpts(t, nil, httpadapter.Options{RateLimits: limits, Limiter: httpadapter.NewTokenBuckets(frozen.Now)})
}
