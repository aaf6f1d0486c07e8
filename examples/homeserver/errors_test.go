package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/p2kit/p2kit/p2core/idcert"
)

// The example server's own routes and unknown paths answer errors in the
// JSON format of the p2kit routes, never in ServeMux's plain text.
func TestOwnRoutesAndUnknownPathsAnswerJSONErrors(t *testing.T) {
	s := startServer(t, t.TempDir())
	for _, c := range []struct {
		method, path, body string
		status             int
		code, allow        string
	}{
		{"GET", "/nope", "", 404, "P2CORE_NOT_FOUND", ""},
		{"GET", "/register", "", 405, "P2CORE_METHOD_NOT_ALLOWED", "POST"},
		{"PUT", "/sessions", "", 405, "P2CORE_METHOD_NOT_ALLOWED", "GET, HEAD, DELETE"},
		{"POST", "/register", `{"username":`, 400, "P2CORE_BAD_REQUEST", ""},
		{"POST", "/register", `{"username":"alice","password":"` + strings.Repeat("x", 5000) + `"}`, 413, "P2CORE_BODY_TOO_LARGE", ""},
		{"POST", "/login", `{"username":"nobody","password":"correct horse"}`, 401, "P2CORE_UNAUTHORIZED", ""},
		{"GET", "/sessions", "", 401, "P2CORE_UNAUTHORIZED", ""},
	} {
		req, _ := http.NewRequest(c.method, s.url+c.path, strings.NewReader(c.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var e struct {
			Errcode int    `json:"errcode"`
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(body, &e); err != nil || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %s %q is not a JSON error body", c.method, c.path, resp.Header.Get("Content-Type"), body)
			continue
		}
		if resp.StatusCode != c.status || e.Errcode != c.status || e.Error != c.code || e.Message == "" {
			t.Errorf("%s %s: %d %+v, want %d %s", c.method, c.path, resp.StatusCode, e, c.status, c.code)
		}
		if got := resp.Header.Get("Allow"); got != c.allow {
			t.Errorf("%s %s: Allow %q, want %q", c.method, c.path, got, c.allow)
		}
	}
}

// -server-key-alg accepts every algorithm p2core.Config accepts, and the
// server key it generates has that algorithm; anything else is refused.
func TestServerKeyAlgFlag(t *testing.T) {
	for _, alg := range serverKeyAlgorithms {
		c, err := parseFlags([]string{"-server-key-alg", string(alg)}, io.Discard)
		if err != nil || c.serverKeyAlg != string(alg) {
			t.Errorf("-server-key-alg %s: %v (%q)", alg, err, c.serverKeyAlg)
		}
	}
	if _, err := parseFlags([]string{"-server-key-alg", "rsa2048"}, io.Discard); err == nil || !strings.Contains(err.Error(), "rsa3072") {
		t.Errorf("-server-key-alg rsa2048: err = %v, want a refusal listing the algorithms", err)
	}
	if c, err := parseFlags(nil, io.Discard); err != nil || c.serverKeyAlg != string(idcert.ServerEd25519Legacy) {
		t.Errorf("default: %q, %v; want ed25519-legacy", c.serverKeyAlg, err)
	}

	s := startServer(t, t.TempDir(), "-server-key-alg", "rsa3072")
	resp, err := http.Get(s.url + "/p2core/key/server")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b64 []byte
	if err := json.NewDecoder(resp.Body).Decode(&b64); err != nil {
		t.Fatal(err)
	}
	k, err := idcert.ParsePublicServerKey(b64)
	if err != nil {
		t.Fatal(err)
	}
	if k.Algorithm() != idcert.ServerRSA3072 {
		t.Errorf("server key algorithm %s, want rsa3072", k.Algorithm())
	}
}
