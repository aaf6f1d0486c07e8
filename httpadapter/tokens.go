package httpadapter

import (
	"net/http"

	"github.com/p2kit/p2kit/p2core"
)

// TokenRequest is the body of route 1.
type TokenRequest struct {
	Server string `json:"server"`
}

// TokenStatus is the body of routes 2 and 3.
type TokenStatus struct {
	Enabled *bool `json:"enabled"`
}

// RedeemRequest is the body of route 7.
type RedeemRequest struct {
	Token  string `json:"token"`
	Server string `json:"server"`
}

// RedeemResponse is the answer of route 7. Times are Unix seconds.
type RedeemResponse struct {
	UserID    p2core.UserID `json:"user_id"`
	FID       p2core.FID    `json:"fid"`
	Server    string        `json:"server"`
	IssuedAt  int64         `json:"issued_at"`
	ExpiresAt int64         `json:"expires_at"`
}

func (h *Handler) issueToken(w http.ResponseWriter, r *http.Request, p p2core.Principal) error {
	var req TokenRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	tok, _, err := h.svc.IssueFederationToken(r.Context(), p, req.Server)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, tok)
	return nil
}

func (h *Handler) tokenStatus(w http.ResponseWriter, r *http.Request, _ p2core.Principal) error {
	on, err := h.svc.TokenGenerationEnabled(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, TokenStatus{Enabled: &on})
	return nil
}

func (h *Handler) setTokenStatus(w http.ResponseWriter, r *http.Request, p p2core.Principal) error {
	var req TokenStatus
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if req.Enabled == nil {
		return p2core.Errorf(p2core.ErrBadRequest, `field "enabled" (boolean) is required`)
	}
	if err := h.svc.SetTokenGeneration(r.Context(), p, *req.Enabled); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) deleteOwnTokens(w http.ResponseWriter, r *http.Request, p p2core.Principal) error {
	n, err := h.svc.DeleteOwnFederationTokens(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, n)
	return nil
}

func (h *Handler) deleteUserTokens(w http.ResponseWriter, r *http.Request, p p2core.Principal) error {
	uid, err := pathUserID(r)
	if err != nil {
		return err
	}
	if _, err := h.svc.DeleteUserFederationTokens(r.Context(), p, uid); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) deleteAllTokens(w http.ResponseWriter, r *http.Request, p p2core.Principal) error {
	if _, err := h.svc.DeleteAllFederationTokens(r.Context(), p); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (h *Handler) redeemToken(w http.ResponseWriter, r *http.Request, _ p2core.Principal) error {
	var req RedeemRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	t, err := h.svc.RedeemFederationToken(r.Context(), req.Token, req.Server)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, RedeemResponse{UserID: t.UserID, FID: t.FID, Server: t.Server, IssuedAt: t.IssuedAt.Unix(), ExpiresAt: t.ExpiresAt.Unix()})
	return nil
}
