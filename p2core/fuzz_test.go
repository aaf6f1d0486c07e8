package p2core_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/p2kit/p2kit/p2core"
)

// maxMessage bounds an error message that quotes hostile input: the
// parsers truncate it to at most 64 bytes, and %q writes each as at most 4.
const maxMessage = 400

// FuzzParseUserID checks that ParseUserID accepts exactly the canonical
// decimal forms of 1..2^64-1, that every refusal matches ErrInvalidUserID,
// and that accepted IDs round-trip through String, text and JSON.
func FuzzParseUserID(f *testing.F) {
	for _, s := range []string{"1", "42", "7345926513625088001", "18446744073709551615", "18446744073709551616",
		"0", "01", "-1", "+1", " 1", "1 ", "1e3", "0x10", "", "@me", "@all", "١٢٣", "99999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := p2core.ParseUserID(s)
		v, perr := strconv.ParseUint(s, 10, 64)
		canonical := perr == nil && v > 0 && strconv.FormatUint(v, 10) == s
		if err != nil {
			if !errors.Is(err, p2core.ErrInvalidUserID) {
				t.Fatalf("ParseUserID(%q) error %v does not match ErrInvalidUserID", s, err)
			}
			if id != 0 {
				t.Fatalf("ParseUserID(%q) = %d with an error", s, id)
			}
			if canonical {
				t.Fatalf("ParseUserID refused the canonical ID %q: %v", s, err)
			}
			if len(p2core.Message(err)) > maxMessage {
				t.Fatalf("error message of %d bytes echoes the input unbounded", len(p2core.Message(err)))
			}
			return
		}
		if !canonical || uint64(id) != v {
			t.Fatalf("ParseUserID(%q) = %d, but it is not the canonical form of a positive uint64", s, id)
		}
		if id.String() != s {
			t.Fatalf("String() = %q, want %q", id.String(), s)
		}
		if again, err := p2core.ParseUserID(id.String()); err != nil || again != id {
			t.Fatalf("ParseUserID(String()) = %d, %v; want %d", again, err, id)
		}
		b, err := json.Marshal(id)
		if err != nil || string(b) != strconv.Quote(s) {
			t.Fatalf("JSON %s, %v; want %q", b, err, s)
		}
		var back p2core.UserID
		if err := json.Unmarshal(b, &back); err != nil || back != id {
			t.Fatalf("JSON round trip = %d, %v", back, err)
		}
	})
}

// FuzzParseFID checks that ParseFID refuses with ErrInvalidFID or returns
// the lower-cased input, split by its single '@' into a non-empty local
// part and domain, and that parsing the result gives it back unchanged.
func FuzzParseFID(f *testing.F) {
	for _, s := range []string{"alice@home.test", "Alice@Example.COM", "a.b_c-d@sub.example.com:8443", "x@localhost",
		"alice", "@example.com", "alice@", "alice@@example.com", "alice@-bad.com", "alice@example.com.",
		"alice@example.com:123456", "al ice@example.com", "alice@exa_mple.com", "\u212a@example.com",
		strings.Repeat("a", 65) + "@example.com", "alice@" + strings.Repeat("a", 64) + ".com", "alice@example.com\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fid, err := p2core.ParseFID(s)
		if err != nil {
			if !errors.Is(err, p2core.ErrInvalidFID) || fid != "" {
				t.Fatalf("ParseFID(%q) = %q, %v; want \"\" and ErrInvalidFID", s, fid, err)
			}
			if len(p2core.Message(err)) > maxMessage {
				t.Fatalf("error message of %d bytes echoes the input unbounded", len(p2core.Message(err)))
			}
			return
		}
		if string(fid) != strings.ToLower(s) {
			t.Fatalf("ParseFID(%q) = %q, want the input in lower case", s, fid)
		}
		if strings.Count(string(fid), "@") != 1 || fid.Local() == "" || fid.Domain() == "" ||
			fid.Local()+"@"+fid.Domain() != string(fid) {
			t.Fatalf("ParseFID(%q) = %q: local %q, domain %q", s, fid, fid.Local(), fid.Domain())
		}
		for _, c := range []byte(fid) {
			if c < 0x21 || c > 0x7e || c >= 'A' && c <= 'Z' {
				t.Fatalf("ParseFID(%q) = %q holds byte %#x", s, fid, c)
			}
		}
		if again, err := p2core.ParseFID(string(fid)); err != nil || again != fid {
			t.Fatalf("ParseFID is not idempotent: %q -> %q, %v", fid, again, err)
		}
	})
}

// FuzzNormalizeServerURL checks that every refusal matches
// ErrInvalidServer and that an accepted URL is normalised to
// scheme://host[:port] in lower case, that normalising it again gives it
// unchanged, and that allowing insecure URLs never refuses or changes a
// URL that is accepted without.
func FuzzNormalizeServerURL(f *testing.F) {
	for _, s := range []string{"https://foreign.example", "HTTPS://Foreign.Example:8443/", "http://127.0.0.1:8080",
		"https://[::1]:443", "https://[2001:DB8::1]", "https://b.example/path", "https://user@b.example",
		"https://b.example?x=1", "https://b.example#frag", "https://b.example?", "ftp://b.example", "b.example",
		"//b.example", "https://", "https://:443", "https://b.example:", "https://b.example:99999999",
		"https://b_example.com", "https://b.example:80:80", "https://%62.example", "https://[::1%25eth0]",
		"https://b.example\\@evil.example", "https://xn--bcher-kva.example", "https://B.EXAMPLE./"} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw string, insecure bool) {
		out, err := p2core.NormalizeServerURL(raw, insecure)
		if err != nil {
			if !errors.Is(err, p2core.ErrInvalidServer) || out != "" {
				t.Fatalf("NormalizeServerURL(%q) = %q, %v; want \"\" and ErrInvalidServer", raw, out, err)
			}
			if len(p2core.Message(err)) > maxMessage {
				t.Fatalf("error message of %d bytes echoes the input unbounded", len(p2core.Message(err)))
			}
			return
		}
		if out != strings.ToLower(out) {
			t.Fatalf("NormalizeServerURL(%q) = %q, not lower case", raw, out)
		}
		u, perr := url.Parse(out)
		if perr != nil {
			t.Fatalf("NormalizeServerURL(%q) = %q, which does not parse: %v", raw, out, perr)
		}
		if !(u.Scheme == "https" || insecure && u.Scheme == "http") || u.Host == "" || u.User != nil ||
			u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
			t.Fatalf("NormalizeServerURL(%q, %v) = %q, not scheme://host[:port]", raw, insecure, out)
		}
		if out != u.Scheme+"://"+u.Host {
			t.Fatalf("NormalizeServerURL(%q) = %q, not exactly scheme://host[:port]", raw, out)
		}
		again, err := p2core.NormalizeServerURL(out, insecure)
		if err != nil || again != out {
			t.Fatalf("not idempotent: %q -> %q -> %q, %v", raw, out, again, err)
		}
		if !insecure {
			loose, err := p2core.NormalizeServerURL(raw, true)
			if err != nil || loose != out {
				t.Fatalf("insecure mode changes the accepted %q: %q, %v", raw, loose, err)
			}
		}
	})
}

// FuzzParseSessionID checks the 1-32 printable ASCII rule exactly.
func FuzzParseSessionID(f *testing.F) {
	for _, s := range []string{"a", "0190d5c3e4f5", strings.Repeat("x", 32), strings.Repeat("x", 33), "", "a b", "é", "~!", "\x7f"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := p2core.ParseSessionID(s)
		ok := len(s) >= 1 && len(s) <= 32
		for i := 0; i < len(s); i++ {
			ok = ok && s[i] >= 0x21 && s[i] <= 0x7e
		}
		if ok != (err == nil) {
			t.Fatalf("ParseSessionID(%q) = %q, %v; rule says valid=%v", s, id, err, ok)
		}
		if err != nil && !errors.Is(err, p2core.ErrBadRequest) {
			t.Fatalf("ParseSessionID(%q) error %v does not match ErrBadRequest", s, err)
		}
		if err == nil && string(id) != s {
			t.Fatalf("ParseSessionID(%q) = %q", s, id)
		}
	})
}
