package main

import (
	"net/http"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
)

// withSession authenticates the request with auth before calling next.
func (a *app) withSession(auth httpadapter.Authenticator, next func(http.ResponseWriter, *http.Request, p2core.Principal)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := auth.Authenticate(r.Context(), r)
		if err != nil {
			// ErrUnauthorized is a 401 with its message; anything else
			// is an internal failure.
			httpadapter.WriteError(w, r, err, a.log)
			return
		}
		next(w, r, p)
	})
}

// logout ends the calling session: its token stops working at once and its
// KeyPackages are no longer handed out.
func (a *app) logout(w http.ResponseWriter, r *http.Request, p p2core.Principal) {
	if err := a.svc.EndSession(r.Context(), p.UserID, p.SessionID); err != nil {
		a.internal(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type sessionInfo struct {
	SessionID p2core.SessionID `json:"session_id"`
	CreatedAt int64            `json:"created_at"`
	Current   bool             `json:"current"`
}

// listSessions lists the caller's sessions.
func (a *app) listSessions(w http.ResponseWriter, r *http.Request, p p2core.Principal) {
	all, err := a.svc.Sessions(r.Context(), p)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	out := make([]sessionInfo, len(all))
	for i, s := range all {
		out[i] = sessionInfo{SessionID: s.SessionID, CreatedAt: s.CreatedAt.Unix(), Current: s.SessionID == p.SessionID}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

// logoutAll ends every session of the caller and answers how many.
func (a *app) logoutAll(w http.ResponseWriter, r *http.Request, p p2core.Principal) {
	n, err := a.svc.EndAllSessions(r.Context(), p.UserID)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, n)
}
