// Command homeserver is a minimal chat home server embedding p2kit: it
// serves every polyproto-core route on the embedded bbolt store, plus the
// account routes a chat server would own (/register, /login) and a
// Server-Sent Events stream of each session's events (/events).
//
//	go run ./examples/homeserver -admin root
//
// Account routes: POST /register, POST /login, POST /logout (ends the
// calling session), GET /sessions, DELETE /sessions (ends them all), and
// GET /events (Server-Sent Events of the calling session).
//
// The web client is at / (web/, embedded). Its demo routes, outside p2kit's
// packages (demo.go): POST /events/ticket (a one-time ticket for
// GET /events?ticket=..., since EventSource cannot send a bearer token),
// POST /demo/relay/{user_id} (a JSON object delivered to that user's
// sessions as a DEMO_RELAY event) and GET /demo/users/{username}.
//
// Flags:
//
//	-addr ADDR             listen address (default 127.0.0.1:8080)
//	-data DIR              folder for p2kit.db (default ./p2kit-data)
//	-domain DOMAIN         the server's domain (default home.localhost)
//	-admin NAME            make this username an administrator (repeatable):
//	                       its account is created at start if it does not
//	                       exist, and /register refuses the name
//	-admin-password-file FILE
//	                       the password of every -admin account created at
//	                       start: the file's whole content (default: a random
//	                       one, written once to admin-password in -data,
//	                       mode 0600, and its path printed)
//	-server-key-passphrase-file FILE
//	                       store the server's private key encrypted with the
//	                       passphrase in FILE (its whole content); a wrong
//	                       one fails start (default: stored unencrypted)
//	-insecure-federation   allow http:// server URLs (loopback tests)
//	-self-url URL          this server's URL, which foreign users' federation
//	                       tokens name (default http://ADDR with
//	                       -insecure-federation, else https://DOMAIN)
//	-home DOMAIN=URL       the home server of DOMAIN is at URL, which may be
//	                       a loopback or private address (repeatable; when
//	                       given, only these domains are federated; without
//	                       it homes must be at globally reachable addresses,
//	                       even with -insecure-federation)
//	-store bolt|postgres   storage backend (default bolt, in -data)
//	-dsn DSN               PostgreSQL connection string for -store postgres
//	                       (default $P2KIT_POSTGRES_DSN)
//	-pbkdf2-iterations N   PBKDF2 cost of new passwords (lower only in tests)
//	-no-rate-limits        turn the rate limits of the API, /login and
//	                       /register off (load tests)
//
// On start it prints "listening on http://HOST:PORT"; SIGINT or SIGTERM
// shut it down gracefully.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "homeserver:", err)
		os.Exit(1)
	}
}
