package httpadapter_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
	"github.com/p2kit/p2kit/storage/memstore"
)

// fuzzHomes is the home server of other.test, in process: a second
// Service reached without a network, so route 16 runs its whole path.
type fuzzHomes struct{ home *p2core.Service }

func (h fuzzHomes) ServerKey(ctx context.Context, domain string, at time.Time) ([]byte, error) {
	if domain != "other.test" {
		return nil, p2core.Errorf(p2core.ErrUnknownHome, "no home server for %s", domain)
	}
	k, err := h.home.ServerPublicKey(ctx, at)
	if errors.Is(err, p2core.ErrNotFound) {
		return nil, p2core.Errorf(p2core.ErrUnknownHome, "no key at %s", at)
	}
	if err != nil {
		return nil, p2core.Errorf(p2core.ErrHomeUnreachable, "home: %v", err)
	}
	return k.Public, nil
}

func (h fuzzHomes) RedeemToken(ctx context.Context, domain, token, self string) (p2core.FederationToken, error) {
	if domain != "other.test" {
		return p2core.FederationToken{}, p2core.Errorf(p2core.ErrUnknownHome, "no home server for %s", domain)
	}
	t, err := h.home.RedeemFederationToken(ctx, token, self)
	if err != nil && !errors.Is(err, p2core.ErrTokenInvalid) {
		return t, p2core.Errorf(p2core.ErrHomeUnreachable, "home: %v", err)
	}
	return t, err
}

// fuzzServer is the Handler under fuzz on memstore with real sessions:
// tokens[0] is none (anonymous), then a user, an administrator and a
// foreign user's session. The handlers differ only in rate limits.
type fuzzServer struct {
	open, limited http.Handler
	errs          *lockedBuffer // what the Handlers log: the cause of a 5xx
	tokens        [4]string
	documented    *http.ServeMux // route pattern -> documentedStatuses
	seeds         [][3]string    // method, target, body
}

func newFuzzServer(f *testing.F) *fuzzServer {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	clock := func() time.Time { return now }
	home, err := p2core.NewService(memstore.New(), p2core.Config{Domain: "other.test", Now: clock})
	if err != nil {
		f.Fatal(err)
	}
	store := memstore.New()
	svc, err := p2core.NewService(store, p2core.Config{Domain: "home.test", Now: clock, SelfURL: "https://home.test", Homes: fuzzHomes{home}})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []*p2core.Service{home, svc} {
		if err := s.Init(ctx); err != nil {
			f.Fatal(err)
		}
	}
	const adminID = 2
	auth := httpadapter.SessionAuthenticator{Service: svc, IsAdmin: func(_ context.Context, u p2core.UserID) bool { return u == adminID }}
	errs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(errs, nil))
	fs := &fuzzServer{
		errs:    errs,
		open:    httpadapter.New(svc, httpadapter.Options{Authenticator: auth, Logger: logger, RateLimits: httpadapter.RateLimits{Disabled: true}}),
		limited: httpadapter.New(svc, httpadapter.Options{Authenticator: auth, Logger: logger, RateLimits: httpadapter.RateLimits{Principal: httpadapter.Rate{PerSecond: 1, Burst: 2}, Claim: httpadapter.Rate{PerSecond: 1, Burst: 1}, Address: httpadapter.Rate{PerSecond: 1, Burst: 2}}}),
	}
	user := p2core.NewSnowflakes(1, clock).Next()
	var alice p2core.Principal
	if fs.tokens[1], alice, err = fuzzLogin(ctx, svc, user, "alice@home.test"); err != nil {
		f.Fatal(err)
	}
	if fs.tokens[2], _, err = fuzzLogin(ctx, svc, adminID, "root@home.test"); err != nil {
		f.Fatal(err)
	}

	// Alice's session has an ID-Cert, so valid KeyPackages get through.
	key, err := idcerttest.NewClientKey("alice@home.test", bytes.Repeat([]byte{7}, 32), now.Add(-time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	if _, err := svc.IssueIDCert(ctx, alice, []byte(key.Armored)); err != nil {
		f.Fatal(err)
	}
	b := mlstest.NewEd25519(key.Signer)
	b.Now = clock
	b.Identity = []byte("alice@home.test")
	kps := make([]string, 3)
	for i := range kps {
		kp, err := b.Build()
		if err != nil {
			f.Fatal(err)
		}
		kps[i] = base64.StdEncoding.EncodeToString(kp)
	}

	// Bob of other.test logs in here with a real token and ID-Cert, and a
	// second token and ID-Cert are kept for a seed of route 16.
	bobKey, err := idcerttest.NewClientKey("bob@other.test", bytes.Repeat([]byte{9}, 32), now.Add(-time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	bob := p2core.Principal{UserID: 77, FID: "bob@other.test"}
	var route16 [2]string
	for i := range 2 {
		_, sess, err := fuzzLogin(ctx, home, bob.UserID, string(bob.FID))
		if err != nil {
			f.Fatal(err)
		}
		cert, err := home.IssueIDCert(ctx, sess, []byte(bobKey.Armored))
		if err != nil {
			f.Fatal(err)
		}
		fedTok, _, err := home.IssueFederationToken(ctx, sess, "https://home.test")
		if err != nil {
			f.Fatal(err)
		}
		if i == 0 {
			if fs.tokens[3], _, err = svc.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: fedTok, IDCert: cert.Cert}); err != nil {
				f.Fatal(err)
			}
			continue
		}
		route16 = [2]string{fedTok, base64.StdEncoding.EncodeToString(cert.Cert)}
	}
	bobKPs := make([]string, 2)
	for i := range bobKPs {
		kb := mlstest.NewEd25519(bobKey.Signer)
		kb.Identity = []byte("bob@other.test")
		kp, err := kb.Build()
		if err != nil {
			f.Fatal(err)
		}
		bobKPs[i] = base64.StdEncoding.EncodeToString(kp)
	}
	fedTok, _, err := svc.IssueFederationToken(ctx, alice, "https://b.example")
	if err != nil {
		f.Fatal(err)
	}

	js := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	uid := user.String()
	fs.seeds = [][3]string{
		{"POST", "/p2core/token/redeem", js(httpadapter.RedeemRequest{Token: fedTok, Server: "https://b.example"})},
		{"POST", "/p2core/session/auth", js(httpadapter.SessionAuthRequest{FederationToken: route16[0], IDCert: route16[1], KeyPackages: []string{bobKPs[1]}})},
		{"POST", "/p2core/token", `{"server":"https://b.example"}`},
		{"POST", "/p2core/token", `{"server":"http://127.0.0.1:8080"}`},
		{"GET", "/p2core/token/status", ""},
		{"PUT", "/p2core/token/status", `{"enabled":false}`},
		{"PUT", "/p2core/token/status", `{"enabled":true}`},
		{"DELETE", "/p2core/token/@me", ""},
		{"DELETE", "/p2core/token/" + uid, ""},
		{"DELETE", "/p2core/token/@all", ""},
		{"POST", "/p2core/key/user/@me", js(key.Armored)},
		{"POST", "/p2core/key/user/@me", route16[1]},
		{"GET", "/p2core/key/user/" + uid, ""},
		{"GET", "/p2core/key/user/" + uid + "?timestamp=" + strconv.FormatInt(now.Unix(), 10), ""},
		{"GET", "/p2core/key/server?timestamp=0", ""},
		{"GET", "/p2core/key/server", ""},
		{"PUT", "/p2core/key/server", ""},
		{"POST", "/p2core/keypackage/@me", js(kps[:2])},
		{"POST", "/p2core/keypackage/@me", js(bobKPs[:1])},
		{"PUT", "/p2core/keypackage_lr", js(kps[2])},
		{"GET", "/p2core/keypackage/" + uid + "?cipher_suite=1", ""},
		{"GET", "/p2core/keypackage/@me/status", ""},
		{"GET", "/p2core/openapi.json", ""},
		{"PATCH", "/p2core/token", "{}"},
		{"GET", "/p2core/nope", ""},
		{"POST", "/p2core/keypackage/@me", `["AAAA"]` + strings.Repeat(" ", 8)},
		{"POST", "/p2core/token", `{"server":"https://b.example","x":1}`},
	}

	// Which statuses and codes the description documents for each route.
	doc := loadOpenAPI(f)
	paths := obj(f, doc["paths"], "paths")
	fs.documented = http.NewServeMux()
	for _, rt := range httpadapter.RouteTable() {
		item, _ := paths[rt.Path].(map[string]any)
		op, ok := item[strings.ToLower(rt.Method)].(map[string]any)
		if !ok {
			f.Fatalf("%s %s is not in openapi.json", rt.Method, rt.Path)
		}
		fs.documented.Handle(rt.Method+" "+rt.Path, documentedStatuses(documentedCodes(f, doc, op)))
	}
	return fs
}

// documentedStatuses holds the statuses and codes one operation
// documents; it is a Handler only so a ServeMux can match routes to it.
type documentedStatuses map[int]map[string]bool

func (d documentedStatuses) ServeHTTP(http.ResponseWriter, *http.Request) {}

func errorCode(body []byte) string {
	var eb struct{ Error string }
	_ = json.Unmarshal(body, &eb)
	return eb.Error
}

func fuzzLogin(ctx context.Context, svc *p2core.Service, user p2core.UserID, fid string) (string, p2core.Principal, error) {
	tok, sess, err := svc.CreateSession(ctx, user, p2core.FID(fid))
	return tok, p2core.Principal{UserID: user, FID: sess.FID, SessionID: sess.SessionID}, err
}

// FuzzHandler sends arbitrary methods, targets and bodies to the Handler
// as anonymous, a user, an administrator or a foreign user, with and
// without rate limits. It asserts no panic and no 5xx; that every 4xx is a
// JSON error body whose errcode is the status and whose code is one the
// Handler documents; that 401 carries WWW-Authenticate, 405 Allow and 429
// Retry-After; that a JSON success body is one JSON value; and that the
// status is one the OpenAPI description lists for the route (or the
// generic 404/405). The Handler keeps its state across inputs, as a
// server does.
func FuzzHandler(f *testing.F) {
	fs := newFuzzServer(f)
	for _, s := range fs.seeds {
		for who := range uint8(4) {
			f.Add(who, s[0], s[1], []byte(s[2]))
		}
	}
	f.Add(uint8(4+1), "GET", "/p2core/key/server", []byte(nil))   // armored answer
	f.Add(uint8(8+1), "GET", "/p2core/keypackage/1", []byte(nil)) // rate limited
	codes := httpadapter.ErrorCodes()
	f.Fuzz(func(t *testing.T, who uint8, method, target string, body []byte) {
		if !strings.HasPrefix(target, "/") {
			return
		}
		req, err := http.NewRequest(method, "http://home.test"+target, bytes.NewReader(body))
		if err != nil {
			return // not a request a server could receive
		}
		req.RemoteAddr = "192.0.2.1:1234"
		if tok := fs.tokens[who&3]; tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		if who&4 != 0 {
			req.Header.Set("Accept", "application/pgp-keys")
		}
		h := fs.open
		if who&8 != 0 {
			h = fs.limited
		}
		rec := httptest.NewRecorder()
		fs.errs.Reset()
		h.ServeHTTP(rec, req)
		status, got := rec.Code, rec.Body.Bytes()
		if status >= 500 {
			// The Handler keeps state across inputs, so a failing input may
			// not fail alone: the logged cause is what to go on.
			t.Fatalf("%s %s: %d %s\nlogged: %s", method, target, status, got, fs.errs.String())
		}
		if status >= 300 && status < 400 {
			if rec.Header().Get("Location") == "" {
				t.Fatalf("%s %s: redirect %d without Location", method, target, status)
			}
			return
		}
		if status >= 400 {
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("%s %s: %d with Content-Type %q", method, target, status, ct)
			}
			var eb struct {
				Errcode int    `json:"errcode"`
				Error   string `json:"error"`
				Message string `json:"message"`
			}
			dec := json.NewDecoder(bytes.NewReader(got))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&eb); err != nil || dec.More() {
				t.Fatalf("%s %s: %d body %q is not the error shape: %v", method, target, status, got, err)
			}
			if eb.Errcode != status || codes[eb.Error] != status || eb.Message == "" {
				t.Fatalf("%s %s: %d with error body %+v", method, target, status, eb)
			}
			need := map[int]string{401: "WWW-Authenticate", 405: "Allow", 429: "Retry-After"}[status]
			if need != "" && rec.Header().Get(need) == "" {
				t.Fatalf("%s %s: %d without %s", method, target, status, need)
			}
		} else if len(got) > 0 && rec.Header().Get("Content-Type") == "application/json" && !json.Valid(got) {
			t.Fatalf("%s %s: %d with invalid JSON %q", method, target, status, got)
		}
		if status == http.StatusNoContent && len(got) > 0 {
			t.Fatalf("%s %s: 204 with a body", method, target)
		}
		if dh, pattern := fs.documented.Handler(req); pattern != "" {
			if d, ok := dh.(documentedStatuses); ok {
				codes, ok := d[status]
				if !ok || status >= 400 && !codes[errorCode(got)] {
					t.Fatalf("%s %s: %d %s is not documented for %s", method, target, status, got, pattern)
				}
			}
		} else if status != 404 && status != 405 {
			t.Fatalf("%s %s: no route, but status %d", method, target, status)
		}
	})
}

// lockedBuffer is a bytes.Buffer safe for the Handlers' loggers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Reset() { b.mu.Lock(); b.buf.Reset(); b.mu.Unlock() }

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
