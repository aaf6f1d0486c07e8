package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// httpClient sends the load generator's requests. It is deliberately
// leaner than httpadapter.Client in the timed loop (request bodies are
// encoded before the phase, headers are set without canonicalisation) so
// the load generator spends as little CPU per request as it can: on a
// small machine it shares the cores with the server it measures.
type httpClient struct {
	c *http.Client
}

// newHTTPClient returns a client whose one keep-alive connection pool
// holds an idle connection for each of up to conns concurrent clients per
// host, so no request pays for a new connection once warm.
func newHTTPClient(conns int) *httpClient {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2*conns + 64,
		MaxIdleConnsPerHost: conns + 32,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	return &httpClient{c: &http.Client{Transport: tr, Timeout: 2 * time.Minute}}
}

// close drops idle connections.
func (h *httpClient) close() { h.c.CloseIdleConnections() }

// do sends a request and returns the status and the whole body. auth is
// the complete Authorization header value ("" for none); body, when not
// nil, is sent as JSON.
func (h *httpClient) do(ctx context.Context, method, url, auth string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header["Content-Type"] = []string{"application/json"}
	}
	if auth != "" {
		req.Header["Authorization"] = []string{auth}
	}
	resp, err := h.c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return resp.StatusCode, nil, err
	}
	return resp.StatusCode, b, nil
}

// expect is do that fails unless the status is want.
func (h *httpClient) expect(ctx context.Context, want int, method, url, auth string, body []byte) ([]byte, error) {
	status, b, err := h.do(ctx, method, url, auth, body)
	if err != nil {
		return nil, err
	}
	if status != want {
		if len(b) > 200 {
			b = b[:200]
		}
		return nil, fmt.Errorf("%s %s: %d %s", method, shortPath(url), status, bytes.TrimSpace(b))
	}
	return b, nil
}

// shortPath cuts the scheme and host off a URL for messages.
func shortPath(url string) string {
	for i, n := 0, 0; i < len(url); i++ {
		if url[i] == '/' {
			if n++; n == 3 {
				return url[i:]
			}
		}
	}
	return url
}

// mustJSON encodes v, which cannot fail for the load generator's types.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// loginResponse is the example server's answer to /login.
type loginResponse struct {
	Token     string           `json:"token"`
	UserID    p2core.UserID    `json:"user_id"`
	SessionID p2core.SessionID `json:"session_id"`
	FID       p2core.FID       `json:"fid"`
}

// password is every load-generator account's password.
const password = "loadgen password"

// register creates an account on the example server; an account that
// exists already is fine.
func (h *httpClient) register(ctx context.Context, base, name string) error {
	body := mustJSON(map[string]string{"username": name, "password": password})
	status, b, err := h.do(ctx, "POST", base+"/register", "", body)
	if err != nil {
		return err
	}
	if status != http.StatusCreated && status != http.StatusConflict {
		return fmt.Errorf("register %s: %d %s", name, status, bytes.TrimSpace(b))
	}
	return nil
}

// login starts a new session of an account.
func (h *httpClient) login(ctx context.Context, base, name string) (loginResponse, error) {
	body := mustJSON(map[string]string{"username": name, "password": password})
	b, err := h.expect(ctx, http.StatusCreated, "POST", base+"/login", "", body)
	if err != nil {
		return loginResponse{}, err
	}
	var out loginResponse
	if err := json.Unmarshal(b, &out); err != nil {
		return loginResponse{}, fmt.Errorf("login answer: %w", err)
	}
	return out, nil
}
