package httpadapter_test

// The attack suite of issue 15: each attack an adversarial review ran
// against the server, bounded by counting work, never by timing it.

import (
	"context"
	"strings"
	"testing"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/broker"
)

// TestVictimHearsOfIntruderAfterTenThousandClaims: an intruder logs in as
// the victim while her session is offline, then 10,000 claims against her
// hand out her last resort, each emitting LOW_KEY_PACKAGES for her
// session. When the session reconnects it is still sent the intruder's
// NEW_SESSION (before, 280 claims flushed it out of a 256-event buffer),
// and one LOW_KEY_PACKAGES, the latest.
func TestVictimHearsOfIntruderAfterTenThousandClaims(t *testing.T) {
	const claims = 10_000
	events := broker.New(broker.Options{})
	e := newEnv(t, func(c *p2core.Config) { c.Events = events })
	victim := e.login(101, "alice", false)
	if err := victim.c.SetLastResort(ctx, build(t, certified(t, e, victim), 1)[0]); err != nil {
		t.Fatal(err)
	}
	intruder := e.login(101, "alice", false)
	claimer := p2core.Principal{UserID: 102, FID: "bob@home.test", SessionID: "s"}
	for i := range claims {
		got, err := e.svc.ClaimKeyPackages(ctx, claimer, victim.id, 0)
		if err != nil || len(got) != 1 || !got[0].LastResort {
			t.Fatalf("claim %d: %+v, %v", i, got, err)
		}
	}

	n := map[p2core.EventType]int{}
	var newSession string
	for _, d := range drainNow(events.Subscribe(context.Background(), victim.id, victim.session, 0)) {
		n[d.Type]++
		if d.Type == p2core.EventNewSession {
			newSession = string(d.Data)
		}
	}
	if n[p2core.EventNewSession] != 1 || !strings.Contains(newSession, string(intruder.session)) {
		t.Fatalf("after %d claims the victim's session reconnects to %v without the intruder's NEW_SESSION", claims, n)
	}
	if n[p2core.EventLowKeyPackages] != 1 {
		t.Fatalf("%d LOW_KEY_PACKAGES kept for one session, want the latest only", n[p2core.EventLowKeyPackages])
	}
}

// drainNow returns what ch holds right now.
func drainNow(ch <-chan broker.Delivery) []broker.Delivery {
	var out []broker.Delivery
	for {
		select {
		case d, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, d)
		default:
			return out
		}
	}
}
