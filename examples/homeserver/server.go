package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/broker"
	"github.com/p2kit/p2kit/p2core/idcert"
	"github.com/p2kit/p2kit/storage/boltstore"
	"github.com/p2kit/p2kit/storage/pgstore"
)

// config is the parsed command line.
type config struct {
	addr     string
	data     string
	domain   string
	admins   []string
	insecure bool
	noLimits bool   // turn rate limits off (load tests)
	store    string // "bolt" (default) or "postgres"
	dsn      string // pgx connection string for -store postgres
	// iterations is the PBKDF2 cost of new passwords; lowering it is for
	// tests and load generation only.
	iterations int
	// selfURL is this server's URL, which foreign users' tokens name.
	selfURL string
	// homes is the static home resolver of -home DOMAIN=URL.
	homes map[string]string
	// adminPassword is the content of -admin-password-file ("" when not
	// given: a password is generated into the data folder).
	adminPassword string
	// serverKeyPassphrase is the content of -server-key-passphrase-file
	// (nil: the server key is stored unencrypted).
	serverKeyPassphrase []byte
	// serverKeyAlg is the algorithm of server keys generated from now on
	// (p2core.Config.ServerKeyAlgorithm).
	serverKeyAlg string
}

// serverKeyAlgorithms are the values of -server-key-alg: every algorithm
// p2core.Config.ServerKeyAlgorithm accepts.
var serverKeyAlgorithms = []idcert.ServerKeyAlgorithm{idcert.ServerEd25519Legacy, idcert.ServerEd25519, idcert.ServerEd448, idcert.ServerRSA3072}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("homeserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:8080", "listen address")
	fs.StringVar(&c.data, "data", "./p2kit-data", "folder for p2kit.db")
	fs.StringVar(&c.domain, "domain", "home.localhost", "the server's domain")
	fs.Var((*stringList)(&c.admins), "admin", "make this username an administrator, creating its account at start if it does not exist (repeatable)")
	adminPasswordFile := fs.String("admin-password-file", "", "the password of every -admin account created at start: the file's whole content (default: a random one, written once to admin-password in -data)")
	fs.BoolVar(&c.noLimits, "no-rate-limits", false, "turn the rate limits of the API, /login and /register off (for load tests)")
	fs.StringVar(&c.store, "store", "bolt", `storage backend: "bolt" (embedded, in -data) or "postgres" (needs -dsn)`)
	fs.StringVar(&c.dsn, "dsn", "", "PostgreSQL connection string for -store postgres (default $P2KIT_POSTGRES_DSN)")
	fs.BoolVar(&c.insecure, "insecure-federation", false, "allow http:// server URLs (loopback tests)")
	fs.IntVar(&c.iterations, "pbkdf2-iterations", defaultPBKDF2Iterations, "PBKDF2 iterations for new passwords (lower only for tests)")
	fs.StringVar(&c.selfURL, "self-url", "", "this server's public URL, which foreign users' federation tokens name (default http://ADDR with -insecure-federation, else https://DOMAIN)")
	passphraseFile := fs.String("server-key-passphrase-file", "", "encrypt the server's private key in the store with the passphrase in FILE (its whole content); without it the key is stored unencrypted")
	fs.StringVar(&c.serverKeyAlg, "server-key-alg", string(idcert.ServerEd25519Legacy), "algorithm of the server keys generated from now on (the first key, and each rotation by route 11): "+algorithmList()+"; GnuPG 2.2, Sequoia sq 0.27 and RNP 0.16 verify ID-Certs of the v4 keys ed25519-legacy and rsa3072 only")
	var homes stringList
	fs.Var(&homes, "home", "DOMAIN=URL: the home server of DOMAIN is at URL, which may be a loopback or private address (repeatable; when given, only these domains are federated)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.selfURL == "" {
		c.selfURL = "https://" + c.domain
		if c.insecure {
			host, port, err := net.SplitHostPort(c.addr)
			if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
				host = "127.0.0.1" // listening on every address: name loopback
			}
			if err == nil {
				c.selfURL = "http://" + net.JoinHostPort(host, port)
			}
		}
	}
	for _, h := range homes {
		domain, u, ok := strings.Cut(h, "=")
		if !ok || domain == "" || u == "" {
			return c, fmt.Errorf("-home %q: want DOMAIN=URL", h)
		}
		if c.homes == nil {
			c.homes = map[string]string{}
		}
		c.homes[strings.ToLower(domain)] = u
	}
	for i, name := range c.admins {
		c.admins[i] = strings.ToLower(name)
		if !usernamePattern.MatchString(c.admins[i]) {
			return c, fmt.Errorf("-admin %q: a username is 1-64 of a-z, 0-9, '.', '_', '-'", name)
		}
	}
	if *adminPasswordFile != "" {
		pw, err := readPasswordFile(*adminPasswordFile)
		if err != nil {
			return c, err
		}
		c.adminPassword = pw
	}
	if *passphraseFile != "" {
		b, err := os.ReadFile(*passphraseFile)
		if err != nil {
			return c, fmt.Errorf("-server-key-passphrase-file: %w", err)
		}
		if len(b) == 0 {
			return c, fmt.Errorf("-server-key-passphrase-file %s is empty", *passphraseFile)
		}
		c.serverKeyPassphrase = b
	}
	switch c.store {
	case "bolt":
	case "postgres":
		if c.dsn == "" {
			c.dsn = os.Getenv("P2KIT_POSTGRES_DSN")
		}
		if c.dsn == "" {
			return c, fmt.Errorf("-store postgres needs -dsn or $P2KIT_POSTGRES_DSN")
		}
	default:
		return c, fmt.Errorf(`-store must be "bolt" or "postgres", not %q`, c.store)
	}
	if !slices.Contains(serverKeyAlgorithms, idcert.ServerKeyAlgorithm(c.serverKeyAlg)) {
		return c, fmt.Errorf("-server-key-alg must be one of %s, not %q", algorithmList(), c.serverKeyAlg)
	}
	if c.iterations < 1 {
		return c, fmt.Errorf("-pbkdf2-iterations must be positive")
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return c, nil
}

func algorithmList() string {
	names := make([]string, len(serverKeyAlgorithms))
	for i, a := range serverKeyAlgorithms {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

// run starts the server and blocks until ctx is done, then shuts down
// gracefully.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	// Sampled per kind of line, so a flood of failed requests can neither
	// fill the disk nor hide other lines.
	logger := slog.New(newSampler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}), nil))
	store, err := openStore(ctx, c)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer store.Close()

	app, err := newApp(ctx, store, c, logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           app,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())
	if len(app.generatedFor) > 0 {
		fmt.Fprintf(stdout, "administrator password of %s: %s\n", strings.Join(app.generatedFor, ", "), filepath.Join(c.data, adminPasswordFile))
	}

	go app.purgeLoop(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// openStore opens the backend chosen by -store.
func openStore(ctx context.Context, c config) (p2core.Store, error) {
	if c.store == "postgres" {
		return pgstore.Open(ctx, c.dsn, nil)
	}
	if err := os.MkdirAll(c.data, 0o700); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	return boltstore.Open(filepath.Join(c.data, "p2kit.db"), nil)
}

// app is the example chat server: accounts plus the p2kit handler.
type app struct {
	svc      *p2core.Service
	events   *broker.Broker
	accounts *accounts
	mux      *http.ServeMux
	log      *slog.Logger
	// generatedFor names the -admin accounts created at this start with
	// the password in the data folder's admin-password file.
	generatedFor []string
	// accountLimits limits /login and /register.
	accountLimits accountLimits
}

func newApp(ctx context.Context, store p2core.Store, c config, logger *slog.Logger) (*app, error) {
	events := broker.New(broker.Options{})
	accounts := newAccounts(store, c.domain, c.iterations)
	var resolver httpadapter.Resolver = httpadapter.DefaultResolver{}
	if len(c.homes) > 0 {
		resolver = httpadapter.StaticResolver(c.homes)
	}
	svc, err := p2core.NewService(store, p2core.Config{
		Domain:                  c.domain,
		ServerKeyPassphrase:     c.serverKeyPassphrase,
		Logger:                  logger,
		Events:                  events,
		AllowInsecureFederation: c.insecure,
		SelfURL:                 c.selfURL,
		ServerKeyAlgorithm:      idcert.ServerKeyAlgorithm(c.serverKeyAlg),
		Homes: httpadapter.NewHomeClient(httpadapter.HomeClientOptions{
			Resolver: resolver, AllowInsecure: c.insecure,
			// Homes at loopback or private addresses only where -home
			// names them: -insecure-federation alone allows http, not
			// private addresses.
			AllowPrivateAddresses: len(c.homes) > 0}),
		// Foreign users' local IDs come from the accounts' generator, so
		// they never collide with local users'.
		ForeignUserIDs: accounts.ids.Next,
	})
	if err != nil {
		return nil, err
	}
	if err := svc.Init(ctx); err != nil {
		return nil, fmt.Errorf("server key: %w", err)
	}
	a := &app{svc: svc, events: events, log: logger, mux: http.NewServeMux()}
	a.accounts = accounts
	if !c.noLimits {
		a.accountLimits = newAccountLimits(httpadapter.NewTokenBuckets(nil))
	}
	generated := false
	created, err := accounts.ensureAdmins(ctx, c.admins, func() (string, error) {
		if c.adminPassword != "" {
			return c.adminPassword, nil
		}
		generated = true
		return generatedPassword(c.data)
	})
	if err != nil {
		return nil, err
	}
	if generated {
		a.generatedFor = created
	}
	if len(created) > 0 {
		logger.Info("administrator accounts created", "usernames", strings.Join(created, ","))
	}
	auth := httpadapter.SessionAuthenticator{Service: svc, IsAdmin: a.accounts.isAdmin}
	api := httpadapter.New(svc, httpadapter.Options{Authenticator: auth, Logger: logger, RateLimits: httpadapter.RateLimits{Disabled: c.noLimits}})
	a.mux.Handle("/p2core/", api)
	a.routeDemo(auth, api.EventStream(events)) // the web client at /, /events (bearer or ticket), /demo/
	a.mux.HandleFunc("POST /register", a.register)
	a.mux.HandleFunc("POST /login", a.login)
	a.mux.Handle("POST /logout", a.withSession(auth, a.logout))
	a.mux.Handle("GET /sessions", a.withSession(auth, a.listSessions))
	a.mux.Handle("DELETE /sessions", a.withSession(auth, a.logoutAll))
	return a, nil
}

// ServeHTTP serves the routes, and answers unknown paths (404) and known
// paths with another method (405, with Allow) in the JSON error format of
// every other route, where ServeMux would answer in plain text.
func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, pattern := a.mux.Handler(r); pattern != "" {
		a.mux.ServeHTTP(w, r)
		return
	}
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := a.mux.Handler(probe); pattern != "" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		httpadapter.WriteError(w, r, p2core.Errorf(httpadapter.ErrMethodNotAllowed, "method %s is not allowed here; allowed: %s", r.Method, strings.Join(allow, ", ")), a.log)
		return
	}
	httpadapter.WriteError(w, r, p2core.Errorf(p2core.ErrNotFound, "no such route"), a.log)
}

func (a *app) purgeLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := a.svc.PurgeExpired(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("purge failed", "error", err)
			}
		}
	}
}
