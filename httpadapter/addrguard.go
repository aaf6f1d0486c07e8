package httpadapter

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// errPrivateAddress refuses a connection to an address that is not
// globally reachable.
var errPrivateAddress = errors.New("refusing to connect to an address that is not globally reachable")

// reach is what the guard does with an address in a special-purpose range.
type reach uint8

const (
	// refused: the registry says Globally Reachable False or N/A.
	refused reach = iota
	// reachable: Globally Reachable True, an exception inside a refused
	// range (or listed so that the table mirrors the registry).
	reachable
	// viaIPv4: the address stands for the IPv4 address in its last 32 bits,
	// which decides.
	viaIPv4
)

// special is one row of the guard's table.
type special struct {
	prefix netip.Prefix
	name   string // the registry's name of the range
	ref    string // the document that reserves it
	reach  reach
}

func row(prefix, name, ref string, r reach) special {
	return special{netip.MustParsePrefix(prefix), name, ref, r}
}

// nonPublic is the guard's table: every row of the IANA IPv4 and IPv6
// Special-Purpose Address Registries
// (https://www.iana.org/assignments/iana-ipv4-special-registry and
// https://www.iana.org/assignments/iana-ipv6-special-registry), with their
// "Globally Reachable" column, plus the ranges marked "added". The most
// specific row containing an address decides. Choices:
//   - Exceptions are taken as the registries give them: inside 192.0.0.0/24
//     and 2001::/23 the anycast and AMT/AS112/ORCHIDv2/DET rows marked True
//     stay reachable; rows marked N/A (6to4 relay anycast 192.88.99.0/24,
//     6to4 2002::/16, Teredo 2001::/32) are refused whatever IPv4 address
//     they embed, which covers an embedded private or loopback address.
//   - 64:ff9b::/96 (NAT64, True) and ::ffff:0:0/96 (IPv4-mapped) are judged
//     by the IPv4 address they carry, which is what a connection to them
//     reaches. 64:ff9b:1::/48 (local-use NAT64, False) is refused: its
//     operator chooses where the IPv4 address sits.
//   - Added: IPv4 multicast, IPv4-compatible addresses (deprecated; they
//     reach no host), deprecated site-local fec0::/10 and IPv6 multicast.
var nonPublic = []special{
	// IPv4 Special-Purpose Address Registry.
	row("0.0.0.0/8", "This network", "RFC 791", refused),
	row("0.0.0.0/32", "This host on this network", "RFC 1122", refused),
	row("10.0.0.0/8", "Private-Use", "RFC 1918", refused),
	row("100.64.0.0/10", "Shared Address Space", "RFC 6598", refused),
	row("127.0.0.0/8", "Loopback", "RFC 1122", refused),
	row("169.254.0.0/16", "Link Local", "RFC 3927", refused),
	row("172.16.0.0/12", "Private-Use", "RFC 1918", refused),
	row("192.0.0.0/24", "IETF Protocol Assignments", "RFC 6890", refused),
	row("192.0.0.0/29", "IPv4 Service Continuity Prefix", "RFC 7335", refused),
	row("192.0.0.8/32", "IPv4 dummy address", "RFC 7600", refused),
	row("192.0.0.9/32", "Port Control Protocol Anycast", "RFC 7723", reachable),
	row("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", "RFC 8155", reachable),
	row("192.0.0.170/32", "NAT64/DNS64 Discovery", "RFC 8880", refused),
	row("192.0.0.171/32", "NAT64/DNS64 Discovery", "RFC 8880", refused),
	row("192.0.2.0/24", "Documentation (TEST-NET-1)", "RFC 5737", refused),
	row("192.31.196.0/24", "AS112-v4", "RFC 7535", reachable),
	row("192.52.193.0/24", "AMT", "RFC 7450", reachable),
	row("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", "RFC 7526", refused),
	row("192.168.0.0/16", "Private-Use", "RFC 1918", refused),
	row("192.175.48.0/24", "Direct Delegation AS112 Service", "RFC 7534", reachable),
	row("198.18.0.0/15", "Benchmarking", "RFC 2544", refused),
	row("198.51.100.0/24", "Documentation (TEST-NET-2)", "RFC 5737", refused),
	row("203.0.113.0/24", "Documentation (TEST-NET-3)", "RFC 5737", refused),
	row("240.0.0.0/4", "Reserved", "RFC 1112", refused),
	row("255.255.255.255/32", "Limited Broadcast", "RFC 919", refused),
	// Added.
	row("224.0.0.0/4", "Multicast", "RFC 5771", refused),

	// IPv6 Special-Purpose Address Registry.
	row("::1/128", "Loopback Address", "RFC 4291", refused),
	row("::/128", "Unspecified Address", "RFC 4291", refused),
	row("::ffff:0:0/96", "IPv4-mapped Address", "RFC 4291", viaIPv4),
	row("64:ff9b::/96", "IPv4-IPv6 Translation", "RFC 6052", viaIPv4),
	row("64:ff9b:1::/48", "IPv4-IPv6 Translation (local use)", "RFC 8215", refused),
	row("100::/64", "Discard-Only Address Block", "RFC 6666", refused),
	row("100:0:0:1::/64", "Dummy IPv6 Prefix", "RFC 9780", refused),
	row("2001::/23", "IETF Protocol Assignments", "RFC 2928", refused),
	row("2001::/32", "TEREDO", "RFC 4380", refused),
	row("2001:1::1/128", "Port Control Protocol Anycast", "RFC 7723", reachable),
	row("2001:1::2/128", "Traversal Using Relays around NAT Anycast", "RFC 8155", reachable),
	row("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", "RFC 9665", reachable),
	row("2001:2::/48", "Benchmarking", "RFC 5180", refused),
	row("2001:3::/32", "AMT", "RFC 7450", reachable),
	row("2001:4:112::/48", "AS112-v6", "RFC 7535", reachable),
	row("2001:10::/28", "Deprecated (previously ORCHID)", "RFC 4843", refused),
	row("2001:20::/28", "ORCHIDv2", "RFC 7343", reachable),
	row("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", "RFC 9374", reachable),
	row("2001:db8::/32", "Documentation", "RFC 3849", refused),
	row("2002::/16", "6to4", "RFC 3056", refused),
	row("2620:4f:8000::/48", "Direct Delegation AS112 Service", "RFC 7534", reachable),
	row("3fff::/20", "Documentation", "RFC 9637", refused),
	row("5f00::/16", "Segment Routing (SRv6) SIDs", "RFC 9602", refused),
	row("fc00::/7", "Unique-Local", "RFC 4193", refused),
	row("fe80::/10", "Link-Local Unicast", "RFC 4291", refused),
	// Added.
	row("::/96", "IPv4-compatible Address (deprecated)", "RFC 4291", refused),
	row("fec0::/10", "Site-Local Unicast (deprecated)", "RFC 3879", refused),
	row("ff00::/8", "Multicast", "RFC 4291", refused),
}

// lookup returns the most specific row of nonPublic containing ip.
func lookup(ip netip.Addr) (special, bool) {
	var best special
	found := false
	for _, r := range nonPublic {
		if r.prefix.Contains(ip) && (!found || r.prefix.Bits() > best.prefix.Bits()) {
			best, found = r, true
		}
	}
	return best, found
}

// checkPublic returns nil when ip is globally reachable by the table, or
// an error naming the row that refuses it.
func checkPublic(ip netip.Addr) error {
	ip = ip.WithZone("")
	r, ok := lookup(ip)
	if !ok {
		return nil
	}
	switch r.reach {
	case reachable:
		return nil
	case viaIPv4:
		b := ip.As16()
		v4 := netip.AddrFrom4([4]byte(b[12:]))
		if err := checkPublic(v4); err != nil {
			return fmt.Errorf("%w; %s reaches it through %s (%s, %s)", err, ip, r.prefix, r.name, r.ref)
		}
		return nil
	}
	return fmt.Errorf("%w: %s is in %s (%s, %s)", errPrivateAddress, ip, r.prefix, r.name, r.ref)
}

// refuseNonPublic is a net.Dialer Control function: it runs on the address
// actually dialled, after name resolution, for every connection.
func refuseNonPublic(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not host:port", errPrivateAddress, address)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address", errPrivateAddress, host)
	}
	return checkPublic(ip)
}
