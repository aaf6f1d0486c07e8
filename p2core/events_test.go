package p2core_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/broker"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/storage/memstore"
)

// recordingSink keeps every event published to it.
type recordingSink struct {
	mu     sync.Mutex
	events []p2core.Event
}

func (r *recordingSink) Publish(_ context.Context, e p2core.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// Every time in an event payload is written as Unix seconds (a JSON
// integer), the format of the REST routes: checked on the JSON of real
// events, with the values they must carry, and on the payload types so
// that a time.Time field added later is caught too.
func TestEventPayloadTimesAreUnixSeconds(t *testing.T) {
	now := time.Date(2031, 3, 4, 5, 6, 7, 890_000_000, time.UTC) // sub-second part must not leak
	sink := &recordingSink{}
	svc, err := p2core.NewService(memstore.New(), p2core.Config{Domain: "home.test", Events: sink, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	_, s1, err := svc.CreateSession(ctx, 7, "alice@home.test")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := svc.CreateSession(ctx, 7, "alice@home.test"); err != nil { // NEW_SESSION to s1
		t.Fatal(err)
	}
	alice := p2core.Principal{UserID: 7, FID: "alice@home.test", SessionID: s1.SessionID}
	_, tok, err := svc.IssueFederationToken(ctx, alice, "https://foreign.example")
	if err != nil {
		t.Fatal(err)
	}
	key, err := idcerttest.NewClientKey("alice@home.test", nil, now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := svc.IssueIDCert(ctx, alice, []byte(key.Armored))
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	admin := p2core.Principal{UserID: 1, FID: "root@home.test", SessionID: "cli", Admin: true}
	sk, err := svc.RotateServerKey(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}

	want := map[p2core.EventType]map[string]int64{
		p2core.EventNewSession:            {},
		p2core.EventFederationTokenIssued: {"expires_at": tok.ExpiresAt.Unix()},
		p2core.EventClientKeyChange:       {"expires_at": cert.ExpiresAt.Unix()},
		p2core.EventServerKeyChange:       {"valid_from": sk.CreatedAt.Unix()},
		p2core.EventLowKeyPackages:        {},
	}
	seen := map[p2core.EventType]bool{}
	for _, e := range sink.events {
		data, err := json.Marshal(e.Payload)
		if err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(data, &fields); err != nil {
			t.Fatalf("%s: payload %s is not a JSON object: %v", e.Type, data, err)
		}
		seen[e.Type] = true
		for name, v := range want[e.Type] {
			if got := string(fields[name]); got != jsonInt(v) {
				t.Errorf("%s: %s = %s, want the Unix seconds %d", e.Type, name, got, v)
			}
		}
		for name, raw := range fields {
			if strings.HasSuffix(name, "_at") || strings.HasSuffix(name, "_from") {
				var n int64
				if err := json.Unmarshal(raw, &n); err != nil {
					t.Errorf("%s: %s = %s is not Unix seconds", e.Type, name, raw)
				}
			}
		}
	}
	for typ := range want {
		if !seen[typ] {
			t.Errorf("no %s event was published", typ)
		}
	}

	timeType := reflect.TypeOf(time.Time{})
	for _, p := range []any{p2core.NewSessionPayload{}, p2core.ClientKeyChangePayload{}, p2core.ServerKeyChangePayload{}, p2core.LowKeyPackagesPayload{}, p2core.FederationTokenIssuedPayload{}} {
		typ := reflect.TypeOf(p)
		for i := 0; i < typ.NumField(); i++ {
			if f := typ.Field(i); f.Type == timeType {
				t.Errorf("%s.%s is a time.Time, which encodes as RFC 3339; payload times are Unix seconds (int64)", typ.Name(), f.Name)
			}
		}
	}
}

func jsonInt(v int64) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestEndSessionMakesTheBrokerForgetTheSession checks that ending a session
// is one call: Service.EndSession (and EndAllSessions) also closes the
// session's event streams on the broker that is Config.Events, while the
// user's other sessions stay connected until they end too.
func TestEndSessionMakesTheBrokerForgetTheSession(t *testing.T) {
	b := broker.New(broker.Options{})
	svc, err := p2core.NewService(memstore.New(), p2core.Config{Domain: "home.test", Events: b})
	if err != nil {
		t.Fatal(err)
	}
	var sessions []p2core.SessionID
	for range 3 {
		_, s, err := svc.CreateSession(ctx, 101, "alice@home.test")
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s.SessionID)
	}
	sub, cancel := context.WithCancel(ctx)
	defer cancel()
	streams := make([]<-chan broker.Delivery, len(sessions))
	for i, s := range sessions {
		streams[i] = b.Subscribe(sub, 101, s, 0)
	}
	drain := func(ch <-chan broker.Delivery) bool { // reports whether ch closed
		for {
			select {
			case _, ok := <-ch:
				if !ok {
					return true
				}
			default:
				return false
			}
		}
	}
	if err := svc.EndSession(ctx, 101, sessions[0]); err != nil {
		t.Fatal(err)
	}
	if !drain(streams[0]) || drain(streams[1]) || drain(streams[2]) {
		t.Fatal("EndSession did not close exactly the ended session's stream")
	}
	if n, err := svc.EndAllSessions(ctx, 101); err != nil || n != 2 {
		t.Fatalf("EndAllSessions = %d, %v", n, err)
	}
	if !drain(streams[1]) || !drain(streams[2]) {
		t.Fatal("EndAllSessions left a stream open")
	}
}
