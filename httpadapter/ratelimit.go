package httpadapter

import (
	"context"
	"hash/maphash"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// Limiter decides whether a request may spend n units under a key now.
// Keys are opaque strings built by the Handler (user, requester and target
// of a claim, client address, home domain). Implementations must be safe
// for concurrent use; a shared Limiter (e.g. over Redis) makes limits hold
// across server instances.
type Limiter interface {
	// Allow consumes n units (1 for a request; the weighted signature
	// work of an upload) for key and reports whether the request may
	// proceed; when it may not, nothing is consumed and retryAfter says
	// when it may. A cost above rate.Burst counts as rate.Burst, so every
	// request can pass once the bucket is full.
	Allow(key string, rate Rate, n int) (ok bool, retryAfter time.Duration)
}

// Rate is a token-bucket rate: Burst units at once, refilled at
// PerSecond. A Limiter allows every request under a Rate whose PerSecond
// or Burst is not positive. In RateLimits, though, a field left at the
// zero Rate takes its default; to lift that one limit, give it a negative
// PerSecond (Rate{PerSecond: -1}).
type Rate struct {
	PerSecond float64
	Burst     int
}

// RateLimits are the limits the Handler applies, each keyed by the
// principal that matters, so that logging in again or opening more
// sessions buys no more. Zero fields take the defaults of
// DefaultRateLimits(); a field with a negative PerSecond is no limit;
// set Disabled to turn every limit off.
type RateLimits struct {
	// Principal limits each user (all of the user's sessions together)
	// on all authenticated routes.
	Principal Rate
	// Claim limits each (requesting user, target user) pair on route 14.
	Claim Rate
	// ClaimTarget limits the claims against each target user on route
	// 14, all requesters together, so that many requesters cannot drain
	// one victim's KeyPackages.
	ClaimTarget Rate
	// Upload limits each user's KeyPackage uploads (routes 12 and 13).
	Upload Rate
	// SignatureWork limits the KeyPackage signature verification each
	// user (routes 12 and 13) or each home domain (route 16) makes the
	// server do, in units of mls.VerifyCost: one Ed25519 KeyPackage
	// costs 1, one P-521 KeyPackage 24. Charged after the cheap checks,
	// before any signature is verified. Burst must cover the costliest
	// upload allowed (100 P-521 KeyPackages: 2400).
	SignatureWork Rate
	// Address limits each client address (Options.ClientAddress) on the
	// anonymous routes 2, 7, 9, 10, 16 and the API description.
	Address Rate
	// ForeignLogin limits route 16 logins per home domain, counted once
	// the ID-Cert has verified and before the federation token is
	// redeemed, so that one home cannot mint foreign users and sessions
	// here at will.
	ForeignLogin Rate
	// Disabled turns every limit off (for load tests and embedders that
	// limit in front of p2kit).
	Disabled bool
}

// DefaultRateLimits returns the limits used for zero RateLimits fields:
// per user 50/s (burst 100) on all authenticated routes; per claim pair
// 5/s (burst 20); per claim target 10/s (burst 50); per user 2 uploads/s
// (burst 20) and 200 signature-work units/s (burst 2400); per client
// address 100/s (burst 200); per home domain 5 foreign logins/s (burst
// 20).
func DefaultRateLimits() RateLimits {
	return RateLimits{
		Principal:     Rate{PerSecond: 50, Burst: 100},
		Claim:         Rate{PerSecond: 5, Burst: 20},
		ClaimTarget:   Rate{PerSecond: 10, Burst: 50},
		Upload:        Rate{PerSecond: 2, Burst: 20},
		SignatureWork: Rate{PerSecond: 200, Burst: 2400},
		Address:       Rate{PerSecond: 100, Burst: 200},
		ForeignLogin:  Rate{PerSecond: 5, Burst: 20},
	}
}

func (l RateLimits) withDefaults() RateLimits {
	d := DefaultRateLimits()
	for _, f := range []struct{ r, def *Rate }{
		{&l.Principal, &d.Principal}, {&l.Claim, &d.Claim}, {&l.ClaimTarget, &d.ClaimTarget},
		{&l.Upload, &d.Upload}, {&l.SignatureWork, &d.SignatureWork}, {&l.Address, &d.Address},
		{&l.ForeignLogin, &d.ForeignLogin},
	} {
		if *f.r == (Rate{}) {
			*f.r = *f.def
		}
	}
	return l
}

// TokenBuckets is the in-memory Limiter: one token bucket per key, in
// shards to keep lock contention low, with idle full buckets dropped so
// memory stays bounded by the number of recently active keys.
type TokenBuckets struct {
	now    func() time.Time
	seed   maphash.Seed
	shards [32]bucketShard
}

type bucketShard struct {
	mu      sync.Mutex
	buckets map[string]*bucket
	sweep   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewTokenBuckets returns an empty in-memory Limiter reading time from now
// (nil: time.Now).
func NewTokenBuckets(now func() time.Time) *TokenBuckets {
	if now == nil {
		now = time.Now
	}
	tb := &TokenBuckets{now: now, seed: maphash.MakeSeed()}
	for i := range tb.shards {
		tb.shards[i].buckets = map[string]*bucket{}
	}
	return tb
}

// Allow implements Limiter.
func (tb *TokenBuckets) Allow(key string, rate Rate, n int) (bool, time.Duration) {
	if rate.PerSecond <= 0 || rate.Burst <= 0 {
		return true, 0
	}
	cost := float64(min(max(n, 1), rate.Burst))
	now := tb.now()
	sh := &tb.shards[maphash.String(tb.seed, key)%uint64(len(tb.shards))]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if now.Sub(sh.sweep) > time.Minute {
		sh.sweep = now
		for k, b := range sh.buckets {
			// A bucket idle long enough to be full again carries no state.
			if now.Sub(b.last).Seconds()*rate.PerSecond >= float64(rate.Burst) {
				delete(sh.buckets, k)
			}
		}
	}
	b, ok := sh.buckets[key]
	if !ok {
		b = &bucket{tokens: float64(rate.Burst), last: now}
		sh.buckets[key] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(float64(rate.Burst), b.tokens+el*rate.PerSecond)
		b.last = now
	}
	if b.tokens >= cost {
		b.tokens -= cost
		return true, 0
	}
	wait := time.Duration((cost - b.tokens) / rate.PerSecond * float64(time.Second))
	return false, wait
}

// DefaultClientAddress is the default Options.ClientAddress, exported for
// embedders' own per-address limits (the example server's /login): the
// host of r.RemoteAddr, and for IPv6 its /64 prefix, since one client
// commonly holds a whole /64.
func DefaultClientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Is6() && !ip.Is4In6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.String()
		}
	}
	return host
}

// rateLimited is the error of a refused request; writeError turns it into
// 429 with Retry-After.
type rateLimited struct{ retryAfter time.Duration }

func (e *rateLimited) Error() string {
	return "too many requests; retry after " + strconv.Itoa(e.seconds()) + " s"
}

func (e *rateLimited) Unwrap() error { return p2core.ErrRateLimited }

func (e *rateLimited) seconds() int {
	secs := int(math.Ceil(e.retryAfter.Seconds()))
	if secs < 1 {
		secs = 1
	}
	return secs
}

// limit applies one limit to one request and returns a *rateLimited error
// when the request must stop.
func (h *Handler) limit(key string, rate Rate) error { return h.limitN(key, rate, 1) }

// limitN is limit for a request that costs n units.
func (h *Handler) limitN(key string, rate Rate, n int) error {
	if h.limits.Disabled {
		return nil
	}
	if ok, wait := h.limiter.Allow(key, rate, n); !ok {
		return &rateLimited{retryAfter: wait}
	}
	return nil
}

// userLimits charges the signature work of a local user's request (routes
// 12 and 13) to the user's SignatureWork budget.
func (h *Handler) userLimits(ctx context.Context, p p2core.Principal) context.Context {
	return p2core.WithRequestLimits(ctx, p2core.RequestLimits{
		SignatureWork: func(_ context.Context, _ p2core.FID, cost int) error {
			return h.limitN("w:"+p.UserID.String(), h.limits.SignatureWork, cost)
		},
	})
}

// foreignLimits limits a foreign login (route 16): the login by its
// verified home domain, the signature work of its KeyPackages by the user
// logging in (her FID; a local user's budget is keyed by user ID).
func (h *Handler) foreignLimits(ctx context.Context) context.Context {
	return p2core.WithRequestLimits(ctx, p2core.RequestLimits{
		ForeignLogin: func(_ context.Context, home string) error {
			return h.limit("h:"+home, h.limits.ForeignLogin)
		},
		SignatureWork: func(_ context.Context, fid p2core.FID, cost int) error {
			return h.limitN("w:"+string(fid), h.limits.SignatureWork, cost)
		},
	})
}
