package main

// The demo routes the web client (web/) needs beyond polyproto-core. They
// are part of this example only, not of p2core or httpadapter:
//
//   - POST /demo/relay/{user_id}: the demo relay. polyproto-core does not
//     say how an MLS Welcome or an application message travels between
//     users, so the example carries them itself: the JSON object in the
//     body reaches every session of that user as a DEMO_RELAY event on
//     /events, wrapped with the sender's user ID, FID and session ID. A
//     real chat server has its own message delivery; this is a stand-in.
//   - GET /demo/users/{username}: the user ID and FID of a username, so
//     the page can find the user whose ID-Certs (route 9) and KeyPackages
//     (route 14) to fetch.
//   - POST /events/ticket: a one-time ticket for GET /events?ticket=...,
//     because a browser's EventSource cannot send an Authorization header.
//
// Why a ticket and not the bearer token in the URL or a cookie: a URL is
// written to access logs and browser history, so a session token there
// would outlive its use; a ticket is single-use and expires after
// ticketTTL, so a copy in a log is worthless. A cookie is shared by every
// tab of the origin, but two tabs are two users in the demo. The ticket
// maps to the session's bearer token in memory only, and the stream
// authenticates that token as any other request, so a session ended
// between issue and use is refused.

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
)

// Limits of the demo routes.
const (
	// maxRelayBody caps one relayed object. An MLS Welcome for a small
	// group with its ratchet tree, in Base64, is a few KiB.
	maxRelayBody = 16 << 10
	// ticketTTL is how long an event-stream ticket can be used.
	ticketTTL = 30 * time.Second
	// maxTickets bounds the outstanding tickets of the whole server.
	maxTickets = 10_000
	// eventRelay is the event type of relayed objects on /events.
	eventRelay p2core.EventType = "DEMO_RELAY"
	// demoPerSecond and demoBurst limit each user on the demo routes: a
	// chat's pace, with a burst for a group creation that sends a Welcome
	// to each member.
	demoPerSecond = 2
	demoBurst     = 20
)

// relayed is the payload of a DEMO_RELAY event.
type relayed struct {
	From        p2core.UserID    `json:"from"`
	FromFID     p2core.FID       `json:"from_fid"`
	FromSession p2core.SessionID `json:"from_session"`
	Body        json.RawMessage  `json:"body"`
}

// demo holds the state of the demo routes.
type demo struct {
	app     *app
	limiter *httpadapter.TokenBuckets

	mu      sync.Mutex
	tickets map[string]ticket
}

type ticket struct {
	bearer  string
	expires time.Time
}

// routeDemo serves the web client, the demo routes, and stream (the
// session's events) at /events for a bearer token or a ticket.
func (a *app) routeDemo(auth httpadapter.Authenticator, stream http.Handler) {
	d := &demo{app: a, limiter: httpadapter.NewTokenBuckets(nil), tickets: map[string]ticket{}}
	a.mux.Handle("/events", d.withTicket(stream))
	a.mux.Handle("POST /events/ticket", a.withSession(auth, d.issueTicket))
	a.mux.Handle("POST /demo/relay/{user_id}", a.withSession(auth, d.relay))
	a.mux.Handle("GET /demo/users/{username}", a.withSession(auth, d.lookup))
	routeWeb(a.mux)
}

// limit answers 429 and false when p has used up its demo budget.
func (d *demo) limit(w http.ResponseWriter, r *http.Request, p p2core.Principal) bool {
	ok, wait := d.limiter.Allow(p.UserID.String(), httpadapter.Rate{PerSecond: demoPerSecond, Burst: demoBurst}, 1) // per user: more sessions buy nothing
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait/time.Second)+1))
		d.app.refuse(w, r, p2core.ErrRateLimited, "too many demo requests; retry later")
	}
	return ok
}

// issueTicket answers a fresh one-time ticket for GET /events.
func (d *demo) issueTicket(w http.ResponseWriter, r *http.Request, p p2core.Principal) {
	if !d.limit(w, r, p) {
		return
	}
	var raw [24]byte
	_, _ = rand.Read(raw[:])
	id := base64.RawURLEncoding.EncodeToString(raw[:])
	now := time.Now()
	d.mu.Lock()
	for k, t := range d.tickets {
		if now.After(t.expires) {
			delete(d.tickets, k)
		}
	}
	full := len(d.tickets) >= maxTickets
	if !full {
		d.tickets[id] = ticket{bearer: httpadapter.BearerToken(r), expires: now.Add(ticketTTL)}
	}
	d.mu.Unlock()
	if full {
		w.Header().Set("Retry-After", strconv.Itoa(int(ticketTTL/time.Second)))
		d.app.refuse(w, r, p2core.ErrRateLimited, "too many outstanding event tickets; retry later")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, map[string]any{"ticket": id, "expires_in": int(ticketTTL / time.Second)})
}

// redeem consumes a ticket and returns its bearer token, or "" when the
// ticket is unknown, used or expired.
func (d *demo) redeem(id string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.tickets[id]
	delete(d.tickets, id)
	if !ok || time.Now().After(t.expires) {
		return ""
	}
	return t.bearer
}

// withTicket lets a request without a bearer token authenticate with a
// one-time ?ticket= (browsers' EventSource): next sees the ticket's bearer
// token, so it authenticates the session as for any request.
func (d *demo) withTicket(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.URL.Query().Get("ticket")
		if id == "" || httpadapter.BearerToken(r) != "" {
			next.ServeHTTP(w, r)
			return
		}
		bearer := d.redeem(id)
		if bearer == "" {
			d.app.refuse(w, r, p2core.ErrUnauthorized, "unknown, used or expired event ticket")
			return
		}
		r2 := r.Clone(r.Context())
		r2.Header.Set("Authorization", "Bearer "+bearer)
		next.ServeHTTP(w, r2)
	})
}

// relay delivers the JSON object in the body to every session of the user
// in the path, as a DEMO_RELAY event. Only users with a current ID-Cert
// can receive, so relayed events never pile up for made-up user IDs.
func (d *demo) relay(w http.ResponseWriter, r *http.Request, p p2core.Principal) {
	to, err := p2core.ParseUserID(r.PathValue("user_id"))
	if err != nil {
		d.app.refuse(w, r, p2core.ErrInvalidUserID, "the user ID must be a decimal number from 1 to 2^64-1")
		return
	}
	if !d.limit(w, r, p) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxRelayBody)
	var body json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			d.app.refuse(w, r, httpadapter.ErrBodyTooLarge, "a relayed object is at most "+strconv.Itoa(maxRelayBody)+" bytes")
			return
		}
		d.app.refuse(w, r, p2core.ErrBadRequest, "the body must be one JSON object")
		return
	}
	if len(body) == 0 || body[0] != '{' {
		d.app.refuse(w, r, p2core.ErrBadRequest, "the body must be one JSON object")
		return
	}
	certs, err := d.app.svc.IDCerts(r.Context(), to, time.Time{})
	if err != nil && !errors.Is(err, p2core.ErrNotFound) {
		d.app.internal(w, r, err)
		return
	}
	if len(certs) == 0 {
		d.app.refuse(w, r, p2core.ErrNotFound, "that user has no current ID-Cert to receive relayed messages")
		return
	}
	d.app.events.Publish(r.Context(), p2core.Event{Type: eventRelay, UserID: to, Time: time.Now(),
		Payload: relayed{From: p.UserID, FromFID: p.FID, FromSession: p.SessionID, Body: body}})
	w.WriteHeader(http.StatusAccepted)
}

// lookup answers the user ID and FID of a local username.
func (d *demo) lookup(w http.ResponseWriter, r *http.Request, p p2core.Principal) {
	if !d.limit(w, r, p) {
		return
	}
	name := strings.ToLower(r.PathValue("username"))
	if !usernamePattern.MatchString(name) {
		d.app.refuse(w, r, p2core.ErrBadRequest, "username must be 1-64 of a-z, 0-9, '.', '_', '-'")
		return
	}
	acc, err := d.app.accounts.get(r.Context(), name)
	if errors.Is(err, p2core.ErrNotFound) || err == nil && acc.UserID == 0 {
		d.app.refuse(w, r, p2core.ErrNotFound, "no such user")
		return
	}
	if err != nil {
		d.app.internal(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, registerResponse{UserID: acc.UserID, FID: p2core.FID(name + "@" + d.app.svc.Config().Domain)})
}
