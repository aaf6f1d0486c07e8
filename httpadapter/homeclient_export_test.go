package httpadapter

import "net/netip"

// RefuseNonPublic exposes the HomeClient's dial guard to tests.
var RefuseNonPublic = refuseNonPublic

// GuardRanges lists the prefixes of the guard's table, so a test can check
// that it covers every row.
func GuardRanges() []netip.Prefix {
	var out []netip.Prefix
	for _, r := range nonPublic {
		out = append(out, r.prefix)
	}
	return out
}
