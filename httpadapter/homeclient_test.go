package httpadapter_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
)

// loopbackHome returns a HomeClient that resolves "home.test" to srv and
// may connect to loopback.
func loopbackHome(srv *httptest.Server, mutate func(*httpadapter.HomeClientOptions)) *httpadapter.HomeClient {
	opts := httpadapter.HomeClientOptions{
		Resolver:      httpadapter.StaticResolver{"home.test": srv.URL},
		AllowInsecure: true, AllowPrivateAddresses: true,
	}
	if mutate != nil {
		mutate(&opts)
	}
	return httpadapter.NewHomeClient(opts)
}

func wantKind(t *testing.T, err error, kind error) {
	t.Helper()
	if !errors.Is(err, kind) {
		t.Fatalf("err = %v, want one matching %v", err, kind)
	}
}

func TestHomeClientRefusesRedirectsToOtherHosts(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		w.Write([]byte(`"AAAA"`))
	}))
	defer other.Close()
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	defer home.Close()
	hc := loopbackHome(home, nil)
	_, err := hc.ServerKey(ctx, "home.test", time.Time{})
	wantKind(t, err, p2core.ErrHomeUnreachable)
	_, err = hc.RedeemToken(ctx, "home.test", "secret-token", "https://b.test")
	wantKind(t, err, p2core.ErrHomeUnreachable)
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
	if !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("the error for the log %q does not say why", err)
	}
}

func TestHomeClientCapsAnswerSizes(t *testing.T) {
	big := `"` + strings.Repeat("A", 70<<10) + `"`
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/p2core/token/redeem" {
			w.Write([]byte(`{"user_id":"1","fid":"a@home.test","server":"https://b.test","issued_at":1,"expires_at":2,"pad":"` + strings.Repeat("x", 5<<10) + `"}`))
			return
		}
		w.Write([]byte(big))
	}))
	defer home.Close()
	hc := loopbackHome(home, nil)
	_, err := hc.ServerKey(ctx, "home.test", time.Time{})
	wantKind(t, err, p2core.ErrHomeUnreachable)
	_, err = hc.RedeemToken(ctx, "home.test", "tok", "https://b.test")
	wantKind(t, err, p2core.ErrHomeUnreachable)

	// The caps are options: raised, the same answers are read.
	hc = loopbackHome(home, func(o *httpadapter.HomeClientOptions) { o.MaxKeyBytes, o.MaxRedeemBytes = 1<<20, 1<<20 })
	if key, err := hc.ServerKey(ctx, "home.test", time.Time{}); err != nil || len(key) == 0 {
		t.Fatalf("with a larger cap: %d bytes, %v", len(key), err)
	}
	if tok, err := hc.RedeemToken(ctx, "home.test", "tok", "https://b.test"); err != nil || tok.FID != "a@home.test" {
		t.Fatalf("with a larger cap: %+v, %v", tok, err)
	}
}

func TestHomeClientTimesOut(t *testing.T) {
	release := make(chan struct{})
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer home.Close()
	defer close(release)
	hc := loopbackHome(home, func(o *httpadapter.HomeClientOptions) { o.Timeout = 200 * time.Millisecond })
	start := time.Now()
	_, err := hc.ServerKey(ctx, "home.test", time.Time{})
	wantKind(t, err, p2core.ErrHomeUnreachable)
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("gave up after %v, want about 200ms", d)
	}
	if e := strings.ToLower(err.Error()); !strings.Contains(e, "timeout") && !strings.Contains(e, "deadline") {
		t.Fatalf("the error for the log %q does not say it timed out", err)
	}
}

func TestHomeClientReturnsTheCallersContextError(t *testing.T) {
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	defer home.Close()
	c, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err := loopbackHome(home, nil).ServerKey(c, "home.test", time.Time{})
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, p2core.ErrHomeUnreachable) {
		t.Fatalf("err = %v, want the caller's context error", err)
	}
}

func TestHomeClientRefusesPrivateAddressesByDefault(t *testing.T) {
	var hits atomic.Int32
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer home.Close()
	hc := loopbackHome(home, func(o *httpadapter.HomeClientOptions) { o.AllowPrivateAddresses = false })
	_, err := hc.ServerKey(ctx, "home.test", time.Time{})
	wantKind(t, err, p2core.ErrHomeUnreachable)
	if !strings.Contains(err.Error(), "127.0.0.0/8 (Loopback, RFC 1122)") {
		t.Fatalf("the error for the log %q does not say why", err)
	}
	if hits.Load() != 0 {
		t.Fatal("the loopback server was contacted")
	}
}

func TestHomeClientNeedsAllowInsecureForHTTP(t *testing.T) {
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer home.Close()
	hc := loopbackHome(home, func(o *httpadapter.HomeClientOptions) { o.AllowInsecure = false })
	_, err := hc.ServerKey(ctx, "home.test", time.Time{})
	wantKind(t, err, p2core.ErrUnknownHome)
}

func TestHomeClientMapsAnswersToSentinels(t *testing.T) {
	var status atomic.Int32
	var body atomic.Value
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(status.Load()))
		w.Write([]byte(body.Load().(string)))
	}))
	defer home.Close()
	hc := loopbackHome(home, nil)
	const secret = "the-token-text-must-never-show"
	for _, tc := range []struct {
		status int
		body   string
		key    error // for ServerKey
		redeem error // for RedeemToken
	}{
		{404, `{"errcode":404,"error":"P2CORE_NOT_FOUND","message":"no such route"}`, p2core.ErrUnknownHome, p2core.ErrHomeUnreachable},
		{404, `{"errcode":404,"error":"P2CORE_TOKEN_INVALID","message":"x"}`, p2core.ErrUnknownHome, p2core.ErrTokenInvalid},
		{500, `{"errcode":500,"error":"P2CORE_INTERNAL","message":"x"}`, p2core.ErrHomeUnreachable, p2core.ErrHomeUnreachable},
		{503, `<html>down</html>`, p2core.ErrHomeUnreachable, p2core.ErrHomeUnreachable},
		{400, `{"errcode":400,"error":"P2CORE_INVALID_SERVER","message":"x"}`, p2core.ErrHomeUnreachable, p2core.ErrHomeUnreachable},
		{200, `not json`, p2core.ErrHomeUnreachable, p2core.ErrHomeUnreachable},
		{200, `"not base64!"`, p2core.ErrHomeUnreachable, p2core.ErrHomeUnreachable},
		{200, `{"user_id":"0","fid":"a@home.test","server":"https://b.test"}`, p2core.ErrHomeUnreachable, p2core.ErrHomeUnreachable},
		{200, `{"user_id":"7","fid":"not a fid","server":"https://b.test"}`, p2core.ErrHomeUnreachable, p2core.ErrHomeUnreachable},
	} {
		status.Store(int32(tc.status))
		body.Store(tc.body)
		_, err := hc.ServerKey(ctx, "home.test", time.Unix(1700000000, 0))
		wantKind(t, err, tc.key)
		_, err = hc.RedeemToken(ctx, "home.test", secret, "https://b.test")
		wantKind(t, err, tc.redeem)
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("error shows the token: %v", err)
		}
	}
	status.Store(200)
	body.Store(`{"user_id":"7","fid":"Alice@Home.test","server":"HTTPS://B.test","issued_at":1700000000,"expires_at":1700000300,"later_field":true}`)
	tok, err := hc.RedeemToken(ctx, "home.test", secret, "https://b.test")
	if err != nil || tok.UserID != 7 || tok.FID != "alice@home.test" || tok.Server != "https://b.test" || tok.ExpiresAt.Unix() != 1700000300 {
		t.Fatalf("redeem: %+v, %v", tok, err)
	}
}

func TestResolvers(t *testing.T) {
	u, err := httpadapter.DefaultResolver{}.Resolve(ctx, "Chat.Example.com")
	if err != nil || u != "https://chat.example.com" {
		t.Fatalf("DefaultResolver: %q, %v", u, err)
	}
	_, err = httpadapter.DefaultResolver{}.Resolve(ctx, "evil.com/path")
	wantKind(t, err, p2core.ErrUnknownHome)
	r := httpadapter.StaticResolver{"a.test": "http://127.0.0.1:1"}
	if u, err := r.Resolve(ctx, "A.test"); err != nil || u != "http://127.0.0.1:1" {
		t.Fatalf("StaticResolver: %q, %v", u, err)
	}
	_, err = r.Resolve(ctx, "b.test")
	wantKind(t, err, p2core.ErrUnknownHome)
	_, err = httpadapter.NewHomeClient(httpadapter.HomeClientOptions{Resolver: r}).ServerKey(ctx, "b.test", time.Time{})
	wantKind(t, err, p2core.ErrUnknownHome)
}

func TestNonPublicAddressesAreRefused(t *testing.T) {
	for addr, refused := range map[string]bool{
		"127.0.0.1:443": true, "10.1.2.3:443": true, "192.168.1.1:443": true, "172.16.0.1:443": true,
		"169.254.169.254:80": true, "100.64.1.1:443": true, "0.0.0.0:443": true,
		"[::1]:443": true, "[fe80::1]:443": true, "[fd00::1]:443": true, "[::ffff:10.0.0.1]:443": true,
		"93.184.216.34:443": false, "[2606:2800:220:1:248:1893:25c8:1946]:443": false,
	} {
		err := httpadapter.RefuseNonPublic("tcp", addr, nil)
		if (err != nil) != refused {
			t.Errorf("%s: err = %v, want refused=%v", addr, err, refused)
		}
	}
}

// TestHomeClientGivesOneTextForEveryUnreachableHome checks that the caller
// cannot tell a private address from a missing name or a closed port (an
// oracle for internal names): one sentinel, one message; the detail is in
// the error's cause, for the log.
func TestHomeClientGivesOneTextForEveryUnreachableHome(t *testing.T) {
	var hits atomic.Int32
	home := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer home.Close()
	closed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	closedURL := closed.URL
	closed.Close()
	port := home.URL[strings.LastIndexByte(home.URL, ':'):]
	cases := []struct {
		name, url string
		private   bool
		detail    string
	}{
		{"loopback literal", home.URL, false, "127.0.0.0/8"},
		{"name resolving to loopback", "http://localhost" + port, false, "not globally reachable"},
		{"no such host", "http://no-such-host.invalid", false, "no-such-host.invalid"},
		{"closed port", closedURL, true, "refused"},
	}
	var messages []string
	for _, c := range cases {
		hc := httpadapter.NewHomeClient(httpadapter.HomeClientOptions{
			Resolver:      httpadapter.StaticResolver{"home.test": c.url},
			AllowInsecure: true, AllowPrivateAddresses: c.private,
		})
		_, err := hc.ServerKey(ctx, "home.test", time.Time{})
		wantKind(t, err, p2core.ErrHomeUnreachable)
		if !strings.Contains(err.Error(), c.detail) {
			t.Errorf("%s: the error for the log %q does not say %q", c.name, err, c.detail)
		}
		messages = append(messages, p2core.Message(err))
	}
	for i, m := range messages {
		if m != messages[0] {
			t.Errorf("%s: the caller sees %q, but %q for %s", cases[i].name, m, messages[0], cases[0].name)
		}
	}
	if hits.Load() != 0 {
		t.Fatal("the loopback server was contacted")
	}
}
