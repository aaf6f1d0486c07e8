package httpadapter_test

import (
	"bytes"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
)

// headState is what a HEAD request could change if it ran a route's side
// effects: alice's KeyPackage supply, her federation tokens, token
// generation and the server key.
type headState struct {
	kp        p2core.KeyPackageStatus
	enabled   bool
	serverKey []byte
}

func readHeadState(t *testing.T, e *env, alice *user) headState {
	t.Helper()
	st, err := alice.c.KeyPackageStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	on, err := e.anon().TokenGenerationEnabled(ctx)
	if err != nil {
		t.Fatal(err)
	}
	key, err := e.anon().ServerKey(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	return headState{kp: st, enabled: on, serverKey: key}
}

// TestHEADNeverChangesAnythingOnAnyRoute sends HEAD, as an administrator
// (who passes every route's authorization), to every route of the table:
// routes that only read answer as GET without a body; every other route,
// including the claim (route 14), answers 405 with an Allow header that
// does not offer HEAD; and afterwards no KeyPackage was claimed, no token
// redeemed or revoked, no setting or key changed.
func TestHEADNeverChangesAnythingOnAnyRoute(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(101, "alice", false)
	admin := e.login(1, "root", true)
	b := certified(t, e, alice)
	if err := alice.c.UploadKeyPackages(ctx, build(t, b, 2)); err != nil {
		t.Fatal(err)
	}
	if err := alice.c.SetLastResort(ctx, build(t, b, 1)[0]); err != nil {
		t.Fatal(err)
	}
	tok, err := alice.c.IssueToken(ctx, "https://b.example")
	if err != nil {
		t.Fatal(err)
	}
	before := readHeadState(t, e, alice)

	routes := httpadapter.RouteTable()
	heads := 0
	for _, rt := range routes {
		path := strings.ReplaceAll(rt.Path, "{user_id}", alice.id.String())
		status, hdr, body := e.raw(http.MethodHead, path, admin.token, "")
		if rt.HEAD {
			heads++
			getStatus, _, _ := e.raw(http.MethodGet, path, admin.token, "")
			if status != getStatus || len(body) != 0 {
				t.Errorf("HEAD %s: %d with %d body bytes, want GET's %d and no body", rt.Path, status, len(body), getStatus)
			}
			continue
		}
		if rt.Method != http.MethodGet && servesHEAD(routes, rt.Path) {
			continue // a read route shares the path (GET and PUT /p2core/key/server)
		}
		allow := strings.Split(hdr.Get("Allow"), ", ")
		if status != http.StatusMethodNotAllowed || !slices.Contains(allow, rt.Method) || slices.Contains(allow, http.MethodHead) {
			t.Errorf("HEAD %s (%s route): %d Allow %q, want 405 offering %s and not HEAD", rt.Path, rt.Method, status, hdr.Get("Allow"), rt.Method)
		}
	}
	if heads == 0 {
		t.Fatal("no route serves HEAD: the reads (route 10, the API description) should")
	}

	if after := readHeadState(t, e, alice); after.kp != before.kp || after.enabled != before.enabled || !bytes.Equal(after.serverKey, before.serverKey) {
		t.Fatalf("HEAD requests changed state: before %+v, after %+v", before, after)
	}
	// The token was neither redeemed nor revoked by HEAD.
	if _, err := e.anon().RedeemToken(ctx, tok, "https://b.example"); err != nil {
		t.Fatalf("token no longer redeemable after HEAD requests: %v", err)
	}
	// The claim route still hands out what HEAD left: the two KeyPackages.
	for i := range 2 {
		got, err := admin.c.ClaimKeyPackages(ctx, p2core.UserID(101), 0)
		if err != nil || len(got) != 1 {
			t.Fatalf("claim %d after HEAD: %d, %v", i, len(got), err)
		}
	}
	if st, _ := alice.c.KeyPackageStatus(ctx); st.Available != 0 || st.LastResortUsed {
		t.Fatalf("after two claims: %+v", st)
	}
}

func TestHEADOnTheClaimRouteIs405WithAllowGET(t *testing.T) {
	e := newEnv(t, nil)
	alice := e.login(101, "alice", false)
	status, hdr, body := e.raw(http.MethodHead, "/p2core/keypackage/101", alice.token, "")
	if status != 405 || hdr.Get("Allow") != "GET" {
		t.Fatalf("HEAD claim: %d Allow %q %s", status, hdr.Get("Allow"), body)
	}
	// Another wrong method on the same path gets the JSON error body.
	status, hdr, body = e.raw("PATCH", "/p2core/keypackage/101", alice.token, "")
	wantError(t, status, body, 405, "P2CORE_METHOD_NOT_ALLOWED")
	if hdr.Get("Allow") != "GET" {
		t.Fatalf("PATCH claim: Allow %q, want GET", hdr.Get("Allow"))
	}
}

// servesHEAD reports whether a route of the table that answers HEAD
// matches path (segments in braces match any segment).
func servesHEAD(routes []httpadapter.RouteInfo, path string) bool {
	want := strings.Split(path, "/")
	for _, rt := range routes {
		if !rt.HEAD {
			continue
		}
		got := strings.Split(rt.Path, "/")
		if len(got) != len(want) {
			continue
		}
		match := true
		for i := range got {
			if got[i] != want[i] && !strings.HasPrefix(got[i], "{") {
				match = false
			}
		}
		if match {
			return true
		}
	}
	return false
}
