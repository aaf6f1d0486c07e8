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
		b.Publish(ctx, ev(p2core.EventLowKeyPackages, 1, i, "a"))
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

func TestKeptEventsAreBoundedPerUser(t *testing.T) {
	b := broker.New(broker.Options{PerUser: 4})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 10; i++ {
		b.Publish(ctx, ev(p2core.EventLowKeyPackages, 1, i, "a"))
	}
	ch := b.Subscribe(ctx, 1, "a", 0)
	var got []string
	for i := 0; i < 4; i++ {
		got = append(got, string(recv(t, ch).Data))
	}
	none(t, ch)
	if got[0] != "6" || got[3] != "9" {
		t.Fatalf("kept %v, want the last four (6..9)", got)
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
