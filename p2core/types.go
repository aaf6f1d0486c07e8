package p2core

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// UserID identifies a local user. It is a Snowflake: an unsigned 64-bit
// integer greater than zero, written as a decimal string in JSON and paths.
type UserID uint64

// ParseUserID parses a decimal user ID. It refuses zero, signs, leading
// zeros, non-digits and values that overflow 64 bits, with an error
// matching ErrInvalidUserID.
func ParseUserID(s string) (UserID, error) {
	if s == "" || len(s) > 20 {
		return 0, Errorf(ErrInvalidUserID, "user ID %q is not a decimal number between 1 and 2^64-1", truncate(s, 32))
	}
	if s[0] == '0' {
		return 0, Errorf(ErrInvalidUserID, "user ID %q must be a positive number without leading zeros", truncate(s, 32))
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, Errorf(ErrInvalidUserID, "user ID %q is not a decimal number", truncate(s, 32))
		}
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, Errorf(ErrInvalidUserID, "user ID %q is out of range", truncate(s, 32))
	}
	return UserID(v), nil
}

// String returns the decimal form of id.
func (id UserID) String() string { return strconv.FormatUint(uint64(id), 10) }

// MarshalText encodes id as a decimal string, so it is a JSON string.
func (id UserID) MarshalText() ([]byte, error) {
	return strconv.AppendUint(nil, uint64(id), 10), nil
}

// UnmarshalText parses a decimal user ID with the rules of ParseUserID.
func (id *UserID) UnmarshalText(b []byte) error {
	v, err := ParseUserID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// FID is a federation ID, "name@domain", always held in lower case.
// Compare FIDs with ==; build them with ParseFID.
type FID string

// fidPattern is anchored: the whole string must match. The local part is
// 1-64 of [a-z0-9._-]; the domain is one or more DNS labels, optionally with
// a port for loopback deployments.
var fidPattern = regexp.MustCompile(`^[a-z0-9._-]{1,64}@[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*(?::[0-9]{1,5})?$`)

// ParseFID validates s as a federation ID (case-insensitive) and returns it
// in lower case. Invalid input gives an error matching ErrInvalidFID.
func ParseFID(s string) (FID, error) {
	if len(s) > 320 {
		return "", Errorf(ErrInvalidFID, "federation ID is longer than 320 bytes")
	}
	l := strings.ToLower(s)
	if !fidPattern.MatchString(l) {
		return "", Errorf(ErrInvalidFID, "%q is not a federation ID of the form name@domain", truncate(s, 64))
	}
	return FID(l), nil
}

// Local returns the part of the FID before '@'.
func (f FID) Local() string {
	i := strings.IndexByte(string(f), '@')
	if i < 0 {
		return string(f)
	}
	return string(f)[:i]
}

// Domain returns the part of the FID after '@'.
func (f FID) Domain() string {
	i := strings.IndexByte(string(f), '@')
	if i < 0 {
		return ""
	}
	return string(f)[i+1:]
}

// String returns the FID.
func (f FID) String() string { return string(f) }

// SessionID names one session of a user: 1-32 printable ASCII characters
// (0x21-0x7e), unique per user.
type SessionID string

// ParseSessionID validates s as a session ID, with an error matching
// ErrBadRequest.
func ParseSessionID(s string) (SessionID, error) {
	if len(s) == 0 || len(s) > 32 {
		return "", Errorf(ErrBadRequest, "session ID must be 1-32 printable ASCII characters")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return "", Errorf(ErrBadRequest, "session ID must be 1-32 printable ASCII characters")
		}
	}
	return SessionID(s), nil
}

// Principal is who is calling: a user's session, possibly an administrator.
// The zero Principal is anonymous.
type Principal struct {
	UserID    UserID
	FID       FID
	SessionID SessionID
	Admin     bool
	// Home is empty for a local user. For a foreign user's session (route
	// 16) it is the domain of the user's home server; such a principal is
	// never an administrator and may not issue federation tokens or ask
	// this server for an ID-Cert.
	Home string
}

// Anonymous reports whether p names no user.
func (p Principal) Anonymous() bool { return p.UserID == 0 }

// Validate checks that p is a well-formed authenticated principal.
func (p Principal) Validate() error {
	if p.UserID == 0 {
		return Errorf(ErrUnauthorized, "no authenticated user")
	}
	if _, err := ParseFID(string(p.FID)); err != nil {
		return fmt.Errorf("principal: %w", err)
	}
	if _, err := ParseSessionID(string(p.SessionID)); err != nil {
		return fmt.Errorf("principal: %w", err)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
