package httpadapter_test

import (
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/p2kit/p2kit/httpadapter"
)

// guardRow is one range of the IANA IPv4 and IPv6 Special-Purpose Address
// Registries (plus the few ranges the guard adds), written out by hand, with
// the verdict expected for the first and last address inside and for the
// addresses just before and just after it. A verdict is "" for allowed, or
// the range the refusal must name. Empty fields take the defaults: inside,
// the row's own prefix (allowed for a globally reachable row); outside,
// allowed. "-" marks an address that does not exist (before 0.0.0.0).
type guardRow struct {
	prefix                     string
	global                     bool
	first, last, before, after string
}

var guardRows = []guardRow{
	// IPv4 registry.
	{prefix: "0.0.0.0/8", first: "0.0.0.0/32", before: "-"},
	{prefix: "0.0.0.0/32", before: "-", after: "0.0.0.0/8"},
	{prefix: "10.0.0.0/8"},
	{prefix: "100.64.0.0/10"},
	{prefix: "127.0.0.0/8"},
	{prefix: "169.254.0.0/16"},
	{prefix: "172.16.0.0/12"},
	{prefix: "192.0.0.0/24", first: "192.0.0.0/29"},
	{prefix: "192.0.0.0/29", after: "192.0.0.8/32"},
	{prefix: "192.0.0.8/32", before: "192.0.0.0/29"},
	{prefix: "192.0.0.9/32", global: true, before: "192.0.0.8/32"},
	{prefix: "192.0.0.10/32", global: true, after: "192.0.0.0/24"},
	{prefix: "192.0.0.170/32", before: "192.0.0.0/24", after: "192.0.0.171/32"},
	{prefix: "192.0.0.171/32", before: "192.0.0.170/32", after: "192.0.0.0/24"},
	{prefix: "192.0.2.0/24"},
	{prefix: "192.31.196.0/24", global: true},
	{prefix: "192.52.193.0/24", global: true},
	{prefix: "192.88.99.0/24"},
	{prefix: "192.168.0.0/16"},
	{prefix: "192.175.48.0/24", global: true},
	{prefix: "198.18.0.0/15"},
	{prefix: "198.51.100.0/24"},
	{prefix: "203.0.113.0/24"},
	{prefix: "240.0.0.0/4", last: "255.255.255.255/32", before: "224.0.0.0/4", after: "-"},
	{prefix: "255.255.255.255/32", before: "240.0.0.0/4", after: "-"},
	// Added: IPv4 multicast (RFC 5771).
	{prefix: "224.0.0.0/4", after: "240.0.0.0/4"},

	// IPv6 registry.
	{prefix: "::/128", before: "-", after: "::1/128"},
	{prefix: "::1/128", before: "::/128", after: "::/96"},
	{prefix: "::ffff:0:0/96", first: "0.0.0.0/32", last: "255.255.255.255/32"},
	{prefix: "64:ff9b::/96", first: "0.0.0.0/32", last: "255.255.255.255/32"},
	{prefix: "64:ff9b:1::/48"},
	{prefix: "100::/64", after: "100:0:0:1::/64"},
	{prefix: "100:0:0:1::/64", before: "100::/64"},
	{prefix: "2001::/23", first: "2001::/32"},
	{prefix: "2001::/32", after: "2001::/23"},
	{prefix: "2001:1::1/128", global: true, before: "2001::/23"},
	{prefix: "2001:1::2/128", global: true},
	{prefix: "2001:1::3/128", global: true, after: "2001::/23"},
	{prefix: "2001:2::/48", before: "2001::/23", after: "2001::/23"},
	{prefix: "2001:3::/32", global: true, before: "2001::/23", after: "2001::/23"},
	{prefix: "2001:4:112::/48", global: true, before: "2001::/23", after: "2001::/23"},
	{prefix: "2001:10::/28", before: "2001::/23"},
	{prefix: "2001:20::/28", global: true, before: "2001:10::/28"},
	{prefix: "2001:30::/28", global: true, after: "2001::/23"},
	{prefix: "2001:db8::/32"},
	{prefix: "2002::/16"},
	{prefix: "2620:4f:8000::/48", global: true},
	{prefix: "3fff::/20"},
	{prefix: "5f00::/16"},
	{prefix: "fc00::/7"},
	{prefix: "fe80::/10", after: "fec0::/10"},
	// Added: IPv4-compatible addresses (deprecated, RFC 4291 2.5.5.1),
	// site-local (deprecated, RFC 3879), multicast (RFC 4291 2.7).
	{prefix: "::/96", first: "::/128", before: "-"},
	{prefix: "fec0::/10", before: "fe80::/10", after: "ff00::/8"},
	{prefix: "ff00::/8", before: "fec0::/10", after: "-"},
}

// lastAddr returns the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// checkVerdict dials nothing: it runs the guard on addr and compares with
// want ("" allowed, else the range the refusal must name).
func checkVerdict(t *testing.T, what string, addr netip.Addr, want string) {
	t.Helper()
	err := httpadapter.RefuseNonPublic("tcp", netip.AddrPortFrom(addr, 443).String(), nil)
	switch {
	case want == "" && err != nil:
		t.Errorf("%s %s: refused (%v), want allowed", what, addr, err)
	case want != "" && err == nil:
		t.Errorf("%s %s: allowed, want refused as in %s", what, addr, want)
	case want != "" && !strings.Contains(err.Error(), " "+want+" "):
		t.Errorf("%s %s: %v, want the refusal to name %s", what, addr, err, want)
	}
}

func TestGuardCoversEverySpecialPurposeRange(t *testing.T) {
	for _, r := range guardRows {
		t.Run(r.prefix, func(t *testing.T) {
			p := netip.MustParsePrefix(r.prefix)
			inside := r.prefix
			if r.global {
				inside = ""
			}
			pick := func(override, def string) string {
				if override != "" {
					if override == "-" {
						return "-"
					}
					return override
				}
				return def
			}
			first, last := p.Masked().Addr(), lastAddr(p)
			checkVerdict(t, "first", first, pick(r.first, inside))
			checkVerdict(t, "last", last, pick(r.last, inside))
			if v := pick(r.before, ""); v != "-" {
				checkVerdict(t, "before", first.Prev(), v)
			}
			if v := pick(r.after, ""); v != "-" {
				checkVerdict(t, "after", last.Next(), v)
			}
		})
	}
}

func TestGuardTableMatchesTheTest(t *testing.T) {
	var inCode, inTest []string
	for _, p := range httpadapter.GuardRanges() {
		inCode = append(inCode, p.String())
	}
	for _, r := range guardRows {
		inTest = append(inTest, netip.MustParsePrefix(r.prefix).String())
	}
	sort.Strings(inCode)
	sort.Strings(inTest)
	if strings.Join(inCode, " ") != strings.Join(inTest, " ") {
		t.Fatalf("the guard's table and this test's differ:\ncode %v\ntest %v", inCode, inTest)
	}
}

func TestGuardChecksEmbeddedIPv4(t *testing.T) {
	for addr, want := range map[string]string{
		// NAT64 well-known prefix: the IPv4 address it translates to.
		"64:ff9b::7f00:1":      "127.0.0.0/8",
		"64:ff9b::a9fe:a9fe":   "169.254.0.0/16",
		"64:ff9b::a00:1":       "10.0.0.0/8",
		"64:ff9b::c000:201":    "192.0.2.0/24",
		"64:ff9b::c058:6301":   "192.88.99.0/24",
		"64:ff9b::5db8:d822":   "",
		"64:ff9b::c000:9":      "", // 192.0.0.9, globally reachable
		"64:ff9b:1:7f00:1::":   "64:ff9b:1::/48",
		"64:ff9b:1::5db8:d822": "64:ff9b:1::/48",
		// IPv4-mapped: the IPv4 address itself.
		"::ffff:127.0.0.1":       "127.0.0.0/8",
		"::ffff:169.254.169.254": "169.254.0.0/16",
		"::ffff:93.184.216.34":   "",
		// IPv4-compatible (deprecated): refused whatever it embeds.
		"::7f00:1":    "::/96",
		"::5db8:d822": "::/96",
		// 6to4 and Teredo (Globally Reachable N/A): refused whatever
		// they embed.
		"2002:7f00:1::1":                       "2002::/16",
		"2002:a9fe:a9fe::1":                    "2002::/16",
		"2002:5db8:d822::1":                    "2002::/16",
		"2001:0:4136:e378:8000:63bf:3fff:fdd2": "2001::/32",
		"2001:0:7f00:1:0:0:80ff:fffe":          "2001::/32",
		// Others from the finding.
		"fec0::1":                            "fec0::/10",
		"100::1":                             "100::/64",
		"fe80::1%eth0":                       "fe80::/10",
		"2606:2800:220:1:248:1893:25c8:1946": "",
		"93.184.216.34":                      "",
	} {
		checkVerdict(t, "embedded", netip.MustParseAddr(addr), want)
	}
}

func TestGuardRefusesWhatIsNotAnAddress(t *testing.T) {
	for _, addr := range []string{"", "localhost:443", "127.0.0.1", "[::1]", "example.com:443"} {
		if err := httpadapter.RefuseNonPublic("tcp", addr, nil); err == nil {
			t.Errorf("%q: allowed", addr)
		}
	}
}
