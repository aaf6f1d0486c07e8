package p2core

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/p2kit/p2kit/p2core/idcert"
	"github.com/p2kit/p2kit/p2core/mls"
)

// HomeServers is how this server, as a foreign server, talks to the home
// servers of its foreign users. Implementations must be safe for
// concurrent use, honour ctx, and never log or return the token text.
// httpadapter.HomeClient is the HTTP implementation; tests may answer
// from another Service directly.
type HomeServers interface {
	// ServerKey returns the binary OpenPGP public key that the home server
	// of domain says was current at the instant at (route 10; a zero at
	// means now). Errors match ErrUnknownHome when domain has no home
	// server (it cannot be resolved, or the server has no key there) and
	// ErrHomeUnreachable when the home server does not answer usefully
	// (connection failure, timeout, 5xx, malformed or oversized answer).
	ServerKey(ctx context.Context, domain string, at time.Time) ([]byte, error)
	// RedeemToken consumes a federation token at the home server of
	// domain (route 7), for the foreign server self, and returns what the
	// home says about it. The returned FederationToken has no Hash.
	// Errors match ErrTokenInvalid when the home refuses the token, and
	// ErrUnknownHome or ErrHomeUnreachable as for ServerKey.
	RedeemToken(ctx context.Context, domain, token, self string) (FederationToken, error)
}

// ForeignLoginRequest is what a foreign user's client presents to log in
// here (route 16).
type ForeignLoginRequest struct {
	// FederationToken was issued by the user's home server for this
	// server's Config.SelfURL (route 1 there).
	FederationToken string
	// IDCert is the client's ID-Cert from its home server, binary.
	IDCert []byte
	// KeyPackages are 0 to MaxKeyPackagesPerUpload KeyPackages to store
	// for the new session, validated as in route 12 against the key
	// IDCert certifies.
	KeyPackages [][]byte
	// LastResort is an optional last-resort KeyPackage (route 13).
	LastResort []byte
}

// maxForeignTokenLen bounds the federation token text of route 16. A home
// server of another implementation may write tokens differently from
// ours, so only the length and the character set are checked here.
const maxForeignTokenLen = 512

// Bounds of the home key cache.
const (
	maxHomeKeyCacheEntries = 1024
	// homeKeyMinRefetch is the least age of a cached home key before a
	// cert naming another key makes it be fetched again, so that a flood
	// of certs with made-up issuers cannot bypass the cache.
	homeKeyMinRefetch = 10 * time.Second
)

// homeKeyCache keeps the current server key of each home server seen.
type homeKeyCache struct {
	mu      sync.Mutex
	entries map[string]homeKeyEntry
}

type homeKeyEntry struct {
	key     *idcert.ServerKey
	fetched time.Time
}

// isForeign reports whether p is a foreign user's principal: p.Home is set,
// or p's FID names a domain other than Config.Domain. Foreign principals
// send ID-Certs, not public keys, to route 8, and may not issue federation
// tokens.
func (s *Service) isForeign(p Principal) bool {
	return p.Home != "" || !strings.EqualFold(p.FID.Domain(), s.cfg.Domain)
}

// ForeignLogin logs a foreign user in (route 16) and returns the new
// session's bearer token (shown once; stored as its SHA-256) and the
// Session, whose Home is the user's home domain and whose UserID is the
// local ID mapped to the user's FID (the same on every login).
//
// The work is ordered by cost, so that a refused request costs about what
// its cheapest refusal costs and nothing the client can get wrong consumes
// the one-time token: first the structural checks and size caps (the
// token's form, the number of KeyPackages, the cert and every KeyPackage
// decoded without verifying anything); then the ID-Cert's signature, at
// the current time, against the key its home server says it used
// (fetched through Config.Homes, cached for Config.HomeKeyTTL); then the
// Store lookups (the cert's serial not used here before, no init key in
// use); then the token is redeemed at the home with Config.SelfURL and its
// FID compared with the cert's; only then are the KeyPackages' signatures
// verified. The session, its FID mapping, its ID-Cert, its KeyPackages and
// its last resort are stored in one atomic Store operation
// (Store.CreateSession): a failed login leaves nothing behind. The user's
// other sessions get NEW_SESSION once the session is stored.
//
// Once the token is redeemed it is spent: if a later step fails (FID
// mismatch, an invalid KeyPackage signature, a duplicate init_key stored
// meanwhile, a cap, a Store failure) the client needs a new token.
//
// Errors: ErrNotFederated (no Config.Homes), ErrBadRequest (malformed
// request), ErrInvalidIDCert, ErrForbidden (the cert names a user of this
// server), ErrUnknownHome, ErrHomeUnreachable, ErrTokenInvalid,
// ErrFIDMismatch, ErrConflict (the ID-Cert already admitted a session here:
// get a new one from the home server), ErrTooManySessions, and the
// KeyPackage errors of UploadKeyPackages.
func (s *Service) ForeignLogin(ctx context.Context, req ForeignLoginRequest) (string, Session, error) {
	if s.cfg.Homes == nil {
		return "", Session{}, Errorf(ErrNotFederated, "this server does not accept foreign users")
	}
	if !plausibleToken(req.FederationToken) {
		return "", Session{}, Errorf(ErrBadRequest, "federation_token must be 1-%d printable ASCII characters", maxForeignTokenLen)
	}
	if len(req.IDCert) == 0 {
		return "", Session{}, Errorf(ErrBadRequest, "id_cert is required")
	}
	if len(req.KeyPackages) > MaxKeyPackagesPerUpload {
		return "", Session{}, Errorf(ErrBadRequest, "a login carries at most %d KeyPackages, not %d", MaxKeyPackagesPerUpload, len(req.KeyPackages))
	}
	if _, err := idcert.ParseCert(req.IDCert); err != nil {
		return "", Session{}, Errorf(ErrInvalidIDCert, "%s", err.Error())
	}
	all := req.KeyPackages
	if req.LastResort != nil {
		all = append(all[:len(all):len(all)], req.LastResort)
	}
	for i, data := range all {
		if _, err := mls.Decode(data); err != nil {
			return "", Session{}, Errorf(ErrInvalidKeyPackage, "%s: %s", loginKPName(i, len(req.KeyPackages)), err.Error())
		}
	}

	cert, fid, err := s.verifyForeignCert(ctx, req.IDCert, "")
	if err != nil {
		return "", Session{}, err
	}
	domain := fid.Domain()
	if err := admitForeignLogin(ctx, domain); err != nil {
		return "", Session{}, err
	}

	kps := make([]KeyPackage, len(all))
	decoded := make([]*mls.KeyPackage, len(all))
	if len(all) > 0 && len(cert.MLSSignatureKey) == 0 {
		return "", Session{}, Errorf(ErrInvalidKeyPackage, "the ID-Cert certifies a key that has no MLS form (RSA), so no KeyPackage can be bound to it")
	}
	for i, data := range all {
		if kps[i], decoded[i], err = s.decodeKeyPackage(Principal{FID: fid}, data, cert.MLSSignatureKey, loginKPName(i, len(req.KeyPackages))); err != nil {
			return "", Session{}, err
		}
	}
	if err := s.refuseKnownInitKeys(ctx, kps, func(i int) string { return loginKPName(i, len(req.KeyPackages)) }); err != nil {
		return "", Session{}, err
	}
	serial := cert.Serial.String()
	if err := s.checkSerialUnused(ctx, serial); err != nil {
		return "", Session{}, err
	}
	candidate := s.cfg.ForeignUserIDs()
	if candidate == 0 {
		return "", Session{}, errors.New("map foreign FID: user ID 0 (Config.ForeignUserIDs returned 0)")
	}

	// The point of no return: the token is spent from here on.
	tok, err := s.cfg.Homes.RedeemToken(ctx, domain, req.FederationToken, s.cfg.SelfURL)
	if err != nil {
		return "", Session{}, s.homeErr(ctx, domain, "redeem token", err)
	}
	tokFID, err := ParseFID(string(tok.FID))
	if err != nil {
		return "", Session{}, Errorf(ErrHomeUnreachable, "the home server of %s redeemed the token for a malformed federation ID", domain)
	}
	if tokFID != fid {
		s.log.LogAttrs(ctx, slog.LevelInfo, "foreign login refused: FID mismatch", slog.String("home", domain))
		return "", Session{}, Errorf(ErrFIDMismatch, "the federation token was issued to %s, but the ID-Cert certifies %s", tokFID, fid)
	}
	if tok.Server != s.cfg.SelfURL {
		return "", Session{}, Errorf(ErrHomeUnreachable, "the home server of %s redeemed the token for another server", domain)
	}
	// Only now, with the token redeemed, is the KeyPackages' signature
	// work charged and done.
	if err := chargeSignatures(ctx, fid, decoded...); err != nil {
		return "", Session{}, err
	}
	for i, d := range decoded {
		if err := s.validateKeyPackage(d, loginKPName(i, len(req.KeyPackages))); err != nil {
			return "", Session{}, err
		}
	}

	n := NewSession{
		Session:          Session{FID: fid, Home: domain},
		ForeignCandidate: candidate,
		Cert: &IDCert{
			FID: fid, Serial: serial,
			Cert: cert.Raw, SignatureKey: cert.MLSSignatureKey, ServerKeyFingerprint: cert.IssuerFingerprint,
			IssuedAt: cert.IssuedAt.UTC(), ExpiresAt: cert.Expires.UTC(),
		},
		KeyPackages: kps[:len(req.KeyPackages)],
	}
	if req.LastResort != nil {
		n.LastResort = &kps[len(kps)-1]
	}
	token, sess, err := s.storeSession(ctx, n)
	if errors.Is(err, ErrConflict) {
		return "", Session{}, Errorf(ErrConflict, "this ID-Cert already admitted a session here; get a new ID-Cert from your home server")
	}
	if err != nil {
		return "", Session{}, s.storeErr(err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "foreign session created", slog.String("user_id", sess.UserID.String()), slog.String("session_id", string(sess.SessionID)), slog.String("home", domain), slog.Int("keypackages", len(n.KeyPackages)))
	return token, sess, nil
}

// loginKPName names KeyPackage i of a route-16 request with n regular
// KeyPackages (i == n is the last resort) in error messages.
func loginKPName(i, n int) string {
	if i == n {
		return "last-resort KeyPackage"
	}
	return fmt.Sprintf("KeyPackage %d", i)
}

// recordForeignIDCert records a new ID-Cert for the caller's foreign
// session (the foreign form of route 8) and returns it as stored. The cert
// must verify now against its home server's key (as in ForeignLogin),
// certify the caller's FID, carry the same session-id notation as the
// session's current cert (it names the client's session at its home, so a
// cert for another home session cannot be slipped into this one), and be
// no older than the current cert. It supersedes the current cert and the
// user's other sessions get CLIENT_KEY_CHANGE. Presenting the current cert
// again returns it unchanged, with no event.
func (s *Service) recordForeignIDCert(ctx context.Context, p Principal, raw []byte) (IDCert, error) {
	if s.cfg.Homes == nil {
		return IDCert{}, Errorf(ErrNotFederated, "this server does not accept foreign users")
	}
	if len(raw) == 0 {
		return IDCert{}, Errorf(ErrBadRequest, "an ID-Cert is required")
	}
	cur, err := s.store.CurrentIDCert(ctx, p.UserID, p.SessionID)
	if errors.Is(err, ErrNotFound) {
		return IDCert{}, Errorf(ErrNoIDCert, "this session has no ID-Cert to replace; log in again")
	}
	if err != nil {
		return IDCert{}, fmt.Errorf("load ID-Cert: %w", err)
	}
	curParsed, err := idcert.ParseCert(cur.Cert)
	if err != nil {
		return IDCert{}, fmt.Errorf("parse stored ID-Cert %s: %w", cur.Serial, err)
	}
	cert, fid, err := s.verifyForeignCert(ctx, raw, p.FID)
	if err != nil {
		return IDCert{}, err
	}
	serial := cert.Serial.String()
	if serial == cur.Serial {
		return cur, nil
	}
	if cert.SessionID != curParsed.SessionID {
		return IDCert{}, Errorf(ErrInvalidIDCert, "the ID-Cert was issued to home session %q, but this session belongs to home session %q", truncate(cert.SessionID, 32), truncate(curParsed.SessionID, 32))
	}
	if cert.IssuedAt.Before(cur.IssuedAt) {
		return IDCert{}, Errorf(ErrInvalidIDCert, "the ID-Cert was issued at %s, before this session's current one (%s)", cert.IssuedAt.Format(time.RFC3339), cur.IssuedAt.UTC().Format(time.RFC3339))
	}
	c := IDCert{
		UserID: p.UserID, SessionID: p.SessionID, FID: fid, Serial: serial,
		Cert: cert.Raw, SignatureKey: cert.MLSSignatureKey, ServerKeyFingerprint: cert.IssuerFingerprint,
		IssuedAt: cert.IssuedAt.UTC(), ExpiresAt: cert.Expires.UTC(),
	}
	if err := s.store.PutIDCert(ctx, c); err != nil {
		if errors.Is(err, ErrConflict) {
			return IDCert{}, Errorf(ErrConflict, "an ID-Cert with serial %s was already recorded here", serial)
		}
		return IDCert{}, fmt.Errorf("store ID-Cert: %w", err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "foreign ID-Cert recorded", slog.String("user_id", p.UserID.String()), slog.String("session_id", string(p.SessionID)), slog.String("serial", serial))
	// The user's other sessions learn of the new key.
	s.publish(ctx, Event{Type: EventClientKeyChange, UserID: p.UserID, Except: p.SessionID, Time: c.IssuedAt,
		Payload: ClientKeyChangePayload{SessionID: p.SessionID, Serial: c.Serial, IDCert: c.Cert, ExpiresAt: c.ExpiresAt.Unix()}})
	return c, nil
}

// verifyForeignCert parses raw, finds the home server of the FID it
// certifies (which must be want when want is not empty) and verifies it at
// the current time against the key that home server used when it issued
// the cert. It returns the verified cert and its FID.
//
// The home's current key is cached per domain for Config.HomeKeyTTL. A cert
// naming another issuer key makes the cached key be fetched again once
// (when it is older than homeKeyMinRefetch), since the home may have
// rotated; if the cert still names another key, the key the home says was
// current at the cert's issue time is fetched and must be that key. A
// verification failure with the very key the cert names is final: a
// fingerprint identifies the key material, so fetching it again cannot
// change the outcome.
func (s *Service) verifyForeignCert(ctx context.Context, raw []byte, want FID) (*idcert.Cert, FID, error) {
	parsed, err := idcert.ParseCert(raw)
	if err != nil {
		return nil, "", Errorf(ErrInvalidIDCert, "%s", err.Error())
	}
	fid, err := ParseFID(parsed.FID)
	if err != nil {
		return nil, "", Errorf(ErrInvalidIDCert, "the ID-Cert certifies %q, which is not a federation ID", truncate(parsed.FID, 64))
	}
	if want != "" && fid != want {
		return nil, "", Errorf(ErrInvalidIDCert, "the ID-Cert certifies %s, not %s", fid, want)
	}
	domain := fid.Domain()
	if strings.EqualFold(domain, s.cfg.Domain) {
		return nil, "", Errorf(ErrForbidden, "%s is a user of this server: log in here directly", fid)
	}
	e, cached, err := s.currentHomeKey(ctx, domain, false)
	if err != nil {
		return nil, "", err
	}
	if !sameKey(e.key, parsed) && cached && s.now().Sub(e.fetched) >= homeKeyMinRefetch {
		if e, _, err = s.currentHomeKey(ctx, domain, true); err != nil {
			return nil, "", err
		}
	}
	key := e.key
	if !sameKey(key, parsed) {
		// Not the current key: perhaps one the home used before a
		// rotation (homes keep old keys so old certs stay verifiable).
		old, err := s.fetchHomeKey(ctx, domain, parsed.IssuedAt)
		if errors.Is(err, ErrUnknownHome) {
			return nil, "", Errorf(ErrInvalidIDCert, "the home server of %s had no server key at %s, when the ID-Cert claims to have been issued", domain, parsed.IssuedAt.Format(time.RFC3339))
		}
		if err != nil {
			return nil, "", err
		}
		if !sameKey(old, parsed) {
			return nil, "", Errorf(ErrInvalidIDCert, "the ID-Cert was not signed by the key the home server of %s used at %s", domain, parsed.IssuedAt.Format(time.RFC3339))
		}
		key = old
	}
	// A home whose clock runs ahead dates its certs in our future: up to
	// the allowed skew, the cert is verified as of its issue time.
	at := s.now()
	if ahead := parsed.IssuedAt.Sub(at); ahead > s.cfg.skew() {
		return nil, "", Errorf(ErrInvalidIDCert, "the ID-Cert was issued at %s, %s in the future of this server's clock: more than the allowed clock skew of %s", parsed.IssuedAt.UTC().Format(time.RFC3339), ahead, s.cfg.skew())
	} else if ahead > 0 {
		at = parsed.IssuedAt
	}
	s.countSignature("id_cert")
	c, err := idcert.Verify(raw, key, at)
	if err != nil {
		return nil, "", Errorf(ErrInvalidIDCert, "%s", err.Error())
	}
	if vfid, err := ParseFID(c.FID); err != nil || vfid != fid {
		return nil, "", Errorf(ErrInvalidIDCert, "the verified ID-Cert certifies %q, not %s", truncate(c.FID, 64), fid)
	}
	return c, fid, nil
}

func sameKey(k *idcert.ServerKey, c *idcert.Cert) bool {
	return bytes.Equal(k.Fingerprint(), c.IssuerFingerprint)
}

// currentHomeKey returns the current key of domain's home server, from the
// cache unless it is older than Config.HomeKeyTTL or fresh is set. cached
// reports whether the entry came from the cache.
func (s *Service) currentHomeKey(ctx context.Context, domain string, fresh bool) (homeKeyEntry, bool, error) {
	c := &s.homeKeys
	if !fresh {
		c.mu.Lock()
		e, ok := c.entries[domain]
		c.mu.Unlock()
		if age := s.now().Sub(e.fetched); ok && age >= 0 && age < s.cfg.HomeKeyTTL {
			return e, true, nil
		}
	}
	k, err := s.fetchHomeKey(ctx, domain, time.Time{})
	if err != nil {
		return homeKeyEntry{}, false, err
	}
	e := homeKeyEntry{key: k, fetched: s.now()}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]homeKeyEntry{}
	}
	if _, ok := c.entries[domain]; !ok && len(c.entries) >= maxHomeKeyCacheEntries {
		for d, old := range c.entries {
			if age := e.fetched.Sub(old.fetched); age < 0 || age >= s.cfg.HomeKeyTTL {
				delete(c.entries, d)
			}
		}
		for d := range c.entries {
			if len(c.entries) < maxHomeKeyCacheEntries {
				break
			}
			delete(c.entries, d) // an arbitrary victim: map order
		}
	}
	c.entries[domain] = e
	return e, false, nil
}

// fetchHomeKey asks domain's home server for its key current at at (zero:
// now) and checks that the key belongs to that domain.
func (s *Service) fetchHomeKey(ctx context.Context, domain string, at time.Time) (*idcert.ServerKey, error) {
	data, err := s.cfg.Homes.ServerKey(ctx, domain, at)
	if err != nil {
		return nil, s.homeErr(ctx, domain, "server key", err)
	}
	k, err := idcert.ParsePublicServerKey(data)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "home server sent an unreadable key", slog.String("home", domain), slog.String("error", err.Error()))
		return nil, Errorf(ErrHomeUnreachable, "the home server of %s answered with an unreadable server key", domain)
	}
	if !strings.EqualFold(k.Domain(), domain) {
		return nil, Errorf(ErrUnknownHome, "the server found as the home of %s has the key of %q", domain, truncate(k.Domain(), 64))
	}
	return k, nil
}

// homeErr logs a failed request to a home server and makes sure the error
// matches one of the sentinels HomeServers documents (or the context's).
func (s *Service) homeErr(ctx context.Context, domain, what string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, ErrTokenInvalid) {
		return err
	}
	// Debug: the failure reaches the caller (the adapter logs it once,
	// at Info), and anonymous callers can cause it at will.
	s.log.LogAttrs(ctx, slog.LevelDebug, "home server request failed", slog.String("home", domain), slog.String("request", what), slog.String("error", err.Error()))
	if errors.Is(err, ErrUnknownHome) || errors.Is(err, ErrHomeUnreachable) {
		return err
	}
	return fmt.Errorf("%w: %w", Errorf(ErrHomeUnreachable, "the home server of %s did not answer usefully", domain), err)
}

// checkSerialUnused refuses a cert whose serial is already stored: the
// Store refuses duplicate serials, and finding out before the token is
// redeemed keeps the token usable.
func (s *Service) checkSerialUnused(ctx context.Context, serial string) error {
	_, err := s.store.IDCertBySerial(ctx, serial)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("look up ID-Cert serial: %w", err)
	}
	return Errorf(ErrConflict, "this ID-Cert already admitted a session here; get a new ID-Cert from your home server")
}

// plausibleToken reports whether tok may be a federation token of some
// home server: 1 to maxForeignTokenLen printable ASCII characters.
func plausibleToken(tok string) bool {
	if tok == "" || len(tok) > maxForeignTokenLen {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < 0x21 || tok[i] > 0x7e {
			return false
		}
	}
	return true
}
