package httpadapter_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/p2kit/p2kit/httpadapter"
)

// verdict is what an authorization check expects of one caller.
type verdict int

const (
	allow   verdict = iota // passes authorization: any status but 401, 403 or 5xx
	deny401                // 401 P2CORE_UNAUTHORIZED
	deny403                // 403 P2CORE_NOT_ADMINISTRATOR
)

// callers of the authorization matrix, in column order.
var callers = []string{"anonymous", "user", "other user", "admin", "revoked session"}

// authzRow is one route's expectations. The path's {user_id} is the
// user's own ID; "other user" calls the same path (so it acts on the
// user, not on itself).
type authzRow struct {
	body string
	want [5]verdict // anonymous, user, other user, admin, revoked session
}

// authzMatrix has one row per route of the Handler's table, keyed by
// "METHOD PATH" exactly as the table declares it. A route missing here
// fails TestAuthorizationMatrixCoversEveryRoute.
var authzMatrix = map[string]authzRow{
	"POST /p2core/token":                {`{"server":"https://b.example"}`, [5]verdict{deny401, allow, allow, allow, deny401}},
	"GET /p2core/token/status":          {"", [5]verdict{allow, allow, allow, allow, allow}},
	"PUT /p2core/token/status":          {`{"enabled":true}`, [5]verdict{deny401, deny403, deny403, allow, deny401}},
	"DELETE /p2core/token/@me":          {"", [5]verdict{deny401, allow, allow, allow, deny401}},
	"DELETE /p2core/token/{user_id}":    {"", [5]verdict{deny401, deny403, deny403, allow, deny401}},
	"DELETE /p2core/token/@all":         {"", [5]verdict{deny401, deny403, deny403, allow, deny401}},
	"POST /p2core/token/redeem":         {`{"token":"x","server":"https://b.example"}`, [5]verdict{allow, allow, allow, allow, allow}},
	"POST /p2core/key/user/@me":         {`"not a key"`, [5]verdict{deny401, allow, allow, allow, deny401}},
	"GET /p2core/key/user/{user_id}":    {"", [5]verdict{allow, allow, allow, allow, allow}},
	"GET /p2core/key/server":            {"", [5]verdict{allow, allow, allow, allow, allow}},
	"PUT /p2core/key/server":            {"", [5]verdict{deny401, deny403, deny403, allow, deny401}},
	"POST /p2core/keypackage/@me":       {`["AAAA"]`, [5]verdict{deny401, allow, allow, allow, deny401}},
	"PUT /p2core/keypackage_lr":         {`"AAAA"`, [5]verdict{deny401, allow, allow, allow, deny401}},
	"GET /p2core/keypackage/{user_id}":  {"", [5]verdict{deny401, allow, allow, allow, deny401}},
	"GET /p2core/keypackage/@me/status": {"", [5]verdict{deny401, allow, allow, allow, deny401}},
	"POST /p2core/session/auth":         {`{"federation_token":"x","id_cert":"AAAA"}`, [5]verdict{allow, allow, allow, allow, allow}},
	"GET /p2core/openapi.json":          {"", [5]verdict{allow, allow, allow, allow, allow}},
}

func TestAuthorizationMatrixCoversEveryRoute(t *testing.T) {
	e := newEnv(t, nil)
	user := e.login(101, "alice", false)
	other := e.login(102, "bob", false)
	admin := e.login(1, "root", true)
	revoked := e.login(103, "carol", false)
	if err := e.svc.EndSession(ctx, revoked.id, revoked.session); err != nil {
		t.Fatal(err)
	}
	tokens := []string{"", user.token, other.token, admin.token, revoked.token}

	for _, rt := range httpadapter.RouteTable() {
		key := rt.Method + " " + rt.Path
		row, ok := authzMatrix[key]
		if !ok {
			t.Errorf("route %s has no row in the authorization matrix", key)
			continue
		}
		path := strings.ReplaceAll(rt.Path, "{user_id}", user.id.String())
		for i, caller := range callers {
			status, _, body := e.raw(rt.Method, path, tokens[i], row.body)
			var eb struct{ Error string }
			_ = json.Unmarshal(body, &eb)
			switch row.want[i] {
			case allow:
				if status == 401 || status == 403 || status >= 500 {
					t.Errorf("%s as %s: %d %s, want it allowed", key, caller, status, body)
				}
			case deny401:
				if status != 401 || eb.Error != "P2CORE_UNAUTHORIZED" {
					t.Errorf("%s as %s: %d %s, want 401 P2CORE_UNAUTHORIZED", key, caller, status, body)
				}
			case deny403:
				if status != 403 || eb.Error != "P2CORE_NOT_ADMINISTRATOR" {
					t.Errorf("%s as %s: %d %s, want 403 P2CORE_NOT_ADMINISTRATOR", key, caller, status, body)
				}
			}
		}
	}
	// Rows for routes that no longer exist are stale.
	live := map[string]bool{}
	for _, rt := range httpadapter.RouteTable() {
		live[rt.Method+" "+rt.Path] = true
	}
	for key := range authzMatrix {
		if !live[key] {
			t.Errorf("matrix row %s names no route", key)
		}
	}
}
