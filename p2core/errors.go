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
	ErrNotFound = errors.New("not found")
	// ErrConflict: the write collides with existing data (duplicate key,
	// concurrent change). Retrying with fresh data may succeed.
	ErrConflict = errors.New("conflict")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("store closed")
	// ErrUnavailable: the Store failed for a reason that is expected to
	// pass (its database refuses connections or is restarting, its disk
	// is full). Nothing changed; the request may be retried later.
	ErrUnavailable = errors.New("store temporarily unavailable")

	// ErrUnauthorized: no or bad credentials.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrNotAdministrator: the route needs an administrator.
	ErrNotAdministrator = errors.New("not an administrator")
	// ErrForbidden: the principal may not do this.
	ErrForbidden = errors.New("forbidden")
	// ErrBadRequest: the request is malformed.
	ErrBadRequest = errors.New("bad request")
	// ErrInvalidUserID: a user ID is not a valid Snowflake.
	ErrInvalidUserID = errors.New("invalid user ID")
	// ErrInvalidFID: a federation ID is malformed.
	ErrInvalidFID = errors.New("invalid federation ID")
	// ErrInvalidServer: a server URL is not acceptable.
	ErrInvalidServer = errors.New("invalid server URL")
	// ErrNotFederated: the FederationPolicy refuses the server.
	ErrNotFederated = errors.New("server not federated")
	// ErrTokenGenerationDisabled: an administrator switched off token generation.
	ErrTokenGenerationDisabled = errors.New("federation token generation disabled")
	// ErrTokenInvalid: the federation token is unknown, expired, redeemed,
	// revoked or for another server.
	ErrTokenInvalid = errors.New("federation token invalid")
	// ErrInvalidPublicKey: an uploaded OpenPGP public key is refused.
	ErrInvalidPublicKey = errors.New("invalid public key")
	// ErrInvalidIDCert: an ID-Cert does not parse or verify.
	ErrInvalidIDCert = errors.New("invalid ID-Cert")
	// ErrInvalidKeyPackage: an MLS KeyPackage is refused.
	ErrInvalidKeyPackage = errors.New("invalid KeyPackage")
	// ErrNoIDCert: the session has no current ID-Cert.
	ErrNoIDCert = errors.New("session has no ID-Cert")
	// ErrDuplicateKeyPackage: a KeyPackage's init_key is already in use.
	ErrDuplicateKeyPackage = errors.New("duplicate KeyPackage")
	// ErrTooManyKeyPackages: the user's KeyPackage cap would be exceeded.
	ErrTooManyKeyPackages = errors.New("too many KeyPackages")
	// ErrTooManySessions: the user has as many sessions as allowed.
	ErrTooManySessions = errors.New("too many sessions")
	// ErrRateLimited: the caller must slow down.
	ErrRateLimited = errors.New("rate limited")
	// ErrUnknownHome: the home server of a FID cannot be found.
	ErrUnknownHome = errors.New("unknown home server")
	// ErrHomeUnreachable: the home server did not answer usefully.
	ErrHomeUnreachable = errors.New("home server unreachable")
	// ErrFIDMismatch: a federation token and an ID-Cert name different
	// federation IDs (route 16).
	ErrFIDMismatch = errors.New("federation ID mismatch")
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
	if k := sentinel(err); k != nil {
		return k.Error()
	}
	return InternalMessage
}

// sentinel returns the sentinel of this package that err matches, or nil
// when err is an internal failure.
func sentinel(err error) error {
	for _, k := range [...]error{
		ErrNotFound, ErrConflict, ErrClosed, ErrUnauthorized, ErrNotAdministrator,
		ErrForbidden, ErrBadRequest, ErrInvalidUserID, ErrInvalidFID, ErrInvalidServer,
		ErrNotFederated, ErrTokenGenerationDisabled, ErrTokenInvalid, ErrInvalidPublicKey,
		ErrInvalidIDCert, ErrInvalidKeyPackage, ErrNoIDCert, ErrDuplicateKeyPackage,
		ErrTooManyKeyPackages, ErrRateLimited, ErrUnknownHome, ErrHomeUnreachable,
		ErrFIDMismatch,
	} {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}
