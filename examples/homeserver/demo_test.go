package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
)

// ticket asks for a one-time /events ticket.
func eventTicket(t *testing.T, s *testServer, token string) string {
	t.Helper()
	status, body := post(t, s.url+"/events/ticket", token, nil)
	var out struct {
		Ticket    string `json:"ticket"`
		ExpiresIn int    `json:"expires_in"`
	}
	if status != 201 || json.Unmarshal(body, &out) != nil || out.Ticket == "" || out.ExpiresIn != int(ticketTTL/time.Second) {
		t.Fatalf("POST /events/ticket: %d %s", status, body)
	}
	return out.Ticket
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// certify gives the session an ID-Cert, so it can receive relayed objects.
func certify(t *testing.T, s *testServer, sess session) {
	t.Helper()
	key, err := idcerttest.NewClientKey(string(sess.FID), nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client(s, sess).IssueIDCert(context.Background(), key.Armored); err != nil {
		t.Fatal(err)
	}
}

func TestEventTicketsAreOneTimeAndNeedALiveSession(t *testing.T) {
	s := startServer(t, t.TempDir())
	register(t, s, "alice")
	a := login(t, s, "alice")
	if status, _ := post(t, s.url+"/events/ticket", "", nil); status != 401 {
		t.Fatalf("ticket without a token: %d, want 401", status)
	}
	tk := eventTicket(t, s, a.Token)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/events?ticket="+tk, nil)
	events := stream(t, req, cancel)
	login(t, s, "alice") // a second session: NEW_SESSION to the first
	events.next(t, "NEW_SESSION")

	if got := getStatus(t, s.url+"/events?ticket="+tk); got != 401 {
		t.Errorf("a used ticket: %d, want 401", got)
	}
	if got := getStatus(t, s.url+"/events?ticket=made-up"); got != 401 {
		t.Errorf("an unknown ticket: %d, want 401", got)
	}
	// A ticket of a session that has ended since is refused.
	tk = eventTicket(t, s, a.Token)
	if status, body := post(t, s.url+"/logout", a.Token, nil); status != 204 {
		t.Fatalf("logout: %d %s", status, body)
	}
	if got := getStatus(t, s.url+"/events?ticket="+tk); got != 401 {
		t.Errorf("the ticket of an ended session: %d, want 401", got)
	}
}

func TestDemoRelayDeliversToTheUsersSessionsOnly(t *testing.T) {
	s := startServer(t, t.TempDir())
	register(t, s, "alice")
	register(t, s, "bob")
	a, b := login(t, s, "alice"), login(t, s, "bob")
	relay := s.url + "/demo/relay/" + a.UserID.String()

	if status, _ := post(t, relay, "", map[string]string{"x": "y"}); status != 401 {
		t.Fatalf("relay without a token: %d, want 401", status)
	}
	if status, body := post(t, relay, b.Token, map[string]string{"x": "y"}); status != 404 || !strings.Contains(string(body), "P2CORE_NOT_FOUND") {
		t.Fatalf("relay to a user without an ID-Cert: %d %s, want 404 P2CORE_NOT_FOUND", status, body)
	}
	certify(t, s, a)
	aliceEvents := listen(t, s, a.Token, "")
	bobEvents := listen(t, s, b.Token, "")
	if status, body := post(t, relay, b.Token, map[string]string{"kind": "hello"}); status != 202 {
		t.Fatalf("relay: %d %s", status, body)
	}
	ev := aliceEvents.next(t, string(eventRelay))
	var got relayed
	if err := json.Unmarshal([]byte(ev.data), &got); err != nil {
		t.Fatal(err)
	}
	if got.From != b.UserID || got.FromFID != b.FID || got.FromSession != b.SessionID || string(got.Body) != `{"kind":"hello"}` {
		t.Fatalf("relayed %+v", got)
	}

	for body, want := range map[string]int{
		`"a string"`: 400,
		`null`:       400,
		`"` + strings.Repeat("x", maxRelayBody) + `"`: 413,
	} {
		if status, out := post(t, relay, b.Token, json.RawMessage(body)); status != want {
			t.Errorf("relay body of %d bytes: %d %s, want %d", len(body), status, out, want)
		}
	}
	for name, want := range map[string]int{"nobody": 404, "Bad%20Name": 400} {
		req, _ := http.NewRequest("GET", s.url+"/demo/users/"+name, nil)
		req.Header.Set("Authorization", "Bearer "+b.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("look-up of %q: %d, want %d", name, resp.StatusCode, want)
		}
	}
	if status, _ := post(t, s.url+"/demo/relay/0", b.Token, map[string]string{}); status != 400 {
		t.Errorf("relay to user 0: %d, want 400", status)
	}
	// bob's own stream got nothing: the first event after his relays is
	// the NEW_SESSION of his next login (a stream is in order).
	login(t, s, "bob")
	select {
	case ev := <-bobEvents.events:
		if ev.typ != "NEW_SESSION" {
			t.Errorf("bob got %+v before his NEW_SESSION", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no NEW_SESSION for bob within 10s")
	}
}

func TestDemoRoutesAreRateLimited(t *testing.T) {
	s := startServer(t, t.TempDir())
	register(t, s, "alice")
	a := login(t, s, "alice")
	// The burst passes; then, at any pace faster than the refill, a 429
	// comes. The loop counts requests, not time: 10,000 requests cannot
	// all fit in the refill of a 2/s bucket.
	allowed, limited := 0, false
	for range 10_000 {
		req, _ := http.NewRequest("GET", s.url+"/demo/users/alice", nil)
		req.Header.Set("Authorization", "Bearer "+a.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var u registerResponse
		_ = json.NewDecoder(resp.Body).Decode(&u)
		resp.Body.Close()
		if resp.StatusCode == 429 {
			if resp.Header.Get("Retry-After") == "" {
				t.Fatal("429 without Retry-After")
			}
			limited = true
			break
		}
		if resp.StatusCode != 200 || u.UserID != a.UserID || u.FID != a.FID {
			t.Fatalf("lookup: %d %+v, want alice %v", resp.StatusCode, u, a.UserID)
		}
		allowed++
	}
	if !limited || allowed < demoBurst {
		t.Fatalf("%d lookups allowed before a 429 (limited: %v), want at least the burst of %d and then a 429", allowed, limited, demoBurst)
	}
}
