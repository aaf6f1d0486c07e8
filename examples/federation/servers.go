package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/boltstore"
)

// server is one home server of the demonstration: a p2kit Service on its
// own bbolt file, served on a loopback port. It stands in for a chat
// server embedding p2kit, so it also keeps the chat server's part, the
// accounts, in the smallest possible form (see register).
type server struct {
	name   string // "A" or "B"
	domain string
	url    string
	dbPath string
	svc    *p2core.Service
	store  p2core.Store
	ids    *p2core.Snowflakes
	http   *http.Server
	served chan error

	mu       sync.Mutex
	accounts map[string]p2core.UserID
}

// startServer serves domain on ln with its data in dir. homes maps the
// other servers' domains to their URLs, so that loopback federation needs
// no DNS.
func startServer(ctx context.Context, name, domain string, ln net.Listener, dir string, homes httpadapter.StaticResolver, logger *slog.Logger) (*server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	s := &server{name: name, domain: domain, url: "http://" + ln.Addr().String(), dbPath: filepath.Join(dir, "p2kit.db"),
		ids: p2core.NewSnowflakes(0, nil), accounts: map[string]p2core.UserID{}, served: make(chan error, 1)}
	store, err := boltstore.Open(s.dbPath, nil)
	if err != nil {
		return nil, fmt.Errorf("server %s: open store: %w", name, err)
	}
	s.store = store
	logger = logger.With("server", name)
	s.svc, err = p2core.NewService(store, p2core.Config{
		Domain: domain,
		Logger: logger,
		// Loopback federation: http:// URLs, loopback addresses.
		AllowInsecureFederation: true,
		SelfURL:                 s.url,
		Homes: httpadapter.NewHomeClient(httpadapter.HomeClientOptions{
			Resolver: homes, AllowInsecure: true, AllowPrivateAddresses: true,
		}),
		// Foreign users get local IDs from the same generator as local
		// accounts, so the two can never collide.
		ForeignUserIDs: s.ids.Next,
	})
	if err == nil {
		err = s.svc.Init(ctx)
	}
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("server %s: %w", name, err)
	}
	auth := httpadapter.SessionAuthenticator{Service: s.svc}
	mux := http.NewServeMux()
	mux.Handle("/p2core/", httpadapter.New(s.svc, httpadapter.Options{Authenticator: auth, Logger: logger}))
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	go func() { s.served <- s.http.Serve(ln) }()
	return s, nil
}

// close stops serving and closes the store.
func (s *server) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.http.Shutdown(ctx)
	if serr := <-s.served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return errors.Join(err, s.store.Close())
}

// register creates an account and logs it in, returning a Client for the
// new session. Accounts and logins belong to the embedding chat server, not
// to p2kit (examples/homeserver has real ones, with passwords); here they
// are a map and a direct call to Service.CreateSession.
func (s *server) register(ctx context.Context, username string) (*httpadapter.Client, p2core.Session, error) {
	fid, err := p2core.ParseFID(username + "@" + s.domain)
	if err != nil {
		return nil, p2core.Session{}, err
	}
	s.mu.Lock()
	id, ok := s.accounts[username]
	if !ok {
		id = s.ids.Next()
		s.accounts[username] = id
	}
	s.mu.Unlock()
	tok, sess, err := s.svc.CreateSession(ctx, id, fid)
	if err != nil {
		return nil, p2core.Session{}, err
	}
	return s.client().WithToken(tok), sess, nil
}

// client returns an unauthenticated Client for the server.
func (s *server) client() *httpadapter.Client { return &httpadapter.Client{BaseURL: s.url} }
