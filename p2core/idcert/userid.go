package idcert

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// validFID reports whether s has the shape name@domain that an ID-Cert may
// certify: a local part of 1-64 characters from [A-Za-z0-9._+-] and a domain
// of dot-separated labels of letters, digits and inner hyphens, at most 253
// characters long. Single-label domains (alice@localhost) are allowed.
func validFID(s string) bool {
	at := strings.IndexByte(s, '@')
	if at <= 0 || at != strings.LastIndexByte(s, '@') {
		return false
	}
	local, domain := s[:at], s[at+1:]
	if len(local) > 64 {
		return false
	}
	for i := 0; i < len(local); i++ {
		c := local[i]
		if !isAlnum(c) && c != '.' && c != '_' && c != '+' && c != '-' {
			return false
		}
	}
	if len(domain) == 0 || len(domain) > 253 {
		return false
	}
	for _, label := range strings.Split(domain, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isAlnum(c) && c != '-' {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// userIDEmail extracts the e-mail part of a User ID of one of the two forms
// an ID-Cert may certify: exactly "alice@example.com", or
// "Alice <alice@example.com>" where the name is non-empty UTF-8 text without
// angle brackets, control characters or surrounding spaces, separated from
// the bracketed address by exactly one space. Anything else (including
// "<alice@example.com>" alone) yields ok == false.
func userIDEmail(uid string) (email string, ok bool) {
	if !strings.HasSuffix(uid, ">") {
		if validFID(uid) {
			return uid, true
		}
		return "", false
	}
	i := strings.LastIndex(uid, " <")
	if i <= 0 {
		return "", false
	}
	name, email := uid[:i], uid[i+2:len(uid)-1]
	if !validFID(email) || !validName(name) {
		return "", false
	}
	return email, true
}

func validName(name string) bool {
	if name == "" || !utf8.ValidString(name) || strings.TrimSpace(name) != name {
		return false
	}
	for _, r := range name {
		if r == '<' || r == '>' || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// validSessionID reports whether s is 1-32 printable ASCII characters
// (0x20-0x7e), the session ID form of polyproto-core (p2core.SessionID).
func validSessionID(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
