// Package idcert issues, parses and verifies polyproto ID-Certs: OpenPGP
// third-party certifications by a home server's identity key over a client's
// public key and the User ID naming the client's federation ID (FID).
//
// The package is pure: it performs no I/O besides drawing entropy, keeps no
// state between calls and reads the time only from its arguments. Every exported type is safe for
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
// (GnuPG 2.2 handles v4 keys only: use the default [ServerEd25519Legacy] server key
// and v4 client keys for that).
//
// # Decisions beyond RFC 9580 and polyproto-core
//
//   - The certification hashes the client key with the prefix of the
//     signature's version (RFC 9580, section 5.2.4: 0x99 for v4, 0x9B for
//     v6). go-crypto uses the certified key's version, which only agrees when
//     server and client keys have the same version; OpenPGP.js follows the
//     RFC and verifies our mixed v4/v6 certificates. Signing and verifying
//     the certification are therefore done here with go-crypto's packet
//     primitives. (GnuPG 2.2 reads no v6 key, so mixed pairs never reach it.)
//   - Verify checks the two hash-tag bytes and requires minimal MPI
//     encodings: neither is covered by the signature, so without these
//     checks one certificate would have several accepted byte forms.
//   - Client self-signatures made with SHA-1 (or MD5, RIPEMD-160) are
//     refused: SHA-1 collisions make them forgeable.
//   - An ID-Cert never outlives the client key either: its expiry is
//     clamped to the earlier of the server key's and the client key's.
//   - Earlier certifications by the same server key found in the uploaded
//     key (a client re-uploading its ID-Cert) are dropped on issue, so an
//     ID-Cert carries exactly one; Verify refuses certificates with more.
//   - go-crypto's default salt notation on v4 signatures is switched off
//     for certifications: the UUID serial already makes each signed message
//     unique, and v6 signatures have their own salt.
//   - Duplicate User ID packets, trust packets and packets foreign to a
//     transferable public key are refused rather than passed through.
//
// # Errors
//
// Every refusal of a client key matches [ErrInvalidPublicKey], every refusal
// of an ID-Cert matches [ErrInvalidCert] (expired ones also match
// [ErrCertExpired]) and every refusal of a server key matches
// [ErrInvalidServerKey], all through errors.Is; bad arguments to [Issue]
// match [ErrInvalidParams]. The error text says what is wrong and is safe
// to show to the client that sent the input: it never contains private key
// material.
//
// Parsing never panics on untrusted input: the OpenPGP parser is guarded and
// any panic in it is reported as malformed input.
package idcert
