package httpadapter

// RouteInfo describes one row of the route table, for tests.
type RouteInfo struct {
	Method, Path string
	// Access is "anyone", "user" or "admin".
	Access string
	// HEAD is true when the route is a GET that only reads, so HEAD is
	// served; on every other route HEAD answers 405.
	HEAD bool
}

// RouteTable returns every route the Handler serves, for tests that must
// cover each route (authorization matrix, API description).
func RouteTable() []RouteInfo {
	var out []RouteInfo
	for _, r := range apiRoutes() {
		a := map[access]string{accessAnyone: "anyone", accessUser: "user", accessAdmin: "admin"}[r.access]
		out = append(out, RouteInfo{Method: r.method, Path: r.path, Access: a, HEAD: r.method == "GET" && r.head})
	}
	return out
}
