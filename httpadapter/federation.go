package httpadapter

import (
	"context"
	"net/http"

	"github.com/p2kit/p2kit/p2core"
)

// SessionAuthRequest is the body of route 16. Binary values are standard
// Base64 with padding.
type SessionAuthRequest struct {
	FederationToken string   `json:"federation_token"`
	IDCert          string   `json:"id_cert"`
	KeyPackages     []string `json:"key_packages,omitempty"`
	KeyPackageLR    string   `json:"key_package_lr,omitempty"`
}

// SessionAuthResponse is the answer of route 16.
type SessionAuthResponse struct {
	// SessionToken is the bearer token of the new session.
	SessionToken string `json:"session_token"`
	// Extra says who the session is on this server.
	Extra *SessionAuthExtra `json:"extra,omitempty"`
}

// SessionAuthExtra is the "extra" object of route 16's answer: the local
// user ID this server maps the foreign FID to (the {user_id} of routes 9
// and 14 here, the same on every login), the new session's ID and the
// FID.
type SessionAuthExtra struct {
	UserID    p2core.UserID    `json:"user_id"`
	SessionID p2core.SessionID `json:"session_id"`
	FID       p2core.FID       `json:"fid"`
}

func (h *Handler) sessionAuth(w http.ResponseWriter, r *http.Request, _ p2core.Principal) error {
	var req SessionAuthRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	cert, err := b64.DecodeString(req.IDCert)
	if err != nil {
		return p2core.Errorf(p2core.ErrInvalidIDCert, "id_cert is not standard Base64 with padding")
	}
	in := p2core.ForeignLoginRequest{FederationToken: req.FederationToken, IDCert: cert}
	for i, s := range req.KeyPackages {
		b, err := b64.DecodeString(s)
		if err != nil {
			return p2core.Errorf(p2core.ErrInvalidKeyPackage, "KeyPackage %d: not standard Base64 with padding", i)
		}
		in.KeyPackages = append(in.KeyPackages, b)
	}
	if req.KeyPackageLR != "" {
		if in.LastResort, err = b64.DecodeString(req.KeyPackageLR); err != nil {
			return p2core.Errorf(p2core.ErrInvalidKeyPackage, "last-resort KeyPackage: not standard Base64 with padding")
		}
	}
	tok, sess, err := h.svc.ForeignLogin(h.foreignLimits(r.Context()), in)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, SessionAuthResponse{SessionToken: tok,
		Extra: &SessionAuthExtra{UserID: sess.UserID, SessionID: sess.SessionID, FID: sess.FID}})
	return nil
}

// ForeignLogin logs in to this Client's server as a foreign user (route
// 16), with a federation token the user's home server issued for this
// server, her ID-Cert and optional KeyPackages. Use
// c.WithToken(resp.SessionToken) for the new session.
func (c *Client) ForeignLogin(ctx context.Context, req p2core.ForeignLoginRequest) (SessionAuthResponse, error) {
	body := SessionAuthRequest{FederationToken: req.FederationToken, IDCert: b64.EncodeToString(req.IDCert)}
	for _, kp := range req.KeyPackages {
		body.KeyPackages = append(body.KeyPackages, b64.EncodeToString(kp))
	}
	if req.LastResort != nil {
		body.KeyPackageLR = b64.EncodeToString(req.LastResort)
	}
	var out SessionAuthResponse
	err := c.Do(ctx, http.MethodPost, "/p2core/session/auth", nil, body, &out)
	return out, err
}

// PresentIDCert sends a foreign session's new ID-Cert, issued by its home
// server, to this server (route 8 as a foreign session) and returns the
// cert as recorded, binary.
func (c *Client) PresentIDCert(ctx context.Context, cert []byte) ([]byte, error) {
	var s string
	if err := c.Do(ctx, http.MethodPost, "/p2core/key/user/@me", nil, b64.EncodeToString(cert), &s); err != nil {
		return nil, err
	}
	return b64.DecodeString(s)
}
