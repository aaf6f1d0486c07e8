package main

import (
	"net/http"
	"strconv"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
)

// accountLimits applies the limits of /login and /register. Each login or
// registration costs a PBKDF2 hash (about 0.13 s of CPU at the default
// cost), so both are limited by client address (one client flooding) and
// by username (guessing one account's password from many addresses).
type accountLimits struct {
	limiter httpadapter.Limiter // nil: no limits (-no-rate-limits)

	loginPerAddress, loginPerUsername       httpadapter.Rate
	registerPerAddress, registerPerUsername httpadapter.Rate
}

// newAccountLimits returns the example's limits, kept in limiter.
func newAccountLimits(limiter httpadapter.Limiter) accountLimits {
	return accountLimits{
		limiter:             limiter,
		loginPerAddress:     httpadapter.Rate{PerSecond: 2, Burst: 20},
		loginPerUsername:    httpadapter.Rate{PerSecond: 0.5, Burst: 10},
		registerPerAddress:  httpadapter.Rate{PerSecond: 0.5, Burst: 10},
		registerPerUsername: httpadapter.Rate{PerSecond: 0.2, Burst: 3},
	}
}

// allow checks the address, then the username, limit of one request and
// answers 429 with Retry-After when either is spent.
func (l accountLimits) allow(w http.ResponseWriter, r *http.Request, route, username string, perAddress, perName httpadapter.Rate) bool {
	if l.limiter == nil {
		return true
	}
	ok, wait := l.limiter.Allow(route+" a:"+httpadapter.DefaultClientAddress(r), perAddress, 1)
	if ok {
		ok, wait = l.limiter.Allow(route+" u:"+username, perName, 1)
	}
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
		httpadapter.WriteError(w, r, p2core.Errorf(p2core.ErrRateLimited, "too many attempts; retry later"), nil)
	}
	return ok
}
