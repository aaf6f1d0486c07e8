package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/storage/memstore"
)

// newTestApp is the example's app on memstore, served in-process so that
// tests choose each request's client address.
func newTestApp(t *testing.T, logw io.Writer, args ...string) *app {
	t.Helper()
	c, err := parseFlags(append([]string{"-pbkdf2-iterations", "1000", "-domain", "home.test"}, args...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	logger := slog.New(newSampler(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo}), nil))
	a, err := newApp(context.Background(), store, c, logger)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// freezeAccountLimits gives a's /login and /register limits a clock that
// stands still, so that the counts below do not depend on how fast this
// machine runs the requests (a bucket refills while they run).
func freezeAccountLimits(a *app) {
	t0 := time.Now()
	a.accountLimits.limiter = httpadapter.NewTokenBuckets(func() time.Time { return t0 })
}

// account sends POST path with username and password from addr and
// returns the status.
func (a *app) account(path, addr, username, password string) int {
	b, _ := json.Marshal(map[string]string{"username": username, "password": password})
	r := httptest.NewRequest("POST", path, bytes.NewReader(b))
	r.RemoteAddr = addr + ":1234"
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	if w.Code == 429 && w.Header().Get("Retry-After") == "" {
		return -429 // a 429 without Retry-After: fails every caller's check
	}
	return w.Code
}

// count returns how many of statuses are want.
func count(statuses []int, want int) int {
	n := 0
	for _, s := range statuses {
		if s == want {
			n++
		}
	}
	return n
}

func TestLoginIsLimitedByAddressAndByUsername(t *testing.T) {
	a := newTestApp(t, io.Discard)
	freezeAccountLimits(a)
	lim := a.accountLimits
	// One address tries many usernames: its burst, then 429.
	var st []int
	for i := range 30 {
		st = append(st, a.account("/login", "192.0.2.1", fmt.Sprintf("user%d", i), "wrong password"))
	}
	if count(st, 401) != lim.loginPerAddress.Burst || count(st, 429) != 30-lim.loginPerAddress.Burst {
		t.Fatalf("one address, 30 usernames: %v", st)
	}
	// Many addresses try one username: its burst, then 429.
	st = nil
	for i := range 20 {
		st = append(st, a.account("/login", fmt.Sprintf("198.51.100.%d", i), "alice", "wrong password"))
	}
	if count(st, 401) != lim.loginPerUsername.Burst || count(st, 429) != 20-lim.loginPerUsername.Burst {
		t.Fatalf("20 addresses, one username: %v", st)
	}
	// Someone else, from elsewhere, still gets in.
	if s := a.account("/register", "203.0.113.9", "bob", "correct horse"); s != 201 {
		t.Fatalf("register bob: %d", s)
	}
	if s := a.account("/login", "203.0.113.10", "bob", "correct horse"); s != 201 {
		t.Fatalf("login bob: %d", s)
	}
}

func TestRegisterIsLimitedByAddressAndByUsername(t *testing.T) {
	a := newTestApp(t, io.Discard)
	freezeAccountLimits(a)
	lim := a.accountLimits
	var st []int
	for i := range 15 {
		st = append(st, a.account("/register", "192.0.2.1", fmt.Sprintf("user%d", i), "correct horse"))
	}
	if count(st, 201) != lim.registerPerAddress.Burst || count(st, 429) != 15-lim.registerPerAddress.Burst {
		t.Fatalf("one address, 15 registrations: %v", st)
	}
	st = nil
	for i := range 6 {
		st = append(st, a.account("/register", fmt.Sprintf("198.51.100.%d", i), "carol", "correct horse"))
	}
	// The first wins, the next are 409 (taken) until the name's burst is
	// spent, then 429.
	if st[0] != 201 || count(st, 409) != lim.registerPerUsername.Burst-1 || count(st, 429) != 6-lim.registerPerUsername.Burst {
		t.Fatalf("6 addresses, one username: %v", st)
	}
}

func TestNoRateLimitsTurnsTheAccountLimitsOff(t *testing.T) {
	a := newTestApp(t, io.Discard, "-no-rate-limits")
	for i := range 40 {
		if s := a.account("/login", "192.0.2.1", "alice", "wrong password"); s != 401 {
			t.Fatalf("login %d: %d", i, s)
		}
	}
}

// lines returns the complete lines written so far.
func (s *syncBuffer) lines() []string {
	t := strings.TrimSpace(s.String())
	if t == "" {
		return nil
	}
	return strings.Split(t, "\n")
}

// TestFailedForeignLoginLogsOneInfoLine: a route 16 call naming a home
// server that cannot be reached (anyone can send one) logs exactly one
// line, at Info (before: a WARN and an ERROR line).
func TestFailedForeignLoginLogsOneInfoLine(t *testing.T) {
	var logs syncBuffer
	a := newTestApp(t, &logs, "-insecure-federation", "-home", "far.example=http://127.0.0.1:1")
	cert := certFromHome(t, "far.example", "alice@far.example")
	before := len(logs.lines())
	body := fmt.Sprintf(`{"federation_token":"garbage","id_cert":%q}`, base64.StdEncoding.EncodeToString(cert))
	r := httptest.NewRequest("POST", "/p2core/session/auth", strings.NewReader(body))
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	if w.Code != http.StatusBadGateway {
		t.Fatalf("route 16 with an unreachable home: %d %s", w.Code, w.Body)
	}
	lines := logs.lines()[before:]
	if len(lines) != 1 || !strings.Contains(lines[0], "level=INFO") {
		t.Fatalf("a failed anonymous request logged %d lines, want one at INFO: %q", len(lines), lines)
	}
}

// TestSamplerKeepsEachKindOfLineApart floods one kind of line and checks
// that it is cut to the burst, that another kind still gets through, and
// that the next line of the flooded kind written says how many were
// dropped.
func TestSamplerKeepsEachKindOfLineApart(t *testing.T) {
	var out syncBuffer
	clk := time.Unix(1000, 0)
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clk }
	log := slog.New(newSampler(slog.NewTextHandler(&out, nil), now))
	for range 10_000 {
		log.Info("request failed", "path", "/p2core/session/auth")
	}
	log.Info("session created")
	lines := out.lines()
	flood := 0
	for _, l := range lines {
		if strings.Contains(l, "request failed") {
			flood++
		}
	}
	if flood != logBurst || !strings.Contains(lines[len(lines)-1], "session created") {
		t.Fatalf("10,000 lines of one kind wrote %d (want %d), and the other kind's line is %q", flood, logBurst, lines[len(lines)-1])
	}
	mu.Lock()
	clk = clk.Add(time.Second)
	mu.Unlock()
	log.Info("request failed", "path", "/p2core/session/auth")
	lines = out.lines()
	if last := lines[len(lines)-1]; !strings.Contains(last, "request failed") || !strings.Contains(last, fmt.Sprintf("suppressed=%d", 10_000-logBurst)) {
		t.Fatalf("line after the flood: %q", last)
	}
}
