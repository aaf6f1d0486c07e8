package p2core

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/google/uuid"

	"github.com/p2kit/p2kit/p2core/idcert"
)

// serverKeyCacheTTL bounds how long a Service trusts its cached list of
// server keys before reading the Store again, so that instances sharing a
// database see another instance's rotation within that time.
const serverKeyCacheTTL = 2 * time.Second

// keyring is an immutable snapshot of the server keys.
type keyring struct {
	loaded  time.Time
	keys    []ServerKey
	current *idcert.ServerKey // parsed private key of the last entry
}

// keyCache holds the latest keyring.
type keyCache struct {
	mu   sync.Mutex
	ring *keyring
}

// ClientKeyChangePayload is the payload of CLIENT_KEY_CHANGE, sent to the
// user's sessions when one of them gets a new ID-Cert.
type ClientKeyChangePayload struct {
	// SessionID is the session that got the new ID-Cert.
	SessionID SessionID `json:"session_id"`
	// Serial is the ID-Cert's serial@polyproto.org notation.
	Serial string `json:"serial"`
	// IDCert is the new ID-Cert, Base64 as on the wire.
	IDCert []byte `json:"id_cert"`
	// ExpiresAt is when the ID-Cert expires, in Unix seconds like every
	// time p2kit writes in JSON.
	ExpiresAt int64 `json:"expires_at"`
}

// ServerKeyChangePayload is the payload of SERVER_KEY_CHANGE, sent to every
// session after an administrator rotates the server key.
type ServerKeyChangePayload struct {
	// Fingerprint is the new key's fingerprint, upper-case hex.
	Fingerprint string `json:"fingerprint"`
	// PublicKey is the new key, Base64 binary as route 10 returns it.
	PublicKey []byte `json:"public_key"`
	// ValidFrom is when the new key became current, in Unix seconds.
	ValidFrom int64 `json:"valid_from"`
}

// keys returns the current keyring, loading it from the Store when the
// cache is empty or stale, and generating the first server key when the
// Store has none.
func (s *Service) keys(ctx context.Context) (*keyring, error) {
	s.keyCache.mu.Lock()
	defer s.keyCache.mu.Unlock()
	if r := s.keyCache.ring; r != nil && time.Since(r.loaded) < serverKeyCacheTTL {
		return r, nil
	}
	for attempt := 0; attempt < 3; attempt++ {
		keys, err := s.store.ServerKeys(ctx)
		if err != nil {
			return nil, fmt.Errorf("load server keys: %w", err)
		}
		if len(keys) == 0 {
			k, err := s.generateServerKey(s.now())
			if err != nil {
				return nil, err
			}
			err = s.store.AddServerKey(ctx, k, nil)
			if errors.Is(err, ErrConflict) {
				continue // another instance generated the first key: use it
			}
			if err != nil {
				return nil, fmt.Errorf("store server key: %w", err)
			}
			s.log.LogAttrs(ctx, slog.LevelInfo, "server identity key generated", slog.String("fingerprint", fmt.Sprintf("%X", k.Fingerprint)), slog.String("algorithm", k.Algorithm))
			continue
		}
		r, err := s.newKeyring(keys)
		if err != nil {
			return nil, err
		}
		s.keyCache.ring = r
		return r, nil
	}
	return nil, errors.New("server key: could not settle on a current key")
}

func (s *Service) newKeyring(keys []ServerKey) (*keyring, error) {
	cur := keys[len(keys)-1]
	if r := s.keyCache.ring; r != nil && len(r.keys) > 0 && bytes.Equal(r.keys[len(r.keys)-1].Fingerprint, cur.Fingerprint) {
		return &keyring{loaded: time.Now(), keys: keys, current: r.current}, nil
	}
	parsed, err := s.parseStoredKey(cur)
	if err != nil {
		return nil, err
	}
	return &keyring{loaded: time.Now(), keys: keys, current: parsed}, nil
}

// parseStoredKey reads a stored server key with its private part,
// decrypting it with Config.ServerKeyPassphrase when it is stored
// encrypted.
func (s *Service) parseStoredKey(k ServerKey) (*idcert.ServerKey, error) {
	pass := s.cfg.ServerKeyPassphrase
	parsed, err := idcert.ParseEncryptedServerKey(k.Private, pass)
	switch {
	case errors.Is(err, idcert.ErrWrongPassphrase) && len(pass) == 0:
		return nil, fmt.Errorf("server key %X is stored encrypted and Config.ServerKeyPassphrase is not set: %w", k.Fingerprint, err)
	case errors.Is(err, idcert.ErrWrongPassphrase):
		return nil, fmt.Errorf("server key %X: Config.ServerKeyPassphrase does not decrypt it (wrong passphrase?): %w", k.Fingerprint, err)
	case err != nil:
		return nil, fmt.Errorf("parse stored server key: %w", err)
	}
	if len(pass) > 0 && !parsed.WasEncrypted() {
		s.log.LogAttrs(context.Background(), slog.LevelWarn, "server key stored unencrypted although a passphrase is set; rotate it to store an encrypted one",
			slog.String("fingerprint", fmt.Sprintf("%X", k.Fingerprint)))
	}
	return parsed, nil
}

// signerAt returns the key that signs ID-Certs issued at now, with its
// fingerprint: the current key, or, when another instance whose clock runs
// ahead made the current key and its creation time is still in the future
// here, the newest key already valid at now. When no key is valid yet (the
// first key came from such an instance), it is the current key and the
// caller dates the ID-Cert at the key's creation, a skew of seconds.
// parse reads an older stored key (Service.parseStoredKey).
func (r *keyring) signerAt(now time.Time, parse func(ServerKey) (*idcert.ServerKey, error)) (*idcert.ServerKey, []byte, error) {
	cur := r.keys[len(r.keys)-1]
	if !now.Before(r.current.Created()) {
		return r.current, cur.Fingerprint, nil
	}
	for i := len(r.keys) - 2; i >= 0; i-- {
		if k := r.keys[i]; !now.Before(k.CreatedAt) {
			parsed, err := parse(k)
			if err != nil {
				return nil, nil, err
			}
			return parsed, k.Fingerprint, nil
		}
	}
	return r.current, cur.Fingerprint, nil
}

func (s *Service) generateServerKey(now time.Time) (ServerKey, error) {
	k, err := idcert.GenerateServerKey(s.cfg.Domain, s.cfg.ServerKeyAlgorithm, now, s.cfg.ServerKeyLifetime, s.cfg.Rand)
	if err != nil {
		return ServerKey{}, fmt.Errorf("generate server key: %w", err)
	}
	var priv []byte
	if len(s.cfg.ServerKeyPassphrase) > 0 {
		priv, err = k.MarshalPrivateEncrypted(s.cfg.ServerKeyPassphrase, s.cfg.Rand)
	} else {
		priv, err = k.MarshalPrivate()
	}
	if err != nil {
		return ServerKey{}, fmt.Errorf("marshal server key: %w", err)
	}
	return ServerKey{
		Fingerprint: k.Fingerprint(),
		Public:      k.PublicBinary(),
		Private:     priv,
		Algorithm:   string(k.Algorithm()),
		CreatedAt:   k.Created().UTC(),
		ExpiresAt:   k.Expires().UTC(),
	}, nil
}

// Init makes sure the server identity key exists, generating it on first
// start. Calling it is optional (the key is also created on first use) but
// lets a server fail fast at start-up.
func (s *Service) Init(ctx context.Context) error {
	_, err := s.keys(ctx)
	return err
}

// ServerPublicKey returns the server key that was current at the instant
// at (route 10), with Private cleared. A zero at means now. ErrNotFound
// when no key was current then (before the first key).
func (s *Service) ServerPublicKey(ctx context.Context, at time.Time) (ServerKey, error) {
	r, err := s.keys(ctx)
	if err != nil {
		return ServerKey{}, err
	}
	if at.IsZero() {
		k := r.keys[len(r.keys)-1]
		k.Private = nil
		return k, nil
	}
	for i := len(r.keys) - 1; i >= 0; i-- {
		k := r.keys[i]
		if !at.Before(k.CreatedAt) && (k.RetiredAt.IsZero() || at.Before(k.RetiredAt)) {
			k.Private = nil
			return k, nil
		}
	}
	return ServerKey{}, Errorf(ErrNotFound, "no server key was current at %s", at.UTC().Format(time.RFC3339))
}

// RotateServerKey replaces the server identity key with a new one (route
// 11, administrators only) and returns it with Private cleared. Old keys
// are kept so old ID-Certs stay verifiable. Every session gets
// SERVER_KEY_CHANGE and then LOW_KEY_PACKAGES. ErrConflict if another
// rotation won a race or the key was replaced less than a second ago (key
// validity has one-second resolution); the caller may retry.
func (s *Service) RotateServerKey(ctx context.Context, p Principal) (ServerKey, error) {
	if err := requireAdmin(p); err != nil {
		return ServerKey{}, err
	}
	r, err := s.keys(ctx)
	if err != nil {
		return ServerKey{}, err
	}
	prev := r.keys[len(r.keys)-1]
	now := s.now().Truncate(time.Second)
	if !now.After(prev.CreatedAt) {
		// OpenPGP times have one-second resolution. A key dated after now
		// could not sign ID-Certs until the clock caught up, so validity
		// windows stay ordered and never start in the future.
		return ServerKey{}, Errorf(ErrConflict, "the server key was replaced less than a second ago; retry in a second")
	}
	k, err := s.generateServerKey(now)
	if err != nil {
		return ServerKey{}, err
	}
	if err := s.store.AddServerKey(ctx, k, prev.Fingerprint); err != nil {
		if errors.Is(err, ErrConflict) {
			s.invalidateKeys()
			return ServerKey{}, Errorf(ErrConflict, "the server key changed concurrently; retry")
		}
		return ServerKey{}, fmt.Errorf("store server key: %w", err)
	}
	s.invalidateKeys()
	s.log.LogAttrs(ctx, slog.LevelInfo, "server identity key rotated", slog.String("fingerprint", fmt.Sprintf("%X", k.Fingerprint)), slog.String("by", p.UserID.String()))
	s.publish(ctx, Event{Type: EventServerKeyChange, Time: k.CreatedAt,
		Payload: ServerKeyChangePayload{Fingerprint: fmt.Sprintf("%X", k.Fingerprint), PublicKey: k.Public, ValidFrom: k.CreatedAt.Unix()}})
	s.publish(ctx, Event{Type: EventLowKeyPackages, Time: k.CreatedAt, Payload: LowKeyPackagesPayload{Reason: "server_key_change"}})
	k.Private = nil
	return k, nil
}

func (s *Service) invalidateKeys() {
	s.keyCache.mu.Lock()
	if s.keyCache.ring != nil {
		s.keyCache.ring.loaded = time.Time{}
	}
	s.keyCache.mu.Unlock()
}

// IssueIDCert is route 8 for every session: it gives the caller's session
// a new current ID-Cert, which supersedes the previous one, and returns
// it. The user's other sessions get CLIENT_KEY_CHANGE. value is the
// route's JSON string, and what it holds depends on the caller:
//
//   - a local user's session sends its armored OpenPGP public key, and
//     this server issues the ID-Cert;
//   - a foreign user's session (Principal.Home set, or a FID of another
//     domain) sends the new ID-Cert its home server issued, as standard
//     Base64 with padding; it is verified and recorded as described at
//     recordForeignIDCert.
//
// Errors: ErrUnauthorized; for a local session ErrInvalidPublicKey (with
// the reason); for a foreign session ErrNotFederated (no Config.Homes),
// ErrNoIDCert (the session has no cert to follow), ErrInvalidIDCert,
// ErrUnknownHome, ErrHomeUnreachable and ErrConflict (the serial was
// recorded here before).
func (s *Service) IssueIDCert(ctx context.Context, p Principal, value []byte) (IDCert, error) {
	if err := requireUser(p); err != nil {
		return IDCert{}, err
	}
	if s.isForeign(p) {
		raw, err := base64.StdEncoding.Strict().DecodeString(string(value))
		if err != nil {
			return IDCert{}, Errorf(ErrInvalidIDCert, "a foreign session sends its new ID-Cert from its home server, as standard Base64 with padding")
		}
		return s.recordForeignIDCert(ctx, p, raw)
	}
	return s.issueLocalIDCert(ctx, p, value)
}

// issueLocalIDCert certifies a local session's armored public key.
func (s *Service) issueLocalIDCert(ctx context.Context, p Principal, armored []byte) (IDCert, error) {
	now := s.now()
	ck, err := idcert.ParseClientKey(armored, string(p.FID), now, s.cfg.clientKeyPolicy())
	if err != nil {
		if errors.Is(err, idcert.ErrInvalidPublicKey) {
			return IDCert{}, Errorf(ErrInvalidPublicKey, "%s", err.Error())
		}
		return IDCert{}, fmt.Errorf("parse client key: %w", err)
	}
	r, err := s.keys(ctx)
	if err != nil {
		return IDCert{}, err
	}
	signer, fpr, err := r.signerAt(now, s.parseStoredKey)
	if err != nil {
		return IDCert{}, err
	}
	if created := signer.Created(); now.Before(created) {
		now = created
	}
	serial, err := uuid.NewV7FromReader(s.cfg.Rand)
	if err != nil {
		return IDCert{}, fmt.Errorf("serial: %w", err)
	}
	lifetime := s.cfg.IDCertLifetime
	if exp := signer.Expires(); !exp.IsZero() {
		if left := exp.Sub(now); left < lifetime {
			lifetime = left
		}
		if lifetime < time.Second {
			return IDCert{}, errors.New("the server key has expired; an administrator must rotate it")
		}
	}
	res, err := idcert.Issue(signer, ck, idcert.IssueParams{SessionID: string(p.SessionID), Serial: serial, Now: now, Lifetime: lifetime})
	if err != nil {
		return IDCert{}, fmt.Errorf("issue ID-Cert: %w", err)
	}
	c := IDCert{
		UserID: p.UserID, SessionID: p.SessionID, FID: p.FID, Serial: serial.String(),
		Cert: res.Raw, SignatureKey: res.MLSSignatureKey, ServerKeyFingerprint: fpr,
		IssuedAt: res.IssuedAt.UTC(), ExpiresAt: res.Expires.UTC(),
	}
	if err := s.store.PutIDCert(ctx, c); err != nil {
		return IDCert{}, fmt.Errorf("store ID-Cert: %w", err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "ID-Cert issued", slog.String("user_id", p.UserID.String()), slog.String("session_id", string(p.SessionID)), slog.String("serial", c.Serial))
	// The user's other sessions learn of the new key.
	s.publish(ctx, Event{Type: EventClientKeyChange, UserID: p.UserID, Except: p.SessionID, Time: c.IssuedAt,
		Payload: ClientKeyChangePayload{SessionID: p.SessionID, Serial: c.Serial, IDCert: c.Cert, ExpiresAt: c.ExpiresAt.Unix()}})
	return c, nil
}

// IDCerts returns the user's ID-Certs valid at the instant at (route 9),
// one per session at most; a zero at means now.
func (s *Service) IDCerts(ctx context.Context, user UserID, at time.Time) ([]IDCert, error) {
	if user == 0 {
		return nil, Errorf(ErrInvalidUserID, "user ID must be positive")
	}
	if at.IsZero() {
		at = s.now()
	}
	return s.store.IDCertsAt(ctx, user, at)
}

// Armored returns the public key in ASCII armor ("PGP PUBLIC KEY BLOCK").
func (k ServerKey) Armored() []byte {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, "PGP PUBLIC KEY BLOCK", nil)
	if err != nil {
		return nil
	}
	_, _ = w.Write(k.Public)
	_ = w.Close()
	buf.WriteByte('\n')
	return buf.Bytes()
}
