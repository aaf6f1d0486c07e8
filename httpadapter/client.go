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
