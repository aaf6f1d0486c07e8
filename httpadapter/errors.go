package httpadapter

import (
	"context"
	"errors"
	"net/http"

	"github.com/p2kit/p2kit/p2core"
)

// errorMapping is one row of the table from domain errors to HTTP.
type errorMapping struct {
	kind   error
	status int
	code   string
}

// errorTable maps each p2core sentinel to its HTTP status and P2CORE_*
// code. It is the only place that decides how a domain error looks on the
// wire; the Client reads it backwards.
var errorTable = []errorMapping{
	{p2core.ErrUnauthorized, http.StatusUnauthorized, "P2CORE_UNAUTHORIZED"},
	{p2core.ErrNotAdministrator, http.StatusForbidden, "P2CORE_NOT_ADMINISTRATOR"},
	{p2core.ErrForbidden, http.StatusForbidden, "P2CORE_FORBIDDEN"},
	{p2core.ErrFIDMismatch, http.StatusForbidden, "P2CORE_FID_MISMATCH"},
	{p2core.ErrTokenGenerationDisabled, http.StatusForbidden, "P2CORE_TOKEN_GENERATION_DISABLED"},
	{p2core.ErrBadRequest, http.StatusBadRequest, "P2CORE_BAD_REQUEST"},
	{p2core.ErrInvalidUserID, http.StatusBadRequest, "P2CORE_INVALID_USER_ID"},
	{p2core.ErrInvalidFID, http.StatusBadRequest, "P2CORE_INVALID_FID"},
	{p2core.ErrInvalidServer, http.StatusBadRequest, "P2CORE_INVALID_SERVER"},
	{p2core.ErrInvalidPublicKey, http.StatusBadRequest, "P2CORE_INVALID_PUBLIC_KEY"},
	{p2core.ErrInvalidIDCert, http.StatusBadRequest, "P2CORE_INVALID_ID_CERT"},
	{p2core.ErrInvalidKeyPackage, http.StatusBadRequest, "P2CORE_INVALID_KEYPACKAGE"},
	{p2core.ErrUnknownHome, http.StatusBadRequest, "P2CORE_UNKNOWN_HOME_SERVER"},
	{p2core.ErrNotFederated, http.StatusNotFound, "P2CORE_NOT_FEDERATED"},
	{p2core.ErrTokenInvalid, http.StatusNotFound, "P2CORE_TOKEN_INVALID"},
	{p2core.ErrNotFound, http.StatusNotFound, "P2CORE_NOT_FOUND"},
	{p2core.ErrNoIDCert, http.StatusConflict, "P2CORE_NO_ID_CERT"},
	{p2core.ErrDuplicateKeyPackage, http.StatusConflict, "P2CORE_DUPLICATE_KEYPACKAGE"},
	{p2core.ErrTooManyKeyPackages, http.StatusConflict, "P2CORE_TOO_MANY_KEYPACKAGES"},
	{p2core.ErrTooManySessions, http.StatusConflict, "P2CORE_TOO_MANY_SESSIONS"},
	{p2core.ErrConflict, http.StatusConflict, "P2CORE_CONFLICT"},
	{p2core.ErrRateLimited, http.StatusTooManyRequests, "P2CORE_RATE_LIMITED"},
	{p2core.ErrHomeUnreachable, http.StatusBadGateway, "P2CORE_HOME_UNREACHABLE"},
	{p2core.ErrUnavailable, http.StatusServiceUnavailable, codeUnavailable},
}

// unavailableRetryAfter is the Retry-After, in seconds, of a 503 for
// p2core.ErrUnavailable: long enough for a database restart or a pool
// reconnect, short enough that clients come back soon.
const unavailableRetryAfter = 5

// Codes the adapter produces itself, with no domain sentinel behind them.
const (
	codeMethodNotAllowed = "P2CORE_METHOD_NOT_ALLOWED"
	codeBodyTooLarge     = "P2CORE_BODY_TOO_LARGE"
	codeInternal         = "P2CORE_INTERNAL"
	codeUnavailable      = "P2CORE_UNAVAILABLE"
)

// errorBody is the JSON body of every error response.
type errorBody struct {
	Errcode int    `json:"errcode"`
	Error   string `json:"error"`
	Message string `json:"message"`
}

// Refusals that are about HTTP rather than the domain, for WriteError:
// wrap them with p2core.Errorf to give the message.
var (
	// ErrMethodNotAllowed: the path exists, but not for the request's
	// method (405 P2CORE_METHOD_NOT_ALLOWED). Set the Allow header first.
	ErrMethodNotAllowed = errors.New("method not allowed")
	// ErrBodyTooLarge: the request body is over its limit (413
	// P2CORE_BODY_TOO_LARGE).
	ErrBodyTooLarge = errors.New("request body too large")
)

// classify returns the status, code and caller-safe message for err.
// Errors matching no row are internal: 500 with no detail.
func classify(err error) (status int, code, message string) {
	if errors.Is(err, ErrBodyTooLarge) {
		return http.StatusRequestEntityTooLarge, codeBodyTooLarge, err.Error()
	}
	if errors.Is(err, p2core.ErrUnavailable) {
		// The backend's error names its driver and database: not for
		// the caller.
		return http.StatusServiceUnavailable, codeUnavailable, "the server's store is temporarily unavailable; retry later"
	}
	if errors.Is(err, ErrMethodNotAllowed) {
		return http.StatusMethodNotAllowed, codeMethodNotAllowed, p2core.Message(err)
	}
	for _, m := range errorTable {
		if errors.Is(err, m.kind) {
			return m.status, m.code, p2core.Message(err)
		}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return http.StatusServiceUnavailable, codeUnavailable, "the request was cancelled or timed out"
	}
	return http.StatusInternalServerError, codeInternal, p2core.InternalMessage
}

// kindForCode returns the sentinel for a P2CORE_* code, or nil.
func kindForCode(code string) error {
	for _, m := range errorTable {
		if m.code == code {
			return m.kind
		}
	}
	return nil
}
