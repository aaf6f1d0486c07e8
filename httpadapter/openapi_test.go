package httpadapter_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/p2kit/p2kit/httpadapter"
)

// openAPI is the embedded description decoded into generic JSON.
type openAPI = map[string]any

func loadOpenAPI(t testing.TB) openAPI {
	t.Helper()
	var doc openAPI
	dec := json.NewDecoder(bytes.NewReader(httpadapter.OpenAPI()))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("openapi.json is not JSON: %v", err)
	}
	return doc
}

// httpMethods are the operation keys of an OpenAPI Path Item.
var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// resolve follows a local "$ref" (a JSON pointer into doc) until it
// reaches a node that is not a reference.
func resolve(t testing.TB, doc openAPI, node any) any {
	t.Helper()
	for range 16 {
		m, ok := node.(map[string]any)
		if !ok {
			return node
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return node
		}
		target, err := pointer(doc, ref)
		if err != nil {
			t.Fatalf("$ref %q: %v", ref, err)
		}
		node = target
	}
	t.Fatal("$ref chain longer than 16")
	return nil
}

// pointer resolves a local reference "#/a/b" (RFC 6901) in doc.
func pointer(doc openAPI, ref string) (any, error) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, fmt.Errorf("not a local reference")
	}
	var cur any = doc
	for _, tok := range strings.Split(p, "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%q is not inside an object", tok)
		}
		if cur, ok = m[tok]; !ok {
			return nil, fmt.Errorf("no member %q", tok)
		}
	}
	return cur, nil
}

// walk calls fn for every object in the tree under node, with its JSON
// pointer.
func walk(node any, at string, fn func(at string, m map[string]any)) {
	switch v := node.(type) {
	case map[string]any:
		fn(at, v)
		for k, c := range v {
			walk(c, at+"/"+strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1"), fn)
		}
	case []any:
		for i, c := range v {
			walk(c, at+"/"+strconv.Itoa(i), fn)
		}
	}
}

func obj(t testing.TB, v any, what string) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s is %T, want an object", what, v)
	}
	return m
}

func TestOpenAPIIsVersion31AndEveryRefResolves(t *testing.T) {
	doc := loadOpenAPI(t)
	if v, _ := doc["openapi"].(string); !regexp.MustCompile(`^3\.1\.\d+$`).MatchString(v) {
		t.Fatalf(`"openapi" is %q, want 3.1.x`, v)
	}
	info := obj(t, doc["info"], "info")
	if info["title"] == nil || info["version"] == nil {
		t.Fatal("info needs title and version")
	}
	refs := 0
	used := map[string]bool{}
	walk(doc, "#", func(at string, m map[string]any) {
		ref, ok := m["$ref"]
		if !ok {
			return
		}
		s, ok := ref.(string)
		if !ok {
			t.Errorf("%s: $ref is %T", at, ref)
			return
		}
		refs++
		if _, err := pointer(doc, s); err != nil {
			t.Errorf("%s: $ref %q does not resolve: %v", at, s, err)
		}
		used[s] = true
	})
	if refs < 50 {
		t.Fatalf("only %d $refs found: is the walker broken?", refs)
	}
	// Every component is used, so nothing in the description is stale.
	comps := obj(t, doc["components"], "components")
	for kind, group := range comps {
		if kind == "securitySchemes" {
			continue // named by security requirements, not $ref
		}
		for name := range obj(t, group, "components/"+kind) {
			if ref := "#/components/" + kind + "/" + name; !used[ref] {
				t.Errorf("%s is never referenced", ref)
			}
		}
	}
}

func TestOpenAPIDescribesExactlyTheRoutesOfTheMux(t *testing.T) {
	doc := loadOpenAPI(t)
	paths := obj(t, doc["paths"], "paths")
	routes := httpadapter.RouteTable()
	if len(routes) < 17 {
		t.Fatalf("route table has %d routes, want at least the 17 of the contract", len(routes))
	}
	inMux := map[string]bool{}
	for _, rt := range routes {
		key := strings.ToLower(rt.Method) + " " + rt.Path
		inMux[key] = true
		item, ok := paths[rt.Path].(map[string]any)
		if !ok {
			t.Errorf("route %s %s: path missing from openapi.json", rt.Method, rt.Path)
			continue
		}
		op, ok := item[strings.ToLower(rt.Method)].(map[string]any)
		if !ok {
			t.Errorf("route %s %s: operation missing from openapi.json", rt.Method, rt.Path)
			continue
		}
		checkOperation(t, doc, rt, op)
	}
	opIDs := map[string]string{}
	for path, item := range paths {
		for _, m := range httpMethods {
			op, ok := obj(t, item, path)[m]
			if !ok {
				continue
			}
			if !inMux[m+" "+path] {
				t.Errorf("openapi.json describes %s %s, which the Handler does not serve", strings.ToUpper(m), path)
			}
			id, _ := obj(t, op, path)["operationId"].(string)
			if id == "" || opIDs[id] != "" {
				t.Errorf("%s %s: operationId %q missing or not unique (also %s)", m, path, id, opIDs[id])
			}
			opIDs[id] = m + " " + path
		}
	}
}

// checkOperation checks one operation against its row of the route table.
func checkOperation(t *testing.T, doc openAPI, rt httpadapter.RouteInfo, op map[string]any) {
	t.Helper()
	name := rt.Method + " " + rt.Path
	if got := op["x-p2core-access"]; got != rt.Access {
		t.Errorf("%s: x-p2core-access %v, route table says %s", name, got, rt.Access)
	}
	sec, hasSec := op["security"].([]any)
	if rt.Access == "anyone" {
		if hasSec && len(sec) > 0 {
			t.Errorf("%s: open to anyone but declares security %v", name, sec)
		}
	} else {
		schemes := obj(t, obj(t, doc["components"], "components")["securitySchemes"], "securitySchemes")
		bearer := obj(t, schemes["bearer"], "securitySchemes/bearer")
		if bearer["type"] != "http" || bearer["scheme"] != "bearer" {
			t.Fatalf("securitySchemes/bearer = %v", bearer)
		}
		if len(sec) != 1 || obj(t, sec[0], name+" security")["bearer"] == nil {
			t.Errorf("%s: needs %s but declares security %v, want [{bearer: []}]", name, rt.Access, op["security"])
		}
	}

	// Path parameters are exactly the template's.
	want := regexp.MustCompile(`\{([^}]+)\}`).FindAllStringSubmatch(rt.Path, -1)
	var wantNames, gotNames []string
	for _, m := range want {
		wantNames = append(wantNames, m[1])
	}
	params, _ := op["parameters"].([]any)
	for _, p := range params {
		pm := obj(t, resolve(t, doc, p), name+" parameter")
		if pm["in"] == "path" {
			if pm["required"] != true {
				t.Errorf("%s: path parameter %v not required", name, pm["name"])
			}
			gotNames = append(gotNames, pm["name"].(string))
		}
		if pm["schema"] == nil {
			t.Errorf("%s: parameter %v has no schema", name, pm["name"])
		}
	}
	sort.Strings(wantNames)
	sort.Strings(gotNames)
	if !slices.Equal(wantNames, gotNames) {
		t.Errorf("%s: path parameters %v, template has %v", name, gotNames, wantNames)
	}

	responses := obj(t, op["responses"], name+" responses")
	success := 0
	for status := range responses {
		if strings.HasPrefix(status, "2") {
			success++
		}
	}
	if success != 1 {
		t.Errorf("%s: %d success responses, want exactly one", name, success)
	}
	codes := httpadapter.ErrorCodes()
	for status, r := range responses {
		n, err := strconv.Atoi(status)
		if err != nil {
			t.Errorf("%s: response key %q is not a status", name, status)
			continue
		}
		if n < 400 {
			continue
		}
		examples := errorExamples(t, doc, name+" "+status, resolve(t, doc, r))
		for _, ex := range examples {
			code, _ := ex["error"].(string)
			if fmt.Sprint(ex["errcode"]) != status || codes[code] != n {
				t.Errorf("%s %s: example %v: errcode must be the status and %s maps to %d", name, status, ex, code, codes[code])
			}
		}
	}
	if rt.Access != "anyone" {
		if !hasCode(t, doc, responses, "401", "P2CORE_UNAUTHORIZED") {
			t.Errorf("%s: authenticated route without 401 P2CORE_UNAUTHORIZED", name)
		}
	}
	// Every route is rate limited: per session or per client address.
	if !hasCode(t, doc, responses, "429", "P2CORE_RATE_LIMITED") {
		t.Errorf("%s: no 429 P2CORE_RATE_LIMITED", name)
	}
	if rt.Access != "anyone" && !hasCode(t, doc, responses, "500", "P2CORE_INTERNAL") {
		t.Errorf("%s: authenticated route without 500 (a failing Authenticator)", name)
	}
	if rt.Access == "admin" && !hasCode(t, doc, responses, "403", "P2CORE_NOT_ADMINISTRATOR") {
		t.Errorf("%s: admin route without 403 P2CORE_NOT_ADMINISTRATOR", name)
	}
}

// errorExamples checks that an error response has the Error schema and
// returns its example bodies (at least one).
func errorExamples(t testing.TB, doc openAPI, what string, resp any) []map[string]any {
	t.Helper()
	content := obj(t, obj(t, resp, what)["content"], what+" content")
	media := obj(t, content["application/json"], what+" application/json")
	if ref, _ := obj(t, media["schema"], what+" schema")["$ref"].(string); ref != "#/components/schemas/Error" {
		t.Errorf("%s: schema is not the Error schema", what)
	}
	exs := obj(t, media["examples"], what+" examples")
	if len(exs) == 0 {
		t.Errorf("%s: no example naming the P2CORE_* code", what)
	}
	var out []map[string]any
	for k, e := range exs {
		out = append(out, obj(t, obj(t, resolve(t, doc, e), what+" example "+k)["value"], what+" example "+k+" value"))
	}
	return out
}

func hasCode(t *testing.T, doc openAPI, responses map[string]any, status, code string) bool {
	t.Helper()
	r, ok := responses[status]
	if !ok {
		return false
	}
	for _, ex := range errorExamples(t, doc, status, resolve(t, doc, r)) {
		if ex["error"] == code {
			return true
		}
	}
	return false
}

// documentedCodes returns, for each status an operation documents, the
// P2CORE_* codes of its examples (none for a success).
func documentedCodes(t testing.TB, doc openAPI, op map[string]any) map[int]map[string]bool {
	t.Helper()
	out := map[int]map[string]bool{}
	for status, r := range obj(t, op["responses"], "responses") {
		n, err := strconv.Atoi(status)
		if err != nil {
			t.Fatalf("response key %q is not a status", status)
		}
		out[n] = map[string]bool{}
		if n >= 400 {
			for _, ex := range errorExamples(t, doc, status, resolve(t, doc, r)) {
				out[n][ex["error"].(string)] = true
			}
		}
	}
	return out
}

func TestOpenAPIErrorSchemaListsEveryCodeAndEachIsDocumentedSomewhere(t *testing.T) {
	doc := loadOpenAPI(t)
	schema := obj(t, obj(t, obj(t, doc["components"], "components")["schemas"], "schemas")["Error"], "Error")
	props := obj(t, schema["properties"], "Error properties")
	var enum []string
	for _, v := range obj(t, props["error"], "Error.error")["enum"].([]any) {
		enum = append(enum, v.(string))
	}
	codes := httpadapter.ErrorCodes()
	for code := range codes {
		if !slices.Contains(enum, code) {
			t.Errorf("code %s is missing from the Error schema's enum", code)
		}
	}
	for _, code := range enum {
		if _, ok := codes[code]; !ok {
			t.Errorf("Error schema lists %s, which the Handler never sends", code)
		}
	}
	req, _ := schema["required"].([]any)
	if len(req) != 3 || schema["additionalProperties"] != false {
		t.Errorf("Error schema must require errcode, error, message and nothing else: %v", schema)
	}
	// Each code appears in an example of some operation's responses, but
	// the generic 405 (described in info) and P2CORE_INVALID_FID, which
	// the routes never produce (the Service refuses bad FIDs as bad
	// ID-Certs or bad principals; only an embedder calling CreateSession
	// sees ErrInvalidFID).
	unreachable := []string{"P2CORE_METHOD_NOT_ALLOWED", "P2CORE_INVALID_FID"}
	seen := map[string]bool{}
	walk(doc["paths"], "#/paths", func(_ string, m map[string]any) {
		for status, r := range m {
			if _, err := strconv.Atoi(status); err != nil || !strings.HasPrefix(status, "4") && !strings.HasPrefix(status, "5") {
				continue
			}
			for _, ex := range errorExamples(t, doc, status, resolve(t, doc, r)) {
				seen[ex["error"].(string)] = true
			}
		}
	})
	for code := range codes {
		if !seen[code] && !slices.Contains(unreachable, code) {
			t.Errorf("no operation documents a response with %s", code)
		}
	}
}

// TestOpenAPIListsEveryStatusTheHandlerAnswers calls every route as
// anonymous, user and admin with no body, a malformed one and one with an
// unknown field, and checks that the status and the P2CORE_* code are
// documented for that operation.
func TestOpenAPIListsEveryStatusTheHandlerAnswers(t *testing.T) {
	doc := loadOpenAPI(t)
	paths := obj(t, doc["paths"], "paths")
	e := newEnv(t, nil)
	user := e.login(201, "alice", false)
	admin := e.login(2, "root", true)
	for _, rt := range httpadapter.RouteTable() {
		item, _ := paths[rt.Path].(map[string]any)
		op, ok := item[strings.ToLower(rt.Method)].(map[string]any)
		if !ok {
			continue // reported by TestOpenAPIDescribesExactlyTheRoutesOfTheMux
		}
		documented := documentedCodes(t, doc, op)
		path := strings.ReplaceAll(rt.Path, "{user_id}", user.id.String())
		for _, token := range []string{"", user.token, admin.token} {
			for _, body := range []string{"", "{", `{"unknown":1}`} {
				status, hdr, got := e.raw(rt.Method, path, token, body)
				codes, ok := documented[status]
				if !ok {
					t.Errorf("%s %s with body %q: status %d (%s) is not in the description", rt.Method, rt.Path, body, status, got)
					continue
				}
				if status < 400 {
					continue
				}
				if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
					t.Errorf("%s %s: error %d is %s, not JSON", rt.Method, rt.Path, status, hdr.Get("Content-Type"))
				}
				var eb struct{ Error string }
				if err := json.Unmarshal(got, &eb); err != nil || !codes[eb.Error] {
					t.Errorf("%s %s with body %q: %d %s is not documented for that status", rt.Method, rt.Path, body, status, got)
				}
			}
		}
	}
}

func TestOpenAPIIsServedAtItsRoute(t *testing.T) {
	e := newEnv(t, nil)
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		status, hdr, body := e.raw(method, "/p2core/openapi.json", "", "")
		if status != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
			t.Fatalf("%s /p2core/openapi.json: %d %s", method, status, hdr.Get("Content-Type"))
		}
		if method == http.MethodGet && !bytes.Equal(body, httpadapter.OpenAPI()) {
			t.Fatal("served document differs from the embedded one")
		}
	}
	status, hdr, body := e.raw(http.MethodPost, "/p2core/openapi.json", "", "{}")
	if status != 405 || !strings.Contains(hdr.Get("Allow"), "GET") {
		t.Fatalf("POST /p2core/openapi.json: %d Allow %q %s", status, hdr.Get("Allow"), body)
	}
	// OpenAPI returns a copy: changing it does not change what is served.
	doc := httpadapter.OpenAPI()
	doc[0] = 'X'
	if _, _, again := e.raw(http.MethodGet, "/p2core/openapi.json", "", ""); again[0] != '{' {
		t.Fatal("OpenAPI() exposes the embedded bytes")
	}
}
