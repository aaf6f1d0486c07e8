package p2core

import (
	"context"
	"time"
)

// EventType names an event the Service emits; the README's events table
// lists each type's recipients and payload fields.
type EventType string

// The event types.
const (
	EventNewSession            EventType = "NEW_SESSION"
	EventClientKeyChange       EventType = "CLIENT_KEY_CHANGE"
	EventServerKeyChange       EventType = "SERVER_KEY_CHANGE"
	EventLowKeyPackages        EventType = "LOW_KEY_PACKAGES"
	EventFederationTokenIssued EventType = "FEDERATION_TOKEN_ISSUED"
)

// Security reports whether events of type t warn of a change to who can
// act as the user or as this server (NEW_SESSION, CLIENT_KEY_CHANGE,
// SERVER_KEY_CHANGE). A sink that keeps events for offline sessions must
// never drop one of these to make room for events of other types.
func (t EventType) Security() bool {
	return t == EventNewSession || t == EventClientKeyChange || t == EventServerKeyChange
}

// State reports whether events of type t only describe a current state
// (LOW_KEY_PACKAGES: the supply now), so that for one recipient the
// latest replaces any earlier one not yet delivered.
func (t EventType) State() bool { return t == EventLowKeyPackages }

// Event is something a user's sessions should learn. Payload is a Go
// value, the *Payload type of its Type (NewSessionPayload for NEW_SESSION,
// ...); encoding/json turns it into the JSON the README's events table
// documents, with times as Unix seconds.
type Event struct {
	Type EventType
	// UserID is the user whose sessions receive the event. Zero means
	// every session of every user (SERVER_KEY_CHANGE).
	UserID UserID
	// Sessions are the target sessions of the user; empty means all of
	// the user's sessions (but Except).
	Sessions []SessionID
	// Except, when set, is the session the event is about, which does not
	// receive it: the new session of NEW_SESSION, the session with a new
	// ID-Cert of CLIENT_KEY_CHANGE. With Sessions empty the event goes to
	// every other session of the user, so it carries no list of them, and
	// its size does not grow with the number of sessions.
	Except SessionID
	// Time is when the event happened.
	Time    time.Time
	Payload any
}

// EventSink receives events from the Service. Publish must not block for
// long: it is called on the request path, after the operation that caused
// the event has been stored. Implementations must be safe for concurrent
// use.
type EventSink interface {
	Publish(ctx context.Context, e Event)
}

// SessionForgetter is implemented by an EventSink that keeps state per
// session (events kept for a session that is offline, connected streams).
// After a session ends (EndSession, EndAllSessions) the Service calls
// Forget, so ending a session is one call: its token, KeyPackages and
// ID-Cert stop working in the Store and the sink drops what it keeps for
// it. broker.Broker implements it. Forget must be safe for concurrent use
// and must not block for long.
type SessionForgetter interface {
	Forget(user UserID, session SessionID)
}

type discardSink struct{}

func (discardSink) Publish(context.Context, Event) {}

// FederationTokenIssuedPayload is the payload of FEDERATION_TOKEN_ISSUED,
// sent to all the user's sessions so that a token request nobody made is
// noticed.
type FederationTokenIssuedPayload struct {
	// Server is the foreign server the token is for (normalised URL).
	Server string `json:"server"`
	// SessionID is the session that asked for the token.
	SessionID SessionID `json:"session_id"`
	// ExpiresAt is when the token expires, in Unix seconds.
	ExpiresAt int64 `json:"expires_at"`
}
