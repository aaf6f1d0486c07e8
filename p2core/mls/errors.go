package mls

import (
	"errors"
	"strconv"
)

// ErrInvalid is matched (via errors.Is) by every error that Decode, Validate,
// Parse and KeyPackage.Ref return. It means the input is not an acceptable
// KeyPackage; the error's text says why.
var ErrInvalid = errors.New("mls: invalid KeyPackage")

// Error describes why a KeyPackage was refused. It is the only error type
// this package returns, and it matches ErrInvalid.
type Error struct {
	// Field names the offending part in RFC 9420 terms, for example
	// "leaf_node.capabilities.extensions" or "signature". It is empty when
	// the problem concerns the input as a whole.
	Field string
	// Offset is the byte offset, in the input given to Decode, at which the
	// problem was found, or -1 when the problem is not positional (all
	// Validate failures).
	Offset int
	// Reason is a human-readable description of the problem.
	Reason string
}

// Error returns "mls: invalid KeyPackage: FIELD: REASON[ at offset N]".
func (e *Error) Error() string {
	return ErrInvalid.Error() + ": " + e.detail()
}

// detail is Error without the "mls: invalid KeyPackage: " prefix.
func (e *Error) detail() string {
	s := e.Reason
	if e.Field != "" {
		s = e.Field + ": " + s
	}
	if e.Offset >= 0 {
		s += " at offset " + strconv.Itoa(e.Offset)
	}
	return s
}

// Is reports whether target is ErrInvalid.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// invalid returns a non-positional *Error.
func invalid(field, reason string) *Error {
	return &Error{Field: field, Offset: -1, Reason: reason}
}
