package httpadapter

import (
	"context"
	"net/http"

	"github.com/p2kit/p2kit/p2core"
)

// SessionAuthenticator is a ready Authenticator backed by the sessions the
// Service keeps in its Store (p2core.Service.CreateSession), for embedders
// without a session system of their own. IsAdmin decides which users are
// administrators; nil means nobody is. Foreign users' sessions (route 16)
// carry their home in Principal.Home and are never administrators.
type SessionAuthenticator struct {
	Service *p2core.Service
	IsAdmin func(ctx context.Context, user p2core.UserID) bool
}

// Authenticate resolves the request's bearer token to its session.
func (a SessionAuthenticator) Authenticate(ctx context.Context, r *http.Request) (p2core.Principal, error) {
	tok := BearerToken(r)
	if tok == "" {
		return p2core.Principal{}, p2core.Errorf(p2core.ErrUnauthorized, "an Authorization: Bearer token is required")
	}
	sess, err := a.Service.AuthenticateSession(ctx, tok)
	if err != nil {
		return p2core.Principal{}, err
	}
	p := p2core.Principal{UserID: sess.UserID, FID: sess.FID, SessionID: sess.SessionID, Home: sess.Home}
	if a.IsAdmin != nil && sess.Home == "" {
		p.Admin = a.IsAdmin(ctx, sess.UserID)
	}
	return p, nil
}
