package httpadapter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// maxResponseBytes caps what the Client reads from a server.
const maxResponseBytes = 8 << 20

// Client calls the polyproto-core routes of a server. Its zero value is
// not usable: set BaseURL. A Client is safe for concurrent use if its
// fields are not changed while in use.
type Client struct {
	// BaseURL is the server's root, e.g. "https://home.example".
	BaseURL string
	// Token is sent as "Authorization: Bearer <Token>" when not empty.
	Token string
	// HTTPClient is used for requests; nil means a client with a 30 s
	// timeout.
	HTTPClient *http.Client
}

var defaultHTTPClient = &http.Client{Timeout: 30 * time.Second}

// APIError is an error response of the server. It matches (errors.Is) the
// p2core sentinel of its P2CORE_* code, so callers handle remote and local
// errors alike.
type APIError struct {
	Status  int
	Code    string
	Message string
}

// Error returns a one-line description.
func (e *APIError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
}

// Unwrap returns the p2core sentinel of the code, or nil.
func (e *APIError) Unwrap() error { return kindForCode(e.Code) }

// WithToken returns a copy of c that authenticates with token.
func (c *Client) WithToken(token string) *Client {
	cp := *c
	cp.Token = token
	return &cp
}

// Do sends a request with an optional JSON body and decodes a JSON answer
// into out (when out is not nil). Non-2xx answers become *APIError.
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	u := strings.TrimRight(c.BaseURL, "/") + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if len(data) > maxResponseBytes {
		return errors.New("response too large")
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var eb errorBody
		if json.Unmarshal(data, &eb) != nil || eb.Error == "" {
			return &APIError{Status: resp.StatusCode, Code: "", Message: strings.TrimSpace(string(data))}
		}
		return &APIError{Status: resp.StatusCode, Code: eb.Error, Message: eb.Message}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode %s %s response: %w", method, path, err)
		}
	}
	return nil
}

// IssueToken asks for a federation token for server (route 1).
func (c *Client) IssueToken(ctx context.Context, server string) (string, error) {
	var tok string
	err := c.Do(ctx, http.MethodPost, "/p2core/token", nil, TokenRequest{Server: server}, &tok)
	return tok, err
}

// TokenGenerationEnabled reads route 2.
func (c *Client) TokenGenerationEnabled(ctx context.Context) (bool, error) {
	var st TokenStatus
	if err := c.Do(ctx, http.MethodGet, "/p2core/token/status", nil, nil, &st); err != nil {
		return false, err
	}
	return st.Enabled != nil && *st.Enabled, nil
}

// SetTokenGeneration switches token generation (route 3, admin).
func (c *Client) SetTokenGeneration(ctx context.Context, enabled bool) error {
	return c.Do(ctx, http.MethodPut, "/p2core/token/status", nil, TokenStatus{Enabled: &enabled}, nil)
}

// DeleteOwnTokens revokes the caller's tokens (route 4) and returns how
// many were deleted.
func (c *Client) DeleteOwnTokens(ctx context.Context) (int, error) {
	var n int
	err := c.Do(ctx, http.MethodDelete, "/p2core/token/@me", nil, nil, &n)
	return n, err
}

// DeleteUserTokens revokes a user's tokens (route 5, admin).
func (c *Client) DeleteUserTokens(ctx context.Context, user p2core.UserID) error {
	return c.Do(ctx, http.MethodDelete, "/p2core/token/"+user.String(), nil, nil, nil)
}

// DeleteAllTokens revokes every token (route 6, admin).
func (c *Client) DeleteAllTokens(ctx context.Context) error {
	return c.Do(ctx, http.MethodDelete, "/p2core/token/@all", nil, nil, nil)
}

// RedeemToken consumes a federation token on its home server (route 7);
// server is the calling foreign server's own URL.
func (c *Client) RedeemToken(ctx context.Context, token, server string) (RedeemResponse, error) {
	var out RedeemResponse
	err := c.Do(ctx, http.MethodPost, "/p2core/token/redeem", nil, RedeemRequest{Token: token, Server: server}, &out)
	return out, err
}

// IssueIDCert sends an armored OpenPGP public key (route 8) and returns the
// ID-Cert, binary.
func (c *Client) IssueIDCert(ctx context.Context, armoredPublicKey string) ([]byte, error) {
	var s string
	if err := c.Do(ctx, http.MethodPost, "/p2core/key/user/@me", nil, armoredPublicKey, &s); err != nil {
		return nil, err
	}
	return b64.DecodeString(s)
}

func timestampQuery(at time.Time) url.Values {
	if at.IsZero() {
		return nil
	}
	return url.Values{"timestamp": {strconv.FormatInt(at.Unix(), 10)}}
}

// UserIDCerts returns a user's ID-Certs valid at the instant at (zero:
// now), binary (route 9).
func (c *Client) UserIDCerts(ctx context.Context, user p2core.UserID, at time.Time) ([][]byte, error) {
	var in []string
	if err := c.Do(ctx, http.MethodGet, "/p2core/key/user/"+user.String(), timestampQuery(at), nil, &in); err != nil {
		return nil, err
	}
	return decodeAll(in)
}

// ServerKey returns the server's public key current at the instant at
// (zero: now), binary (route 10).
func (c *Client) ServerKey(ctx context.Context, at time.Time) ([]byte, error) {
	var s string
	if err := c.Do(ctx, http.MethodGet, "/p2core/key/server", timestampQuery(at), nil, &s); err != nil {
		return nil, err
	}
	return b64.DecodeString(s)
}

// RotateServerKey replaces the server key (route 11, admin) and returns the
// new armored public key.
func (c *Client) RotateServerKey(ctx context.Context) (string, error) {
	var s string
	err := c.Do(ctx, http.MethodPut, "/p2core/key/server", nil, nil, &s)
	return s, err
}

// UploadKeyPackages uploads 1 to 100 KeyPackages (route 12).
func (c *Client) UploadKeyPackages(ctx context.Context, kps [][]byte) error {
	out := make([]string, len(kps))
	for i, kp := range kps {
		out[i] = b64.EncodeToString(kp)
	}
	return c.Do(ctx, http.MethodPost, "/p2core/keypackage/@me", nil, out, nil)
}

// SetLastResort replaces the session's last-resort KeyPackage (route 13).
func (c *Client) SetLastResort(ctx context.Context, kp []byte) error {
	return c.Do(ctx, http.MethodPut, "/p2core/keypackage_lr", nil, b64.EncodeToString(kp), nil)
}

// ClaimKeyPackages claims one KeyPackage per session of user (route 14);
// suite 0 means any cipher suite.
func (c *Client) ClaimKeyPackages(ctx context.Context, user p2core.UserID, suite uint16) ([][]byte, error) {
	var q url.Values
	if suite != 0 {
		q = url.Values{"cipher_suite": {strconv.Itoa(int(suite))}}
	}
	var in []string
	if err := c.Do(ctx, http.MethodGet, "/p2core/keypackage/"+user.String(), q, nil, &in); err != nil {
		return nil, err
	}
	return decodeAll(in)
}

// KeyPackageStatus reads the session's KeyPackage supply (route 15).
func (c *Client) KeyPackageStatus(ctx context.Context) (p2core.KeyPackageStatus, error) {
	var st p2core.KeyPackageStatus
	err := c.Do(ctx, http.MethodGet, "/p2core/keypackage/@me/status", nil, nil, &st)
	return st, err
}

func decodeAll(in []string) ([][]byte, error) {
	out := make([][]byte, len(in))
	for i, s := range in {
		b, err := b64.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		out[i] = b
	}
	return out, nil
}
