package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/p2kit/p2kit/p2core"
)

// KeyPackage record (in a session's q bucket, keyed suite(2)|seq(8)):
// notAfter(8) uploaded(8) ref initKey data.
//
// Last-resort record (key lr of the session bucket): suite(2) notAfter(8)
// uploaded(8) ref initKey data.

func encodeKP(kp p2core.KeyPackage, withSuite bool) []byte {
	e := enc{b: make([]byte, 0, 2+16+3*2+len(kp.Ref)+len(kp.InitKey)+len(kp.Data))}
	if withSuite {
		e.u16(kp.CipherSuite)
	}
	e.time(kp.NotAfter)
	e.time(kp.UploadedAt)
	e.bytes(kp.Ref)
	e.bytes(kp.InitKey)
	e.bytes(kp.Data)
	return e.b
}

func decodeKP(user p2core.UserID, sid p2core.SessionID, suite uint16, v []byte) (p2core.KeyPackage, error) {
	d := dec{b: v}
	kp := p2core.KeyPackage{UserID: user, SessionID: sid, CipherSuite: suite}
	kp.NotAfter = d.time()
	kp.UploadedAt = d.time()
	kp.Ref = d.bytes()
	kp.InitKey = d.bytes()
	kp.Data = d.bytes()
	return kp, d.done()
}

func decodeLR(user p2core.UserID, sid p2core.SessionID, v []byte) (p2core.KeyPackage, error) {
	if len(v) < 2 {
		return p2core.KeyPackage{}, errCorrupt
	}
	return decodeKP(user, sid, binary.BigEndian.Uint16(v), v[2:])
}

// kpInitKey returns the init key of a KeyPackage record (without its
// suite prefix), without copying.
func kpInitKey(v []byte) ([]byte, error) {
	d := dec{b: v}
	d.take(16)
	d.view()
	ik := d.view()
	return ik, d.err
}

func kpBucket(tx *bolt.Tx) *bolt.Bucket { return tx.Bucket([]byte(bKeyPackages)) }

// sessionBucket returns the bucket of a session's supply, creating it.
func sessionBucket(kpb *bolt.Bucket, sk []byte) (*bolt.Bucket, error) {
	ksb, err := kpb.CreateBucketIfNotExists(sk)
	if err != nil {
		return nil, err
	}
	for _, name := range []string{kQueue, kExpiry} {
		if _, err := ksb.CreateBucketIfNotExists([]byte(name)); err != nil {
			return nil, err
		}
	}
	return ksb, nil
}

// regularCount is the number of the session's regular KeyPackages,
// expired or not.
func regularCount(ksb *bolt.Bucket) uint64 {
	v := ksb.Get([]byte(kCount))
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func setRegularCount(ksb *bolt.Bucket, n uint64) error {
	return ksb.Put([]byte(kCount), u64(n))
}

// expiredCount counts the session's regular KeyPackages whose NotAfter is
// not after now: a walk over the head of the expiry index.
func expiredCount(ksb *bolt.Bucket, nowKey []byte) int {
	n := 0
	c := ksb.Bucket([]byte(kExpiry)).Cursor()
	for k, _ := c.First(); k != nil && bytes.Compare(k[:8], nowKey) <= 0; k, _ = c.Next() {
		n++
	}
	return n
}

// available counts the session's unexpired regular KeyPackages.
func available(ksb *bolt.Bucket, nowKey []byte) int {
	return int(regularCount(ksb)) - expiredCount(ksb, nowKey)
}

// initKeyUse is a decoded init_keys entry.
type initKeyUse struct {
	notAfter []byte // 8 bytes, sortable
	kind     byte
	seq      []byte // 8 bytes (kind 'r')
	suite    []byte // 2 bytes (kind 'r')
	session  []byte // user(8)|session: key in keypackages
}

func encodeInitKeyUse(notAfter []byte, kind byte, seq, suite, session []byte) []byte {
	if seq == nil {
		seq, suite = make([]byte, 8), make([]byte, 2)
	}
	return cat(notAfter, []byte{kind}, seq, suite, session)
}

func decodeInitKeyUse(v []byte) (initKeyUse, error) {
	if len(v) < 8+1+8+2+8 {
		return initKeyUse{}, errCorrupt
	}
	return initKeyUse{notAfter: v[:8], kind: v[8], seq: v[9:17], suite: v[17:19], session: v[19:]}, nil
}

// stored reports whether the KeyPackage an init_keys entry points at is
// still stored; if not, it was handed out.
func (u initKeyUse) stored(tx *bolt.Tx, initKey []byte) (bool, error) {
	ksb := kpBucket(tx).Bucket(u.session)
	if ksb == nil {
		return false, nil
	}
	var v []byte
	switch u.kind {
	case kindRegular:
		v = ksb.Bucket([]byte(kQueue)).Get(cat(u.suite, u.seq))
	case kindLastResort:
		if lr := ksb.Get([]byte(kLR)); len(lr) >= 2 {
			v = lr[2:]
		}
	default:
		return false, errCorrupt
	}
	if v == nil {
		return false, nil
	}
	ik, err := kpInitKey(v)
	return bytes.Equal(ik, initKey), err
}

// initKeyInUse reports whether an upload of initKey is refused at now: it
// belongs to a stored KeyPackage, or to a handed-out one whose NotAfter is
// after now.
func initKeyInUse(tx *bolt.Tx, initKey, nowKey []byte) (bool, error) {
	v := tx.Bucket([]byte(bInitKeys)).Get(initKeyKey(initKey))
	if v == nil {
		return false, nil
	}
	u, err := decodeInitKeyUse(v)
	if err != nil {
		return false, err
	}
	if bytes.Compare(u.notAfter, nowKey) > 0 {
		return true, nil
	}
	return u.stored(tx, initKey)
}

// setInitKey records where initKey is used, replacing any entry.
func setInitKey(tx *bolt.Tx, initKey, use []byte) error {
	if err := forgetInitKey(tx, initKey); err != nil {
		return err
	}
	if err := tx.Bucket([]byte(bInitKeys)).Put(initKeyKey(initKey), use); err != nil {
		return err
	}
	return tx.Bucket([]byte(bInitKeyExpiry)).Put(cat(use[:8], initKey), []byte{})
}

// forgetInitKey removes initKey's entry, if any.
func forgetInitKey(tx *bolt.Tx, initKey []byte) error {
	ik := tx.Bucket([]byte(bInitKeys))
	key := initKeyKey(initKey)
	v := ik.Get(key)
	if v == nil {
		return nil
	}
	if len(v) < 8 {
		return errCorrupt
	}
	if err := tx.Bucket([]byte(bInitKeyExpiry)).Delete(cat(v[:8], initKey)); err != nil {
		return err
	}
	return ik.Delete(key)
}

// dropLastResort removes the session's last resort, if any. One that was
// handed out keeps its init key blocked until its NotAfter, like any
// handed-out KeyPackage: its init_keys entry stays and, with the last
// resort gone, means "handed out".
func dropLastResort(tx *bolt.Tx, ksb *bolt.Bucket, nowKey []byte) error {
	v := ksb.Get([]byte(kLR))
	if v == nil {
		return nil
	}
	if len(v) < 10 {
		return errCorrupt
	}
	ik, err := kpInitKey(v[2:])
	if err != nil {
		return err
	}
	used := ksb.Get([]byte(kLRUsed)) != nil
	keep := used && bytes.Compare(v[2:10], nowKey) > 0
	ik = bytes.Clone(ik)
	if err := ksb.Delete([]byte(kLR)); err != nil {
		return err
	}
	if err := ksb.Delete([]byte(kLRUsed)); err != nil {
		return err
	}
	if keep {
		return nil
	}
	return forgetInitKey(tx, ik)
}

// deleteKeyPackageSession removes a session's whole supply and reports
// whether there was one.
func deleteKeyPackageSession(tx *bolt.Tx, sk []byte, now time.Time) (bool, error) {
	kpb := kpBucket(tx)
	ksb := kpb.Bucket(sk)
	if ksb == nil {
		return false, nil
	}
	var keys [][]byte
	err := ksb.Bucket([]byte(kQueue)).ForEach(func(_, v []byte) error {
		ik, err := kpInitKey(v)
		keys = append(keys, bytes.Clone(ik))
		return err
	})
	if err != nil {
		return false, err
	}
	for _, ik := range keys {
		if err := forgetInitKey(tx, ik); err != nil {
			return false, err
		}
	}
	if err := dropLastResort(tx, ksb, timeKey(now)); err != nil {
		return false, err
	}
	return true, kpb.DeleteBucket(sk)
}

// preparedKP is a KeyPackage encoded before its transaction starts.
type preparedKP struct {
	initKey  []byte
	rec      []byte
	suite    []byte
	notAfter []byte
}

var errMixedSessions = errors.New("boltstore: AddKeyPackages: KeyPackages of more than one session")

// AddKeyPackages implements p2core.KeyPackageStore. Duplicates are checked
// before the cap. KeyPackages of more than one session are refused with an
// error that matches no sentinel (a caller bug).
func (s *Store) AddKeyPackages(ctx context.Context, kps []p2core.KeyPackage, max int, now time.Time) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if len(kps) == 0 {
		return nil
	}
	user, sid := kps[0].UserID, kps[0].SessionID
	nowKey := timeKey(now)
	fresh := 0
	preps := make([]preparedKP, len(kps))
	for i, kp := range kps {
		if kp.UserID != user || kp.SessionID != sid {
			return errMixedSessions
		}
		p := preparedKP{initKey: bytes.Clone(kp.InitKey), rec: encodeKP(kp, false), suite: u16(kp.CipherSuite), notAfter: timeKey(kp.NotAfter)}
		if bytes.Compare(p.notAfter, nowKey) > 0 {
			fresh++
		}
		preps[i] = p
	}
	sk := userSessionKey(user, sid)
	return s.update(ctx, func(tx *bolt.Tx) error {
		seen := make(map[string]struct{}, len(preps))
		for i, p := range preps {
			_, dup := seen[string(p.initKey)]
			if !dup {
				var err error
				if dup, err = initKeyInUse(tx, p.initKey, nowKey); err != nil {
					return err
				}
			}
			if dup {
				return fmt.Errorf("boltstore: KeyPackage %d: init key in use: %w", i, p2core.ErrDuplicateKeyPackage)
			}
			seen[string(p.initKey)] = struct{}{}
		}
		kpb := kpBucket(tx)
		have := 0
		if ksb := kpb.Bucket(sk); ksb != nil {
			have = available(ksb, nowKey)
		}
		if have+fresh > max {
			return fmt.Errorf("boltstore: session would hold %d KeyPackages, more than %d: %w", have+fresh, max, p2core.ErrTooManyKeyPackages)
		}
		ksb, err := sessionBucket(kpb, sk)
		if err != nil {
			return err
		}
		q, x := ksb.Bucket([]byte(kQueue)), ksb.Bucket([]byte(kExpiry))
		for _, p := range preps {
			seq, err := kpb.NextSequence()
			if err != nil {
				return err
			}
			sq := u64(seq)
			if err := q.Put(cat(p.suite, sq), p.rec); err != nil {
				return err
			}
			if err := x.Put(cat(p.notAfter, sq), p.suite); err != nil {
				return err
			}
			if err := setInitKey(tx, p.initKey, encodeInitKeyUse(p.notAfter, kindRegular, sq, p.suite, sk)); err != nil {
				return err
			}
		}
		return setRegularCount(ksb, regularCount(ksb)+uint64(len(preps)))
	})
}

// SetLastResort implements p2core.KeyPackageStore. A replaced last resort
// that was handed out keeps its init key blocked until its NotAfter.
func (s *Store) SetLastResort(ctx context.Context, kp p2core.KeyPackage, now time.Time) error {
	nowKey := timeKey(now)
	initKey := bytes.Clone(kp.InitKey)
	rec := encodeKP(kp, true)
	sk := userSessionKey(kp.UserID, kp.SessionID)
	use := encodeInitKeyUse(timeKey(kp.NotAfter), kindLastResort, nil, nil, sk)
	return s.update(ctx, func(tx *bolt.Tx) error {
		kpb := kpBucket(tx)
		replacesSame := false
		if ksb := kpb.Bucket(sk); ksb != nil {
			if v := ksb.Get([]byte(kLR)); len(v) >= 2 {
				old, err := kpInitKey(v[2:])
				if err != nil {
					return err
				}
				replacesSame = bytes.Equal(old, initKey)
			}
		}
		if !replacesSame {
			inUse, err := initKeyInUse(tx, initKey, nowKey)
			if err != nil {
				return err
			}
			if inUse {
				return fmt.Errorf("boltstore: last resort: init key in use: %w", p2core.ErrDuplicateKeyPackage)
			}
		}
		ksb, err := sessionBucket(kpb, sk)
		if err != nil {
			return err
		}
		if err := dropLastResort(tx, ksb, nowKey); err != nil {
			return err
		}
		if err := ksb.Put([]byte(kLR), rec); err != nil {
			return err
		}
		return setInitKey(tx, initKey, use)
	})
}

// oldestLive returns the key (copied) and value of the oldest regular
// KeyPackage of the suite (any suite when 0) whose NotAfter is after now.
// Expired heads are skipped, not removed: now is the caller's and need not
// grow from call to call.
func oldestLive(q *bolt.Bucket, suite uint16, nowKey []byte) (k, v []byte) {
	c := q.Cursor()
	liveIn := func(prefix []byte) ([]byte, []byte) {
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(v) >= 8 && bytes.Compare(v[:8], nowKey) > 0 {
				return bytes.Clone(k), v
			}
		}
		return nil, nil
	}
	if suite != 0 {
		return liveIn(u16(suite))
	}
	var bestK, bestV []byte
	for k, _ := c.First(); len(k) == 10; {
		s := binary.BigEndian.Uint16(k)
		if lk, lv := liveIn(u16(s)); lk != nil && (bestK == nil || bytes.Compare(lk[2:], bestK[2:]) < 0) {
			bestK, bestV = lk, lv
		}
		if s == 0xffff {
			break
		}
		k, _ = c.Seek(u16(s + 1))
	}
	return bestK, bestV
}

// claimFrom claims from one session's supply. It writes only inside the
// session's bucket: the init key's entry stays and now means "handed out".
// wrote reports a change; empty that the supply is now empty and its
// bucket can go.
func claimFrom(ksb *bolt.Bucket, user p2core.UserID, sid p2core.SessionID, suite uint16, nowKey []byte) (res *p2core.ClaimedKeyPackage, wrote, empty bool, err error) {
	q := ksb.Bucket([]byte(kQueue))
	if qk, qv := oldestLive(q, suite, nowKey); qk != nil {
		kp, err := decodeKP(user, sid, binary.BigEndian.Uint16(qk), qv)
		if err != nil {
			return nil, false, false, err
		}
		if err := q.Delete(qk); err != nil {
			return nil, false, false, err
		}
		if err := ksb.Bucket([]byte(kExpiry)).Delete(cat(timeKey(kp.NotAfter), qk[2:])); err != nil {
			return nil, false, false, err
		}
		n := regularCount(ksb) - 1
		if err := setRegularCount(ksb, n); err != nil {
			return nil, false, false, err
		}
		res = &p2core.ClaimedKeyPackage{KeyPackage: kp, Remaining: int(n) - expiredCount(ksb, nowKey)}
		return res, true, n == 0 && ksb.Get([]byte(kLR)) == nil, nil
	}
	v := ksb.Get([]byte(kLR))
	if len(v) < 10 || bytes.Compare(v[2:10], nowKey) <= 0 {
		return nil, false, false, nil
	}
	lr, err := decodeLR(user, sid, v)
	if err != nil {
		return nil, false, false, err
	}
	if suite != 0 && lr.CipherSuite != suite {
		return nil, false, false, nil
	}
	if ksb.Get([]byte(kLRUsed)) == nil {
		if err := ksb.Put([]byte(kLRUsed), []byte{1}); err != nil {
			return nil, false, false, err
		}
		wrote = true
	}
	return &p2core.ClaimedKeyPackage{KeyPackage: lr, LastResort: true, Remaining: available(ksb, nowKey)}, wrote, false, nil
}

// ClaimKeyPackages implements p2core.KeyPackageStore. A last resort is
// handed out only when it matches suite (when suite is not 0). Remaining
// counts the session's unexpired regular KeyPackages of every suite. The
// cost per session is a few page reads plus one record per expired
// KeyPackage at the head of its queue, and writes inside the session's
// bucket only.
func (s *Store) ClaimKeyPackages(ctx context.Context, user p2core.UserID, suite uint16, now time.Time) ([]p2core.ClaimedKeyPackage, error) {
	nowKey := timeKey(now)
	prefix := u64(uint64(user))
	var out []p2core.ClaimedKeyPackage
	err := s.update(ctx, func(tx *bolt.Tx) error {
		out = []p2core.ClaimedKeyPackage{}
		kpb := kpBucket(tx)
		var sessions [][]byte
		c := kpb.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			sessions = append(sessions, bytes.Clone(k))
		}
		changed := false
		for _, sk := range sessions {
			ksb := kpb.Bucket(sk)
			if ksb == nil {
				continue
			}
			res, wrote, empty, err := claimFrom(ksb, user, p2core.SessionID(sk[8:]), suite, nowKey)
			if err != nil {
				return err
			}
			if res != nil {
				out = append(out, *res)
			}
			changed = changed || wrote
			if empty {
				if err := kpb.DeleteBucket(sk); err != nil {
					return err
				}
			}
		}
		if !changed {
			return errNoChange
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// KeyPackageStatus implements p2core.KeyPackageStore. LastResort reports a
// stored last resort even when it has expired (until it is purged).
func (s *Store) KeyPackageStatus(ctx context.Context, user p2core.UserID, sid p2core.SessionID, now time.Time) (p2core.KeyPackageStatus, error) {
	nowKey := timeKey(now)
	var out p2core.KeyPackageStatus
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ksb := kpBucket(tx).Bucket(userSessionKey(user, sid))
		if ksb == nil {
			return nil
		}
		out.Available = available(ksb, nowKey)
		out.LastResort = ksb.Get([]byte(kLR)) != nil
		out.LastResortUsed = out.LastResort && ksb.Get([]byte(kLRUsed)) != nil
		return nil
	})
	if err != nil {
		return p2core.KeyPackageStatus{}, err
	}
	return out, nil
}

// PurgeExpiredKeyPackages implements p2core.KeyPackageStore. It walks the
// init keys whose NotAfter is not after now, so its cost is the number of
// expired init keys, however much else is stored.
func (s *Store) PurgeExpiredKeyPackages(ctx context.Context, now time.Time) (int, error) {
	nowKey := timeKey(now)
	var n int
	err := s.update(ctx, func(tx *bolt.Tx) error {
		n = 0
		exp := tx.Bucket([]byte(bInitKeyExpiry))
		var expired [][]byte
		c := exp.Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], nowKey) <= 0; k, _ = c.Next() {
			expired = append(expired, bytes.Clone(k))
		}
		if len(expired) == 0 {
			return errNoChange
		}
		ik := tx.Bucket([]byte(bInitKeys))
		kpb := kpBucket(tx)
		touched := map[string]struct{}{}
		for _, k := range expired {
			initKey := k[8:]
			v := ik.Get(initKeyKey(initKey))
			if len(v) < 8 || !bytes.Equal(v[:8], k[:8]) {
				if err := exp.Delete(k); err != nil { // stale
					return err
				}
				continue
			}
			u, err := decodeInitKeyUse(v)
			if err != nil {
				return err
			}
			u.session = bytes.Clone(u.session)
			stored, err := u.stored(tx, initKey)
			if err != nil {
				return err
			}
			if stored {
				ksb := kpb.Bucket(u.session)
				if err := deleteStored(ksb, u); err != nil {
					return err
				}
				touched[string(u.session)] = struct{}{}
				n++
			}
			if err := forgetInitKey(tx, initKey); err != nil {
				return err
			}
		}
		for sk := range touched {
			if ksb := kpb.Bucket([]byte(sk)); ksb != nil && regularCount(ksb) == 0 && ksb.Get([]byte(kLR)) == nil {
				if err := kpb.DeleteBucket([]byte(sk)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return n, err
}

// deleteStored deletes the stored KeyPackage an init_keys entry points at.
func deleteStored(ksb *bolt.Bucket, u initKeyUse) error {
	if u.kind == kindLastResort {
		if err := ksb.Delete([]byte(kLR)); err != nil {
			return err
		}
		return ksb.Delete([]byte(kLRUsed))
	}
	seq, suite, notAfter := bytes.Clone(u.seq), bytes.Clone(u.suite), bytes.Clone(u.notAfter)
	if err := ksb.Bucket([]byte(kQueue)).Delete(cat(suite, seq)); err != nil {
		return err
	}
	if err := ksb.Bucket([]byte(kExpiry)).Delete(cat(notAfter, seq)); err != nil {
		return err
	}
	return setRegularCount(ksb, regularCount(ksb)-1)
}
