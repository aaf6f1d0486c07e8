package httpadapter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/memstore"
)

// clock is an injectable, settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a p2kit server on memstore behind httptest, with helpers to make
// sessions for users.
type env struct {
	t      *testing.T
	srv    *httptest.Server
	svc    *p2core.Service
	store  p2core.Store
	clock  *clock
	admins map[p2core.UserID]bool
	mu     sync.Mutex
}

func newEnv(t *testing.T, mutate func(*p2core.Config)) *env {
	t.Helper()
	return newEnvOpts(t, mutate, httpadapter.Options{RateLimits: httpadapter.RateLimits{Disabled: true}})
}

// newEnvOpts is newEnv with handler options (the Authenticator is set
// here).
func newEnvOpts(t *testing.T, mutate func(*p2core.Config), opts httpadapter.Options) *env {
	t.Helper()
	return newEnvOn(t, memstore.New(), mutate, opts)
}

// newEnvOn is newEnvOpts on the given store, which it closes at the end.
func newEnvOn(t *testing.T, store p2core.Store, mutate func(*p2core.Config), opts httpadapter.Options) *env {
	t.Helper()
	e := &env{t: t, store: store, clock: &clock{t: time.Now().UTC().Truncate(time.Second)}, admins: map[p2core.UserID]bool{}}
	cfg := p2core.Config{Domain: "home.test", Now: e.clock.Now}
	if mutate != nil {
		mutate(&cfg)
	}
	svc, err := p2core.NewService(e.store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	auth := httpadapter.SessionAuthenticator{Service: svc, IsAdmin: func(_ context.Context, u p2core.UserID) bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.admins[u]
	}}
	opts.Authenticator = auth
	e.srv = httptest.NewServer(httpadapter.New(svc, opts))
	t.Cleanup(e.srv.Close)
	t.Cleanup(func() { e.store.Close() })
	return e
}

// user is a logged-in session.
type user struct {
	id      p2core.UserID
	fid     p2core.FID
	session p2core.SessionID
	token   string
	c       *httpadapter.Client
}

func (e *env) login(id p2core.UserID, name string, admin bool) *user {
	e.t.Helper()
	if admin {
		e.mu.Lock()
		e.admins[id] = true
		e.mu.Unlock()
	}
	fid := p2core.FID(name + "@home.test")
	tok, sess, err := e.svc.CreateSession(context.Background(), id, fid)
	if err != nil {
		e.t.Fatal(err)
	}
	return &user{id: id, fid: fid, session: sess.SessionID, token: tok, c: &httpadapter.Client{BaseURL: e.srv.URL, Token: tok}}
}

func (e *env) anon() *httpadapter.Client { return &httpadapter.Client{BaseURL: e.srv.URL} }

// raw sends a request with a literal body and returns status, headers and
// body.
func (e *env) raw(method, path, token, body string) (int, http.Header, []byte) {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// wantError asserts a JSON error body with the given status and code.
func wantError(t *testing.T, status int, body []byte, wantStatus int, wantCode string) {
	t.Helper()
	if status != wantStatus {
		t.Fatalf("status %d, want %d; body %s", status, wantStatus, body)
	}
	var eb struct {
		Errcode int    `json:"errcode"`
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&eb); err != nil {
		t.Fatalf("error body %q is not the JSON error shape: %v", body, err)
	}
	if eb.Errcode != wantStatus || eb.Error != wantCode || eb.Message == "" {
		t.Fatalf("error body %+v, want errcode %d, error %s and a message", eb, wantStatus, wantCode)
	}
}

// apiErr asserts err is an *APIError with the status and code.
func apiErr(t *testing.T, err error, status int, code string) {
	t.Helper()
	ae, ok := err.(*httpadapter.APIError)
	if !ok {
		t.Fatalf("err = %v (%T), want APIError %d %s", err, err, status, code)
	}
	if ae.Status != status || ae.Code != code {
		t.Fatalf("err = %v, want %d %s", ae, status, code)
	}
}

func jsonDecodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func armorEncode(w io.Writer, blockType string) (io.WriteCloser, error) {
	return armor.Encode(w, blockType, nil)
}
