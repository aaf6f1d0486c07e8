package p2core

import (
	"context"

	"github.com/p2kit/p2kit/p2core/mls"
)

// RequestLimits let the caller of a Service method bound the expensive work
// one request makes the Service do, at the points where the Service learns
// what that work is and before it does it. httpadapter sets them from its
// rate limits; a nil field allows everything.
type RequestLimits struct {
	// SignatureWork is called once the KeyPackages of a request have
	// passed every cheap check (decoding, sizes, the binding to the
	// caller's key, init keys not already taken) and the caller is known,
	// with the cost of verifying their signatures: the sum of
	// mls.VerifyCost of their cipher suites. fid is the user whose
	// request it is: the caller of routes 12 and 13, or the user logging
	// in on route 16, after her home server redeemed the federation
	// token (so a login refused here has spent its token). A non-nil
	// error stops the request with that error before any KeyPackage
	// signature is verified.
	SignatureWork func(ctx context.Context, fid FID, cost int) error
	// ForeignLogin is called by ForeignLogin once the ID-Cert has
	// verified, with the home domain it names, before the federation
	// token is redeemed. A non-nil error refuses the login with that
	// error and leaves the token unspent.
	ForeignLogin func(ctx context.Context, home string) error
}

type requestLimitsKey struct{}

// WithRequestLimits returns a context carrying l for the Service methods
// called with it.
func WithRequestLimits(ctx context.Context, l RequestLimits) context.Context {
	return context.WithValue(ctx, requestLimitsKey{}, l)
}

func requestLimits(ctx context.Context) RequestLimits {
	l, _ := ctx.Value(requestLimitsKey{}).(RequestLimits)
	return l
}

// chargeSignatures charges the signature work of kps to the request (see
// RequestLimits.SignatureWork).
func chargeSignatures(ctx context.Context, fid FID, kps ...*mls.KeyPackage) error {
	f := requestLimits(ctx).SignatureWork
	if f == nil || len(kps) == 0 {
		return nil
	}
	cost := 0
	for _, kp := range kps {
		cost += mls.VerifyCost(kp.CipherSuite)
	}
	return f(ctx, fid, cost)
}

// admitForeignLogin asks the request's limits whether a login from home
// may go on (see RequestLimits.ForeignLogin).
func admitForeignLogin(ctx context.Context, home string) error {
	if f := requestLimits(ctx).ForeignLogin; f != nil {
		return f(ctx, home)
	}
	return nil
}
