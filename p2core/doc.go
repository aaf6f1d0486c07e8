// Package p2core is the domain of p2kit: the home-server side of
// polyproto-core, the federation protocol in which a user's home server
// vouches for each of the user's sessions so that other servers can trust
// them. It names the nouns (federation tokens, ID-Certs, server identity
// keys, MLS KeyPackages, sessions, events), the Store interfaces a storage
// backend implements, and the Service that performs every operation.
// p2core imports no storage and no HTTP code.
//
// # Where to start
//
// An embedding chat server needs three things and one call:
//
//   - a Store: storage/boltstore (one file, the embedded default),
//     storage/pgstore (several server instances on one PostgreSQL
//     database), storage/memstore (tests), or its own;
//   - a Config: Domain is required, every other zero field is a documented
//     default (token and ID-Cert lifetimes, KeyPackage caps, cipher
//     suites, server key algorithm, clock skew, Now, Logger, Events);
//   - an Authenticator (package httpadapter) that turns a request into the
//     Principal making it, from the server's own sessions;
//   - NewService(store, cfg), then httpadapter.New(svc, opts) mounted at
//     the root of the server's URL space.
//
// The examples show an EventSink that forwards payloads as JSON and, in
// package httpadapter (ExampleNew), a complete embedding with an in-memory
// Store and a custom Authenticator. The repository README holds the route
// table ("route N" in doc comments is row N), the error codes and the
// events table.
//
// # The Service
//
// Service is safe for concurrent use. Methods that act for a caller take
// the caller's Principal (user ID, federation ID, session ID, admin flag,
// home server for a foreign user's session) and check what it may do
// themselves; they return errors matching the sentinels of this package
// (ErrUnauthorized, ErrInvalidKeyPackage, ErrTokenInvalid, ...; test with
// errors.Is, read the caller-safe text with Message) for refused requests,
// and other errors only for internal failures. Its operations:
//
//   - federation tokens (routes 1-7): IssueFederationToken,
//     RedeemFederationToken (exactly once, by the server the token was
//     issued for), revocation, and the administrators' switch
//     (SetTokenGeneration);
//   - ID-Certs (routes 8-11): IssueIDCert certifies a session's OpenPGP key
//     with the server key (package idcert does the OpenPGP), IDCerts reads
//     the history, RotateServerKey replaces the server key and keeps the
//     old one so that old certs stay verifiable;
//   - KeyPackages (routes 12-15): uploads validated by package mls, claims
//     that hand each KeyPackage out at most once, a reusable last resort per
//     session;
//   - foreign logins (route 16): ForeignLogin lets a user of another
//     server log in here with a federation token and an ID-Cert from her
//     home;
//   - sessions: CreateSession, AuthenticateSession and EndSession, for
//     embedders that let p2kit keep sessions; embedders with their own must
//     still call EndSession when one ends, so its KeyPackages and ID-Cert
//     stop being handed out;
//   - PurgeExpired, to be called periodically.
//
// # The Store
//
// Store is a set of small interfaces (TokenStore, SettingsStore,
// SessionStore, CertStore, ServerKeyStore, KeyPackageStore) composed into
// one. Operations that must not half-happen (redeem one token, claim one
// KeyPackage per session, supersede a cert) are single methods each backend
// makes atomic its own way; every method honours its context and reports
// missing and duplicate data with ErrNotFound and ErrConflict. A new
// backend proves itself with storage/storetest.Run, the conformance suite
// the shipped backends pass.
//
// # Events
//
// After a change is stored, the Service publishes an Event to
// Config.Events: NEW_SESSION, CLIENT_KEY_CHANGE, SERVER_KEY_CHANGE,
// LOW_KEY_PACKAGES and FEDERATION_TOKEN_ISSUED. Event.Payload is a Go
// value (NewSessionPayload, ClientKeyChangePayload, ...) whose JSON
// encoding is the wire form listed in the README's events table; times in
// payloads are Unix seconds, as in every REST body. Event.Sessions names
// the sessions to notify; an empty list means every session of
// Event.UserID but Event.Except (and a zero UserID every session of every
// user). Addressing an event never needs the list of a user's sessions,
// so this works the same for an embedder whose sessions live outside
// p2kit.
// EventType.Security and EventType.State say which events a sink must
// never drop for others and which it may coalesce to the latest. Package
// broker is a ready in-process sink with a
// Server-Sent-Events stream.
package p2core
