// Package memstore is an in-memory p2core.Store: the reference semantics of
// the Store interfaces, for tests and for embedders that need no
// persistence.
//
// It keeps the same rules as the persistent backends: times are kept to the
// microsecond and returned in UTC, byte slices are copied in and out,
// expired tokens and KeyPackages are never accepted, and handed-out init
// keys are remembered until their NotAfter. A claim costs O(log n) in the
// size of the session's supply, not a scan of all KeyPackages.
package memstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// Store is an in-memory p2core.Store. Every method runs under one mutex,
// so each is atomic and Store is safe for concurrent use. The zero value is
// not usable; call New.
type Store struct {
	mu     sync.Mutex
	closed bool
	seq    uint64 // orders sessions and KeyPackages by arrival

	tokens     map[[32]byte]p2core.FederationToken
	userTokens map[p2core.UserID]map[[32]byte]struct{}

	settings map[string][]byte

	sessions      map[sessionKey]*session
	userSessions  map[p2core.UserID][]*session // ordered by (CreatedAt, seq)
	sessionTokens map[[32]byte]*session
	fids          map[p2core.FID]p2core.UserID

	certSerials  map[string]*p2core.IDCert
	userCerts    map[p2core.UserID][]*p2core.IDCert // ordered by (IssuedAt, Serial)
	currentCerts map[sessionKey]*p2core.IDCert

	serverKeys []p2core.ServerKey

	kpUsers  map[p2core.UserID][]*kpSession // ordered by SessionID
	initKeys map[string]initKeyUse
	handed   expiryHeap // handed-out init keys, for purging
}

type sessionKey struct {
	user    p2core.UserID
	session p2core.SessionID
}

type session struct {
	p2core.Session
	seq uint64
}

// New returns an empty Store.
func New() *Store {
	return &Store{
		tokens:        map[[32]byte]p2core.FederationToken{},
		userTokens:    map[p2core.UserID]map[[32]byte]struct{}{},
		settings:      map[string][]byte{},
		sessions:      map[sessionKey]*session{},
		userSessions:  map[p2core.UserID][]*session{},
		sessionTokens: map[[32]byte]*session{},
		fids:          map[p2core.FID]p2core.UserID{},
		certSerials:   map[string]*p2core.IDCert{},
		userCerts:     map[p2core.UserID][]*p2core.IDCert{},
		currentCerts:  map[sessionKey]*p2core.IDCert{},
		kpUsers:       map[p2core.UserID][]*kpSession{},
		initKeys:      map[string]initKeyUse{},
	}
}

// Close marks the store closed: every later call returns p2core.ErrClosed.
// It is safe to call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// lock checks ctx, takes the mutex and checks that the store is open. On
// success the caller must unlock. ctx is checked again under the lock, so a
// call cancelled while waiting changes nothing.
func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return p2core.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		s.mu.Unlock()
		return err
	}
	return nil
}

// ts normalises a time as every backend stores it: microsecond precision,
// UTC.
func ts(t time.Time) time.Time { return t.Truncate(time.Microsecond).UTC() }

// clone copies b; empty slices become nil, as they do in every backend.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return bytes.Clone(b)
}

// Tokens

// CreateToken implements p2core.TokenStore.
func (s *Store) CreateToken(ctx context.Context, t p2core.FederationToken) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.tokens[t.Hash]; ok {
		return fmt.Errorf("memstore: token exists: %w", p2core.ErrConflict)
	}
	t.IssuedAt, t.ExpiresAt = ts(t.IssuedAt), ts(t.ExpiresAt)
	s.tokens[t.Hash] = t
	m := s.userTokens[t.UserID]
	if m == nil {
		m = map[[32]byte]struct{}{}
		s.userTokens[t.UserID] = m
	}
	m[t.Hash] = struct{}{}
	return nil
}

func (s *Store) deleteToken(t p2core.FederationToken) {
	delete(s.tokens, t.Hash)
	if m := s.userTokens[t.UserID]; m != nil {
		delete(m, t.Hash)
		if len(m) == 0 {
			delete(s.userTokens, t.UserID)
		}
	}
}

// RedeemToken implements p2core.TokenStore.
func (s *Store) RedeemToken(ctx context.Context, hash [32]byte, server string, now time.Time) (p2core.FederationToken, error) {
	if err := s.lock(ctx); err != nil {
		return p2core.FederationToken{}, err
	}
	defer s.mu.Unlock()
	t, ok := s.tokens[hash]
	if !ok || !ts(now).Before(t.ExpiresAt) || t.Server != server {
		return p2core.FederationToken{}, p2core.ErrTokenInvalid
	}
	s.deleteToken(t)
	return t, nil
}

// DeleteUserTokens implements p2core.TokenStore.
func (s *Store) DeleteUserTokens(ctx context.Context, user p2core.UserID) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	m := s.userTokens[user]
	for h := range m {
		delete(s.tokens, h)
	}
	delete(s.userTokens, user)
	return len(m), nil
}

// DeleteAllTokens implements p2core.TokenStore.
func (s *Store) DeleteAllTokens(ctx context.Context) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	n := len(s.tokens)
	clear(s.tokens)
	clear(s.userTokens)
	return n, nil
}

// PurgeExpiredTokens implements p2core.TokenStore. It scans every token:
// tokens live minutes, so there are few.
func (s *Store) PurgeExpiredTokens(ctx context.Context, now time.Time) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	now = ts(now)
	n := 0
	for _, t := range s.tokens {
		if !t.ExpiresAt.After(now) {
			s.deleteToken(t)
			n++
		}
	}
	return n, nil
}

// Settings

// Setting implements p2core.SettingsStore.
func (s *Store) Setting(ctx context.Context, key string) ([]byte, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	v, ok := s.settings[key]
	if !ok {
		return nil, fmt.Errorf("memstore: setting %q: %w", key, p2core.ErrNotFound)
	}
	return append([]byte{}, v...), nil
}

// PutSetting implements p2core.SettingsStore.
func (s *Store) PutSetting(ctx context.Context, key string, value []byte) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.settings[key] = bytes.Clone(value)
	return nil
}

// CreateSetting implements p2core.SettingsStore.
func (s *Store) CreateSetting(ctx context.Context, key string, value []byte) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.settings[key]; ok {
		return fmt.Errorf("memstore: setting %q exists: %w", key, p2core.ErrConflict)
	}
	s.settings[key] = bytes.Clone(value)
	return nil
}

// Sessions

// CreateSession implements p2core.Store: every check is made before
// anything changes, all under the one mutex.
func (s *Store) CreateSession(ctx context.Context, n p2core.NewSession, lim p2core.Limits, now time.Time) (p2core.Session, error) {
	if err := s.lock(ctx); err != nil {
		return p2core.Session{}, err
	}
	defer s.mu.Unlock()
	now = ts(now)
	in := n.Session
	if n.ForeignCandidate != 0 {
		in.UserID = n.ForeignCandidate
		if id, ok := s.fids[in.FID]; ok {
			in.UserID = id
		}
	}
	k := sessionKey{in.UserID, in.SessionID}
	if _, ok := s.sessions[k]; ok {
		return p2core.Session{}, fmt.Errorf("memstore: session %q of user %d exists: %w", in.SessionID, in.UserID, p2core.ErrConflict)
	}
	if _, ok := s.sessionTokens[in.TokenHash]; ok {
		return p2core.Session{}, fmt.Errorf("memstore: session token hash in use: %w", p2core.ErrConflict)
	}
	if err := p2core.CheckSessionCap(len(s.userSessions[in.UserID]), lim.MaxSessions); err != nil {
		return p2core.Session{}, err
	}
	cert, kps, lr := n.Parts(in.UserID)
	if cert != nil {
		if _, ok := s.certSerials[cert.Serial]; ok {
			return p2core.Session{}, fmt.Errorf("memstore: ID-Cert serial %q exists: %w", cert.Serial, p2core.ErrConflict)
		}
	}
	if err := s.checkKeyPackages(kps, lr, lim.MaxKeyPackages, now); err != nil {
		return p2core.Session{}, err
	}

	if n.ForeignCandidate != 0 {
		s.fids[in.FID] = in.UserID
	}
	s.seq++
	in.CreatedAt, in.LastUsedAt = ts(in.CreatedAt), time.Time{}
	ss := &session{Session: in, seq: s.seq}
	s.sessions[k] = ss
	s.sessionTokens[in.TokenHash] = ss
	list := s.userSessions[in.UserID]
	i, _ := slices.BinarySearchFunc(list, ss, cmpSession)
	s.userSessions[in.UserID] = slices.Insert(list, i, ss)
	if cert != nil {
		s.putIDCert(*cert)
	}
	s.addKeyPackages(kps)
	if lr != nil {
		s.setLastResort(*lr, now)
	}
	return in, nil
}

func cmpSession(a, b *session) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	switch {
	case a.seq < b.seq:
		return -1
	case a.seq > b.seq:
		return 1
	}
	return 0
}

// SessionByToken implements p2core.SessionStore.
func (s *Store) SessionByToken(ctx context.Context, hash [32]byte) (p2core.Session, error) {
	if err := s.lock(ctx); err != nil {
		return p2core.Session{}, err
	}
	defer s.mu.Unlock()
	ss, ok := s.sessionTokens[hash]
	if !ok {
		return p2core.Session{}, fmt.Errorf("memstore: session: %w", p2core.ErrNotFound)
	}
	return ss.Session, nil
}

// TouchSession implements p2core.SessionStore.
func (s *Store) TouchSession(ctx context.Context, user p2core.UserID, session p2core.SessionID, at time.Time) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	at = ts(at)
	if ss, ok := s.sessions[sessionKey{user, session}]; ok && at.After(ss.LastUsedAt) {
		ss.LastUsedAt = at
	}
	return nil
}

// Sessions implements p2core.SessionStore.
func (s *Store) Sessions(ctx context.Context, user p2core.UserID) ([]p2core.Session, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	list := s.userSessions[user]
	out := make([]p2core.Session, len(list))
	for i, ss := range list {
		out[i] = ss.Session
	}
	return out, nil
}

// EndSession implements p2core.Store.
func (s *Store) EndSession(ctx context.Context, user p2core.UserID, sid p2core.SessionID, now time.Time) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	now = ts(now)
	k := sessionKey{user, sid}
	if ss, ok := s.sessions[k]; ok {
		delete(s.sessions, k)
		delete(s.sessionTokens, ss.TokenHash)
		list := s.userSessions[user]
		if i, found := slices.BinarySearchFunc(list, ss, cmpSession); found {
			list = slices.Delete(list, i, i+1)
		}
		if len(list) == 0 {
			delete(s.userSessions, user)
		} else {
			s.userSessions[user] = list
		}
	}
	if ks := s.kpSession(user, sid, false); ks != nil {
		for _, e := range ks.byExpiry {
			delete(s.initKeys, string(e.kp.InitKey))
		}
		ks.byExpiry, ks.queues = nil, nil
		s.dropLastResort(ks, now)
		s.removeIfEmpty(user, ks)
	}
	if c := s.currentCerts[k]; c != nil {
		c.SupersededAt = now
		delete(s.currentCerts, k)
	}
	return nil
}

// Certs

func copyCert(c p2core.IDCert) p2core.IDCert {
	c.Cert = clone(c.Cert)
	c.SignatureKey = clone(c.SignatureKey)
	c.ServerKeyFingerprint = clone(c.ServerKeyFingerprint)
	return c
}

func cmpCert(a, b *p2core.IDCert) int {
	if c := a.IssuedAt.Compare(b.IssuedAt); c != 0 {
		return c
	}
	return bytes.Compare([]byte(a.Serial), []byte(b.Serial))
}

// PutIDCert implements p2core.CertStore.
func (s *Store) PutIDCert(ctx context.Context, in p2core.IDCert) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if _, ok := s.certSerials[in.Serial]; ok {
		return fmt.Errorf("memstore: ID-Cert serial %q exists: %w", in.Serial, p2core.ErrConflict)
	}
	s.putIDCert(in)
	return nil
}

// putIDCert stores in, whose serial is not in use, as its session's
// current cert.
func (s *Store) putIDCert(in p2core.IDCert) {
	c := copyCert(in)
	c.IssuedAt, c.ExpiresAt, c.SupersededAt = ts(c.IssuedAt), ts(c.ExpiresAt), time.Time{}
	k := sessionKey{c.UserID, c.SessionID}
	if prev := s.currentCerts[k]; prev != nil {
		prev.SupersededAt = c.IssuedAt
	}
	s.currentCerts[k] = &c
	s.certSerials[c.Serial] = &c
	list := s.userCerts[c.UserID]
	i, _ := slices.BinarySearchFunc(list, &c, cmpCert)
	s.userCerts[c.UserID] = slices.Insert(list, i, &c)
}

// IDCertBySerial implements p2core.CertStore.
func (s *Store) IDCertBySerial(ctx context.Context, serial string) (p2core.IDCert, error) {
	if err := s.lock(ctx); err != nil {
		return p2core.IDCert{}, err
	}
	defer s.mu.Unlock()
	c := s.certSerials[serial]
	if c == nil {
		return p2core.IDCert{}, fmt.Errorf("memstore: ID-Cert serial %q: %w", serial, p2core.ErrNotFound)
	}
	return copyCert(*c), nil
}

// CurrentIDCert implements p2core.CertStore.
func (s *Store) CurrentIDCert(ctx context.Context, user p2core.UserID, sid p2core.SessionID) (p2core.IDCert, error) {
	if err := s.lock(ctx); err != nil {
		return p2core.IDCert{}, err
	}
	defer s.mu.Unlock()
	c := s.currentCerts[sessionKey{user, sid}]
	if c == nil {
		return p2core.IDCert{}, fmt.Errorf("memstore: ID-Cert of session %q: %w", sid, p2core.ErrNotFound)
	}
	return copyCert(*c), nil
}

// IDCertsAt implements p2core.CertStore.
func (s *Store) IDCertsAt(ctx context.Context, user p2core.UserID, at time.Time) ([]p2core.IDCert, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	at = ts(at)
	out := []p2core.IDCert{}
	for _, c := range s.userCerts[user] {
		if c.IssuedAt.After(at) {
			break // ordered by IssuedAt: no later cert is valid yet
		}
		if c.ValidAt(at) {
			out = append(out, copyCert(*c))
		}
	}
	return out, nil
}

// Server keys

func copyKey(k p2core.ServerKey) p2core.ServerKey {
	k.Fingerprint = clone(k.Fingerprint)
	k.Public = clone(k.Public)
	k.Private = clone(k.Private)
	return k
}

// ServerKeys implements p2core.ServerKeyStore.
func (s *Store) ServerKeys(ctx context.Context) ([]p2core.ServerKey, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	out := make([]p2core.ServerKey, len(s.serverKeys))
	for i, k := range s.serverKeys {
		out[i] = copyKey(k)
	}
	return out, nil
}

// AddServerKey implements p2core.ServerKeyStore. An empty previous counts
// as nil. k is stored as current: its RetiredAt is ignored.
func (s *Store) AddServerKey(ctx context.Context, k p2core.ServerKey, previous []byte) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	n := len(s.serverKeys)
	switch {
	case len(previous) == 0 && n > 0:
		return fmt.Errorf("memstore: a server key exists: %w", p2core.ErrConflict)
	case len(previous) > 0 && (n == 0 || !bytes.Equal(s.serverKeys[n-1].Fingerprint, previous)):
		return fmt.Errorf("memstore: the current server key is not %x: %w", previous, p2core.ErrConflict)
	}
	k = copyKey(k)
	k.CreatedAt, k.ExpiresAt, k.RetiredAt = ts(k.CreatedAt), ts(k.ExpiresAt), time.Time{}
	if n > 0 {
		s.serverKeys[n-1].RetiredAt = k.CreatedAt
	}
	s.serverKeys = append(s.serverKeys, k)
	return nil
}
