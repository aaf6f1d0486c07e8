package httpadapter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/broker"
	"github.com/p2kit/p2kit/storage/memstore"
)

// secret is the text of every failure of failingStore: a backend name and
// a constraint name, which no answer may show.
const secret = "boltstore: secret-constraint-xyz"

// leakBodies are request bodies for the routes of the Handler's table that
// get past decoding, so that the Service reaches the Store.
var leakBodies = map[string]string{
	"POST /p2core/token":            `{"server":"https://b.example"}`,
	"PUT /p2core/token/status":      `{"enabled":true}`,
	"POST /p2core/token/redeem":     `{"token":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","server":"https://b.example"}`,
	"POST /p2core/key/user/@me":     `"not a key"`,
	"POST /p2core/keypackage/@me":   `["AAAA"]`,
	"PUT /p2core/keypackage_lr":     `"AAAA"`,
	"POST /p2core/session/auth":     `{"federation_token":"x","id_cert":"AAAA"}`,
	"GET /p2core/keypackage/{user}": "",
}

// TestStoreFailuresNeverReachTheCaller fails every Store method with a
// text naming a backend and a constraint, plain and wrapped around the
// sentinels a Store may return, and checks that no route's answer (nor the
// event stream's) shows that text, that internal failures are a generic
// 5xx carrying a request ID, and that the log holds the real error under
// the same ID.
func TestStoreFailuresNeverReachTheCaller(t *testing.T) {
	failures := []error{
		errors.New(secret),
		fmt.Errorf("%s: %w", secret, p2core.ErrConflict),
		fmt.Errorf("%s: %w", secret, p2core.ErrNotFound),
		fmt.Errorf("%s: %w", secret, p2core.ErrDuplicateKeyPackage),
		fmt.Errorf("%s: %w", secret, p2core.ErrClosed),
	}
	for _, failure := range failures {
		t.Run(failure.Error(), func(t *testing.T) {
			store := &failingStore{Store: memstore.New()}
			t.Cleanup(func() { store.Store.Close() })
			svc, err := p2core.NewService(store, p2core.Config{Domain: "home.test"})
			if err != nil {
				t.Fatal(err)
			}
			if err := svc.Init(ctx); err != nil {
				t.Fatal(err)
			}
			tok, sess, err := svc.CreateSession(ctx, 101, "alice@home.test")
			if err != nil {
				t.Fatal(err)
			}
			// Bearer "admin" and "user" name principals without the Store,
			// so the routes themselves reach it; any other token goes to
			// the Store-backed SessionAuthenticator.
			sessions := httpadapter.SessionAuthenticator{Service: svc}
			auth := httpadapter.AuthenticatorFunc(func(ctx context.Context, r *http.Request) (p2core.Principal, error) {
				switch httpadapter.BearerToken(r) {
				case "admin":
					return p2core.Principal{UserID: 1, FID: "root@home.test", SessionID: "s1", Admin: true}, nil
				case "user":
					return p2core.Principal{UserID: sess.UserID, FID: sess.FID, SessionID: sess.SessionID}, nil
				}
				return sessions.Authenticate(ctx, r)
			})
			var logs lockedBuffer
			h := httpadapter.New(svc, httpadapter.Options{Authenticator: auth, RateLimits: httpadapter.RateLimits{Disabled: true},
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			mux := http.NewServeMux()
			mux.Handle("/p2core/", h)
			mux.Handle("/events", h.EventStream(broker.New(broker.Options{})))
			srv := httptest.NewServer(mux)
			t.Cleanup(srv.Close)
			store.failWith(failure)

			type call struct{ method, path, token, body string }
			var calls []call
			for _, rt := range httpadapter.RouteTable() {
				path := strings.ReplaceAll(rt.Path, "{user_id}", "101")
				body := leakBodies[rt.Method+" "+rt.Path]
				calls = append(calls, call{rt.Method, path, "admin", body}, call{rt.Method, path, "user", body})
			}
			calls = append(calls,
				call{"GET", "/p2core/keypackage/@me/status", tok, ""}, // the Authenticator's own Store lookup
				call{"GET", "/events", tok, ""},
			)
			reached := 0 // answers made from the Store's failure
			for _, c := range calls {
				req, err := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+c.token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var body bytes.Buffer
				_, _ = body.ReadFrom(resp.Body)
				resp.Body.Close()
				if strings.Contains(body.String(), "secret-constraint") || strings.Contains(body.String(), "boltstore") {
					t.Errorf("%s %s: the Store's error reached the caller: %d %s", c.method, c.path, resp.StatusCode, body.String())
				}
				var eb struct{ Message string }
				_ = json.Unmarshal(body.Bytes(), &eb)
				if resp.StatusCode >= 500 || eb.Message == p2core.Message(failure) {
					reached++
				}
				if resp.StatusCode < 500 {
					continue
				}
				id := resp.Header.Get("X-Request-Id")
				if !regexp.MustCompile(`^[0-9a-f]{16}$`).MatchString(id) || !strings.Contains(body.String(), id) {
					t.Errorf("%s %s: %d without a request ID in header and body (%q): %s", c.method, c.path, resp.StatusCode, id, body.String())
					continue
				}
				if !strings.Contains(logs.String(), "request_id="+id) || !regexp.MustCompile(`request_id=`+id+`.*secret-constraint-xyz`).MatchString(logs.String()) {
					t.Errorf("%s %s: the log has no line with request ID %s and the real error:\n%s", c.method, c.path, id, logs.String())
				}
			}
			// The Service answers a missing record with refusals of its own,
			// so only the other failures must show through.
			if reached < len(calls)/2 && !errors.Is(failure, p2core.ErrNotFound) {
				t.Errorf("only %d of %d answers came from the failing Store; the sample tests little", reached, len(calls))
			}
		})
	}
}

// TestAuthenticatorFailuresGoThroughTheErrorTable checks both endpoints
// that authenticate, a route and the event stream: ErrUnauthorized is a
// 401, while an Authenticator's own failure or a malformed Principal it
// returns (its bug, whatever sentinel the Principal's check matched) or a
// refusal other than ErrUnauthorized is a generic 500, never a 401, 400 or
// 409.
func TestAuthenticatorFailuresGoThroughTheErrorTable(t *testing.T) {
	svc, err := p2core.NewService(memstore.New(), p2core.Config{Domain: "home.test"})
	if err != nil {
		t.Fatal(err)
	}
	auth := httpadapter.AuthenticatorFunc(func(ctx context.Context, r *http.Request) (p2core.Principal, error) {
		switch httpadapter.BearerToken(r) {
		case "broken":
			return p2core.Principal{}, errors.New(secret)
		case "conflict":
			return p2core.Principal{}, fmt.Errorf("%s: %w", secret, p2core.ErrConflict)
		case "malformed":
			return p2core.Principal{UserID: 7, FID: "no-domain", SessionID: "s"}, nil
		}
		return p2core.Principal{}, p2core.Errorf(p2core.ErrUnauthorized, "who are you")
	})
	h := httpadapter.New(svc, httpadapter.Options{Authenticator: auth, RateLimits: httpadapter.RateLimits{Disabled: true}})
	mux := http.NewServeMux()
	mux.Handle("/p2core/", h)
	mux.Handle("/events", h.EventStream(broker.New(broker.Options{})))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for _, path := range []string{"/p2core/keypackage/@me/status", "/events"} {
		for token, want := range map[string]string{"nobody": "401 P2CORE_UNAUTHORIZED", "broken": "500 P2CORE_INTERNAL", "conflict": "500 P2CORE_INTERNAL", "malformed": "500 P2CORE_INTERNAL"} {
			req, _ := http.NewRequest("GET", srv.URL+path, nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var eb struct{ Error, Message string }
			_ = json.NewDecoder(resp.Body).Decode(&eb)
			resp.Body.Close()
			if got := fmt.Sprint(resp.StatusCode, " ", eb.Error); got != want || strings.Contains(eb.Message, "secret") || strings.Contains(eb.Message, "no-domain") {
				t.Errorf("%s as %s: %s %q, want %s with no detail", path, token, got, eb.Message, want)
			}
		}
	}
}
