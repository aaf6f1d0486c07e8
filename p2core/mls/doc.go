// Package mls decodes and validates RFC 9420 (MLS 1.0) KeyPackages as a
// delivery service must before storing them.
//
// The package is pure: it performs no I/O, keeps no global state and does
// not depend on the rest of p2core. [Decode] turns untrusted bytes into a
// [KeyPackage] with strict TLS-presentation-language rules (minimal
// variable-length integer prefixes, every length bounded by the remaining
// input before anything is allocated, no trailing bytes). [Validate] then
// performs every check that needs no server state: protocol version, cipher
// suite policy, key sizes, lifetime, both signatures (LeafNodeTBS and
// KeyPackageTBS), init_key != encryption_key, duplicate extensions, and the
// capabilities rules of RFC 9420 section 7.2. [Parse] does both.
//
// Every failure returned by this package matches [ErrInvalid] with
// errors.Is and carries a message naming the offending field.
//
// All seven cipher suites of RFC 9420 are supported:
//
//	1 MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519
//	2 MLS_128_DHKEMP256_AES128GCM_SHA256_P256
//	3 MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519
//	4 MLS_256_DHKEMX448_AES256GCM_SHA512_Ed448
//	5 MLS_256_DHKEMP521_AES256GCM_SHA512_P521
//	6 MLS_256_DHKEMX448_CHACHA20POLY1305_SHA512_Ed448
//	7 MLS_256_DHKEMP384_AES256GCM_SHA384_P384
//
// GREASE values (RFC 9420 section 13.5) are tolerated wherever a type or
// capability list may carry them.
package mls
