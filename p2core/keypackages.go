package p2core

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/p2kit/p2kit/p2core/mls"
)

// MaxKeyPackagesPerUpload is the most KeyPackages one upload (route 12)
// may carry.
const MaxKeyPackagesPerUpload = 100

// LowKeyPackagesPayload is the payload of LOW_KEY_PACKAGES: the session
// should upload more KeyPackages (or a new last resort).
type LowKeyPackagesPayload struct {
	// Available is the session's count of regular KeyPackages left.
	Available int `json:"available"`
	// LastResortUsed is true when the last-resort KeyPackage was handed out.
	LastResortUsed bool `json:"last_resort_used"`
	// Reason is "claimed" (a claim left the supply low) or
	// "server_key_change" (a new server key: sessions should get new
	// ID-Certs and fresh KeyPackages).
	Reason string `json:"reason"`
}

func (s *Service) mlsOptions() mls.Options {
	return mls.Options{Now: s.cfg.Now, MaxLifetime: s.cfg.MaxKeyPackageLifetime, CipherSuites: s.cfg.CipherSuites, ClockSkew: s.cfg.skew()}
}

// currentSignatureKey returns the MLS signature key certified by the
// session's current, unexpired ID-Cert, or ErrNoIDCert.
func (s *Service) currentSignatureKey(ctx context.Context, p Principal) ([]byte, error) {
	c, err := s.store.CurrentIDCert(ctx, p.UserID, p.SessionID)
	if errors.Is(err, ErrNotFound) {
		return nil, Errorf(ErrNoIDCert, "this session has no ID-Cert; get one at POST /p2core/key/user/@me first")
	}
	if err != nil {
		return nil, fmt.Errorf("load ID-Cert: %w", err)
	}
	// A cert dated up to the clock skew ahead (a key from a fast client
	// clock is certified as of its creation) counts as current.
	if now := s.now(); !c.ValidAt(now) && !c.ValidAt(now.Add(s.cfg.skew())) {
		return nil, Errorf(ErrNoIDCert, "this session's ID-Cert has expired; get a new one at POST /p2core/key/user/@me")
	}
	if len(c.SignatureKey) == 0 {
		return nil, Errorf(ErrNoIDCert, "this session's ID-Cert certifies a key that has no MLS form (RSA)")
	}
	return c.SignatureKey, nil
}

// SameFIDCredential is the default Config.KeyPackageCredential: a basic
// credential's identity must be fid, compared ASCII case-insensitively as
// FIDs are (so no Unicode look-alike passes), because a KeyPackage is
// handed out as the key of the session that uploaded it and a client adding
// it to a group shows that identity. An x509 credential is accepted: its
// chain is for the group's members to check.
func SameFIDCredential(fid FID, c mls.Credential) error {
	if c.Type != mls.CredentialBasic {
		return nil
	}
	if !asciiEqualFold(c.Identity, string(fid)) {
		return fmt.Errorf("the basic credential's identity %q is not this session's federation ID %s", truncate(string(c.Identity), 64), fid)
	}
	return nil
}

// asciiEqualFold reports whether b and s are equal when ASCII letters are
// folded to lower case; any other byte must match exactly.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		x, y := b[i], s[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// decodeKeyPackage does the cheap half of checking an uploaded KeyPackage
// for p (what names it in error messages): it decodes
// data, does every check of mls.Check, and checks that its signature key
// is sigKey, verifying no signature.
func (s *Service) decodeKeyPackage(p Principal, data []byte, sigKey []byte, what string) (KeyPackage, *mls.KeyPackage, error) {
	kp, err := mls.Decode(data)
	if err == nil {
		err = mls.Check(kp, s.mlsOptions())
	}
	if err != nil {
		return KeyPackage{}, nil, Errorf(ErrInvalidKeyPackage, "%s: %s", what, err.Error())
	}
	if !bytes.Equal(kp.SignatureKey, sigKey) {
		return KeyPackage{}, nil, Errorf(ErrInvalidKeyPackage, "%s: leaf_node.signature_key is not the key certified by this session's ID-Cert", what)
	}
	if err := s.cfg.KeyPackageCredential(p.FID, kp.Credential); err != nil {
		return KeyPackage{}, nil, Errorf(ErrInvalidKeyPackage, "%s: leaf_node.credential: %s", what, err.Error())
	}
	ref, err := kp.Ref()
	if err != nil {
		return KeyPackage{}, nil, Errorf(ErrInvalidKeyPackage, "%s: %s", what, err.Error())
	}
	return KeyPackage{
		UserID: p.UserID, SessionID: p.SessionID, Ref: ref, CipherSuite: kp.CipherSuite,
		InitKey: kp.InitKey, Data: kp.Raw, NotAfter: kp.NotAfterTime(), UploadedAt: s.now(),
	}, kp, nil
}

// validateKeyPackage does the expensive half of the check: the two
// signatures of a KeyPackage decodeKeyPackage accepted.
func (s *Service) validateKeyPackage(kp *mls.KeyPackage, what string) error {
	s.countSignature("keypackage")
	if err := mls.VerifySignatures(kp); err != nil {
		return Errorf(ErrInvalidKeyPackage, "%s: %s", what, err.Error())
	}
	return nil
}

// refuseKnownInitKeys refuses kps, before any signature is verified, when
// two of them share an init key or one's init key is already stored or
// handed out and unexpired, so a re-upload costs one Store lookup. The
// Store decides again, atomically, when it stores them. name names
// KeyPackage i in messages.
func (s *Service) refuseKnownInitKeys(ctx context.Context, kps []KeyPackage, name func(int) string) error {
	if len(kps) == 0 {
		return nil
	}
	if _, err := CheckUpload(kps, nil, s.now()); err != nil {
		return s.storeErr(err)
	}
	keys := make([][]byte, len(kps))
	for i := range kps {
		keys[i] = kps[i].InitKey
	}
	i, err := s.store.InitKeyInUse(ctx, keys, s.now())
	if err != nil {
		return s.storeErr(err)
	}
	if i >= 0 {
		return Errorf(ErrDuplicateKeyPackage, "%s: a KeyPackage with the same init_key is stored or was handed out and has not expired", name(i))
	}
	return nil
}

// countSignature reports one signature verification to
// Config.SignatureChecks.
func (s *Service) countSignature(kind string) {
	if s.cfg.SignatureChecks != nil {
		s.cfg.SignatureChecks(kind)
	}
}

// uploadKPName names KeyPackage i of an upload in messages.
func uploadKPName(i int) string { return fmt.Sprintf("KeyPackage %d", i) }

// UploadKeyPackages validates and stores 1 to 100 KeyPackages for the
// caller's session (route 12), all or none. The cheap checks of every
// KeyPackage (decoding, every check but the signatures, the binding to the
// session's ID-Cert, init keys repeated or already taken, looked up in the
// Store) run first, so a re-upload is refused before any signature is
// verified; then the signature
// work is charged to the request (RequestLimits.SignatureWork); only then
// are the signatures verified, one KeyPackage at a time, stopping at the
// first failure. Errors: ErrInvalidKeyPackage (naming the index and the
// reason), ErrNoIDCert, ErrDuplicateKeyPackage, ErrTooManyKeyPackages,
// and whatever the request's limits return.
func (s *Service) UploadKeyPackages(ctx context.Context, p Principal, packages [][]byte) error {
	if err := requireUser(p); err != nil {
		return err
	}
	if len(packages) == 0 || len(packages) > MaxKeyPackagesPerUpload {
		return Errorf(ErrBadRequest, "an upload carries 1 to %d KeyPackages, not %d", MaxKeyPackagesPerUpload, len(packages))
	}
	sigKey, err := s.currentSignatureKey(ctx, p)
	if err != nil {
		return err
	}
	kps := make([]KeyPackage, len(packages))
	decoded := make([]*mls.KeyPackage, len(packages))
	for i, data := range packages {
		if kps[i], decoded[i], err = s.decodeKeyPackage(p, data, sigKey, uploadKPName(i)); err != nil {
			return err
		}
	}
	if err := s.refuseKnownInitKeys(ctx, kps, uploadKPName); err != nil {
		return err
	}
	if err := chargeSignatures(ctx, p.FID, decoded...); err != nil {
		return err
	}
	for i, kp := range decoded {
		if err := s.validateKeyPackage(kp, uploadKPName(i)); err != nil {
			return err
		}
	}
	return s.storeErr(s.store.AddKeyPackages(ctx, kps, s.cfg.MaxKeyPackagesPerUser, s.now()))
}

// SetLastResortKeyPackage validates data and makes it the caller's
// session's last-resort KeyPackage (route 13), clearing its used flag.
// The cheap checks run first and the signature work is charged before the
// signatures are verified, as in UploadKeyPackages; there is no init-key
// lookup first, since the session's current last resort, which the new one
// may repeat, is in use for InitKeyInUse but not for SetLastResort, and one
// KeyPackage costs at most one charged verification. Errors as
// UploadKeyPackages.
func (s *Service) SetLastResortKeyPackage(ctx context.Context, p Principal, data []byte) error {
	if err := requireUser(p); err != nil {
		return err
	}
	sigKey, err := s.currentSignatureKey(ctx, p)
	if err != nil {
		return err
	}
	kp, decoded, err := s.decodeKeyPackage(p, data, sigKey, "last-resort KeyPackage")
	if err != nil {
		return err
	}
	if err := chargeSignatures(ctx, p.FID, decoded); err != nil {
		return err
	}
	if err := s.validateKeyPackage(decoded, "last-resort KeyPackage"); err != nil {
		return err
	}
	return s.storeErr(s.store.SetLastResort(ctx, kp, s.now()))
}

// storeErr gives the Store's refusals of sessions and KeyPackages a
// message for the caller.
func (s *Service) storeErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrDuplicateKeyPackage):
		return Errorf(ErrDuplicateKeyPackage, "a KeyPackage with the same init_key is stored or was handed out and has not expired")
	case errors.Is(err, ErrTooManyKeyPackages):
		return Errorf(ErrTooManyKeyPackages, "a user may hold at most %d KeyPackages across all sessions", s.cfg.MaxKeyPackagesPerUser)
	case errors.Is(err, ErrTooManySessions):
		return Errorf(ErrTooManySessions, "a user may have at most %d sessions; end one first", s.cfg.MaxSessionsPerUser)
	case errors.Is(err, ErrUnavailable):
		return err
	default:
		return fmt.Errorf("store: %w", err)
	}
}

// ClaimKeyPackages hands out one KeyPackage per session of user (route 14):
// the oldest unexpired regular one, removed atomically, else the session's
// last resort. suite 0 means any cipher suite. Sessions that have ended by
// themselves (Config.SessionTTL, Config.SessionIdleTTL, a foreign
// session's expired or missing ID-Cert) are skipped by the Store in the
// same atomic step, not ended: AuthenticateSession and Sessions end them
// when they next see them. Sessions whose supply runs low get
// LOW_KEY_PACKAGES. Any authenticated principal may claim.
func (s *Service) ClaimKeyPackages(ctx context.Context, p Principal, user UserID, suite uint16) ([]ClaimedKeyPackage, error) {
	if err := requireUser(p); err != nil {
		return nil, err
	}
	if user == 0 {
		return nil, Errorf(ErrInvalidUserID, "user ID must be positive")
	}
	now := s.now()
	claimed, err := s.store.ClaimKeyPackages(ctx, user, suite, now, s.sessionEnds(now))
	if err != nil {
		return nil, fmt.Errorf("claim KeyPackages: %w", err)
	}
	for _, c := range claimed {
		if c.LastResort || c.Remaining < s.cfg.LowKeyPackageThreshold {
			s.publish(ctx, Event{Type: EventLowKeyPackages, UserID: user, Sessions: []SessionID{c.SessionID},
				Payload: LowKeyPackagesPayload{Available: c.Remaining, LastResortUsed: c.LastResort, Reason: "claimed"}})
		}
	}
	return claimed, nil
}

// KeyPackageStatus returns the caller's session's KeyPackage supply (route
// 15).
func (s *Service) KeyPackageStatus(ctx context.Context, p Principal) (KeyPackageStatus, error) {
	if err := requireUser(p); err != nil {
		return KeyPackageStatus{}, err
	}
	st, err := s.store.KeyPackageStatus(ctx, p.UserID, p.SessionID, s.now())
	if err != nil {
		return KeyPackageStatus{}, fmt.Errorf("KeyPackage status: %w", err)
	}
	st.Low = st.Available < s.cfg.LowKeyPackageThreshold
	return st, nil
}
