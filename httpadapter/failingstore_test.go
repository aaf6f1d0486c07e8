package httpadapter_test

import (
	"context"
	"sync"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// failingStore passes calls to a memstore until fail holds an error, then
// fails every method with it.
type failingStore struct {
	p2core.Store
	mu      sync.Mutex
	failure error
}

// failWith makes every later call fail with err.
func (s *failingStore) failWith(err error) {
	s.mu.Lock()
	s.failure = err
	s.mu.Unlock()
}

// fail returns the injected failure when it is set, without calling the
// Store, and else what call returns.
func fail[T any](s *failingStore, call func() (T, error)) (T, error) {
	s.mu.Lock()
	err := s.failure
	s.mu.Unlock()
	if err != nil {
		var zero T
		return zero, err
	}
	return call()
}

// failErr is fail for methods that return only an error.
func failErr(s *failingStore, call func() error) error {
	_, err := fail(s, func() (struct{}, error) { return struct{}{}, call() })
	return err
}

func (s *failingStore) CreateToken(ctx context.Context, t p2core.FederationToken) error {
	return failErr(s, func() error { return s.Store.CreateToken(ctx, t) })
}

func (s *failingStore) RedeemToken(ctx context.Context, hash [32]byte, server string, now time.Time) (p2core.FederationToken, error) {
	return fail(s, func() (p2core.FederationToken, error) { return s.Store.RedeemToken(ctx, hash, server, now) })
}

func (s *failingStore) DeleteUserTokens(ctx context.Context, user p2core.UserID) (int, error) {
	return fail(s, func() (int, error) { return s.Store.DeleteUserTokens(ctx, user) })
}

func (s *failingStore) DeleteAllTokens(ctx context.Context) (int, error) {
	return fail(s, func() (int, error) { return s.Store.DeleteAllTokens(ctx) })
}

func (s *failingStore) PurgeExpiredTokens(ctx context.Context, now time.Time) (int, error) {
	return fail(s, func() (int, error) { return s.Store.PurgeExpiredTokens(ctx, now) })
}

func (s *failingStore) Setting(ctx context.Context, key string) ([]byte, error) {
	return fail(s, func() ([]byte, error) { return s.Store.Setting(ctx, key) })
}

func (s *failingStore) PutSetting(ctx context.Context, key string, value []byte) error {
	return failErr(s, func() error { return s.Store.PutSetting(ctx, key, value) })
}

func (s *failingStore) CreateSetting(ctx context.Context, key string, value []byte) error {
	return failErr(s, func() error { return s.Store.CreateSetting(ctx, key, value) })
}

func (s *failingStore) CreateSession(ctx context.Context, n p2core.NewSession, lim p2core.Limits, now time.Time) (p2core.Session, error) {
	return fail(s, func() (p2core.Session, error) { return s.Store.CreateSession(ctx, n, lim, now) })
}

func (s *failingStore) SessionByToken(ctx context.Context, hash [32]byte) (p2core.Session, error) {
	return fail(s, func() (p2core.Session, error) { return s.Store.SessionByToken(ctx, hash) })
}

func (s *failingStore) TouchSession(ctx context.Context, user p2core.UserID, sid p2core.SessionID, at time.Time) error {
	return failErr(s, func() error { return s.Store.TouchSession(ctx, user, sid, at) })
}

func (s *failingStore) Sessions(ctx context.Context, user p2core.UserID) ([]p2core.Session, error) {
	return fail(s, func() ([]p2core.Session, error) { return s.Store.Sessions(ctx, user) })
}

func (s *failingStore) EndSession(ctx context.Context, user p2core.UserID, session p2core.SessionID, now time.Time) error {
	return failErr(s, func() error { return s.Store.EndSession(ctx, user, session, now) })
}

func (s *failingStore) IDCertBySerial(ctx context.Context, serial string) (p2core.IDCert, error) {
	return fail(s, func() (p2core.IDCert, error) { return s.Store.IDCertBySerial(ctx, serial) })
}

func (s *failingStore) PutIDCert(ctx context.Context, c p2core.IDCert) error {
	return failErr(s, func() error { return s.Store.PutIDCert(ctx, c) })
}

func (s *failingStore) CurrentIDCert(ctx context.Context, user p2core.UserID, session p2core.SessionID) (p2core.IDCert, error) {
	return fail(s, func() (p2core.IDCert, error) { return s.Store.CurrentIDCert(ctx, user, session) })
}

func (s *failingStore) IDCertsAt(ctx context.Context, user p2core.UserID, at time.Time) ([]p2core.IDCert, error) {
	return fail(s, func() ([]p2core.IDCert, error) { return s.Store.IDCertsAt(ctx, user, at) })
}

func (s *failingStore) ServerKeys(ctx context.Context) ([]p2core.ServerKey, error) {
	return fail(s, func() ([]p2core.ServerKey, error) { return s.Store.ServerKeys(ctx) })
}

func (s *failingStore) AddServerKey(ctx context.Context, k p2core.ServerKey, previous []byte) error {
	return failErr(s, func() error { return s.Store.AddServerKey(ctx, k, previous) })
}

func (s *failingStore) AddKeyPackages(ctx context.Context, kps []p2core.KeyPackage, max int, now time.Time) error {
	return failErr(s, func() error { return s.Store.AddKeyPackages(ctx, kps, max, now) })
}

func (s *failingStore) SetLastResort(ctx context.Context, kp p2core.KeyPackage, now time.Time) error {
	return failErr(s, func() error { return s.Store.SetLastResort(ctx, kp, now) })
}

func (s *failingStore) ClaimKeyPackages(ctx context.Context, user p2core.UserID, suite uint16, now time.Time, ends p2core.SessionEnds) ([]p2core.ClaimedKeyPackage, error) {
	return fail(s, func() ([]p2core.ClaimedKeyPackage, error) {
		return s.Store.ClaimKeyPackages(ctx, user, suite, now, ends)
	})
}

func (s *failingStore) InitKeyInUse(ctx context.Context, initKeys [][]byte, now time.Time) (int, error) {
	return fail(s, func() (int, error) { return s.Store.InitKeyInUse(ctx, initKeys, now) })
}

func (s *failingStore) KeyPackageStatus(ctx context.Context, user p2core.UserID, session p2core.SessionID, now time.Time) (p2core.KeyPackageStatus, error) {
	return fail(s, func() (p2core.KeyPackageStatus, error) { return s.Store.KeyPackageStatus(ctx, user, session, now) })
}

func (s *failingStore) PurgeExpiredKeyPackages(ctx context.Context, now time.Time) (int, error) {
	return fail(s, func() (int, error) { return s.Store.PurgeExpiredKeyPackages(ctx, now) })
}
