package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestWebClientIsServedWithItsHeaders(t *testing.T) {
	s := startServer(t, t.TempDir())
	for path, ctype := range map[string]string{"/": "text/html", "/web/app.js": "text/javascript", "/web/style.css": "text/css"} {
		resp, err := http.Get(s.url + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), ctype) || len(body) == 0 {
			t.Fatalf("GET %s: %d %q, %d bytes", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: CSP %q, Referrer-Policy %q", path, csp, resp.Header.Get("Referrer-Policy"))
		}
		// A reload revalidates: the same content answers 304.
		tag := resp.Header.Get("ETag")
		req, _ := http.NewRequest("GET", s.url+path, nil)
		req.Header.Set("If-None-Match", tag)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if tag == "" || resp.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with If-None-Match %q: %d, want 304", path, tag, resp.StatusCode)
		}
	}
	if got := getStatus(t, s.url+"/web/missing.js"); got != 404 {
		t.Errorf("GET /web/missing.js: %d, want 404", got)
	}
	// The page loads its files from where they are served.
	resp, err := http.Get(s.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, ref := range []string{`src="/web/app.js"`, `href="/web/style.css"`} {
		if !strings.Contains(string(page), ref) {
			t.Errorf("the page does not load %s", ref)
		}
	}
}
