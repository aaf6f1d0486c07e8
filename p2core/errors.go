package p2core

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error the Service returns for a refused request
// matches exactly one of them with errors.Is; anything else is an internal
// failure. Store implementations return ErrNotFound, ErrConflict,
// ErrTokenInvalid, ErrDuplicateKeyPackage, ErrTooManyKeyPackages and
// ErrTooManySessions where their method docs say so, ErrClosed after
// Close, and ErrUnavailable for transient failures of what they run on.
var (
	// ErrNotFound: the thing asked for does not exist.
	ErrNotFound = newSentinel("not found")
	// ErrConflict: the write collides with existing data (duplicate key,
	// concurrent change). Retrying with fresh data may succeed.
	ErrConflict = newSentinel("conflict")
	// ErrClosed: the Store was closed.
	ErrClosed = newSentinel("store closed")
	// ErrUnavailable: the Store failed for a reason that is expected to
	// pass (its database refuses connections or is restarting, its disk
	// is full). Nothing changed; the request may be retried later.
	ErrUnavailable = newSentinel("store temporarily unavailable")

	// ErrUnauthorized: no or bad credentials.
	ErrUnauthorized = newSentinel("unauthorized")
	// ErrNotAdministrator: the route needs an administrator.
	ErrNotAdministrator = newSentinel("not an administrator")
	// ErrForbidden: the principal may not do this.
	ErrForbidden = newSentinel("forbidden")
	// ErrBadRequest: the request is malformed.
	ErrBadRequest = newSentinel("bad request")
	// ErrInvalidUserID: a user ID is not a valid Snowflake.
	ErrInvalidUserID = newSentinel("invalid user ID")
	// ErrInvalidFID: a federation ID is malformed.
	ErrInvalidFID = newSentinel("invalid federation ID")
	// ErrInvalidServer: a server URL is not acceptable.
	ErrInvalidServer = newSentinel("invalid server URL")
	// ErrNotFederated: the FederationPolicy refuses the server.
	ErrNotFederated = newSentinel("server not federated")
	// ErrTokenGenerationDisabled: an administrator switched off token generation.
	ErrTokenGenerationDisabled = newSentinel("federation token generation disabled")
	// ErrTokenInvalid: the federation token is unknown, expired, redeemed,
	// revoked or for another server.
	ErrTokenInvalid = newSentinel("federation token invalid")
	// ErrInvalidPublicKey: an uploaded OpenPGP public key is refused.
	ErrInvalidPublicKey = newSentinel("invalid public key")
	// ErrInvalidIDCert: an ID-Cert does not parse or verify.
	ErrInvalidIDCert = newSentinel("invalid ID-Cert")
	// ErrInvalidKeyPackage: an MLS KeyPackage is refused.
	ErrInvalidKeyPackage = newSentinel("invalid KeyPackage")
	// ErrNoIDCert: the session has no current ID-Cert.
	ErrNoIDCert = newSentinel("session has no ID-Cert")
	// ErrDuplicateKeyPackage: a KeyPackage's init_key is already in use.
	ErrDuplicateKeyPackage = newSentinel("duplicate KeyPackage")
	// ErrTooManyKeyPackages: the user's KeyPackage cap would be exceeded.
	ErrTooManyKeyPackages = newSentinel("too many KeyPackages")
	// ErrTooManySessions: the user has as many sessions as allowed.
	ErrTooManySessions = newSentinel("too many sessions")
	// ErrRateLimited: the caller must slow down.
	ErrRateLimited = newSentinel("rate limited")
	// ErrUnknownHome: the home server of a FID cannot be found.
	ErrUnknownHome = newSentinel("unknown home server")
	// ErrHomeUnreachable: the home server did not answer usefully.
	ErrHomeUnreachable = newSentinel("home server unreachable")
	// ErrFIDMismatch: a federation token and an ID-Cert name different
	// federation IDs (route 16).
	ErrFIDMismatch = newSentinel("federation ID mismatch")
)

// Error is a refusal that carries a sentinel (Kind) and a human-readable
// message safe to show to the caller.
type Error struct {
	Kind    error
	Message string
}

// Error returns the message.
func (e *Error) Error() string { return e.Message }

// Unwrap returns the sentinel, so errors.Is(err, e.Kind) holds.
func (e *Error) Unwrap() error { return e.Kind }

// Errorf returns an *Error of the given kind with a formatted message.
func Errorf(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// InternalMessage is what Message returns for an error that matches no
// sentinel: an internal failure, whose own text may name files, tables or
// constraints and so is never shown to a caller.
const InternalMessage = "internal server error"

// Message returns the caller-safe message of err: the message of the
// outermost *Error in its chain, else the text of the sentinel it matches
// (never the text of the errors wrapping it, which may come from a
// Store), else InternalMessage.
func Message(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	var k *sentinelError
	if errors.As(err, &k) {
		return k.text
	}
	return InternalMessage
}

// sentinelError is the type of the sentinels above, so that Message finds
// the one in an error's chain, whatever wraps it, without a list to keep.
type sentinelError struct{ text string }

func newSentinel(text string) error { return &sentinelError{text} }

// Error returns the sentinel's text.
func (e *sentinelError) Error() string { return e.text }
