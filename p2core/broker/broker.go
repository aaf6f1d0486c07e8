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
	DefaultSecurity   = 256
	DefaultPerUser    = 256
	DefaultPerSession = 64
	DefaultBroadcast  = 64
	DefaultBuffer     = 64
)

// Options bounds what a Broker keeps for sessions that are offline. Zero
// values are the defaults.
//
// Events are kept by kind, so that one kind cannot push out another:
// state events (p2core.EventType.State: LOW_KEY_PACKAGES) are coalesced,
// only the latest of each type per recipient being kept; security events
// (p2core.EventType.Security: NEW_SESSION, CLIENT_KEY_CHANGE,
// SERVER_KEY_CHANGE) are kept apart from every other kind, and only newer
// security events push them out; a CLIENT_KEY_CHANGE about a session
// replaces the one kept about the same session. So however many claims
// run against a user, her offline sessions still hear of a new session.
//
// What one session can be sent on reconnect is therefore bounded: Security
// + PerUser events addressed to several of the user's sessions, 2 x
// PerSession addressed to it alone, one per state event type, and
// Broadcast + one per state type addressed to everyone. Memory grows
// linearly with the number of sessions: an event addressed to all of a
// user's sessions but one (Event.Except) is kept once, with no list of
// sessions.
type Options struct {
	// Security is how many security events addressed to several sessions
	// of one user are kept. Default 256.
	Security int
	// PerUser is how many other events (FEDERATION_TOKEN_ISSUED) addressed
	// to several sessions of one user are kept. Default 256.
	PerUser int
	// PerSession is how many security events, and how many other events,
	// addressed to one session alone are kept for it. Default 64.
	PerSession int
	// Broadcast is how many recent non-state events addressed to every
	// session (SERVER_KEY_CHANGE) are kept. Default 64.
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
	sessions []p2core.SessionID // empty: every session of the user but except
	except   p2core.SessionID
}

func (e *entry) targets(s p2core.SessionID) bool {
	if e.except != "" && e.except == s {
		return false
	}
	return len(e.sessions) == 0 || slices.Contains(e.sessions, s)
}

// stateKey names what a state event describes, so the latest replaces the
// earlier: its type and its recipients.
func (e *entry) stateKey() string {
	k := string(e.d.Type) + "\x00" + string(e.except)
	for _, s := range e.sessions {
		k += "\x00" + string(s)
	}
	return k
}

// log is what is kept for one set of recipients, by kind.
type log struct {
	security []*entry
	other    []*entry
	state    map[string]*entry
}

// add keeps e: state events replace the earlier one with the same key,
// security and other events go into rings of max entries each.
func (l *log) add(e *entry, securityMax, otherMax int) {
	switch {
	case e.d.Type.State():
		if l.state == nil {
			l.state = map[string]*entry{}
		}
		l.state[e.stateKey()] = e
	case e.d.Type.Security():
		if e.d.Type == p2core.EventClientKeyChange && e.except != "" {
			// The newest key of a session replaces the older news of it.
			l.security = slices.DeleteFunc(l.security, func(x *entry) bool {
				return x.d.Type == e.d.Type && x.except == e.except && slices.Equal(x.sessions, e.sessions)
			})
		}
		l.security = appendRing(l.security, e, securityMax)
	default:
		l.other = appendRing(l.other, e, otherMax)
	}
}

// collect appends the kept entries after id that target session s.
func (l *log) collect(out []*entry, s p2core.SessionID, after uint64) []*entry {
	if l == nil {
		return out
	}
	for _, list := range [][]*entry{l.security, l.other} {
		for _, e := range list {
			if e.d.ID > after && e.targets(s) {
				out = append(out, e)
			}
		}
	}
	for _, e := range l.state {
		if e.d.ID > after && e.targets(s) {
			out = append(out, e)
		}
	}
	return out
}

// userLog is what is kept for one user: events for several of the
// user's sessions, and for each session the events for it alone.
type userLog struct {
	shared   log
	sessions map[p2core.SessionID]*log
}

type sessionKey struct {
	user    p2core.UserID
	session p2core.SessionID
}

type subscriber struct {
	key  sessionKey
	ch   chan Delivery
	ctx  context.Context // the subscription's; once done, nothing is sent
	done bool
}

// Broker is an in-memory event hub. Create it with New; it is safe for
// concurrent use. Events are kept in bounded memory only (see Options): a
// restart loses undelivered events.
type Broker struct {
	opts Options

	mu        sync.Mutex
	seq       uint64
	users     map[p2core.UserID]*userLog
	broadcast log
	cursors   map[sessionKey]uint64 // last ID delivered to each session
	subs      map[sessionKey][]*subscriber
}

// New returns an empty Broker.
func New(opts Options) *Broker {
	if opts.Security <= 0 {
		opts.Security = DefaultSecurity
	}
	if opts.PerUser <= 0 {
		opts.PerUser = DefaultPerUser
	}
	if opts.PerSession <= 0 {
		opts.PerSession = DefaultPerSession
	}
	if opts.Broadcast <= 0 {
		opts.Broadcast = DefaultBroadcast
	}
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultBuffer
	}
	return &Broker{opts: opts, users: map[p2core.UserID]*userLog{}, cursors: map[sessionKey]uint64{}, subs: map[sessionKey][]*subscriber{}}
}

// Publish accepts e: connected target sessions get it at once, offline
// ones on their next Subscribe (within the bounds of Options). It never
// blocks on a slow subscriber.
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
	en := &entry{d: Delivery{ID: b.seq, Type: e.Type, Time: e.Time.UTC(), Data: data}, sessions: slices.Clone(e.Sessions), except: e.Except}
	if e.UserID == 0 {
		b.broadcast.add(en, b.opts.Broadcast, b.opts.Broadcast)
		for _, list := range b.subs {
			for _, s := range list {
				b.send(s, en.d)
			}
		}
		return
	}
	if e.Type == p2core.EventNewSession && e.Except != "" {
		// The new session starts after this event: what was kept for the
		// user's sessions before it is not its history.
		key := sessionKey{e.UserID, e.Except}
		if _, ok := b.cursors[key]; !ok {
			b.cursors[key] = en.d.ID
		}
	}
	ul := b.users[e.UserID]
	if ul == nil {
		ul = &userLog{}
		b.users[e.UserID] = ul
	}
	if len(en.sessions) == 1 {
		s := en.sessions[0]
		if !en.targets(s) {
			return
		}
		if ul.sessions == nil {
			ul.sessions = map[p2core.SessionID]*log{}
		}
		l := ul.sessions[s]
		if l == nil {
			l = &log{}
			ul.sessions[s] = l
		}
		l.add(en, b.opts.PerSession, b.opts.PerSession)
	} else {
		ul.shared.add(en, b.opts.Security, b.opts.PerUser)
	}
	for key, list := range b.subs {
		if key.user != e.UserID || !en.targets(key.session) {
			continue
		}
		for _, s := range list {
			b.send(s, en.d)
		}
	}
}

func appendRing(ring []*entry, e *entry, max int) []*entry {
	if len(ring) >= max {
		n := copy(ring, ring[len(ring)-max+1:])
		clear(ring[n:])
		ring = ring[:n]
	}
	return append(ring, e)
}

// send delivers d to s or, when s is full, disconnects it. b.mu is held.
func (b *Broker) send(s *subscriber, d Delivery) {
	if s.done {
		return
	}
	if s.ctx.Err() != nil {
		// The subscriber has gone (its goroutine will drop it): the event
		// stays undelivered, so the session gets it on reconnect.
		b.drop(s)
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
// session, or, for a session never connected, after the NEW_SESSION that
// announced it), oldest first, then live events. It is closed when ctx ends or
// the subscriber falls behind; call Subscribe again to resume.
func (b *Broker) Subscribe(ctx context.Context, user p2core.UserID, session p2core.SessionID, lastID uint64) <-chan Delivery {
	key := sessionKey{user, session}
	b.mu.Lock()
	after := lastID
	if after == 0 {
		after = b.cursors[key]
	}
	var backlog []*entry
	if ul := b.users[user]; ul != nil {
		backlog = ul.shared.collect(backlog, session, after)
		backlog = ul.sessions[session].collect(backlog, session, after)
	}
	backlog = b.broadcast.collect(backlog, session, after)
	slices.SortFunc(backlog, func(x, y *entry) int { return cmp.Compare(x.d.ID, y.d.ID) })
	s := &subscriber{key: key, ch: make(chan Delivery, len(backlog)+b.opts.Buffer), ctx: ctx}
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

// Forget drops what the Broker keeps for a session alone and disconnects
// its subscribers. It implements p2core.SessionForgetter: a Service whose
// Config.Events is the Broker calls it when it ends a session.
func (b *Broker) Forget(user p2core.UserID, session p2core.SessionID) {
	key := sessionKey{user, session}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, s := range slices.Clone(b.subs[key]) {
		b.drop(s)
	}
	delete(b.cursors, key)
	if ul := b.users[user]; ul != nil {
		delete(ul.sessions, session)
	}
}
