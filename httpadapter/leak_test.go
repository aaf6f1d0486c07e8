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
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/broker"
	"github.com/p2kit/p2kit/storage/memstore"
)

// secret is the text of every failure of failingStore: a backend name and
// a constraint name, which no answer may show.
const secret = "boltstore: secret-constraint-xyz"

// failingStore passes calls to a memstore until fail holds an error, then
// fails every method with it.
type failingStore struct {
	p2core.Store
	fail atomic.Pointer[error]
}

func (s *failingStore) err() error {
	if e := s.fail.Load(); e != nil {
		return *e
	}
	return nil
}

func (s *failingStore) CreateToken(ctx context.Context, t p2core.FederationToken) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Store.CreateToken(ctx, t)
}

func (s *failingStore) RedeemToken(ctx context.Context, hash [32]byte, server string, now time.Time) (p2core.FederationToken, error) {
	if err := s.err(); err != nil {
		return p2core.FederationToken{}, err
	}
	return s.Store.RedeemToken(ctx, hash, server, now)
}

func (s *failingStore) DeleteUserTokens(ctx context.Context, user p2core.UserID) (int, error) {
	if err := s.err(); err != nil {
		return 0, err
	}
	return s.Store.DeleteUserTokens(ctx, user)
}

func (s *failingStore) DeleteAllTokens(ctx context.Context) (int, error) {
	if err := s.err(); err != nil {
		return 0, err
	}
	return s.Store.DeleteAllTokens(ctx)
}

func (s *failingStore) PurgeExpiredTokens(ctx context.Context, now time.Time) (int, error) {
	if err := s.err(); err != nil {
		return 0, err
	}
	return s.Store.PurgeExpiredTokens(ctx, now)
}

func (s *failingStore) Setting(ctx context.Context, key string) ([]byte, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.Store.Setting(ctx, key)
}

func (s *failingStore) PutSetting(ctx context.Context, key string, value []byte) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Store.PutSetting(ctx, key, value)
}

func (s *failingStore) CreateSetting(ctx context.Context, key string, value []byte) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Store.CreateSetting(ctx, key, value)
}

func (s *failingStore) CreateSession(ctx context.Context, x p2core.Session) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Store.CreateSession(ctx, x)
}

func (s *failingStore) SessionByToken(ctx context.Context, hash [32]byte) (p2core.Session, error) {
	if err := s.err(); err != nil {
		return p2core.Session{}, err
	}
	return s.Store.SessionByToken(ctx, hash)
}

func (s *failingStore) Sessions(ctx context.Context, user p2core.UserID) ([]p2core.Session, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.Store.Sessions(ctx, user)
}

func (s *failingStore) EndSession(ctx context.Context, user p2core.UserID, session p2core.SessionID, now time.Time) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Store.EndSession(ctx, user, session, now)
}

func (s *failingStore) UserIDForFID(ctx context.Context, fid p2core.FID, candidate p2core.UserID) (p2core.UserID, error) {
	if err := s.err(); err != nil {
		return 0, err
	}
	return s.Store.UserIDForFID(ctx, fid, candidate)
}

func (s *failingStore) PutIDCert(ctx context.Context, c p2core.IDCert) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Store.PutIDCert(ctx, c)
}

func (s *failingStore) CurrentIDCert(ctx context.Context, user p2core.UserID, session p2core.SessionID) (p2core.IDCert, error) {
	if err := s.err(); err != nil {
		return p2core.IDCert{}, err
	}
	return s.Store.CurrentIDCert(ctx, user, session)
}

func (s *failingStore) IDCertsAt(ctx context.Context, user p2core.UserID, at time.Time) ([]p2core.IDCert, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.Store.IDCertsAt(ctx, user, at)
}

func (s *failingStore) ServerKeys(ctx context.Context) ([]p2core.ServerKey, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.Store.ServerKeys(ctx)
}

func (s *failingStore) AddServerKey(ctx context.Context, k p2core.ServerKey, previous []byte) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Store.AddServerKey(ctx, k, previous)
}

func (s *failingStore) AddKeyPackages(ctx context.Context, kps []p2core.KeyPackage, max int, now time.Time) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Store.AddKeyPackages(ctx, kps, max, now)
}

func (s *failingStore) SetLastResort(ctx context.Context, kp p2core.KeyPackage, now time.Time) error {
	if err := s.err(); err != nil {
		return err
	}
	return s.Store.SetLastResort(ctx, kp, now)
}

func (s *failingStore) ClaimKeyPackages(ctx context.Context, user p2core.UserID, suite uint16, now time.Time) ([]p2core.ClaimedKeyPackage, error) {
	if err := s.err(); err != nil {
		return nil, err
	}
	return s.Store.ClaimKeyPackages(ctx, user, suite, now)
}

func (s *failingStore) KeyPackageStatus(ctx context.Context, user p2core.UserID, session p2core.SessionID, now time.Time) (p2core.KeyPackageStatus, error) {
	if err := s.err(); err != nil {
		return p2core.KeyPackageStatus{}, err
	}
	return s.Store.KeyPackageStatus(ctx, user, session, now)
}

func (s *failingStore) PurgeExpiredKeyPackages(ctx context.Context, now time.Time) (int, error) {
	if err := s.err(); err != nil {
		return 0, err
	}
	return s.Store.PurgeExpiredKeyPackages(ctx, now)
}

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
			store.fail.Store(&failure)

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
