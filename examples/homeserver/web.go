package main

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
)

// webFiles is the web client: web/static holds the page, its style sheet
// and the JavaScript bundle that web/build.sh builds from web/src (the
// bundle is committed, so the server needs no Node).
//
//go:embed web/static
var webFiles embed.FS

// webCSP allows the page only its own origin: scripts, styles and
// connections (fetch and EventSource) to this server.
const webCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// routeWeb serves the web client: the page at / and its files under /web/.
// Each file carries an ETag of its content, so a reload revalidates the
// half-megabyte bundle instead of downloading it again.
func routeWeb(mux *http.ServeMux) {
	static, err := fs.Sub(webFiles, "web/static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	etags := map[string]string{}
	err = fs.WalkDir(static, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(static, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		etags[path] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/web/", http.FileServerFS(static))
	mux.Handle("GET /web/", webHeaders(etags, files))
	mux.Handle("GET /{$}", webHeaders(etags, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	})))
}

// webHeaders adds the page's security headers and the file's ETag. No
// Referer leaves the page, so an event ticket in a URL never reaches
// another site.
func webHeaders(etags map[string]string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", webCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		name := strings.TrimPrefix(r.URL.Path, "/web/")
		if r.URL.Path == "/" {
			name = "index.html"
		}
		if tag, ok := etags[name]; ok {
			h.Set("ETag", tag)
		}
		next.ServeHTTP(w, r)
	})
}
