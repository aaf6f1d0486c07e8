package idcert

import (
	"errors"
	"fmt"
)

// ErrInvalidPublicKey is matched (errors.Is) by every refusal of a client
// public key by [ParseClientKey]. The wrapping error says what is wrong in
// words fit for the client.
var ErrInvalidPublicKey = errors.New("idcert: invalid public key")

// ErrInvalidCert is matched (errors.Is) by every refusal of an ID-Cert by
// [Verify], [ParseCert] and [VerifyFID].
var ErrInvalidCert = errors.New("idcert: invalid ID-Cert")

// ErrCertExpired is matched, in addition to [ErrInvalidCert], when an
// ID-Cert is otherwise valid but its expiration time has passed.
var ErrCertExpired = errors.New("idcert: ID-Cert expired")

// ErrInvalidServerKey is matched by every refusal to generate, parse or use a
// server identity key (malformed key, missing private part, key expired at
// issue time, ...).
var ErrInvalidServerKey = errors.New("idcert: invalid server key")

// ErrWrongPassphrase is matched, in addition to [ErrInvalidServerKey], when
// [ParseEncryptedServerKey] cannot decrypt a server key's private part with
// the passphrase it was given.
var ErrWrongPassphrase = errors.New("idcert: wrong server key passphrase")

// ErrInvalidParams is matched when [Issue] is called with parameters that
// are wrong regardless of the keys (bad session ID, negative lifetime, ...).
var ErrInvalidParams = errors.New("idcert: invalid issue parameters")

// fail wraps sentinel with a formatted detail message.
func fail(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}

// recoverInto turns a panic raised while parsing untrusted bytes into an
// error matching sentinel. Use as: defer recoverInto(&err, ErrInvalidCert).
func recoverInto(err *error, sentinel error) {
	if r := recover(); r != nil {
		*err = fail(sentinel, "malformed OpenPGP data (the parser failed on it)")
	}
}
