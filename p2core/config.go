package p2core

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/p2kit/p2kit/p2core/idcert"
	"github.com/p2kit/p2kit/p2core/mls"
)

// Defaults used when the matching Config field is zero. Defaults of the
// ID-Cert and KeyPackage rules are those of the packages that apply them
// (idcert.DefaultCertLifetime, idcert.DefaultMaxArmoredSize,
// idcert.DefaultMinRSABits, mls.DefaultMaxLifetime), defined there only.
const (
	DefaultTokenTTL               = 5 * time.Minute
	DefaultMaxKeyPackagesPerUser  = 1000
	DefaultMaxSessionsPerUser     = 100
	DefaultLowKeyPackageThreshold = 10
	DefaultDomain                 = "localhost"
	DefaultHomeKeyTTL             = 5 * time.Minute
	DefaultClockSkew              = 5 * time.Minute
	DefaultSessionTTL             = 30 * 24 * time.Hour
	DefaultSessionIdleTTL         = 7 * 24 * time.Hour
)

// FederationPolicy decides whether this server issues federation tokens
// for a foreign server. server is normalised (scheme://host[:port]). A nil
// policy allows every server.
type FederationPolicy interface {
	// AllowFederation returns nil to allow the server; any error refuses
	// it with 404 P2CORE_NOT_FEDERATED.
	AllowFederation(ctx context.Context, server string) error
}

// FederationPolicyFunc adapts a function to FederationPolicy.
type FederationPolicyFunc func(ctx context.Context, server string) error

// AllowFederation calls f.
func (f FederationPolicyFunc) AllowFederation(ctx context.Context, server string) error {
	return f(ctx, server)
}

// Config configures a Service. Every zero value means the documented
// default; NewService copies the Config, so later changes to the caller's
// value have no effect.
type Config struct {
	// Domain is this server's domain: the domain part of local FIDs and the
	// User ID of the server identity key. Default "localhost".
	Domain string
	// Now returns the current time. Default time.Now. Times are stored in
	// UTC.
	Now func() time.Time
	// Rand is the source of randomness for tokens, keys and serials.
	// Default crypto/rand.Reader.
	Rand io.Reader
	// Logger receives operational logs; it never receives tokens or
	// private keys. Default: a logger that discards everything.
	Logger *slog.Logger
	// Events receives the events the Service emits (see EventType and the
	// README's events table) after the change each reports is stored.
	// Default: a sink that drops them.
	Events EventSink
	// FederationPolicy may refuse servers that ask for federation
	// tokens. Default: every server is allowed.
	FederationPolicy FederationPolicy
	// AllowInsecureFederation accepts http:// server URLs (for loopback
	// tests). Default false: https only.
	AllowInsecureFederation bool
	// TokenTTL is the lifetime of a federation token. Default 5 minutes.
	TokenTTL time.Duration
	// IDCertLifetime is the lifetime of an ID-Cert, never past the server
	// key's expiry. Default idcert.DefaultCertLifetime (30 days).
	IDCertLifetime time.Duration
	// ServerKeyAlgorithm is the algorithm of generated server keys, one of
	// the idcert.ServerKeyAlgorithm constants. Default
	// idcert.ServerEd25519Legacy (a v4 EdDSA key, which GnuPG 2.2 can
	// verify). NewService refuses any other value.
	ServerKeyAlgorithm idcert.ServerKeyAlgorithm
	// ServerKeyLifetime is the expiry set on generated server keys. Default
	// 0: no expiry.
	ServerKeyLifetime time.Duration
	// ServerKeyPassphrase, when set, encrypts the private part of every
	// server key the Service generates before it reaches the Store (the
	// OpenPGP way: Argon2 for v6 keys, iterated and salted SHA-256 for v4
	// keys, AES-256), and decrypts stored keys in memory when they are
	// loaded; a wrong passphrase makes Init (and every call needing the
	// key) fail with an error matching idcert.ErrWrongPassphrase. Keys
	// stored unencrypted before it was set stay usable (with a warning in
	// the log) until the next rotation. Default nil: private keys are
	// stored unencrypted, so whoever can read the Store can sign ID-Certs
	// as this server.
	ServerKeyPassphrase []byte
	// MaxPublicKeySize caps the armored public key of route 8, in bytes.
	// Default idcert.DefaultMaxArmoredSize (64 KiB); NewService refuses a
	// negative one.
	MaxPublicKeySize int
	// ClientKeyAlgorithms lists the primary-key algorithms route 8 accepts
	// for client keys, from the idcert.ClientKeyAlgorithm constants.
	// Default: all of them (idcert.DefaultClientKeyAlgorithms). NewService
	// refuses an unknown one.
	ClientKeyAlgorithms []idcert.ClientKeyAlgorithm
	// MinRSABits is the smallest RSA modulus route 8 accepts when
	// ClientKeyAlgorithms allows idcert.ClientRSA. Default
	// idcert.DefaultMinRSABits (2048); NewService refuses a value outside
	// 0 to 8192.
	MinRSABits int
	// MaxKeyPackageLifetime caps a KeyPackage's lifetime (not_after -
	// not_before). Default mls.DefaultMaxLifetime (90 days); negative
	// disables the cap.
	MaxKeyPackageLifetime time.Duration
	// CipherSuites lists the MLS cipher suites accepted. Default: all of
	// RFC 9420's 1-7 (mls.Options' nil CipherSuites). NewService refuses
	// a suite the mls package does not implement.
	CipherSuites []uint16
	// MaxKeyPackagesPerUser caps a user's unexpired regular KeyPackages,
	// across all of the user's sessions (so logging in again does not
	// multiply it). Default 1000.
	MaxKeyPackagesPerUser int
	// MaxSessionsPerUser caps a user's sessions: CreateSession and
	// ForeignLogin refuse another with ErrTooManySessions (409
	// P2CORE_TOO_MANY_SESSIONS). Default 100.
	MaxSessionsPerUser int
	// SessionTTL bounds every session CreateSession or ForeignLogin makes:
	// that long after its creation it ends by itself: claims leave its
	// KeyPackages out at once, and AuthenticateSession (which answers
	// ErrUnauthorized) or Sessions ends it as EndSession does (its
	// ID-Cert stops being current). A
	// foreign user's session ends earlier, when the ID-Cert it presented
	// expires, unless it presents a newer one first (the foreign form of
	// route 8). Default 30 days; negative: no bound but the foreign
	// session's cert.
	SessionTTL time.Duration
	// SessionIdleTTL ends a session, in the same way, once it has not
	// been used (no AuthenticateSession) for that long. Last uses are
	// recorded in the Store at most once a minute per session, so the
	// end comes up to a minute early. Default 7 days; negative: no idle
	// bound.
	SessionIdleTTL time.Duration
	// SignatureChecks, when not nil, is called once for every signature
	// verification the Service starts: "id_cert" for an ID-Cert, and
	// "keypackage" for a KeyPackage's two signatures. Embedders export it
	// as a metric of cryptographic work; it must be cheap and safe for
	// concurrent use. Default nil.
	SignatureChecks func(kind string)
	// LowKeyPackageThreshold: a LOW_KEY_PACKAGES event is emitted when a
	// session's regular KeyPackages fall below it. Default 10.
	LowKeyPackageThreshold int
	// Homes reaches the home servers of foreign users (route 16 and the
	// foreign form of route 8). Default nil: foreign logins are refused
	// with ErrNotFederated. httpadapter.NewHomeClient is the HTTP
	// implementation.
	Homes HomeServers
	// SelfURL is this server's own URL as home servers know it: the
	// `server` a foreign user's federation token was issued for, sent when
	// redeeming it. It is normalised like a route 1 server URL. Default
	// "https://" + Domain.
	SelfURL string
	// HomeKeyTTL bounds how long a home server's current key is cached
	// before it is fetched again. Default 5 minutes.
	HomeKeyTTL time.Duration
	// ClockSkew is how far ahead of this server's clock a time that
	// another party stamped with its own clock may be: a client key's
	// creation time (route 8; such a key is certified as of its creation,
	// so that GnuPG accepts the certification), a KeyPackage's not_before
	// (routes 12, 13 and 16), and the issue time of an ID-Cert from a
	// foreign user's home server (route 16 and a foreign session's route
	// 8). Clients stamp these with now (go-mls sets not_before to now,
	// GnuPG and RNP date a new key now), so a clock a little fast would
	// otherwise be refused. A time further ahead is refused with a message
	// naming the allowed skew. Default 5 minutes; negative allows none.
	ClockSkew time.Duration
	// ForeignUserIDs returns a candidate local user ID for a foreign FID
	// seen for the first time; the Store keeps the mapping
	// (inside Store.CreateSession). It must never return an ID that is or
	// will be a local user's: embedders whose user IDs are Snowflakes
	// should pass their own generator's Next. It must be safe for
	// concurrent use. Default: a Snowflakes generator with a random worker
	// number.
	ForeignUserIDs func() UserID
	// KeyPackageCredential checks the MLS credential of every KeyPackage
	// a session uploads (routes 12 and 13, and route 16 for the new
	// foreign session) against that session's FID; an error refuses the
	// KeyPackage with ErrInvalidKeyPackage, its text as the reason.
	// Default SameFIDCredential: a basic credential must name the FID.
	// Embedders with another identity scheme pass their own check;
	// func(FID, mls.Credential) error { return nil } accepts every
	// credential.
	KeyPackageCredential func(fid FID, c mls.Credential) error
}

func (c Config) withDefaults() Config {
	if c.Domain == "" {
		c.Domain = DefaultDomain
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Rand == nil {
		c.Rand = rand.Reader
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Events == nil {
		c.Events = discardSink{}
	}
	if c.TokenTTL <= 0 {
		c.TokenTTL = DefaultTokenTTL
	}
	if c.IDCertLifetime <= 0 {
		c.IDCertLifetime = idcert.DefaultCertLifetime
	}
	if c.ServerKeyAlgorithm == "" {
		c.ServerKeyAlgorithm = idcert.ServerEd25519Legacy
	}
	if c.MaxPublicKeySize == 0 {
		c.MaxPublicKeySize = idcert.DefaultMaxArmoredSize
	}
	if len(c.ClientKeyAlgorithms) == 0 {
		c.ClientKeyAlgorithms = idcert.DefaultClientKeyAlgorithms()
	} else {
		c.ClientKeyAlgorithms = slices.Clone(c.ClientKeyAlgorithms)
	}
	if c.MinRSABits == 0 {
		c.MinRSABits = idcert.DefaultMinRSABits
	}
	if c.MaxKeyPackageLifetime == 0 {
		c.MaxKeyPackageLifetime = mls.DefaultMaxLifetime
	}
	if len(c.CipherSuites) > 0 {
		c.CipherSuites = slices.Clone(c.CipherSuites)
	}
	if c.MaxKeyPackagesPerUser <= 0 {
		c.MaxKeyPackagesPerUser = DefaultMaxKeyPackagesPerUser
	}
	if c.MaxSessionsPerUser <= 0 {
		c.MaxSessionsPerUser = DefaultMaxSessionsPerUser
	}
	if c.LowKeyPackageThreshold <= 0 {
		c.LowKeyPackageThreshold = DefaultLowKeyPackageThreshold
	}
	if c.SelfURL == "" {
		c.SelfURL = "https://" + c.Domain
	}
	if c.HomeKeyTTL <= 0 {
		c.HomeKeyTTL = DefaultHomeKeyTTL
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = DefaultClockSkew
	}
	if c.SessionTTL == 0 {
		c.SessionTTL = DefaultSessionTTL
	}
	if c.SessionIdleTTL == 0 {
		c.SessionIdleTTL = DefaultSessionIdleTTL
	}
	c.ServerKeyPassphrase = bytes.Clone(c.ServerKeyPassphrase)
	if c.KeyPackageCredential == nil {
		c.KeyPackageCredential = SameFIDCredential
	}
	if c.ForeignUserIDs == nil {
		// crypto/rand, not c.Rand: a worker number is no secret, and a
		// deterministic test Rand should feed tokens and keys only.
		var w [2]byte
		_, _ = rand.Read(w[:])
		c.ForeignUserIDs = NewSnowflakes(uint16(w[0])<<8|uint16(w[1]), nil).Next
	}
	return c
}

// check returns an error naming the first field of a Config with defaults
// filled in that the Service could not apply.
func (c Config) check() error {
	if _, err := ParseFID("x@" + c.Domain); err != nil {
		return fmt.Errorf("p2core: invalid Config.Domain %q", c.Domain)
	}
	if err := c.ServerKeyAlgorithm.Check(); err != nil {
		return fmt.Errorf("p2core: Config.ServerKeyAlgorithm: %w", err)
	}
	if err := c.clientKeyPolicy().Check(); err != nil {
		return fmt.Errorf("p2core: Config client key policy: %w", err)
	}
	if err := (mls.Options{CipherSuites: c.CipherSuites}).Check(); err != nil {
		return fmt.Errorf("p2core: Config.CipherSuites: %w", err)
	}
	return nil
}

// clientKeyPolicy is the idcert.Policy route 8 applies.
func (c Config) clientKeyPolicy() idcert.Policy {
	return idcert.Policy{MaxArmoredSize: c.MaxPublicKeySize, Algorithms: c.ClientKeyAlgorithms, MinRSABits: c.MinRSABits, ClockSkew: c.skew()}
}

// skew is the clock skew allowed: ClockSkew, or none when it is negative.
func (c Config) skew() time.Duration { return max(c.ClockSkew, 0) }
