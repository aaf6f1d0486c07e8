package broker

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/memstore"
)

// retained counts what b keeps for offline sessions: entries, the bytes
// of their payloads, and the session IDs listed in them.
func (b *Broker) retained() (entries, bytes, listed int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	count := func(l *log) {
		for _, list := range [][]*entry{l.security, l.other} {
			for _, e := range list {
				entries++
				bytes += len(e.d.Data)
				listed += len(e.sessions)
			}
		}
		for _, e := range l.state {
			entries++
			bytes += len(e.d.Data)
			listed += len(e.sessions)
		}
	}
	count(&b.broadcast)
	for _, ul := range b.users {
		count(&ul.shared)
		for _, l := range ul.sessions {
			count(l)
		}
	}
	return entries, bytes, listed
}

// TestThousandLoginsOfOneUserKeepBrokerMemoryBounded logs one user in
// 1,000 times through the Service. Each login's NEW_SESSION is kept once,
// without a list of the other sessions, and only the latest
// Options.Security of them: what the Broker holds stays within Security
// entries of at most maxNewSessionPayload bytes, however many logins
// there are (before, each entry listed every other session: 1,000 logins
// kept about half a million session IDs).
func TestThousandLoginsOfOneUserKeepBrokerMemoryBounded(t *testing.T) {
	const logins = 1000
	const maxNewSessionPayload = 128 // {"session_id":"<16 hex>","fid":"alice@home.test"} and room
	b := New(Options{})
	store := memstore.New()
	defer store.Close()
	svc, err := p2core.NewService(store, p2core.Config{Domain: "home.test", Events: b, MaxSessionsPerUser: logins})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range logins {
		if _, _, err := svc.CreateSession(ctx, 7, "alice@home.test"); err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
	}
	entries, bytes, listed := b.retained()
	if entries != DefaultSecurity || listed != 0 || bytes > DefaultSecurity*maxNewSessionPayload {
		t.Fatalf("after %d logins the Broker keeps %d entries, %d payload bytes, %d listed session IDs; want %d entries, at most %d bytes, none listed",
			logins, entries, bytes, listed, DefaultSecurity, DefaultSecurity*maxNewSessionPayload)
	}
	// The bound is what a reconnecting session gets: the latest Security
	// NEW_SESSIONs, the newest last.
	sessions, err := store.Sessions(ctx, 7)
	if err != nil || len(sessions) == 0 {
		t.Fatalf("sessions: %d, %v", len(sessions), err)
	}
	first := sessions[0].SessionID
	var last Delivery
	n := 0
	for d := range b.Subscribe(cancelled(), 7, first, 0) {
		last, n = d, n+1
	}
	want := fmt.Sprintf(`"session_id":%q`, sessions[len(sessions)-1].SessionID)
	if n != DefaultSecurity || !strings.Contains(string(last.Data), want) {
		t.Fatalf("the first session reconnects to %d events, last %s; want %d ending with the newest login", n, last.Data, DefaultSecurity)
	}
}

// cancelled returns a context already done, so a subscription delivers its
// backlog and is closed.
func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
