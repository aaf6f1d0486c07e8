package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

// testServer is the example server running in-process on a free port.
type testServer struct {
	url  string
	data string
	stop func() error
}

// lineWriter sends each complete line written to it on a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		select {
		case w.lines <- strings.TrimSpace(line):
		default:
		}
	}
}

func startServer(t *testing.T, data string, extra ...string) *testServer {
	t.Helper()
	return startServerLogging(t, data, io.Discard, extra...)
}

// startServerLogging is startServer with the server's log written to logw.
func startServerLogging(t *testing.T, data string, logw io.Writer, extra ...string) *testServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lineWriter{lines: make(chan string, 16)}
	args := append([]string{"-addr", "127.0.0.1:0", "-data", data, "-domain", "home.test", "-pbkdf2-iterations", "1000", "-admin", "root"}, extra...)
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, out, logw) }()
	select {
	case line := <-out.lines:
		url, ok := strings.CutPrefix(line, "listening on ")
		if !ok {
			t.Fatalf("first line %q", line)
		}
		s := &testServer{url: url, data: data}
		var once sync.Once
		var err error
		s.stop = func() error {
			once.Do(func() { cancel(); err = <-done })
			return err
		}
		t.Cleanup(func() { _ = s.stop() })
		return s
	case err := <-done:
		cancel()
		t.Fatalf("server exited: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("server did not start")
	}
	return nil
}

func post(t testing.TB, url, token string, body any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(b))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, rb
}

type session struct {
	Token     string           `json:"token"`
	UserID    p2core.UserID    `json:"user_id"`
	SessionID p2core.SessionID `json:"session_id"`
	FID       p2core.FID       `json:"fid"`
}

func register(t *testing.T, s *testServer, name string) {
	t.Helper()
	status, body := post(t, s.url+"/register", "", map[string]string{"username": name, "password": "correct horse"})
	if status != 201 {
		t.Fatalf("register %s: %d %s", name, status, body)
	}
}

func login(t *testing.T, s *testServer, name string) session {
	t.Helper()
	status, body := post(t, s.url+"/login", "", map[string]string{"username": name, "password": "correct horse"})
	if status != 201 {
		t.Fatalf("login %s: %d %s", name, status, body)
	}
	var out session
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func client(s *testServer, sess session) *httpadapter.Client {
	return &httpadapter.Client{BaseURL: s.url, Token: sess.Token}
}

func TestAccountsAndAdminFlag(t *testing.T) {
	s := startServer(t, t.TempDir())
	register(t, s, "alice")
	if status, _ := post(t, s.url+"/register", "", map[string]string{"username": "Alice", "password": "other pass"}); status != 409 {
		t.Fatalf("duplicate username (case-folded): %d, want 409", status)
	}
	if status, _ := post(t, s.url+"/login", "", map[string]string{"username": "alice", "password": "wrong password"}); status != 401 {
		t.Fatalf("wrong password: %d", status)
	}
	if status, _ := post(t, s.url+"/login", "", map[string]string{"username": "nobody", "password": "whatever1"}); status != 401 {
		t.Fatalf("unknown user: %d", status)
	}
	for _, body := range []string{`{"username": "a"}`, `{"username":"a b","password":"12345678"}`, `[]`, `{"username":"a","password":"12345678","x":1}`} {
		resp, err := http.Post(s.url+"/register", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("register %s: %d, want 400", body, resp.StatusCode)
		}
	}
	a := login(t, s, "alice")
	if a.FID != "alice@home.test" || a.UserID == 0 || a.SessionID == "" || a.Token == "" {
		t.Fatalf("login answer %+v", a)
	}
	apiErrIs(t, client(s, a).SetTokenGeneration(context.Background(), false), p2core.ErrNotAdministrator)
	root := adminLogin(t, s)
	if err := client(s, root).SetTokenGeneration(context.Background(), false); err != nil {
		t.Fatalf("-admin root cannot switch token generation: %v", err)
	}
}

func apiErrIs(t *testing.T, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("err = %v, want %v", err, want)
	}
}

func TestStoreFileHoldsNoTokenInClearAndSurvivesRestart(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	register(t, s, "alice")
	a := login(t, s, "alice")
	ctx := context.Background()
	fedTok, err := client(s, a).IssueToken(ctx, "https://b.example")
	if err != nil {
		t.Fatal(err)
	}
	key, err := idcerttest.NewClientKey("alice@home.test", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client(s, a).IssueIDCert(ctx, key.Armored); err != nil {
		t.Fatal(err)
	}
	kb := mlstest.NewEd25519(key.Signer)
	kb.Identity = []byte("alice@home.test")
	kp, err := kb.Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := client(s, a).UploadKeyPackages(ctx, [][]byte{kp}); err != nil {
		t.Fatal(err)
	}
	if err := s.stop(); err != nil {
		t.Fatalf("graceful shutdown: %v", err)
	}
	raw, err := os.ReadFile(filepath.Join(data, "p2kit.db"))
	if err != nil {
		t.Fatal(err)
	}
	for name, secret := range map[string]string{"federation token": fedTok, "session token": a.Token} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("the store file holds the %s in clear", name)
		}
	}
	if !bytes.Contains(raw, kp) {
		t.Error("the KeyPackage is not in the store file (is this the right file?)")
	}

	// Everything survives a restart: the session, the token, the KeyPackage.
	s2 := startServer(t, data)
	if _, err := client(s2, a).KeyPackageStatus(ctx); err != nil {
		t.Fatalf("session lost across restart: %v", err)
	}
	got, err := (&httpadapter.Client{BaseURL: s2.url}).RedeemToken(ctx, fedTok, "https://b.example")
	if err != nil || got.FID != "alice@home.test" {
		t.Fatalf("token lost across restart: %+v %v", got, err)
	}
	register(t, s2, "bob")
	b := login(t, s2, "bob")
	claimed, err := client(s2, b).ClaimKeyPackages(ctx, a.UserID, 0)
	if err != nil || len(claimed) != 1 || !bytes.Equal(claimed[0], kp) {
		t.Fatalf("KeyPackage lost across restart: %d %v", len(claimed), err)
	}
	if status, _ := post(t, s2.url+"/login", "", map[string]string{"username": "alice", "password": "correct horse"}); status != 201 {
		t.Fatal("account lost across restart")
	}
}

// sse reads Server-Sent Events from /events.
type sse struct {
	resp   *http.Response
	events chan sseEvent
}

type sseEvent struct{ id, typ, data string }

func listen(t *testing.T, s *testServer, token, lastID string) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	return stream(t, req, cancel)
}

// stream reads Server-Sent Events from the answer to req; cancel ends it.
func stream(t *testing.T, req *http.Request, cancel context.CancelFunc) *sse {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		cancel()
		t.Fatalf("/events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	l := &sse{resp: resp, events: make(chan sseEvent, 64)}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	go func() {
		defer close(l.events)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.typ != "" {
					l.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.typ = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	return l
}

func (l *sse) next(t *testing.T, typ string) sseEvent {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-l.events:
			if !ok {
				t.Fatalf("stream ended waiting for %s", typ)
			}
			if ev.typ == typ {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event within 10s", typ)
		}
	}
}

func TestEventsReachSessions(t *testing.T) {
	s := startServer(t, t.TempDir())
	ctx := context.Background()
	register(t, s, "alice")
	register(t, s, "bob")
	a1 := login(t, s, "alice")
	events := listen(t, s, a1.Token, "")

	// NEW_SESSION when alice logs in elsewhere.
	a2 := login(t, s, "alice")
	ev := events.next(t, "NEW_SESSION")
	if !strings.Contains(ev.data, string(a2.SessionID)) || ev.id == "" {
		t.Fatalf("NEW_SESSION %+v does not name the new session %s", ev, a2.SessionID)
	}

	// CLIENT_KEY_CHANGE when the other session gets a new ID-Cert.
	key, _ := idcerttest.NewClientKey("alice@home.test", nil, time.Time{})
	if _, err := client(s, a2).IssueIDCert(ctx, key.Armored); err != nil {
		t.Fatal(err)
	}
	if ev := events.next(t, "CLIENT_KEY_CHANGE"); !strings.Contains(ev.data, string(a2.SessionID)) {
		t.Fatalf("CLIENT_KEY_CHANGE %+v", ev)
	}

	// LOW_KEY_PACKAGES to the session whose pool runs low.
	key1, _ := idcerttest.NewClientKey("alice@home.test", nil, time.Time{})
	if _, err := client(s, a1).IssueIDCert(ctx, key1.Armored); err != nil {
		t.Fatal(err)
	}
	kb := mlstest.NewEd25519(key1.Signer)
	kb.Identity = []byte("alice@home.test")
	kp, _ := kb.Build()
	if err := client(s, a1).UploadKeyPackages(ctx, [][]byte{kp}); err != nil {
		t.Fatal(err)
	}
	b := login(t, s, "bob")
	if _, err := client(s, b).ClaimKeyPackages(ctx, a1.UserID, 0); err != nil {
		t.Fatal(err)
	}
	if ev := events.next(t, "LOW_KEY_PACKAGES"); !strings.Contains(ev.data, `"available":0`) {
		t.Fatalf("LOW_KEY_PACKAGES %+v", ev)
	}

	// FEDERATION_TOKEN_ISSUED reaches the user's sessions.
	if _, err := client(s, a2).IssueToken(ctx, "https://b.example"); err != nil {
		t.Fatal(err)
	}
	events.next(t, "FEDERATION_TOKEN_ISSUED")
}

func TestOfflineSessionGetsMissedNewSessionOnReconnect(t *testing.T) {
	s := startServer(t, t.TempDir())
	register(t, s, "alice")
	a1 := login(t, s, "alice") // offline: not listening
	a2 := login(t, s, "alice")
	events := listen(t, s, a1.Token, "")
	ev := events.next(t, "NEW_SESSION")
	if !strings.Contains(ev.data, string(a2.SessionID)) {
		t.Fatalf("missed NEW_SESSION %+v", ev)
	}
	a3 := login(t, s, "alice")
	second := events.next(t, "NEW_SESSION")
	if !strings.Contains(second.data, string(a3.SessionID)) {
		t.Fatalf("live NEW_SESSION %+v", second)
	}
	// A reconnect with Last-Event-ID of the first event replays the second.
	again := listen(t, s, a1.Token, ev.id)
	if got := again.next(t, "NEW_SESSION"); got.id != second.id {
		t.Fatalf("resumed at event %s, want %s", got.id, second.id)
	}
}

func TestEventsNeedAValidToken(t *testing.T) {
	s := startServer(t, t.TempDir())
	resp, err := http.Get(s.url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("anonymous /events: %d", resp.StatusCode)
	}
}

func TestLogoutRevokesTokenAndKeyPackagesAtOnce(t *testing.T) {
	s := startServer(t, t.TempDir())
	ctx := context.Background()
	register(t, s, "alice")
	register(t, s, "bob")
	a1 := login(t, s, "alice")
	a2 := login(t, s, "alice")
	key, _ := idcerttest.NewClientKey("alice@home.test", nil, time.Time{})
	if _, err := client(s, a1).IssueIDCert(ctx, key.Armored); err != nil {
		t.Fatal(err)
	}
	b := mlstest.NewEd25519(key.Signer)
	b.Identity = []byte("alice@home.test")
	kp, _ := b.Build()
	lr, _ := b.Build()
	if err := client(s, a1).UploadKeyPackages(ctx, [][]byte{kp}); err != nil {
		t.Fatal(err)
	}
	if err := client(s, a1).SetLastResort(ctx, lr); err != nil {
		t.Fatal(err)
	}
	if status, body := post(t, s.url+"/logout", a1.Token, nil); status != 204 {
		t.Fatalf("logout: %d %s", status, body)
	}
	_, err := client(s, a1).KeyPackageStatus(ctx)
	apiErrIs(t, err, p2core.ErrUnauthorized)
	bob := login(t, s, "bob")
	got, err := client(s, bob).ClaimKeyPackages(ctx, a1.UserID, 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("claim after logout handed out %d KeyPackages (%v)", len(got), err)
	}
	if certs, _ := client(s, bob).UserIDCerts(ctx, a1.UserID, time.Time{}); len(certs) != 0 {
		t.Fatalf("route 9 still lists %d certs of the ended session", len(certs))
	}
	// The other session is untouched until everything is ended.
	if _, err := client(s, a2).KeyPackageStatus(ctx); err != nil {
		t.Fatalf("other session affected: %v", err)
	}
	req, _ := http.NewRequest("DELETE", s.url+"/sessions", nil)
	req.Header.Set("Authorization", "Bearer "+a2.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != "1" {
		t.Fatalf("DELETE /sessions: %d %s", resp.StatusCode, body)
	}
	_, err = client(s, a2).KeyPackageStatus(ctx)
	apiErrIs(t, err, p2core.ErrUnauthorized)
}
