// Package customstore is the worked example of the guide for storage
// backend authors (README.md in this folder): MetricsStore, a p2core.Store
// that wraps any other one and counts calls, refusals and failures per
// method, and logs slow calls.
//
// It shows the parts of a backend that are not storage: every method of
// the composed p2core.Store interface implemented explicitly, the caller's
// context passed through, errors returned unchanged so errors.Is still
// finds the p2core sentinels, and logs that never carry a secret (token
// hashes, keys, KeyPackage bytes): only method names, user and session
// IDs, durations and error texts. Its test is the whole conformance suite,
// storage/storetest, run over a wrapped memstore.
package customstore

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// Options configures a MetricsStore. The zero value gives the documented
// defaults.
type Options struct {
	// SlowThreshold is the duration from which a call is logged as slow.
	// Zero means 100ms; negative disables slow-call logging.
	SlowThreshold time.Duration
	// Logger receives a Warn record per slow call. Nil means no logging.
	Logger *slog.Logger
	// Now is the clock used to time calls. Nil means time.Now.
	Now func() time.Time
}

// DefaultSlowThreshold is Options.SlowThreshold when zero.
const DefaultSlowThreshold = 100 * time.Millisecond

// method indexes the per-method counters.
type method int

const (
	mCreateToken method = iota
	mRedeemToken
	mDeleteUserTokens
	mDeleteAllTokens
	mPurgeExpiredTokens
	mSetting
	mPutSetting
	mCreateSetting
	mCreateSession
	mSessionByToken
	mSessions
	mTouchSession
	mEndSession
	mPutIDCert
	mIDCertBySerial
	mCurrentIDCert
	mIDCertsAt
	mServerKeys
	mAddServerKey
	mAddKeyPackages
	mSetLastResort
	mClaimKeyPackages
	mInitKeyInUse
	mKeyPackageStatus
	mPurgeExpiredKeyPackages
	mClose
	numMethods
)

var methodNames = [numMethods]string{
	"CreateToken", "RedeemToken", "DeleteUserTokens", "DeleteAllTokens", "PurgeExpiredTokens",
	"Setting", "PutSetting", "CreateSetting",
	"CreateSession", "SessionByToken", "Sessions", "TouchSession", "EndSession",
	"PutIDCert", "IDCertBySerial", "CurrentIDCert", "IDCertsAt",
	"ServerKeys", "AddServerKey",
	"AddKeyPackages", "SetLastResort", "ClaimKeyPackages", "InitKeyInUse", "KeyPackageStatus", "PurgeExpiredKeyPackages",
	"Close",
}

type counters struct {
	calls, refusals, failures, slow atomic.Int64
	nanos                           atomic.Int64
}

// MethodStats are the counters of one Store method.
type MethodStats struct {
	// Method is the Store method's name, e.g. "ClaimKeyPackages".
	Method string
	// Calls counts every call, finished or not.
	Calls int64
	// Refusals counts calls that returned an outcome the contract
	// documents: ErrNotFound, ErrConflict, ErrTokenInvalid,
	// ErrDuplicateKeyPackage, ErrTooManyKeyPackages or ErrTooManySessions.
	Refusals int64
	// Failures counts every other error: internal failures, ErrClosed and
	// cancelled or expired contexts.
	Failures int64
	// Slow counts calls that took SlowThreshold or longer.
	Slow int64
	// Total is the time spent in finished calls.
	Total time.Duration
}

// MetricsStore is a p2core.Store that passes every call to another Store
// and counts it. It adds no semantics of its own, so it is exactly as
// atomic and as safe for concurrent use as the Store it wraps (all
// p2core.Stores are), and its counters are safe for concurrent use.
type MetricsStore struct {
	next p2core.Store
	slow time.Duration
	log  *slog.Logger
	now  func() time.Time
	c    [numMethods]counters
}

// The compiler checks that *MetricsStore is a p2core.Store.
var _ p2core.Store = (*MetricsStore)(nil)

// NewMetricsStore returns a MetricsStore around next. opts is copied.
func NewMetricsStore(next p2core.Store, opts Options) *MetricsStore {
	m := &MetricsStore{next: next, slow: opts.SlowThreshold, log: opts.Logger, now: opts.Now}
	if m.slow == 0 {
		m.slow = DefaultSlowThreshold
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m
}

// Stats returns the counters of every method, in the order of the Store
// interfaces.
func (m *MetricsStore) Stats() []MethodStats {
	out := make([]MethodStats, numMethods)
	for i := range out {
		c := &m.c[i]
		out[i] = MethodStats{
			Method:   methodNames[i],
			Calls:    c.calls.Load(),
			Refusals: c.refusals.Load(),
			Failures: c.failures.Load(),
			Slow:     c.slow.Load(),
			Total:    time.Duration(c.nanos.Load()),
		}
	}
	return out
}

// contractErrors are the outcomes the Store contract documents.
var contractErrors = []error{p2core.ErrNotFound, p2core.ErrConflict, p2core.ErrTokenInvalid,
	p2core.ErrDuplicateKeyPackage, p2core.ErrTooManyKeyPackages, p2core.ErrTooManySessions}

// call is one call in progress.
type call struct {
	m     *MetricsStore
	id    method
	start time.Time
}

func (m *MetricsStore) begin(id method) call {
	m.c[id].calls.Add(1)
	return call{m: m, id: id, start: m.now()}
}

// end counts the outcome and logs the call if it was slow. attrs describe
// the call and must never hold secrets: IDs only, no hashes, keys or
// KeyPackage bytes.
func (c call) end(ctx context.Context, err error, attrs ...slog.Attr) {
	m, ctr := c.m, &c.m.c[c.id]
	d := m.now().Sub(c.start)
	ctr.nanos.Add(int64(d))
	if err != nil {
		refused := false
		for _, target := range contractErrors {
			if errors.Is(err, target) {
				refused = true
				break
			}
		}
		if refused {
			ctr.refusals.Add(1)
		} else {
			ctr.failures.Add(1)
		}
	}
	if m.slow < 0 || d < m.slow {
		return
	}
	ctr.slow.Add(1)
	if m.log == nil {
		return
	}
	attrs = append([]slog.Attr{slog.String("method", methodNames[c.id]), slog.Duration("duration", d)}, attrs...)
	if err != nil {
		attrs = append(attrs, slog.String("error", err.Error()))
	}
	m.log.LogAttrs(ctx, slog.LevelWarn, "slow store call", attrs...)
}

func user(u p2core.UserID) slog.Attr       { return slog.String("user_id", u.String()) }
func session(s p2core.SessionID) slog.Attr { return slog.String("session_id", string(s)) }

// Close implements p2core.Store.
func (m *MetricsStore) Close() error {
	c := m.begin(mClose)
	err := m.next.Close()
	c.end(context.Background(), err)
	return err
}

// CreateToken implements p2core.TokenStore.
func (m *MetricsStore) CreateToken(ctx context.Context, t p2core.FederationToken) error {
	c := m.begin(mCreateToken)
	err := m.next.CreateToken(ctx, t)
	c.end(ctx, err, user(t.UserID))
	return err
}

// RedeemToken implements p2core.TokenStore.
func (m *MetricsStore) RedeemToken(ctx context.Context, hash [32]byte, server string, now time.Time) (p2core.FederationToken, error) {
	c := m.begin(mRedeemToken)
	t, err := m.next.RedeemToken(ctx, hash, server, now)
	c.end(ctx, err, slog.String("server", server))
	return t, err
}

// DeleteUserTokens implements p2core.TokenStore.
func (m *MetricsStore) DeleteUserTokens(ctx context.Context, u p2core.UserID) (int, error) {
	c := m.begin(mDeleteUserTokens)
	n, err := m.next.DeleteUserTokens(ctx, u)
	c.end(ctx, err, user(u))
	return n, err
}

// DeleteAllTokens implements p2core.TokenStore.
func (m *MetricsStore) DeleteAllTokens(ctx context.Context) (int, error) {
	c := m.begin(mDeleteAllTokens)
	n, err := m.next.DeleteAllTokens(ctx)
	c.end(ctx, err)
	return n, err
}

// PurgeExpiredTokens implements p2core.TokenStore.
func (m *MetricsStore) PurgeExpiredTokens(ctx context.Context, now time.Time) (int, error) {
	c := m.begin(mPurgeExpiredTokens)
	n, err := m.next.PurgeExpiredTokens(ctx, now)
	c.end(ctx, err)
	return n, err
}

// Setting implements p2core.SettingsStore. Keys are logged, values never.
func (m *MetricsStore) Setting(ctx context.Context, key string) ([]byte, error) {
	c := m.begin(mSetting)
	v, err := m.next.Setting(ctx, key)
	c.end(ctx, err, slog.String("key", key))
	return v, err
}

// PutSetting implements p2core.SettingsStore.
func (m *MetricsStore) PutSetting(ctx context.Context, key string, value []byte) error {
	c := m.begin(mPutSetting)
	err := m.next.PutSetting(ctx, key, value)
	c.end(ctx, err, slog.String("key", key))
	return err
}

// CreateSetting implements p2core.SettingsStore.
func (m *MetricsStore) CreateSetting(ctx context.Context, key string, value []byte) error {
	c := m.begin(mCreateSetting)
	err := m.next.CreateSetting(ctx, key, value)
	c.end(ctx, err, slog.String("key", key))
	return err
}

// CreateSession implements p2core.Store.
func (m *MetricsStore) CreateSession(ctx context.Context, n p2core.NewSession, lim p2core.Limits, now time.Time) (p2core.Session, error) {
	c := m.begin(mCreateSession)
	s, err := m.next.CreateSession(ctx, n, lim, now)
	c.end(ctx, err, user(s.UserID), session(n.SessionID), slog.Int("keypackages", len(n.KeyPackages)))
	return s, err
}

// SessionByToken implements p2core.SessionStore.
func (m *MetricsStore) SessionByToken(ctx context.Context, hash [32]byte) (p2core.Session, error) {
	c := m.begin(mSessionByToken)
	s, err := m.next.SessionByToken(ctx, hash)
	c.end(ctx, err)
	return s, err
}

// TouchSession implements p2core.SessionStore.
func (m *MetricsStore) TouchSession(ctx context.Context, u p2core.UserID, sid p2core.SessionID, at time.Time) error {
	c := m.begin(mTouchSession)
	err := m.next.TouchSession(ctx, u, sid, at)
	c.end(ctx, err, slog.String("user_id", u.String()), slog.String("session_id", string(sid)))
	return err
}

// Sessions implements p2core.SessionStore.
func (m *MetricsStore) Sessions(ctx context.Context, u p2core.UserID) ([]p2core.Session, error) {
	c := m.begin(mSessions)
	ss, err := m.next.Sessions(ctx, u)
	c.end(ctx, err, user(u))
	return ss, err
}

// EndSession implements p2core.Store.
func (m *MetricsStore) EndSession(ctx context.Context, u p2core.UserID, s p2core.SessionID, now time.Time) error {
	c := m.begin(mEndSession)
	err := m.next.EndSession(ctx, u, s, now)
	c.end(ctx, err, user(u), session(s))
	return err
}

// PutIDCert implements p2core.CertStore.
func (m *MetricsStore) PutIDCert(ctx context.Context, cert p2core.IDCert) error {
	c := m.begin(mPutIDCert)
	err := m.next.PutIDCert(ctx, cert)
	c.end(ctx, err, user(cert.UserID), session(cert.SessionID))
	return err
}

// IDCertBySerial implements p2core.CertStore.
func (m *MetricsStore) IDCertBySerial(ctx context.Context, serial string) (p2core.IDCert, error) {
	c := m.begin(mIDCertBySerial)
	cert, err := m.next.IDCertBySerial(ctx, serial)
	c.end(ctx, err, slog.String("serial", serial))
	return cert, err
}

// CurrentIDCert implements p2core.CertStore.
func (m *MetricsStore) CurrentIDCert(ctx context.Context, u p2core.UserID, s p2core.SessionID) (p2core.IDCert, error) {
	c := m.begin(mCurrentIDCert)
	cert, err := m.next.CurrentIDCert(ctx, u, s)
	c.end(ctx, err, user(u), session(s))
	return cert, err
}

// IDCertsAt implements p2core.CertStore.
func (m *MetricsStore) IDCertsAt(ctx context.Context, u p2core.UserID, at time.Time) ([]p2core.IDCert, error) {
	c := m.begin(mIDCertsAt)
	certs, err := m.next.IDCertsAt(ctx, u, at)
	c.end(ctx, err, user(u))
	return certs, err
}

// ServerKeys implements p2core.ServerKeyStore.
func (m *MetricsStore) ServerKeys(ctx context.Context) ([]p2core.ServerKey, error) {
	c := m.begin(mServerKeys)
	keys, err := m.next.ServerKeys(ctx)
	c.end(ctx, err)
	return keys, err
}

// AddServerKey implements p2core.ServerKeyStore.
func (m *MetricsStore) AddServerKey(ctx context.Context, k p2core.ServerKey, previous []byte) error {
	c := m.begin(mAddServerKey)
	err := m.next.AddServerKey(ctx, k, previous)
	c.end(ctx, err, slog.String("algorithm", k.Algorithm))
	return err
}

// AddKeyPackages implements p2core.KeyPackageStore.
func (m *MetricsStore) AddKeyPackages(ctx context.Context, kps []p2core.KeyPackage, max int, now time.Time) error {
	c := m.begin(mAddKeyPackages)
	err := m.next.AddKeyPackages(ctx, kps, max, now)
	attrs := []slog.Attr{slog.Int("count", len(kps))}
	if len(kps) > 0 {
		attrs = append(attrs, user(kps[0].UserID), session(kps[0].SessionID))
	}
	c.end(ctx, err, attrs...)
	return err
}

// SetLastResort implements p2core.KeyPackageStore.
func (m *MetricsStore) SetLastResort(ctx context.Context, kp p2core.KeyPackage, now time.Time) error {
	c := m.begin(mSetLastResort)
	err := m.next.SetLastResort(ctx, kp, now)
	c.end(ctx, err, user(kp.UserID), session(kp.SessionID))
	return err
}

// ClaimKeyPackages implements p2core.KeyPackageStore.
func (m *MetricsStore) ClaimKeyPackages(ctx context.Context, u p2core.UserID, suite uint16, now time.Time, ends p2core.SessionEnds) ([]p2core.ClaimedKeyPackage, error) {
	c := m.begin(mClaimKeyPackages)
	kps, err := m.next.ClaimKeyPackages(ctx, u, suite, now, ends)
	c.end(ctx, err, user(u), slog.Int("claimed", len(kps)))
	return kps, err
}

// InitKeyInUse implements p2core.KeyPackageStore.
func (m *MetricsStore) InitKeyInUse(ctx context.Context, initKeys [][]byte, now time.Time) (int, error) {
	c := m.begin(mInitKeyInUse)
	i, err := m.next.InitKeyInUse(ctx, initKeys, now)
	c.end(ctx, err, slog.Int("count", len(initKeys)))
	return i, err
}

// KeyPackageStatus implements p2core.KeyPackageStore.
func (m *MetricsStore) KeyPackageStatus(ctx context.Context, u p2core.UserID, s p2core.SessionID, now time.Time) (p2core.KeyPackageStatus, error) {
	c := m.begin(mKeyPackageStatus)
	st, err := m.next.KeyPackageStatus(ctx, u, s, now)
	c.end(ctx, err, user(u), session(s))
	return st, err
}

// PurgeExpiredKeyPackages implements p2core.KeyPackageStore.
func (m *MetricsStore) PurgeExpiredKeyPackages(ctx context.Context, now time.Time) (int, error) {
	c := m.begin(mPurgeExpiredKeyPackages)
	n, err := m.next.PurgeExpiredKeyPackages(ctx, now)
	c.end(ctx, err)
	return n, err
}
