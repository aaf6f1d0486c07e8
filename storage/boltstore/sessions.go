package boltstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/p2kit/p2kit/p2core"
)

// Setting implements p2core.SettingsStore.
func (s *Store) Setting(ctx context.Context, key string) ([]byte, error) {
	var out []byte
	err := s.view(ctx, func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bSettings)).Get(cat([]byte{'k'}, []byte(key)))
		if len(v) == 0 {
			return fmt.Errorf("boltstore: setting %q: %w", key, p2core.ErrNotFound)
		}
		out = append([]byte{}, v[1:]...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PutSetting implements p2core.SettingsStore.
func (s *Store) PutSetting(ctx context.Context, key string, value []byte) error {
	k := cat([]byte{'k'}, []byte(key))
	v := cat([]byte{'v'}, value)
	return s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bSettings)).Put(k, v)
	})
}

// CreateSetting implements p2core.SettingsStore.
func (s *Store) CreateSetting(ctx context.Context, key string, value []byte) error {
	k := cat([]byte{'k'}, []byte(key))
	v := cat([]byte{'v'}, value)
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bSettings))
		if b.Get(k) != nil {
			return fmt.Errorf("boltstore: setting %q exists: %w", key, p2core.ErrConflict)
		}
		return b.Put(k, v)
	})
}

// session record: seq(8) created(8) tokenHash(32) fid home [lastUsed(8)]
// (lastUsed is written by TouchSession only)

type sessionRec struct {
	p2core.Session
	seq uint64
}

func decodeSession(k, v []byte) (sessionRec, error) {
	if len(k) < 8 {
		return sessionRec{}, errCorrupt
	}
	d := dec{b: v}
	var r sessionRec
	r.UserID = p2core.UserID(binary.BigEndian.Uint64(k))
	r.SessionID = p2core.SessionID(k[8:])
	r.seq = d.u64()
	r.CreatedAt = d.time()
	r.TokenHash = d.fixed32()
	r.FID = p2core.FID(d.str())
	r.Home = d.str()
	if d.err == nil && len(d.b) > 0 {
		r.LastUsedAt = d.time()
	}
	return r, d.done()
}

// encodeSession is the record of r (without its seq).
func encodeSession(r p2core.Session) []byte {
	var e enc
	e.time(r.CreatedAt)
	e.fixed32(r.TokenHash)
	e.str(string(r.FID))
	e.str(r.Home)
	if !r.LastUsedAt.IsZero() {
		e.time(r.LastUsedAt)
	}
	return e.b
}

// TouchSession implements p2core.SessionStore: it rewrites the session's
// record only when at is later than the last use it holds.
func (s *Store) TouchSession(ctx context.Context, user p2core.UserID, sid p2core.SessionID, at time.Time) error {
	at = trunc(at)
	key := userSessionKey(user, sid)
	return s.update(ctx, func(tx *bolt.Tx) error {
		ses := tx.Bucket([]byte(bSessions))
		v := ses.Get(key)
		if v == nil {
			return errNoChange
		}
		r, err := decodeSession(key, v)
		if err != nil {
			return err
		}
		if !at.After(r.LastUsedAt) {
			return errNoChange
		}
		r.LastUsedAt = at
		return ses.Put(key, cat(u64(r.seq), encodeSession(r.Session)))
	})
}

// CreateSession implements p2core.Store in one transaction that makes
// every check before its first write. A foreign login whose FID has no
// mapping yet is prepared for both outcomes (the candidate's records are
// encoded in the transaction once the mapping is read).
func (s *Store) CreateSession(ctx context.Context, n p2core.NewSession, lim p2core.Limits, now time.Time) (p2core.Session, error) {
	if err := s.ready(ctx); err != nil {
		return p2core.Session{}, err
	}
	fidKey := cat([]byte{'f'}, []byte(n.FID))
	var out p2core.Session
	err := s.update(ctx, func(tx *bolt.Tx) error {
		in := n.Session
		fids := tx.Bucket([]byte(bFIDs))
		mapFID := false
		if n.ForeignCandidate != 0 {
			in.UserID = n.ForeignCandidate
			if v := fids.Get(fidKey); v != nil {
				if len(v) != 8 {
					return errCorrupt
				}
				in.UserID = p2core.UserID(binary.BigEndian.Uint64(v))
			} else {
				mapFID = true
			}
		}
		in.CreatedAt, in.LastUsedAt = trunc(in.CreatedAt), time.Time{}
		out = in
		key := userSessionKey(in.UserID, in.SessionID)
		ses := tx.Bucket([]byte(bSessions))
		st := tx.Bucket([]byte(bSessionTokens))
		if ses.Get(key) != nil {
			return fmt.Errorf("boltstore: session %q of user %d exists: %w", in.SessionID, in.UserID, p2core.ErrConflict)
		}
		if st.Get(in.TokenHash[:]) != nil {
			return fmt.Errorf("boltstore: session token hash in use: %w", p2core.ErrConflict)
		}
		have := 0
		prefix := u64(uint64(in.UserID))
		c := ses.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			have++
		}
		if err := p2core.CheckSessionCap(have, lim.MaxSessions); err != nil {
			return err
		}
		cert, kps, lr := n.Parts(in.UserID)
		var pc *preparedCert
		if cert != nil {
			p := prepareCert(*cert)
			if err := p.check(tx); err != nil {
				return err
			}
			pc = &p
		}
		var up *upload
		if len(kps) > 0 || lr != nil {
			var err error
			if up, err = prepareUpload(in.UserID, in.SessionID, kps, lr, lim.MaxKeyPackages, now); err != nil {
				return err
			}
			if err := up.check(tx); err != nil {
				return err
			}
		}

		// Every check passed: write.
		if mapFID {
			if err := fids.Put(fidKey, u64(uint64(in.UserID))); err != nil {
				return err
			}
		}
		seq, err := ses.NextSequence()
		if err != nil {
			return err
		}
		if err := ses.Put(key, cat(u64(seq), encodeSession(in))); err != nil {
			return err
		}
		if err := st.Put(bytes.Clone(in.TokenHash[:]), key); err != nil {
			return err
		}
		if pc != nil {
			if err := pc.write(tx); err != nil {
				return err
			}
		}
		if up != nil {
			return up.write(tx)
		}
		return nil
	})
	if err != nil {
		return p2core.Session{}, err
	}
	return out, nil
}

// SessionByToken implements p2core.SessionStore.
func (s *Store) SessionByToken(ctx context.Context, hash [32]byte) (p2core.Session, error) {
	var out sessionRec
	err := s.view(ctx, func(tx *bolt.Tx) error {
		key := tx.Bucket([]byte(bSessionTokens)).Get(hash[:])
		if key == nil {
			return fmt.Errorf("boltstore: session: %w", p2core.ErrNotFound)
		}
		v := tx.Bucket([]byte(bSessions)).Get(key)
		if v == nil {
			return errCorrupt
		}
		var err error
		out, err = decodeSession(key, v)
		return err
	})
	if err != nil {
		return p2core.Session{}, err
	}
	return out.Session, nil
}

// Sessions implements p2core.SessionStore.
func (s *Store) Sessions(ctx context.Context, user p2core.UserID) ([]p2core.Session, error) {
	var recs []sessionRec
	err := s.view(ctx, func(tx *bolt.Tx) error {
		prefix := u64(uint64(user))
		c := tx.Bucket([]byte(bSessions)).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			r, err := decodeSession(k, v)
			if err != nil {
				return err
			}
			recs = append(recs, r)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(recs, func(a, b sessionRec) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	out := make([]p2core.Session, len(recs))
	for i, r := range recs {
		out[i] = r.Session
	}
	return out, nil
}

// EndSession implements p2core.Store.
func (s *Store) EndSession(ctx context.Context, user p2core.UserID, sid p2core.SessionID, now time.Time) error {
	now = trunc(now)
	key := userSessionKey(user, sid)
	return s.update(ctx, func(tx *bolt.Tx) error {
		changed := false
		ses := tx.Bucket([]byte(bSessions))
		if v := ses.Get(key); v != nil {
			r, err := decodeSession(key, v)
			if err != nil {
				return err
			}
			if err := ses.Delete(key); err != nil {
				return err
			}
			if err := tx.Bucket([]byte(bSessionTokens)).Delete(r.TokenHash[:]); err != nil {
				return err
			}
			changed = true
		}
		removed, err := deleteKeyPackageSession(tx, key, now)
		if err != nil {
			return err
		}
		ended, err := endCurrentCert(tx, key, now)
		if err != nil {
			return err
		}
		if !changed && !removed && !ended {
			return errNoChange
		}
		return nil
	})
}
