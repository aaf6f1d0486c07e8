package idcert

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/secure/precis"
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

// errUserIDForm is returned by [userIDEmail] for a User ID of neither
// accepted form.
var errUserIDForm = errors.New("the User ID is neither name@domain nor \"Name <name@domain>\"")

// userIDEmail extracts the e-mail part of a User ID of one of the two forms
// an ID-Cert may certify: exactly "alice@example.com", or
// "Alice <alice@example.com>" where the name passes [checkDisplayName] and is
// separated from the bracketed address by exactly one space. A User ID of
// neither shape (including "<alice@example.com>" alone) yields
// errUserIDForm; one whose name breaks a rule yields an error naming it.
func userIDEmail(uid string) (email string, err error) {
	if !strings.HasSuffix(uid, ">") {
		if validFID(uid) {
			return uid, nil
		}
		return "", errUserIDForm
	}
	i := strings.LastIndex(uid, " <")
	if i <= 0 {
		return "", errUserIDForm
	}
	name, email := uid[:i], uid[i+2:len(uid)-1]
	if !validFID(email) {
		return "", errUserIDForm
	}
	if err := checkDisplayName(name); err != nil {
		return "", err
	}
	return email, nil
}

// checkDisplayName applies the rules for the name before "<FID>" in a User
// ID, so that no name can pass for another user's address wherever the User
// ID is shown (GnuPG, mail clients, chat clients): the name must be valid
// UTF-8 without control characters, format characters (Unicode category Cf:
// bidi controls such as U+202E, joiners, soft hyphens, tags) or surrounding
// spaces; it must be allowed by the PRECIS Nickname profile (RFC 8266); and
// after that profile (which maps full-width and compatibility forms to
// their plain twins, so "＜" becomes "<") it must be non-empty and hold no
// "@", "<" or ">" and still no format character. The error names the rule
// broken.
func checkDisplayName(name string) error {
	if !utf8.ValidString(name) {
		return errors.New("its name is not valid UTF-8")
	}
	if err := refuseInvisible(name); err != nil {
		return err
	}
	if strings.TrimSpace(name) != name {
		return errors.New("its name begins or ends with a space")
	}
	n, err := precis.Nickname.String(name)
	if err != nil {
		return fmt.Errorf("its name is not allowed by the PRECIS Nickname profile (RFC 8266): %v", strings.TrimPrefix(err.Error(), "precis: "))
	}
	if n == "" {
		return errors.New("its name is empty after the PRECIS Nickname profile (RFC 8266)")
	}
	if i := strings.IndexAny(n, "@<>"); i >= 0 {
		return fmt.Errorf("its name contains %q after the PRECIS Nickname profile (RFC 8266); a name must not look like an address", n[i:i+1])
	}
	return refuseInvisible(n)
}

// refuseInvisible refuses control characters and format characters
// (category Cf, which holds every bidi control) in a User ID's name.
func refuseInvisible(name string) error {
	for _, r := range name {
		switch {
		case unicode.IsControl(r):
			return fmt.Errorf("its name contains the control character %U", r)
		case unicode.Is(unicode.Cf, r):
			return fmt.Errorf("its name contains the format character %U (bidi controls and other invisible format characters could make it read as something else)", r)
		}
	}
	return nil
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
