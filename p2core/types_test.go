package p2core_test

import (
	"errors"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

func TestParseUserIDAcceptsSnowflakesAndRefusesJunk(t *testing.T) {
	good := map[string]p2core.UserID{"1": 1, "42": 42, "18446744073709551615": 18446744073709551615}
	for in, want := range good {
		got, err := p2core.ParseUserID(in)
		if err != nil || got != want {
			t.Errorf("ParseUserID(%q) = %v, %v; want %v", in, got, err, want)
		}
		if got.String() != in {
			t.Errorf("String() = %q, want %q", got.String(), in)
		}
	}
	for _, in := range []string{"", "0", "-1", "+1", "abc", "01", "1.5", " 1", "18446744073709551616", "99999999999999999999", "123456789012345678901", "1e3"} {
		if _, err := p2core.ParseUserID(in); !errors.Is(err, p2core.ErrInvalidUserID) {
			t.Errorf("ParseUserID(%q) err = %v, want ErrInvalidUserID", in, err)
		}
	}
}

func TestParseFIDIsCaseInsensitiveAndAnchored(t *testing.T) {
	f, err := p2core.ParseFID("Alice@Example.COM")
	if err != nil || f != "alice@example.com" {
		t.Fatalf("ParseFID = %q, %v", f, err)
	}
	if f.Local() != "alice" || f.Domain() != "example.com" {
		t.Errorf("Local/Domain = %q/%q", f.Local(), f.Domain())
	}
	for _, in := range []string{"", "alice", "@x.com", "alice@", "a@b@c", "alice@x.com\n", "alice@x.com evil", "Alice <alice@x.com>", "al ice@x.com", "alice@-x.com", "alice@x..com"} {
		if _, err := p2core.ParseFID(in); !errors.Is(err, p2core.ErrInvalidFID) {
			t.Errorf("ParseFID(%q) err = %v, want ErrInvalidFID", in, err)
		}
	}
}

func TestParseSessionIDBounds(t *testing.T) {
	for _, in := range []string{"a", "0123456789abcdef0123456789abcdef", "!~"} {
		if _, err := p2core.ParseSessionID(in); err != nil {
			t.Errorf("ParseSessionID(%q) = %v", in, err)
		}
	}
	for _, in := range []string{"", "0123456789abcdef0123456789abcdef0", "a b", "é", "a\x00"} {
		if _, err := p2core.ParseSessionID(in); !errors.Is(err, p2core.ErrBadRequest) {
			t.Errorf("ParseSessionID(%q) err = %v, want ErrBadRequest", in, err)
		}
	}
}

func TestNormalizeServerURL(t *testing.T) {
	good := map[string]string{
		"https://Foreign.Example":       "https://foreign.example",
		"https://foreign.example/":      "https://foreign.example",
		"HTTPS://foreign.example:8443":  "https://foreign.example:8443",
		"https://127.0.0.1:9000":        "https://127.0.0.1:9000",
		"https://[::1]:9000":            "https://[::1]:9000",
		"https://xn--bcher-kva.example": "https://xn--bcher-kva.example",
	}
	for in, want := range good {
		got, err := p2core.NormalizeServerURL(in, false)
		if err != nil || got != want {
			t.Errorf("NormalizeServerURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{"", "ftp://x", "https://u:p@x", "https://u@x", "not a url", "foreign.example", "//foreign.example",
		"https://x/path", "https://x?q=1", "https://x#frag", "https://x?", "https://", "https://x:abc", "https://x:", "https:x",
		"http://foreign.example", "https://exa mple.com", "https://ex_ample.com", "javascript:alert(1)"}
	for _, in := range bad {
		if got, err := p2core.NormalizeServerURL(in, false); !errors.Is(err, p2core.ErrInvalidServer) {
			t.Errorf("NormalizeServerURL(%q) = %q, %v; want ErrInvalidServer", in, got, err)
		}
	}
	if got, err := p2core.NormalizeServerURL("http://127.0.0.1:8080", true); err != nil || got != "http://127.0.0.1:8080" {
		t.Errorf("insecure http = %q, %v", got, err)
	}
}

func TestSnowflakesAreIncreasingAndUnique(t *testing.T) {
	fixed := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g := p2core.NewSnowflakes(7, func() time.Time { return fixed })
	var last p2core.UserID
	for i := 0; i < 10000; i++ { // more than 4096 in one millisecond: the sequence must wrap
		id := g.Next()
		if id <= last {
			t.Fatalf("id %d not greater than %d at %d", id, last, i)
		}
		if (uint64(id)>>12)&0x3ff != 7 {
			t.Fatalf("worker bits of %d are not 7", id)
		}
		last = id
	}
}
