package boltstore

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/p2kit/p2kit/p2core"
)

// token record: user(8) issued(8) expires(8) fid server

func encodeToken(t p2core.FederationToken) []byte {
	var e enc
	e.u64(uint64(t.UserID))
	e.time(t.IssuedAt)
	e.time(t.ExpiresAt)
	e.str(string(t.FID))
	e.str(t.Server)
	return e.b
}

func decodeToken(hash [32]byte, v []byte) (p2core.FederationToken, error) {
	d := dec{b: v}
	t := p2core.FederationToken{Hash: hash}
	t.UserID = p2core.UserID(d.u64())
	t.IssuedAt = d.time()
	t.ExpiresAt = d.time()
	t.FID = p2core.FID(d.str())
	t.Server = d.str()
	return t, d.done()
}

// tokenExpires reads ExpiresAt of a token record without decoding it.
func tokenExpires(v []byte) []byte {
	if len(v) < 24 {
		return nil
	}
	return v[16:24]
}

// CreateToken implements p2core.TokenStore.
func (s *Store) CreateToken(ctx context.Context, t p2core.FederationToken) error {
	val := encodeToken(t)
	userKey := cat(u64(uint64(t.UserID)), t.Hash[:])
	hash := t.Hash
	return s.update(ctx, func(tx *bolt.Tx) error {
		tb := tx.Bucket([]byte(bTokens))
		if tb.Get(hash[:]) != nil {
			return fmt.Errorf("boltstore: token exists: %w", p2core.ErrConflict)
		}
		if err := tb.Put(hash[:], val); err != nil {
			return err
		}
		return tx.Bucket([]byte(bTokensByUser)).Put(userKey, []byte{})
	})
}

// RedeemToken implements p2core.TokenStore. An expired token is left for
// PurgeExpiredTokens.
func (s *Store) RedeemToken(ctx context.Context, hash [32]byte, server string, now time.Time) (p2core.FederationToken, error) {
	now = trunc(now)
	var out p2core.FederationToken
	err := s.update(ctx, func(tx *bolt.Tx) error {
		out = p2core.FederationToken{}
		tb := tx.Bucket([]byte(bTokens))
		v := tb.Get(hash[:])
		if v == nil {
			return p2core.ErrTokenInvalid
		}
		t, err := decodeToken(hash, v)
		if err != nil {
			return err
		}
		if !now.Before(t.ExpiresAt) || t.Server != server {
			return p2core.ErrTokenInvalid
		}
		if err := tb.Delete(hash[:]); err != nil {
			return err
		}
		if err := tx.Bucket([]byte(bTokensByUser)).Delete(cat(u64(uint64(t.UserID)), hash[:])); err != nil {
			return err
		}
		out = t
		return nil
	})
	if err != nil {
		return p2core.FederationToken{}, err
	}
	return out, nil
}

// DeleteUserTokens implements p2core.TokenStore.
func (s *Store) DeleteUserTokens(ctx context.Context, user p2core.UserID) (int, error) {
	var n int
	err := s.update(ctx, func(tx *bolt.Tx) error {
		n = 0
		tu := tx.Bucket([]byte(bTokensByUser))
		prefix := u64(uint64(user))
		var keys [][]byte
		c := tu.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		if len(keys) == 0 {
			return errNoChange
		}
		tb := tx.Bucket([]byte(bTokens))
		for _, k := range keys {
			if err := tb.Delete(k[8:]); err != nil {
				return err
			}
			if err := tu.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	return n, err
}

// DeleteAllTokens implements p2core.TokenStore.
func (s *Store) DeleteAllTokens(ctx context.Context) (int, error) {
	var n int
	err := s.update(ctx, func(tx *bolt.Tx) error {
		n = 0
		c := tx.Bucket([]byte(bTokens)).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		if n == 0 {
			return errNoChange
		}
		for _, name := range []string{bTokens, bTokensByUser} {
			if err := tx.DeleteBucket([]byte(name)); err != nil {
				return err
			}
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// PurgeExpiredTokens implements p2core.TokenStore. It scans every token:
// tokens live minutes, so there are few.
func (s *Store) PurgeExpiredTokens(ctx context.Context, now time.Time) (int, error) {
	nowKey := timeKey(now)
	var n int
	err := s.update(ctx, func(tx *bolt.Tx) error {
		n = 0
		tb := tx.Bucket([]byte(bTokens))
		var hashes, users [][]byte
		c := tb.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			exp := tokenExpires(v)
			if exp == nil {
				return errCorrupt
			}
			if bytes.Compare(exp, nowKey) <= 0 {
				hashes = append(hashes, bytes.Clone(k))
				users = append(users, bytes.Clone(v[:8]))
			}
		}
		if len(hashes) == 0 {
			return errNoChange
		}
		tu := tx.Bucket([]byte(bTokensByUser))
		for i, h := range hashes {
			if err := tb.Delete(h); err != nil {
				return err
			}
			if err := tu.Delete(cat(users[i], h)); err != nil {
				return err
			}
		}
		n = len(hashes)
		return nil
	})
	return n, err
}
