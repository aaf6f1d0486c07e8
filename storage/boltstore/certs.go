package boltstore

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/p2kit/p2kit/p2core"
)

// cert record: user(8) session fid serial cert sigkey fingerprint issued(8)
// expires(8) superseded(8)

func encodeCert(c p2core.IDCert) []byte {
	var e enc
	e.u64(uint64(c.UserID))
	e.str(string(c.SessionID))
	e.str(string(c.FID))
	e.str(c.Serial)
	e.bytes(c.Cert)
	e.bytes(c.SignatureKey)
	e.bytes(c.ServerKeyFingerprint)
	e.time(c.IssuedAt)
	e.time(c.ExpiresAt)
	e.time(c.SupersededAt)
	return e.b
}

func decodeCert(v []byte) (p2core.IDCert, error) {
	d := dec{b: v}
	var c p2core.IDCert
	c.UserID = p2core.UserID(d.u64())
	c.SessionID = p2core.SessionID(d.str())
	c.FID = p2core.FID(d.str())
	c.Serial = d.str()
	c.Cert = d.bytes()
	c.SignatureKey = d.bytes()
	c.ServerKeyFingerprint = d.bytes()
	c.IssuedAt = d.time()
	c.ExpiresAt = d.time()
	c.SupersededAt = d.time()
	return c, d.done()
}

func certKey(c p2core.IDCert) []byte {
	return cat(u64(uint64(c.UserID)), timeKey(c.IssuedAt), []byte(c.Serial))
}

func serialKey(serial string) []byte { return cat([]byte{'s'}, []byte(serial)) }

// supersede sets SupersededAt of the cert stored under ck and moves the
// user's superseded mark up to at.
func supersede(tx *bolt.Tx, ck []byte, at time.Time) error {
	certs := tx.Bucket([]byte(bCerts))
	v := certs.Get(ck)
	if v == nil {
		return errCorrupt
	}
	c, err := decodeCert(v)
	if err != nil {
		return err
	}
	c.SupersededAt = at
	if err := certs.Put(bytes.Clone(ck), encodeCert(c)); err != nil {
		return err
	}
	return raiseSupersededMark(tx.Bucket([]byte(bCertCurrent)), ck[:8], timeKey(at))
}

// raiseSupersededMark sets the user's mark (key user(8) of cert_current:
// no cert of the user is superseded after it) to at if that is later.
func raiseSupersededMark(current *bolt.Bucket, user, at []byte) error {
	if old := current.Get(user); old != nil && bytes.Compare(old, at) >= 0 {
		return nil
	}
	return current.Put(bytes.Clone(user), bytes.Clone(at))
}

// endCurrentCert supersedes the current cert of the session (user|session
// key) at now and forgets that it is current. It reports whether there was
// one.
func endCurrentCert(tx *bolt.Tx, sessionKey []byte, now time.Time) (bool, error) {
	cur := tx.Bucket([]byte(bCertCurrent))
	ck := cur.Get(sessionKey)
	if ck == nil {
		return false, nil
	}
	ck = bytes.Clone(ck)
	if err := supersede(tx, ck, now); err != nil {
		return false, err
	}
	return true, cur.Delete(sessionKey)
}

// PutIDCert implements p2core.CertStore.
func (s *Store) PutIDCert(ctx context.Context, c p2core.IDCert) error {
	pc := prepareCert(c)
	return s.update(ctx, func(tx *bolt.Tx) error {
		if err := pc.check(tx); err != nil {
			return err
		}
		return pc.write(tx)
	})
}

// preparedCert is a cert encoded before its transaction starts.
type preparedCert struct {
	serial      string
	issued      time.Time
	val, ck, sk []byte
	cur         []byte // user(8)|session
}

func prepareCert(c p2core.IDCert) preparedCert {
	c.IssuedAt, c.ExpiresAt, c.SupersededAt = trunc(c.IssuedAt), trunc(c.ExpiresAt), time.Time{}
	return preparedCert{serial: c.Serial, issued: c.IssuedAt, val: encodeCert(c), ck: certKey(c), sk: serialKey(c.Serial), cur: userSessionKey(c.UserID, c.SessionID)}
}

// check refuses a serial in use.
func (pc preparedCert) check(tx *bolt.Tx) error {
	if tx.Bucket([]byte(bCertSerials)).Get(pc.sk) != nil {
		return fmt.Errorf("boltstore: ID-Cert serial %q exists: %w", pc.serial, p2core.ErrConflict)
	}
	return nil
}

// write makes the checked cert its session's current one.
func (pc preparedCert) write(tx *bolt.Tx) error {
	current := tx.Bucket([]byte(bCertCurrent))
	if prev := current.Get(pc.cur); prev != nil {
		if err := supersede(tx, bytes.Clone(prev), pc.issued); err != nil {
			return err
		}
	}
	if current.Get(pc.cur[:8]) == nil {
		// The user's first cert (every user with certs has a mark):
		// nothing of theirs is superseded yet.
		if err := current.Put(pc.cur[:8], make([]byte, 8)); err != nil {
			return err
		}
	}
	if err := tx.Bucket([]byte(bCerts)).Put(pc.ck, pc.val); err != nil {
		return err
	}
	if err := tx.Bucket([]byte(bCertSerials)).Put(pc.sk, pc.ck); err != nil {
		return err
	}
	return current.Put(pc.cur, pc.ck)
}

// IDCertBySerial implements p2core.CertStore.
func (s *Store) IDCertBySerial(ctx context.Context, serial string) (p2core.IDCert, error) {
	return s.certVia(ctx, bCertSerials, serialKey(serial), fmt.Sprintf("ID-Cert serial %q", serial))
}

// CurrentIDCert implements p2core.CertStore.
func (s *Store) CurrentIDCert(ctx context.Context, user p2core.UserID, sid p2core.SessionID) (p2core.IDCert, error) {
	return s.certVia(ctx, bCertCurrent, userSessionKey(user, sid), fmt.Sprintf("ID-Cert of session %q", sid))
}

// certVia reads the cert whose key in certs is stored under key in the
// index bucket; ErrNotFound (naming what) when there is none.
func (s *Store) certVia(ctx context.Context, index string, key []byte, what string) (p2core.IDCert, error) {
	var out p2core.IDCert
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c, found, err := certIn(tx, index, key)
		if err == nil && !found {
			return fmt.Errorf("boltstore: %s: %w", what, p2core.ErrNotFound)
		}
		out = c
		return err
	})
	if err != nil {
		return p2core.IDCert{}, err
	}
	return out, nil
}

// certIn reads, in tx, the cert whose key in certs is stored under key in
// the index bucket; found is false when there is none.
func certIn(tx *bolt.Tx, index string, key []byte) (c p2core.IDCert, found bool, err error) {
	ck := tx.Bucket([]byte(index)).Get(key)
	if ck == nil {
		return p2core.IDCert{}, false, nil
	}
	v := tx.Bucket([]byte(bCerts)).Get(ck)
	if v == nil {
		return p2core.IDCert{}, false, errCorrupt
	}
	c, err = decodeCert(v)
	return c, err == nil, err
}

// IDCertsAt implements p2core.CertStore. When no cert of the user was
// superseded after at (the user's mark in cert_current says so), which is
// always the case for the present, it reads only the sessions' current
// certs; otherwise it reads the user's certs issued up to at.
func (s *Store) IDCertsAt(ctx context.Context, user p2core.UserID, at time.Time) ([]p2core.IDCert, error) {
	at = trunc(at)
	out := []p2core.IDCert{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		prefix := u64(uint64(user))
		certs := tx.Bucket([]byte(bCerts))
		keep := func(v []byte) error {
			if v == nil {
				return errCorrupt
			}
			cert, err := decodeCert(v)
			if err == nil && cert.ValidAt(at) {
				out = append(out, cert)
			}
			return err
		}
		current := tx.Bucket([]byte(bCertCurrent))
		if mark := current.Get(prefix); mark != nil && bytes.Compare(mark, timeKey(at)) <= 0 {
			var keys [][]byte
			c := current.Cursor()
			for k, ck := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, ck = c.Next() {
				if len(k) > 8 {
					keys = append(keys, ck)
				}
			}
			slices.SortFunc(keys, bytes.Compare) // by IssuedAt, as certs are keyed
			for _, ck := range keys {
				if err := keep(certs.Get(ck)); err != nil {
					return err
				}
			}
			return nil
		}
		last := cat(prefix, timeKey(at))
		c := certs.Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(k) < 16 {
				return errCorrupt
			}
			if bytes.Compare(k[:16], last) > 0 {
				break // issued after at
			}
			if err := keep(v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// server key record: fingerprint public private algorithm created(8)
// retired(8) expires(8)

func encodeServerKey(k p2core.ServerKey) []byte {
	var e enc
	e.bytes(k.Fingerprint)
	e.bytes(k.Public)
	e.bytes(k.Private)
	e.str(k.Algorithm)
	e.time(k.CreatedAt)
	e.time(k.RetiredAt)
	e.time(k.ExpiresAt)
	return e.b
}

func decodeServerKey(v []byte) (p2core.ServerKey, error) {
	d := dec{b: v}
	var k p2core.ServerKey
	k.Fingerprint = d.bytes()
	k.Public = d.bytes()
	k.Private = d.bytes()
	k.Algorithm = d.str()
	k.CreatedAt = d.time()
	k.RetiredAt = d.time()
	k.ExpiresAt = d.time()
	return k, d.done()
}

// ServerKeys implements p2core.ServerKeyStore.
func (s *Store) ServerKeys(ctx context.Context) ([]p2core.ServerKey, error) {
	out := []p2core.ServerKey{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bServerKeys)).ForEach(func(_, v []byte) error {
			k, err := decodeServerKey(v)
			if err != nil {
				return err
			}
			out = append(out, k)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AddServerKey implements p2core.ServerKeyStore. An empty previous counts
// as nil. k is stored as current: its RetiredAt is ignored.
func (s *Store) AddServerKey(ctx context.Context, k p2core.ServerKey, previous []byte) error {
	k.CreatedAt, k.RetiredAt = trunc(k.CreatedAt), time.Time{}
	val := encodeServerKey(k)
	previous = bytes.Clone(previous)
	return s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bServerKeys))
		lastKey, lastVal := b.Cursor().Last()
		var old p2core.ServerKey
		switch {
		case len(previous) == 0 && lastKey != nil:
			return fmt.Errorf("boltstore: a server key exists: %w", p2core.ErrConflict)
		case len(previous) > 0 && lastKey == nil:
			return fmt.Errorf("boltstore: no server key to replace: %w", p2core.ErrConflict)
		case lastKey != nil:
			var err error
			if old, err = decodeServerKey(lastVal); err != nil {
				return err
			}
			if !bytes.Equal(old.Fingerprint, previous) {
				return fmt.Errorf("boltstore: the current server key is not %x: %w", previous, p2core.ErrConflict)
			}
			old.RetiredAt = k.CreatedAt
			if err := b.Put(bytes.Clone(lastKey), encodeServerKey(old)); err != nil {
				return err
			}
		}
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		return b.Put(u64(seq), val)
	})
}
