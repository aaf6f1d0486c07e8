// Package idcert issues, parses and verifies polyproto ID-Certs: OpenPGP
// third-party certifications by a home server's identity key over a client's
// public key and the User ID naming the client's federation ID (FID).
//
// The package is pure: it performs no I/O, keeps no state between calls and
// reads the time only from its arguments. Every exported type is safe for
// concurrent use once constructed.
//
// The flow on a home server is:
//
//	server, _ := idcert.GenerateServerKey("example.com", idcert.Ed25519Legacy, now, 0, nil)
//	client, err := idcert.ParseClientKey(armored, "alice@example.com", now, idcert.Policy{})
//	cert, err := idcert.Issue(server, client, idcert.IssueParams{SessionID: "s1", Now: now})
//	// cert.Raw is the ID-Cert: the client's key with the certification attached.
//
// and on any server that holds the home server's public key:
//
//	c, err := idcert.Verify(raw, server, now)
//
// # Wire format
//
// An ID-Cert is the client's transferable public key, every packet exactly as
// the client sent it, with one signature packet inserted after the packets of
// the certified User ID. That signature is a generic certification (type 0x10)
// made by the server key over the client's primary key and the User ID. Its
// hashed area holds the creation time, an expiration time, the issuer
// fingerprint (and, for v4 server keys, the issuer key ID) and two
// non-critical, human-readable notations:
//
//	session-id@polyproto.org = the session the certificate was issued to
//	serial@polyproto.org     = a UUID (v7 by default), unique per server
//
// The bytes are binary OpenPGP, so `gpg --import` accepts them once the
// server key is known, and `gpg --check-sigs` shows the certification as good
// (GnuPG 2.2 handles v4 keys only: use the default [Ed25519Legacy] server key
// and v4 client keys for that).
//
// # Errors
//
// Every refusal of a client key matches [ErrInvalidPublicKey], every refusal
// of an ID-Cert matches [ErrInvalidCert] (expired ones also match
// [ErrCertExpired]) and every refusal of a server key matches
// [ErrInvalidServerKey], all through errors.Is. The error text says what is
// wrong and is safe to show to the client that sent the input: it never
// contains private key material.
//
// Parsing never panics on untrusted input: the OpenPGP parser is guarded and
// any panic in it is reported as malformed input.
package idcert
