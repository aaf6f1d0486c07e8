package httpadapter

import (
	"hash/maphash"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// Limiter decides whether one more request under a key may proceed now.
// Keys are opaque strings built by the Handler (principal, requester and
// target of a claim, client address). Implementations must be safe for
// concurrent use; a shared Limiter (e.g. over Redis) makes limits hold
// across server instances.
type Limiter interface {
	// Allow consumes one unit for key and reports whether the request may
	// proceed; when it may not, retryAfter says when it may.
	Allow(key string, rate Rate) (ok bool, retryAfter time.Duration)
}

// Rate is a token-bucket rate: Burst requests at once, refilled at
// PerSecond. A zero Rate means unlimited.
type Rate struct {
	PerSecond float64
	Burst     int
}

// RateLimits are the limits the Handler applies. Zero fields take the
// defaults of DefaultRateLimits(); set Disabled to turn limiting off.
type RateLimits struct {
	// Principal limits each authenticated session on all authenticated
	// routes.
	Principal Rate
	// Claim limits each (requester, target user) pair on route 14, the
	// KeyPackage exhaustion attack.
	Claim Rate
	// Address limits each client address on the anonymous routes 2, 7, 9,
	// 10 and 16.
	Address Rate
	// Disabled turns every limit off (for load tests and embedders that
	// limit in front of p2kit).
	Disabled bool
}

// DefaultRateLimits returns the limits used for zero RateLimits fields:
// 50/s (burst 100) per session, 5/s (burst 20) per claim pair, 100/s
// (burst 200) per client address.
func DefaultRateLimits() RateLimits {
	return RateLimits{
		Principal: Rate{PerSecond: 50, Burst: 100},
		Claim:     Rate{PerSecond: 5, Burst: 20},
		Address:   Rate{PerSecond: 100, Burst: 200},
	}
}

func (l RateLimits) withDefaults() RateLimits {
	d := DefaultRateLimits()
	if l.Principal == (Rate{}) {
		l.Principal = d.Principal
	}
	if l.Claim == (Rate{}) {
		l.Claim = d.Claim
	}
	if l.Address == (Rate{}) {
		l.Address = d.Address
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
func (tb *TokenBuckets) Allow(key string, rate Rate) (bool, time.Duration) {
	if rate.PerSecond <= 0 || rate.Burst <= 0 {
		return true, 0
	}
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
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	wait := time.Duration((1 - b.tokens) / rate.PerSecond * float64(time.Second))
	return false, wait
}

// clientAddress is the default way to find a request's client address:
// the host of RemoteAddr.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
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

// limit applies one limit and returns a *rateLimited error when the request
// must stop.
func (h *Handler) limit(key string, rate Rate) error {
	if h.limits.Disabled {
		return nil
	}
	if ok, wait := h.limiter.Allow(key, rate); !ok {
		return &rateLimited{retryAfter: wait}
	}
	return nil
}
