package broker_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/broker"
)

func recv(t *testing.T, ch <-chan broker.Delivery) broker.Delivery {
	t.Helper()
	select {
	case d, ok := <-ch:
		if !ok {
			t.Fatal("channel closed")
		}
		return d
	case <-time.After(5 * time.Second):
		t.Fatal("no delivery within 5s")
	}
	return broker.Delivery{}
}

func none(t *testing.T, ch <-chan broker.Delivery) {
	t.Helper()
	select {
	case d, ok := <-ch:
		if ok {
			t.Fatalf("unexpected delivery %+v", d)
		}
	case <-time.After(20 * time.Millisecond):
	}
}

func ev(typ p2core.EventType, user p2core.UserID, payload any, sessions ...p2core.SessionID) p2core.Event {
	return p2core.Event{Type: typ, UserID: user, Sessions: sessions, Payload: payload}
}

func TestLiveDeliveryReachesOnlyTargetedSessions(t *testing.T) {
	b := broker.New(broker.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := b.Subscribe(ctx, 1, "a", 0)
	bb := b.Subscribe(ctx, 1, "b", 0)
	other := b.Subscribe(ctx, 2, "a", 0)

	b.Publish(ctx, ev(p2core.EventNewSession, 1, map[string]string{"session_id": "c"}, "a"))
	d := recv(t, a)
	if d.Type != p2core.EventNewSession || string(d.Data) != `{"session_id":"c"}` || d.ID == 0 {
		t.Fatalf("got %+v", d)
	}
	none(t, bb)
	none(t, other)

	b.Publish(ctx, ev(p2core.EventClientKeyChange, 1, nil)) // all sessions of user 1
	recv(t, a)
	recv(t, bb)
	none(t, other)

	b.Publish(ctx, ev(p2core.EventServerKeyChange, 0, nil)) // everyone
	recv(t, a)
	recv(t, bb)
	recv(t, other)
}

func TestOfflineSessionGetsMissedEventsOnReconnect(t *testing.T) {
	b := broker.New(broker.Options{})
	ctx := context.Background()
	b.Publish(ctx, ev(p2core.EventNewSession, 1, map[string]string{"session_id": "x"}, "a"))
	b.Publish(ctx, ev(p2core.EventNewSession, 1, map[string]string{"session_id": "y"}, "b")) // not for a

	sub, cancel := context.WithCancel(ctx)
	ch := b.Subscribe(sub, 1, "a", 0)
	d := recv(t, ch)
	var p map[string]string
	if err := json.Unmarshal(d.Data, &p); err != nil || p["session_id"] != "x" {
		t.Fatalf("missed event = %s, %v", d.Data, err)
	}
	none(t, ch)
	cancel()

	// Already delivered: a second connection without Last-Event-ID gets
	// nothing old.
	sub2, cancel2 := context.WithCancel(ctx)
	defer cancel2()
	ch2 := b.Subscribe(sub2, 1, "a", 0)
	none(t, ch2)
}

func TestLastEventIDResumesAfterThatEvent(t *testing.T) {
	b := broker.New(broker.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := b.Subscribe(ctx, 1, "a", 0)
	var ids []uint64
	for i := 0; i < 3; i++ {
		b.Publish(ctx, ev(p2core.EventFederationTokenIssued, 1, i, "a"))
		ids = append(ids, recv(t, ch).ID)
	}
	again := b.Subscribe(ctx, 1, "a", ids[0])
	if d := recv(t, again); d.ID != ids[1] {
		t.Fatalf("resumed at %d, want %d", d.ID, ids[1])
	}
	if d := recv(t, again); d.ID != ids[2] {
		t.Fatalf("then %d, want %d", d.ID, ids[2])
	}
	none(t, again)
}

// Events other than state and security events are kept in rings: the
// latest PerSession of those to one session alone, the latest PerUser of
// those to all of a user's sessions.
func TestKeptEventsAreBoundedPerSessionAndPerUser(t *testing.T) {
	for _, c := range []struct {
		name string
		opts broker.Options
		to   []p2core.SessionID
	}{
		{"to one session", broker.Options{PerSession: 4}, []p2core.SessionID{"a"}},
		{"to every session", broker.Options{PerUser: 4}, nil},
	} {
		b := broker.New(c.opts)
		ctx, cancel := context.WithCancel(context.Background())
		for i := 0; i < 10; i++ {
			b.Publish(ctx, ev(p2core.EventFederationTokenIssued, 1, i, c.to...))
		}
		ch := b.Subscribe(ctx, 1, "a", 0)
		var got []string
		for i := 0; i < 4; i++ {
			got = append(got, string(recv(t, ch).Data))
		}
		none(t, ch)
		cancel()
		if got[0] != "6" || got[3] != "9" {
			t.Fatalf("%s: kept %v, want the last four (6..9)", c.name, got)
		}
	}
}

// drain reads what a reconnecting session is sent before live events.
func drain(t *testing.T, ch <-chan broker.Delivery) []broker.Delivery {
	t.Helper()
	var out []broker.Delivery
	for {
		select {
		case d, ok := <-ch:
			if !ok {
				t.Fatal("channel closed")
			}
			out = append(out, d)
		default:
			return out
		}
	}
}

func types(ds []broker.Delivery) map[p2core.EventType]int {
	n := map[p2core.EventType]int{}
	for _, d := range ds {
		n[d.Type]++
	}
	return n
}

func TestStateEventsAreCoalescedToTheLatestPerSession(t *testing.T) {
	b := broker.New(broker.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 1000; i++ {
		b.Publish(ctx, ev(p2core.EventLowKeyPackages, 1, i, "a"))
		b.Publish(ctx, ev(p2core.EventLowKeyPackages, 1, -i, "b"))
	}
	got := drain(t, b.Subscribe(ctx, 1, "a", 0))
	if len(got) != 1 || string(got[0].Data) != "999" {
		t.Fatalf("session a reconnects to %d events, first %s; want only the latest (999)", len(got), got[0].Data)
	}
	if got := drain(t, b.Subscribe(ctx, 1, "b", 0)); len(got) != 1 || string(got[0].Data) != "-999" {
		t.Fatalf("session b reconnects to %+v, want only its own latest", got)
	}
}

func TestSecurityEventsAreNeverPushedOutByOtherKinds(t *testing.T) {
	b := broker.New(broker.Options{Security: 4, PerUser: 4, PerSession: 4})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.Publish(ctx, p2core.Event{Type: p2core.EventNewSession, UserID: 1, Except: "intruder", Payload: "intruder"})
	for i := 0; i < 1000; i++ {
		b.Publish(ctx, ev(p2core.EventLowKeyPackages, 1, i, "victim"))
		b.Publish(ctx, ev(p2core.EventFederationTokenIssued, 1, i))           // all sessions
		b.Publish(ctx, ev(p2core.EventFederationTokenIssued, 1, i, "victim")) // the victim alone
		// The intruder renews its key again and again: only the latest
		// news of its key is kept, so it cannot flush its NEW_SESSION.
		b.Publish(ctx, p2core.Event{Type: p2core.EventClientKeyChange, UserID: 1, Except: "intruder", Payload: i})
	}
	got := drain(t, b.Subscribe(ctx, 1, "victim", 0))
	n := types(got)
	if n[p2core.EventNewSession] != 1 || string(got[0].Data) != `"intruder"` {
		t.Fatalf("victim reconnects to %v; the intruder's NEW_SESSION is lost", n)
	}
	if n[p2core.EventClientKeyChange] != 1 || n[p2core.EventLowKeyPackages] != 1 || n[p2core.EventFederationTokenIssued] != 8 {
		t.Fatalf("victim reconnects to %v, want 1 NEW_SESSION, 1 CLIENT_KEY_CHANGE (the latest), 1 LOW_KEY_PACKAGES, 4+4 FEDERATION_TOKEN_ISSUED", n)
	}
	// The intruder itself is not told of its own session or key.
	if n := types(drain(t, b.Subscribe(ctx, 1, "intruder", 0))); n[p2core.EventNewSession] != 0 || n[p2core.EventClientKeyChange] != 0 {
		t.Fatalf("the session an event is about got it: %v", n)
	}
}

func TestOneSessionsEventsDoNotPushOutAnothers(t *testing.T) {
	b := broker.New(broker.Options{PerSession: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.Publish(ctx, ev(p2core.EventFederationTokenIssued, 1, "mine", "a"))
	for i := 0; i < 100; i++ {
		b.Publish(ctx, ev(p2core.EventFederationTokenIssued, 1, i, "b"))
	}
	if got := drain(t, b.Subscribe(ctx, 1, "a", 0)); len(got) != 1 || string(got[0].Data) != `"mine"` {
		t.Fatalf("session a reconnects to %+v", got)
	}
}

func TestANewSessionIsNotSentWhatCameBeforeIt(t *testing.T) {
	b := broker.New(broker.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b.Publish(ctx, ev(p2core.EventFederationTokenIssued, 1, "old")) // all sessions of user 1
	b.Publish(ctx, p2core.Event{Type: p2core.EventNewSession, UserID: 1, Except: "new", Payload: "new"})
	b.Publish(ctx, ev(p2core.EventFederationTokenIssued, 1, "later"))
	got := drain(t, b.Subscribe(ctx, 1, "new", 0))
	if len(got) != 1 || string(got[0].Data) != `"later"` {
		t.Fatalf("new session first connects to %+v, want only what came after its NEW_SESSION", got)
	}
	// A session that existed before gets all three.
	if n := types(drain(t, b.Subscribe(ctx, 1, "old", 0))); n[p2core.EventFederationTokenIssued] != 2 || n[p2core.EventNewSession] != 1 {
		t.Fatalf("older session reconnects to %v", n)
	}
}

func TestSlowSubscriberIsDisconnectedNotBlocking(t *testing.T) {
	b := broker.New(broker.Options{Buffer: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := b.Subscribe(ctx, 1, "a", 0)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 100; i++ {
			b.Publish(ctx, ev(p2core.EventLowKeyPackages, 1, i, "a"))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a slow subscriber")
	}
	n := 0
	for range ch {
		n++
	}
	if n != 2 {
		t.Fatalf("slow subscriber got %d before being closed, want its buffer of 2", n)
	}
}

func TestForgetDisconnectsAndDropsCursor(t *testing.T) {
	b := broker.New(broker.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := b.Subscribe(ctx, 1, "a", 0)
	b.Forget(1, "a")
	if _, ok := <-ch; ok {
		t.Fatal("channel still open after Forget")
	}
}

// An event published after a subscriber's context ended, but before the
// Broker noticed, is not counted as delivered: the session gets it on
// reconnect.
func TestEventAfterDisconnectIsKeptForReconnect(t *testing.T) {
	b := broker.New(broker.Options{})
	sub, cancel := context.WithCancel(context.Background())
	b.Subscribe(sub, 1, "a", 0)
	cancel()
	b.Publish(context.Background(), ev(p2core.EventNewSession, 1, "x", "a"))
	got := drain(t, b.Subscribe(context.Background(), 1, "a", 0))
	if len(got) != 1 || got[0].Type != p2core.EventNewSession {
		t.Fatalf("reconnect got %+v, want the event published after the disconnect", got)
	}
}
