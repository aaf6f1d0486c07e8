package httpadapter_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

var ctx = context.Background()

func TestFederationTokenIssueAndRedeemOnce(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(101, "alice", false)
	status, hdr, body := e.raw("POST", "/p2core/token", alice.token, `{"server": "https://Foreign.Example/"}`)
	if status != http.StatusCreated {
		t.Fatalf("status %d: %s", status, body)
	}
	if hdr.Get("Cache-Control") != "no-store" || hdr.Get("Content-Type") != "application/json" {
		t.Errorf("headers %v", hdr)
	}
	var tok string
	if err := jsonUnmarshal(body, &tok); err != nil || len(tok) != 43 {
		t.Fatalf("token %q (%v): want a JSON string of 43 URL-safe characters", body, err)
	}
	got, err := e.anon().RedeemToken(ctx, tok, "https://foreign.example")
	if err != nil {
		t.Fatal(err)
	}
	if got.UserID != 101 || got.FID != "alice@home.test" || got.Server != "https://foreign.example" || got.ExpiresAt-got.IssuedAt != 300 {
		t.Errorf("redeemed %+v", got)
	}
	_, err = e.anon().RedeemToken(ctx, tok, "https://foreign.example")
	apiErr(t, err, 404, "P2CORE_TOKEN_INVALID")
	if !errors.Is(err, p2core.ErrTokenInvalid) {
		t.Error("APIError does not match p2core.ErrTokenInvalid")
	}
}

func TestStoredTokenIsOnlyItsHash(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(101, "alice", false)
	tok, err := alice.c.IssueToken(ctx, "https://foreign.example")
	if err != nil {
		t.Fatal(err)
	}
	// The store can redeem by hash, so the hash is what it keeps.
	got, err := e.store.RedeemToken(ctx, p2core.HashToken(tok), "https://foreign.example", e.clock.Now())
	if err != nil || got.UserID != 101 {
		t.Fatalf("redeem by hash: %+v, %v", got, err)
	}
}

func TestTokenForAnotherServerIsRefusedAndNotConsumed(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(101, "alice", false)
	tok, err := alice.c.IssueToken(ctx, "https://b.example")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.anon().RedeemToken(ctx, tok, "https://c.example")
	apiErr(t, err, 404, "P2CORE_TOKEN_INVALID")
	if _, err := e.anon().RedeemToken(ctx, tok, "https://b.example"); err != nil {
		t.Fatalf("rightful server refused after a wrong one tried: %v", err)
	}
}

func TestExpiredTokenIsRefused(t *testing.T) {
	e := newEnv(t, func(c *p2core.Config) { c.TokenTTL = time.Minute })
	alice := e.login(101, "alice", false)
	tok, err := alice.c.IssueToken(ctx, "https://b.example")
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Minute)
	_, err = e.anon().RedeemToken(ctx, tok, "https://b.example")
	apiErr(t, err, 404, "P2CORE_TOKEN_INVALID")
}

func TestDeleteOwnTokensReturnsExactCountAndRevokes(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(101, "alice", false)
	bob := e.login(102, "bob", false)
	var toks []string
	for i := 0; i < 3; i++ {
		tok, err := alice.c.IssueToken(ctx, fmt.Sprintf("https://s%d.example", i))
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	bobTok, _ := bob.c.IssueToken(ctx, "https://s0.example")

	status, _, body := e.raw("DELETE", "/p2core/token/@me", alice.token, "")
	if status != 200 || strings.TrimSpace(string(body)) != "3" {
		t.Fatalf("DELETE @me = %d %s, want 200 3", status, body)
	}
	if n, err := alice.c.DeleteOwnTokens(ctx); err != nil || n != 0 {
		t.Fatalf("second DELETE @me = %d, %v; want 0", n, err)
	}
	for i, tok := range toks {
		_, err := e.anon().RedeemToken(ctx, tok, fmt.Sprintf("https://s%d.example", i))
		apiErr(t, err, 404, "P2CORE_TOKEN_INVALID")
	}
	if _, err := e.anon().RedeemToken(ctx, bobTok, "https://s0.example"); err != nil {
		t.Fatalf("bob's token was deleted with alice's: %v", err)
	}
}

func TestAdminRevokesUserAndAllTokens(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.login(1, "root", true)
	alice := e.login(101, "alice", false)
	bob := e.login(102, "bob", false)
	a1, _ := alice.c.IssueToken(ctx, "https://b.example")
	b1, _ := bob.c.IssueToken(ctx, "https://b.example")
	if status, _, body := e.raw("DELETE", "/p2core/token/101", admin.token, ""); status != 204 || len(body) != 0 {
		t.Fatalf("DELETE /p2core/token/101 = %d %q", status, body)
	}
	_, err := e.anon().RedeemToken(ctx, a1, "https://b.example")
	apiErr(t, err, 404, "P2CORE_TOKEN_INVALID")
	b2, _ := bob.c.IssueToken(ctx, "https://b.example")
	if err := admin.c.DeleteAllTokens(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{b1, b2} {
		_, err := e.anon().RedeemToken(ctx, tok, "https://b.example")
		apiErr(t, err, 404, "P2CORE_TOKEN_INVALID")
	}
}

func TestTokenGenerationSwitchIsAdminOnlyAndPersisted(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.login(1, "root", true)
	alice := e.login(101, "alice", false)
	if on, err := e.anon().TokenGenerationEnabled(ctx); err != nil || !on {
		t.Fatalf("status = %v, %v; want enabled", on, err)
	}
	apiErr(t, alice.c.SetTokenGeneration(ctx, false), 403, "P2CORE_NOT_ADMINISTRATOR")
	if err := admin.c.SetTokenGeneration(ctx, false); err != nil {
		t.Fatal(err)
	}
	_, err := alice.c.IssueToken(ctx, "https://b.example")
	apiErr(t, err, 403, "P2CORE_TOKEN_GENERATION_DISABLED")
	if v, err := e.store.Setting(ctx, "federation_token_generation"); err != nil || string(v) != "off" {
		t.Fatalf("persisted setting = %q, %v", v, err)
	}
	if on, _ := e.anon().TokenGenerationEnabled(ctx); on {
		t.Fatal("status still enabled")
	}
	status, _, body := e.raw("PUT", "/p2core/token/status", admin.token, `{}`)
	wantError(t, status, body, 400, "P2CORE_BAD_REQUEST")
	if err := admin.c.SetTokenGeneration(ctx, true); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.c.IssueToken(ctx, "https://b.example"); err != nil {
		t.Fatal(err)
	}
}

func TestFederationPolicyRefusal(t *testing.T) {
	e := newEnv(t, func(c *p2core.Config) {
		c.FederationPolicy = p2core.FederationPolicyFunc(func(_ context.Context, s string) error {
			if s == "https://evil.example" {
				return errors.New("blocked")
			}
			return nil
		})
	})
	alice := e.login(101, "alice", false)
	_, err := alice.c.IssueToken(ctx, "https://EVIL.example")
	apiErr(t, err, 404, "P2CORE_NOT_FEDERATED")
	if _, err := alice.c.IssueToken(ctx, "https://good.example"); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentRedemptionsSucceedExactlyOnce(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(101, "alice", false)
	tok, err := alice.c.IssueToken(ctx, "https://b.example")
	if err != nil {
		t.Fatal(err)
	}
	var ok, invalid atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, err := e.anon().RedeemToken(ctx, tok, "https://b.example")
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, p2core.ErrTokenInvalid):
				invalid.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 1 || invalid.Load() != 49 {
		t.Fatalf("%d successes and %d refusals, want 1 and 49", ok.Load(), invalid.Load())
	}
}

func TestBadInputGets4xxWithCode(t *testing.T) {
	e := newEnv(t, nil)
	admin := e.login(1, "root", true)
	alice := e.login(101, "alice", false)
	cases := []struct {
		name, method, path, token, body string
		status                          int
		code                            string
	}{
		{"malformed JSON", "POST", "/p2core/token", alice.token, `{"server": `, 400, "P2CORE_BAD_REQUEST"},
		{"not JSON", "POST", "/p2core/token", alice.token, `server=https://x`, 400, "P2CORE_BAD_REQUEST"},
		{"unknown field", "POST", "/p2core/token", alice.token, `{"server": "https://x.example", "extra": 1}`, 400, "P2CORE_BAD_REQUEST"},
		{"wrong type", "POST", "/p2core/token", alice.token, `{"server": 42}`, 400, "P2CORE_BAD_REQUEST"},
		{"array body", "POST", "/p2core/token", alice.token, `["https://x.example"]`, 400, "P2CORE_BAD_REQUEST"},
		{"trailing data", "POST", "/p2core/token", alice.token, `{"server": "https://x.example"} {}`, 400, "P2CORE_BAD_REQUEST"},
		{"empty body", "POST", "/p2core/token", alice.token, ``, 400, "P2CORE_BAD_REQUEST"},
		{"missing server", "POST", "/p2core/token", alice.token, `{}`, 400, "P2CORE_INVALID_SERVER"},
		{"ftp URL", "POST", "/p2core/token", alice.token, `{"server": "ftp://x"}`, 400, "P2CORE_INVALID_SERVER"},
		{"userinfo URL", "POST", "/p2core/token", alice.token, `{"server": "https://u:p@x"}`, 400, "P2CORE_INVALID_SERVER"},
		{"not a URL", "POST", "/p2core/token", alice.token, `{"server": "not a url"}`, 400, "P2CORE_INVALID_SERVER"},
		{"http without insecure", "POST", "/p2core/token", alice.token, `{"server": "http://x.example"}`, 400, "P2CORE_INVALID_SERVER"},
		{"enabled wrong type", "PUT", "/p2core/token/status", admin.token, `{"enabled": "no"}`, 400, "P2CORE_BAD_REQUEST"},
		{"user ID 0", "DELETE", "/p2core/token/0", admin.token, ``, 400, "P2CORE_INVALID_USER_ID"},
		{"user ID -1", "DELETE", "/p2core/token/-1", admin.token, ``, 400, "P2CORE_INVALID_USER_ID"},
		{"user ID abc", "DELETE", "/p2core/token/abc", admin.token, ``, 400, "P2CORE_INVALID_USER_ID"},
		{"user ID overflow", "DELETE", "/p2core/token/99999999999999999999", admin.token, ``, 400, "P2CORE_INVALID_USER_ID"},
		{"redeem junk token", "POST", "/p2core/token/redeem", "", `{"token": "x", "server": "https://b.example"}`, 404, "P2CORE_TOKEN_INVALID"},
		{"redeem bad server", "POST", "/p2core/token/redeem", "", `{"token": "x", "server": "ftp://b"}`, 400, "P2CORE_INVALID_SERVER"},
		{"redeem unknown field", "POST", "/p2core/token/redeem", "", `{"token": "x", "server": "https://b.example", "a": 1}`, 400, "P2CORE_BAD_REQUEST"},
		{"anonymous issue", "POST", "/p2core/token", "", `{"server": "https://b.example"}`, 401, "P2CORE_UNAUTHORIZED"},
		{"bad bearer", "POST", "/p2core/token", "not-a-token", `{"server": "https://b.example"}`, 401, "P2CORE_UNAUTHORIZED"},
		{"anonymous delete @me", "DELETE", "/p2core/token/@me", "", ``, 401, "P2CORE_UNAUTHORIZED"},
		{"user sets status", "PUT", "/p2core/token/status", alice.token, `{"enabled": false}`, 403, "P2CORE_NOT_ADMINISTRATOR"},
		{"user deletes other", "DELETE", "/p2core/token/102", alice.token, ``, 403, "P2CORE_NOT_ADMINISTRATOR"},
		{"user deletes all", "DELETE", "/p2core/token/@all", alice.token, ``, 403, "P2CORE_NOT_ADMINISTRATOR"},
		{"anonymous deletes all", "DELETE", "/p2core/token/@all", "", ``, 401, "P2CORE_UNAUTHORIZED"},
		{"unknown route", "GET", "/p2core/nope", "", ``, 404, "P2CORE_NOT_FOUND"},
		{"wrong method", "GET", "/p2core/token", alice.token, ``, 405, "P2CORE_METHOD_NOT_ALLOWED"},
		{"body too large", "POST", "/p2core/token", alice.token, `{"server": "` + strings.Repeat("a", 2<<20) + `"}`, 413, "P2CORE_BODY_TOO_LARGE"},
		{"over the route's own limit", "POST", "/p2core/token/redeem", "", `{"token": "` + strings.Repeat("a", 9<<10) + `", "server": "https://b.example"}`, 413, "P2CORE_BODY_TOO_LARGE"},
		{"key over route 8's limit", "POST", "/p2core/key/user/@me", alice.token, `"` + strings.Repeat("a", 300<<10) + `"`, 413, "P2CORE_BODY_TOO_LARGE"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, _, body := e.raw(c.method, c.path, c.token, c.body)
			wantError(t, status, body, c.status, c.code)
		})
	}
}

func TestMethodNotAllowedListsAllowedMethods(t *testing.T) {
	e := newEnv(t, nil)
	status, hdr, body := e.raw("PATCH", "/p2core/key/server", "", "")
	wantError(t, status, body, 405, "P2CORE_METHOD_NOT_ALLOWED")
	if got := hdr.Get("Allow"); got != "GET, HEAD, PUT" {
		t.Fatalf("Allow = %q, want %q", got, "GET, HEAD, PUT")
	}
}

func jsonUnmarshal(b []byte, v any) error {
	return jsonDecodeStrict(b, v)
}
