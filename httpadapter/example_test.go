package httpadapter_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/memstore"
)

// A minimal embedding: an in-memory Store, a Service for the chat server's
// domain, and an Authenticator that maps the chat server's own bearer
// tokens to the Principal p2kit needs. The handler is mounted beside the
// chat server's own routes; the requests at the end are what a client
// would send.
func ExampleNew() {
	store := memstore.New() // or boltstore.Open(path, nil), pgstore.Open(ctx, dsn, nil), your own
	defer store.Close()
	svc, err := p2core.NewService(store, p2core.Config{
		Domain: "chat.example.com",
		Logger: slog.Default(),
		// Events: a p2core.EventSink (your gateway, or broker.New(broker.Options{}))
	})
	if err != nil {
		log.Fatal(err)
	}

	// The chat server's own sessions: bearer token -> who is calling. A
	// real server looks the token up in its session table. A Principal
	// names the user (UserID, a Snowflake), the user's federation ID
	// (name@Domain), the session (unique per user, 1-32 printable ASCII
	// characters) and whether the user is an administrator. When one of
	// these sessions ends, call svc.EndSession so that its KeyPackages and
	// ID-Cert stop being handed out.
	sessions := map[string]p2core.Principal{
		"alice-laptop-token": {UserID: 1001, FID: "alice@chat.example.com", SessionID: "laptop"},
		"root-cli-token":     {UserID: 1, FID: "root@chat.example.com", SessionID: "cli", Admin: true},
	}
	auth := httpadapter.AuthenticatorFunc(func(ctx context.Context, r *http.Request) (p2core.Principal, error) {
		p, ok := sessions[httpadapter.BearerToken(r)]
		if !ok {
			// Missing or unknown credentials: an error matching
			// p2core.ErrUnauthorized is a 401 P2CORE_UNAUTHORIZED with this
			// message. Any other error is an internal failure (500).
			return p2core.Principal{}, p2core.Errorf(p2core.ErrUnauthorized, "log in to chat.example.com first")
		}
		return p, nil
	})

	mux := http.NewServeMux()
	mux.Handle("/p2core/", httpadapter.New(svc, httpadapter.Options{Authenticator: auth}))
	// mux.HandleFunc("/login", ...): the chat server's own routes

	for _, token := range []string{"", "alice-laptop-token"} {
		req := httptest.NewRequest("POST", "/p2core/token", strings.NewReader(`{"server":"https://foreign.example"}`))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		body, _ := io.ReadAll(rec.Body)
		if rec.Code == http.StatusCreated {
			body = []byte("(a federation token)")
		}
		fmt.Println(rec.Code, strings.TrimSpace(string(body)))
	}
	// Output:
	// 401 {"errcode":401,"error":"P2CORE_UNAUTHORIZED","message":"log in to chat.example.com first"}
	// 201 (a federation token)
}

// The embedder's own routes answer errors in the format of p2kit's: a
// refusal is a p2core sentinel with a message, an unknown path is
// p2core.ErrNotFound, and any other error is an internal failure whose
// text stays in the log.
func ExampleWriteError() {
	logger := slog.New(slog.DiscardHandler) // your logger: internal errors go there
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if r.FormValue("username") == "" {
			httpadapter.WriteError(w, r, p2core.Errorf(p2core.ErrBadRequest, "username is required"), logger)
			return
		}
		httpadapter.WriteError(w, r, p2core.Errorf(p2core.ErrUnauthorized, "wrong username or password"), logger)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpadapter.WriteError(w, r, p2core.Errorf(p2core.ErrNotFound, "no such route"), logger)
	})

	for _, req := range []*http.Request{
		httptest.NewRequest("POST", "/login", nil),
		httptest.NewRequest("POST", "/login?username=alice", nil),
		httptest.NewRequest("GET", "/nowhere", nil),
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		fmt.Print(rec.Code, " ", rec.Body.String())
	}
	// Output:
	// 400 {"errcode":400,"error":"P2CORE_BAD_REQUEST","message":"username is required"}
	// 401 {"errcode":401,"error":"P2CORE_UNAUTHORIZED","message":"wrong username or password"}
	// 404 {"errcode":404,"error":"P2CORE_NOT_FOUND","message":"no such route"}
}
