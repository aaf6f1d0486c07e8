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

// Event is something a user's sessions should learn. Payload is a value
// that encodes to the JSON documented for its Type in the README.
type Event struct {
	Type EventType
	// UserID is the user whose sessions receive the event. Zero means
	// every session of every user (SERVER_KEY_CHANGE).
	UserID UserID
	// Sessions are the target sessions of the user; empty means all of
	// the user's sessions.
	Sessions []SessionID
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

type discardSink struct{}

func (discardSink) Publish(context.Context, Event) {}

// FederationTokenIssuedPayload is the payload of FEDERATION_TOKEN_ISSUED,
// sent to the user's other sessions so a token request nobody made is
// noticed.
type FederationTokenIssuedPayload struct {
	Server    string    `json:"server"`
	SessionID SessionID `json:"session_id"`
	ExpiresAt time.Time `json:"expires_at"`
}
