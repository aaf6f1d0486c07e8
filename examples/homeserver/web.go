package main

import (
	"embed"
	"io/fs"
	"net/http"
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
func routeWeb(mux *http.ServeMux) {
	static, err := fs.Sub(webFiles, "web/static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/web/", http.FileServerFS(static))
	mux.Handle("GET /web/", webHeaders(files))
	mux.Handle("GET /{$}", webHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	})))
}

// webHeaders adds the page's security headers. No Referer leaves the page,
// so an event ticket in a URL never reaches another site.
func webHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", webCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}
