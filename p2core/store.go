package p2core

import (
	"context"
	"time"
)

// Store is everything p2kit persists. It is a composition of small
// per-feature interfaces; a backend implements them all, and
// storage/storetest checks that it does so with the semantics documented
// on each method.
//
// General rules for every method:
//   - ctx is honoured: a cancelled or expired context makes the method
//     return an error matching ctx.Err() without changing anything that a
//     later call could observe half-done.
//   - "Missing" is always ErrNotFound (never a zero value with a nil error).
//   - Byte slices passed in may be reused by the caller after the call
//     returns, and byte slices returned belong to the caller.
//   - Times are stored with at least microsecond precision and returned in
//     UTC.
//   - Methods marked atomic take effect entirely or not at all, and
//     concurrent calls (from any number of goroutines or, for shared
//     backends, processes) behave as if run one after another.
//   - After Close, methods return ErrClosed.
//
// All implementations must be safe for concurrent use.
//
// The per-feature interfaces can be implemented one at a time; only the
// two operations that span features (a session starts with its cert and
// KeyPackages, and ends with them) are methods of Store itself, so no
// per-feature interface needs to know about another.
type Store interface {
	TokenStore
	SettingsStore
	SessionStore
	CertStore
	ServerKeyStore
	KeyPackageStore

	// CreateSession atomically stores a new session with everything it
	// starts with: for a foreign login (n.ForeignCandidate not 0) the
	// mapping of n.FID to a local user ID (the existing one, else
	// n.ForeignCandidate; of concurrent logins of one FID all get the
	// same ID), the session, its ID-Cert, its KeyPackages and its last
	// resort. The cert and KeyPackages are stored under the session's
	// UserID and SessionID whatever theirs say. It returns the stored
	// Session. All or nothing: on any error nothing changes, not even
	// the FID mapping.
	//
	// Errors: ErrConflict (the user has a session with that SessionID,
	// another session has the same TokenHash, or a cert with the same
	// Serial exists); ErrTooManySessions (the user already has
	// lim.MaxSessions sessions); ErrDuplicateKeyPackage and
	// ErrTooManyKeyPackages as in AddKeyPackages and SetLastResort (init
	// keys must also differ between the KeyPackages and the last resort;
	// the cap is lim.MaxKeyPackages).
	CreateSession(ctx context.Context, n NewSession, lim Limits, now time.Time) (Session, error)
	// EndSession atomically removes the session (if stored), all its
	// regular KeyPackages and its last-resort KeyPackage, and ends its
	// current ID-Cert at now (SupersededAt = now). It is idempotent and
	// returns nil when there was nothing to remove, so it also serves
	// embedders whose sessions live outside the Store. Handed-out init
	// keys stay taken until their NotAfter.
	EndSession(ctx context.Context, user UserID, session SessionID, now time.Time) error

	// Close releases the backend's resources. It is safe to call twice.
	Close() error
}

// NewSession is a session to create with Store.CreateSession.
type NewSession struct {
	Session
	// ForeignCandidate, when not 0, makes this a foreign login: the
	// session's UserID (Session.UserID is ignored) is the local user ID
	// mapped to Session.FID, mapped to ForeignCandidate when the FID has
	// no mapping yet.
	ForeignCandidate UserID
	// Cert, when not nil, becomes the session's current ID-Cert.
	Cert *IDCert
	// KeyPackages are stored as the session's regular KeyPackages.
	KeyPackages []KeyPackage
	// LastResort, when not nil, is the session's last-resort KeyPackage.
	LastResort *KeyPackage
}

// Parts returns n's cert, KeyPackages and last resort (copies of the
// structs, sharing byte slices) stamped with the session's UserID and
// SessionID, user being the UserID the Store settled on (the FID's
// mapping for a foreign login). Backends store these.
func (n NewSession) Parts(user UserID) (cert *IDCert, kps []KeyPackage, lr *KeyPackage) {
	if n.Cert != nil {
		c := *n.Cert
		c.UserID, c.SessionID = user, n.SessionID
		cert = &c
	}
	kps = make([]KeyPackage, len(n.KeyPackages))
	for i, kp := range n.KeyPackages {
		kp.UserID, kp.SessionID = user, n.SessionID
		kps[i] = kp
	}
	if n.LastResort != nil {
		kp := *n.LastResort
		kp.UserID, kp.SessionID = user, n.SessionID
		lr = &kp
	}
	return cert, kps, lr
}

// Limits are the per-user caps a Store enforces inside its atomic
// operations. A cap of zero or less allows nothing.
type Limits struct {
	// MaxSessions caps the sessions of one user.
	MaxSessions int
	// MaxKeyPackages caps one user's unexpired regular KeyPackages,
	// across all of the user's sessions.
	MaxKeyPackages int
}

// FederationToken is a stored federation token. The token itself is never
// stored: only its SHA-256 (Hash).
type FederationToken struct {
	Hash      [32]byte
	UserID    UserID
	FID       FID
	Server    string // normalised audience: scheme://host[:port]
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// TokenStore keeps federation tokens by the SHA-256 of the token.
type TokenStore interface {
	// CreateToken stores t. ErrConflict if a token with the same Hash
	// exists.
	CreateToken(ctx context.Context, t FederationToken) error
	// RedeemToken atomically consumes the token with the given hash: if it
	// exists, now is before its ExpiresAt and its Server equals server, it
	// is deleted and returned. Otherwise ErrTokenInvalid and nothing
	// changes (expired tokens go with PurgeExpiredTokens). Of any number
	// of concurrent calls for one token at most one succeeds.
	RedeemToken(ctx context.Context, hash [32]byte, server string, now time.Time) (FederationToken, error)
	// DeleteUserTokens deletes every token of the user (expired or not)
	// and returns how many there were. Atomic.
	DeleteUserTokens(ctx context.Context, user UserID) (int, error)
	// DeleteAllTokens deletes every token and returns how many there
	// were. Atomic.
	DeleteAllTokens(ctx context.Context) (int, error)
	// PurgeExpiredTokens deletes the tokens whose ExpiresAt is not after
	// now and returns how many.
	PurgeExpiredTokens(ctx context.Context, now time.Time) (int, error)
}

// SettingsStore is a small persistent key-value map for server-wide
// switches (for example whether federation token generation is enabled).
type SettingsStore interface {
	// Setting returns the value stored under key, or ErrNotFound.
	Setting(ctx context.Context, key string) ([]byte, error)
	// PutSetting stores value under key, replacing any previous value.
	PutSetting(ctx context.Context, key string, value []byte) error
	// CreateSetting stores value under key only if key is not set yet;
	// otherwise ErrConflict and nothing changes. Of concurrent calls for
	// one key exactly one succeeds (embedders use it for unique names).
	CreateSetting(ctx context.Context, key string, value []byte) error
}

// Session is a login of a user on this server. Only the SHA-256 of its
// bearer token is stored.
type Session struct {
	UserID    UserID
	SessionID SessionID
	FID       FID
	TokenHash [32]byte
	CreatedAt time.Time
	// Home is empty for a local user's session; for a foreign user's
	// session (route 16) it is the home server's domain (the domain part
	// of the FID).
	Home string
	// LastUsedAt is the latest use TouchSession recorded; zero when none
	// was (the session counts as used at CreatedAt).
	LastUsedAt time.Time
}

// SessionStore keeps sessions (created and ended by Store.CreateSession
// and Store.EndSession).
type SessionStore interface {
	// SessionByToken returns the session whose TokenHash is hash, or
	// ErrNotFound.
	SessionByToken(ctx context.Context, hash [32]byte) (Session, error)
	// Sessions returns the user's sessions, oldest first (empty, not
	// ErrNotFound, when there are none).
	Sessions(ctx context.Context, user UserID) ([]Session, error)
	// TouchSession records that the session was used at at: afterwards
	// SessionByToken and Sessions return a LastUsedAt no earlier than at
	// (a later time recorded before stays). A session that does not
	// exist (it may have ended meanwhile) is no error. The Service calls
	// it at most once a minute per session.
	TouchSession(ctx context.Context, user UserID, session SessionID, at time.Time) error
}

// IDCert is a stored ID-Cert: a server certification of one session's
// OpenPGP public key.
type IDCert struct {
	UserID    UserID
	SessionID SessionID
	FID       FID
	// Serial is the certificate's UUIDv7 serial, unique per server.
	Serial string
	// Cert is the ID-Cert as sent on the wire (binary, before Base64).
	Cert []byte
	// SignatureKey is the certified key in MLS signature_key form, used
	// to bind KeyPackages to the cert; nil when the key has no MLS form.
	SignatureKey []byte
	// ServerKeyFingerprint names the server key that signed the cert.
	ServerKeyFingerprint []byte
	IssuedAt             time.Time
	ExpiresAt            time.Time
	// SupersededAt is zero while the cert is the session's current one;
	// otherwise the instant a newer cert (or the end of the session)
	// replaced it.
	SupersededAt time.Time
}

// ValidAt reports whether c is in force at t: issued at or before t, not
// yet expired, and not superseded.
func (c IDCert) ValidAt(t time.Time) bool {
	return !t.Before(c.IssuedAt) && t.Before(c.ExpiresAt) &&
		(c.SupersededAt.IsZero() || t.Before(c.SupersededAt))
}

// CertStore keeps every ID-Cert ever issued.
type CertStore interface {
	// PutIDCert atomically makes c the current cert of its session: the
	// previous current cert of (c.UserID, c.SessionID), if any, gets
	// SupersededAt = c.IssuedAt, and c is stored with a zero
	// SupersededAt. ErrConflict if a cert with the same Serial exists.
	// Certs of one session issued at the same instant are ordered by
	// insertion. (A cert issued earlier than the current one, possible
	// only with clock skew between instances, still supersedes it at its
	// own IssuedAt.)
	PutIDCert(ctx context.Context, c IDCert) error
	// IDCertBySerial returns the cert with the given serial, current or
	// not, or ErrNotFound.
	IDCertBySerial(ctx context.Context, serial string) (IDCert, error)
	// CurrentIDCert returns the session's current (not superseded) cert,
	// expired or not, or ErrNotFound.
	CurrentIDCert(ctx context.Context, user UserID, session SessionID) (IDCert, error)
	// IDCertsAt returns the user's certs for which ValidAt(at) holds,
	// ordered by IssuedAt (empty when none).
	IDCertsAt(ctx context.Context, user UserID, at time.Time) ([]IDCert, error)
}

// ServerKey is a stored server identity key.
type ServerKey struct {
	Fingerprint []byte
	// Public is the transferable public key, binary.
	Public []byte
	// Private is the private key, binary. It is a secret: never log it.
	Private   []byte
	Algorithm string
	// CreatedAt is when the key became current.
	CreatedAt time.Time
	// RetiredAt is zero while the key is current; otherwise when the next
	// key replaced it.
	RetiredAt time.Time
	// ExpiresAt is the key's own expiry; zero means none.
	ExpiresAt time.Time
}

// ServerKeyStore keeps the server identity key and every key it replaced.
type ServerKeyStore interface {
	// ServerKeys returns every server key, oldest first (empty when none).
	ServerKeys(ctx context.Context) ([]ServerKey, error)
	// AddServerKey atomically makes k the current key if the current key's
	// fingerprint is previous (nil previous: only if there is no key at
	// all). The old key gets RetiredAt = k.CreatedAt. Otherwise ErrConflict
	// and nothing changes, so two instances starting or rotating at once
	// cannot both win.
	AddServerKey(ctx context.Context, k ServerKey, previous []byte) error
}

// KeyPackage is a stored MLS KeyPackage of one session.
type KeyPackage struct {
	UserID      UserID
	SessionID   SessionID
	Ref         []byte // KeyPackageRef (RFC 9420 section 5.2)
	CipherSuite uint16
	InitKey     []byte
	Data        []byte // the bare KeyPackage, byte-identical to the upload
	NotAfter    time.Time
	UploadedAt  time.Time
}

// ClaimedKeyPackage is one result of a claim.
type ClaimedKeyPackage struct {
	KeyPackage
	// LastResort is true when the session had no regular KeyPackage left
	// and its last-resort KeyPackage was handed out (and kept).
	LastResort bool
	// Remaining is the number of the session's regular KeyPackages left
	// after the claim.
	Remaining int
}

// KeyPackageStatus is a session's KeyPackage supply: what
// KeyPackageStore.KeyPackageStatus counts and, with Low, the answer of
// route 15 (the JSON names are the route's).
type KeyPackageStatus struct {
	Available      int  `json:"available"`        // unexpired regular KeyPackages
	LastResort     bool `json:"last_resort"`      // a last-resort KeyPackage is stored
	LastResortUsed bool `json:"last_resort_used"` // it was handed out since it was set
	// Low is true when Available is below Config.LowKeyPackageThreshold.
	// Service.KeyPackageStatus sets it; a Store leaves it false.
	Low bool `json:"low"`
}

// KeyPackageStore keeps KeyPackages and hands each regular one out at most
// once.
type KeyPackageStore interface {
	// AddKeyPackages atomically stores kps (all of one session), or none
	// of them. ErrDuplicateKeyPackage if an init key repeats within kps or
	// equals that of a stored KeyPackage, a stored last resort, or a
	// handed-out KeyPackage whose NotAfter is after now.
	// ErrTooManyKeyPackages if the user would hold more than max
	// unexpired regular KeyPackages across all of its sessions (max <= 0
	// allows none); when both apply, ErrDuplicateKeyPackage wins. An
	// expired KeyPackage not yet purged still holds its init key.
	AddKeyPackages(ctx context.Context, kps []KeyPackage, max int, now time.Time) error
	// SetLastResort atomically replaces the session's last-resort
	// KeyPackage with kp and clears its used flag. Init key uniqueness as
	// in AddKeyPackages (the replaced last resort does not count).
	SetLastResort(ctx context.Context, kp KeyPackage, now time.Time) error
	// ClaimKeyPackages hands out, for each session of the user that has
	// one, the oldest regular KeyPackage whose NotAfter is after now (of
	// the given cipher suite, when suite is not 0) and deletes it in the
	// same atomic step, remembering its init key until NotAfter; a session
	// with none gets its unexpired last resort (kept, marked used).
	// Sessions with neither are left out; the result is ordered by
	// SessionID. No KeyPackage is ever returned by two calls. With a
	// suite filter, the last resort must be of that suite too. Remaining
	// counts the session's unexpired regular KeyPackages of every suite
	// (as KeyPackageStatus.Available would); under concurrent claims it
	// may still count ones another claim is taking. A used last resort
	// that is replaced or whose session ends keeps its init key taken
	// until its NotAfter, like any handed-out KeyPackage.
	//
	// Sessions that have ended by themselves are left out in the same
	// atomic step: a session whose stored Session and current ID-Cert
	// ends.Over says is over gives nothing, neither a regular KeyPackage
	// nor its last resort (which is not marked used), and nothing of it
	// changes; the claim does not end it. A session the Store holds no
	// Session of (KeyPackages stored by an embedder whose sessions live
	// elsewhere) has not ended by this rule.
	ClaimKeyPackages(ctx context.Context, user UserID, suite uint16, now time.Time, ends SessionEnds) ([]ClaimedKeyPackage, error)
	// InitKeyInUse returns the index of the first of initKeys that
	// AddKeyPackages would refuse as a duplicate at now (stored, or
	// handed out with a NotAfter after now), or -1 when none is. It
	// changes nothing; callers use it to refuse a re-upload before any
	// expensive check, and AddKeyPackages still decides atomically.
	InitKeyInUse(ctx context.Context, initKeys [][]byte, now time.Time) (int, error)
	// KeyPackageStatus returns the session's supply at now (zero values
	// when it has nothing).
	KeyPackageStatus(ctx context.Context, user UserID, session SessionID, now time.Time) (KeyPackageStatus, error)
	// PurgeExpiredKeyPackages deletes KeyPackages (regular and last
	// resort) whose NotAfter is not after now, forgets handed-out init
	// keys whose NotAfter passed, and returns how many KeyPackages it
	// deleted.
	PurgeExpiredKeyPackages(ctx context.Context, now time.Time) (int, error)
}
