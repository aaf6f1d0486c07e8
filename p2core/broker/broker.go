// Package broker is an in-process p2core.EventSink that delivers each
// event to the sessions it targets: at once to connected subscribers, and
// later, on reconnect, to sessions that were offline. It is what the
// example home server streams at GET /events; embedders with a gateway of
// their own can use it the same way or implement p2core.EventSink
// themselves.
package broker

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// Defaults for Options fields left zero.
const (
	DefaultPerUser   = 256
	DefaultBroadcast = 64
	DefaultBuffer    = 64
)

// Options bounds what a Broker keeps. Zero values are the defaults.
type Options struct {
	// PerUser is how many recent events addressed to one user are kept for
	// sessions that are offline. Default 256.
	PerUser int
	// Broadcast is how many recent events addressed to every session
	// (SERVER_KEY_CHANGE) are kept. Default 64.
	Broadcast int
	// Buffer is each subscriber's channel capacity; a subscriber that falls
	// this far behind is disconnected and catches up on reconnect.
	// Default 64.
	Buffer int
}

// Delivery is one event as a session receives it.
type Delivery struct {
	// ID increases with every event the Broker accepts; a client resumes
	// after the last ID it saw.
	ID   uint64
	Type p2core.EventType
	Time time.Time
	// Data is the JSON encoding of the event's payload.
	Data json.RawMessage
}

type entry struct {
	d        Delivery
	sessions []p2core.SessionID // empty: every session of the user
}

func (e entry) targets(s p2core.SessionID) bool {
	return len(e.sessions) == 0 || slices.Contains(e.sessions, s)
}

type sessionKey struct {
	user    p2core.UserID
	session p2core.SessionID
}

type subscriber struct {
	key  sessionKey
	ch   chan Delivery
	done bool
}

// Broker is an in-memory event hub. Create it with New; it is safe for
// concurrent use. Events are kept in bounded memory only: a restart loses
// undelivered events.
type Broker struct {
	opts Options

	mu        sync.Mutex
	seq       uint64
	users     map[p2core.UserID][]entry // ring of the last PerUser events
	broadcast []entry
	cursors   map[sessionKey]uint64 // last ID delivered to each session
	subs      map[sessionKey][]*subscriber
}

// New returns an empty Broker.
func New(opts Options) *Broker {
	if opts.PerUser <= 0 {
		opts.PerUser = DefaultPerUser
	}
	if opts.Broadcast <= 0 {
		opts.Broadcast = DefaultBroadcast
	}
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultBuffer
	}
	return &Broker{opts: opts, users: map[p2core.UserID][]entry{}, cursors: map[sessionKey]uint64{}, subs: map[sessionKey][]*subscriber{}}
}

// Publish accepts e: connected target sessions get it at once, offline
// ones on their next Subscribe. It never blocks on a slow subscriber.
func (b *Broker) Publish(_ context.Context, e p2core.Event) {
	data, err := json.Marshal(e.Payload)
	if err != nil {
		data = []byte("null")
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	en := entry{d: Delivery{ID: b.seq, Type: e.Type, Time: e.Time.UTC(), Data: data}, sessions: slices.Clone(e.Sessions)}
	if e.UserID == 0 {
		b.broadcast = appendRing(b.broadcast, en, b.opts.Broadcast)
		for _, list := range b.subs {
			for _, s := range list {
				b.send(s, en.d)
			}
		}
		return
	}
	b.users[e.UserID] = appendRing(b.users[e.UserID], en, b.opts.PerUser)
	for key, list := range b.subs {
		if key.user != e.UserID || !en.targets(key.session) {
			continue
		}
		for _, s := range list {
			b.send(s, en.d)
		}
	}
}

func appendRing(ring []entry, e entry, max int) []entry {
	if len(ring) >= max {
		copy(ring, ring[len(ring)-max+1:])
		ring = ring[:max-1]
	}
	return append(ring, e)
}

// send delivers d to s or, when s is full, disconnects it. b.mu is held.
func (b *Broker) send(s *subscriber, d Delivery) {
	if s.done {
		return
	}
	select {
	case s.ch <- d:
		if d.ID > b.cursors[s.key] {
			b.cursors[s.key] = d.ID
		}
	default:
		b.drop(s)
	}
}

func (b *Broker) drop(s *subscriber) {
	if s.done {
		return
	}
	s.done = true
	close(s.ch)
	list := b.subs[s.key]
	if i := slices.Index(list, s); i >= 0 {
		list = slices.Delete(list, i, i+1)
	}
	if len(list) == 0 {
		delete(b.subs, s.key)
	} else {
		b.subs[s.key] = list
	}
}

// Subscribe connects a session. The channel first carries the kept events
// the session has not yet received (after lastID when lastID is not zero,
// as from an SSE Last-Event-ID; else after the last event delivered to the
// session), oldest first, then live events. It is closed when ctx ends or
// the subscriber falls behind; call Subscribe again to resume.
func (b *Broker) Subscribe(ctx context.Context, user p2core.UserID, session p2core.SessionID, lastID uint64) <-chan Delivery {
	key := sessionKey{user, session}
	b.mu.Lock()
	after := lastID
	if after == 0 {
		after = b.cursors[key]
	}
	var backlog []entry
	for _, e := range b.users[user] {
		if e.d.ID > after && e.targets(session) {
			backlog = append(backlog, e)
		}
	}
	for _, e := range b.broadcast {
		if e.d.ID > after {
			backlog = append(backlog, e)
		}
	}
	slices.SortFunc(backlog, func(x, y entry) int { return cmp.Compare(x.d.ID, y.d.ID) })
	s := &subscriber{key: key, ch: make(chan Delivery, len(backlog)+b.opts.Buffer)}
	for _, e := range backlog {
		s.ch <- e.d
		if e.d.ID > b.cursors[key] {
			b.cursors[key] = e.d.ID
		}
	}
	b.subs[key] = append(b.subs[key], s)
	b.mu.Unlock()

	go func() {
		<-ctx.Done()
		b.mu.Lock()
		b.drop(s)
		b.mu.Unlock()
	}()
	return s.ch
}

// Forget drops what the Broker keeps for a session (call it when the
// session ends) and disconnects its subscribers.
func (b *Broker) Forget(user p2core.UserID, session p2core.SessionID) {
	key := sessionKey{user, session}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range slices.Clone(b.subs[key]) {
		b.drop(s)
	}
	delete(b.cursors, key)
}
