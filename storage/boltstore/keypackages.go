package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/p2kit/p2kit/p2core"
)

// KeyPackage record (key base|'q'|suite(2)|seq(8) of the kp bucket):
// notAfter(8) uploaded(8) ref initKey data.
//
// Last-resort record (key base|'l'): suite(2) notAfter(8) uploaded(8) ref
// initKey data.
//
// Session header (key base of the kp_sessions bucket): count(8)
// minNotAfter(8) lrUsed(1) then, per suite, suite(2) head(8), sorted by
// suite. count is the number of regular KeyPackages not handed out
// (expired included) and minNotAfter a lower bound of their NotAfter: when
// it is after now, none has expired and nothing needs counting. A suite's
// head is the lowest sequence number in its queue that may not have been
// handed out: a claim of the first KeyPackage at or after the head moves
// the head past it and leaves the record where it is, so the claim writes
// only the header. Records below their suite's head are spent: no read
// sees them, and they are deleted in bulk when the session next uploads,
// when its last regular KeyPackage goes, when they expire, or with the
// session. Headers are small and sit together in their own bucket, so the
// claims of one commit share the pages of theirs.

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

func kpBucket(tx *bolt.Tx) *bolt.Bucket { return tx.Bucket([]byte(bKP)) }

// Record tags after a session's base key in the kp bucket.
const (
	tagLastResort = 'l'
	tagQueue      = 'q'
)

// maxSessionLen is the longest session ID whose KeyPackages the store
// keeps (p2core's are at most 32 bytes): its length must fit kpBase's byte.
const maxSessionLen = 255

var errSessionID = errors.New("boltstore: KeyPackages of a session ID that is empty or longer than 255 bytes")

// kpBase returns user(8)|len(1)|session, the prefix of every record of the
// session in the kp bucket, from sk = user(8)|session. The length byte
// keeps one session's records contiguous even when another session's ID
// starts with this one's. Callers keep sessions longer than maxSessionLen
// out: no KeyPackage of one is ever stored.
func kpBase(sk []byte) []byte {
	out := make([]byte, 0, len(sk)+1)
	out = append(out, sk[:8]...)
	out = append(out, byte(len(sk)-8))
	return append(out, sk[8:]...)
}

// kpKey returns base|tag|rest.
func kpKey(base []byte, tag byte, rest ...[]byte) []byte {
	return cat(append([][]byte{base, {tag}}, rest...)...)
}

// header is a session's header record.
type header struct {
	count    uint64
	minAfter []byte // 8 bytes, sortable; meaningful when count > 0
	lrUsed   bool
	heads    []suiteHead // sorted by suite
}

// suiteHead is the head of one suite's queue: records of the suite with a
// lower sequence number are spent.
type suiteHead struct {
	suite uint16
	seq   uint64
}

const headerLen = 17 // without heads

// head returns the suite's head (0 when it has none).
func (h *header) head(suite uint16) uint64 {
	for _, sh := range h.heads {
		if sh.suite == suite {
			return sh.seq
		}
	}
	return 0
}

// setHead sets the suite's head.
func (h *header) setHead(suite uint16, seq uint64) {
	i, found := slices.BinarySearchFunc(h.heads, suite, func(sh suiteHead, s uint16) int { return int(sh.suite) - int(s) })
	if found {
		h.heads[i].seq = seq
		return
	}
	h.heads = slices.Insert(h.heads, i, suiteHead{suite, seq})
}

// spent reports whether the queue record with key k (base|'q'|suite|seq)
// is below its suite's head.
func (h *header) spent(k []byte) bool {
	if len(h.heads) == 0 || len(k) < 10 {
		return false
	}
	return binary.BigEndian.Uint64(k[len(k)-8:]) < h.head(binary.BigEndian.Uint16(k[len(k)-10:]))
}

// supply is one session's header and records, read and written within one
// transaction.
type supply struct {
	b      *bolt.Bucket // kp: the records
	hb     *bolt.Bucket // kp_sessions: the header
	base   []byte
	h      header
	exists bool // the header is stored
}

// openSupply reads the session's header; exists is false when the session
// stores nothing.
func openSupply(tx *bolt.Tx, base []byte) (*supply, error) {
	sp := &supply{b: kpBucket(tx), hb: tx.Bucket([]byte(bKPSessions)), base: base, h: header{minAfter: make([]byte, 8)}}
	v := sp.hb.Get(base)
	if v == nil {
		return sp, nil
	}
	if len(v) < headerLen || (len(v)-headerLen)%10 != 0 {
		return nil, errCorrupt
	}
	sp.exists = true
	sp.h = header{count: binary.BigEndian.Uint64(v), minAfter: bytes.Clone(v[8:16]), lrUsed: v[16] == 1}
	for r := v[headerLen:]; len(r) > 0; r = r[10:] {
		sh := suiteHead{binary.BigEndian.Uint16(r), binary.BigEndian.Uint64(r[2:])}
		if n := len(sp.h.heads); n > 0 && sp.h.heads[n-1].suite >= sh.suite {
			return nil, errCorrupt
		}
		sp.h.heads = append(sp.h.heads, sh)
	}
	return sp, nil
}

// save writes the header back, or removes it when the session stores
// nothing any more. When no regular KeyPackage is left, every queue
// record is spent: they are deleted and the heads dropped.
func (sp *supply) save() error {
	if sp.h.count == 0 && len(sp.h.heads) > 0 {
		if err := sp.dropSpent(); err != nil {
			return err
		}
		sp.h.heads = nil
	}
	if sp.h.count == 0 && sp.b.Get(kpKey(sp.base, tagLastResort)) == nil {
		sp.exists = false
		return sp.hb.Delete(sp.base)
	}
	v := make([]byte, headerLen, headerLen+10*len(sp.h.heads))
	binary.BigEndian.PutUint64(v, sp.h.count)
	copy(v[8:16], sp.h.minAfter)
	if sp.h.lrUsed {
		v[16] = 1
	}
	for _, sh := range sp.h.heads {
		v = binary.BigEndian.AppendUint16(v, sh.suite)
		v = binary.BigEndian.AppendUint64(v, sh.seq)
	}
	sp.exists = true
	return sp.hb.Put(sp.base, v)
}

// dropSpent deletes the session's spent queue records (their init_keys
// entries stay: they mean "handed out"). A suite none of whose records is
// left loses its head, so the header holds heads only of suites in the
// queue; the others keep theirs, which still order what is uploaded after.
func (sp *supply) dropSpent() error {
	var keys [][]byte
	var kept []suiteHead
	for _, sh := range sp.h.heads {
		prefix := kpKey(sp.base, tagQueue, u16(sh.suite))
		c := sp.b.Cursor()
		k, _ := c.Seek(prefix)
		for ; k != nil && bytes.HasPrefix(k, prefix) && sp.h.spent(k); k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		if k != nil && bytes.HasPrefix(k, prefix) {
			kept = append(kept, sh)
		}
	}
	for _, k := range keys {
		if err := sp.b.Delete(k); err != nil {
			return err
		}
	}
	sp.h.heads = kept
	return nil
}

// noteAfter lowers the header's NotAfter bound for a new regular
// KeyPackage.
func (sp *supply) noteAfter(notAfter []byte) {
	if sp.h.count == 0 || bytes.Compare(notAfter, sp.h.minAfter) < 0 {
		sp.h.minAfter = bytes.Clone(notAfter)
	}
}

// expired counts the session's regular KeyPackages whose NotAfter is not
// after now: nothing to count while the header's bound is after now, else
// a walk over the session's queue, which also tightens the bound to the
// exact minimum (kept when the caller saves the header), so that once the
// expired ones are purged the walks stop.
func (sp *supply) expired(nowKey []byte) int {
	if sp.h.count == 0 || liveKey(sp.h.minAfter, nowKey) {
		return 0
	}
	prefix := kpKey(sp.base, tagQueue)
	n := 0
	var least []byte
	c := sp.b.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if len(v) < 8 || sp.h.spent(k) {
			continue
		}
		if !liveKey(v[:8], nowKey) {
			n++
		}
		if least == nil || bytes.Compare(v[:8], least) < 0 {
			least = v[:8]
		}
	}
	if least != nil {
		sp.h.minAfter = bytes.Clone(least)
	}
	return n
}

// available counts the session's unexpired regular KeyPackages.
func (sp *supply) available(nowKey []byte) int {
	return int(sp.h.count) - sp.expired(nowKey)
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
	kpb, base := kpBucket(tx), kpBase(u.session)
	var v []byte
	switch u.kind {
	case kindRegular:
		sp, err := openSupply(tx, base)
		if err != nil {
			return false, err
		}
		if k := kpKey(base, tagQueue, u.suite, u.seq); !sp.h.spent(k) {
			v = kpb.Get(k)
		}
	case kindLastResort:
		if lr := kpb.Get(kpKey(base, tagLastResort)); len(lr) >= 2 {
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
	notAfter, now := fromKey(u.notAfter), fromKey(nowKey)
	if p2core.InitKeyHeld(true, notAfter, now) {
		return true, nil // held whether stored or handed out
	}
	stored, err := u.stored(tx, initKey)
	return p2core.InitKeyHeld(!stored, notAfter, now), err
}

// fromKey decodes an 8-byte time key.
func fromKey(k []byte) time.Time { return fromMicros(binary.BigEndian.Uint64(k)) }

// liveKey applies p2core.Live to a stored 8-byte NotAfter.
func liveKey(notAfter, nowKey []byte) bool { return p2core.Live(fromKey(notAfter), fromKey(nowKey)) }

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
// resort gone, means "handed out". The caller saves the header.
func dropLastResort(tx *bolt.Tx, sp *supply, nowKey []byte) error {
	key := kpKey(sp.base, tagLastResort)
	v := sp.b.Get(key)
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
	keep := p2core.LastResortStaysHeld(sp.h.lrUsed, fromKey(v[2:10]), fromKey(nowKey))
	ik = bytes.Clone(ik)
	if err := sp.b.Delete(key); err != nil {
		return err
	}
	sp.h.lrUsed = false
	if keep {
		return nil
	}
	return forgetInitKey(tx, ik)
}

// deleteKeyPackageSession removes a session's whole supply and reports
// whether there was one.
func deleteKeyPackageSession(tx *bolt.Tx, sk []byte, now time.Time) (bool, error) {
	if len(sk)-8 > maxSessionLen {
		return false, nil // stores none
	}
	sp, err := openSupply(tx, kpBase(sk))
	if err != nil || !sp.exists {
		return false, err
	}
	kpb := sp.b
	prefix := kpKey(sp.base, tagQueue)
	var keys, initKeys [][]byte
	c := kpb.Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		var ik []byte // nil for a spent record, whose init key stays blocked
		if !sp.h.spent(k) {
			var err error
			if ik, err = kpInitKey(v); err != nil {
				return false, err
			}
			ik = bytes.Clone(ik)
		}
		keys, initKeys = append(keys, bytes.Clone(k)), append(initKeys, ik)
	}
	for i, k := range keys {
		if err := kpb.Delete(k); err != nil {
			return false, err
		}
		if initKeys[i] == nil {
			continue
		}
		if err := forgetInitKey(tx, initKeys[i]); err != nil {
			return false, err
		}
	}
	if err := dropLastResort(tx, sp, timeKey(now)); err != nil {
		return false, err
	}
	sp.h.count, sp.h.heads = 0, nil
	return true, sp.save()
}

// preparedKP is a KeyPackage encoded before its transaction starts.
type preparedKP struct {
	initKey  []byte
	rec      []byte
	suite    []byte
	notAfter []byte
}

// upload is an upload of KeyPackages and/or a last resort to one session,
// encoded before its transaction starts.
type upload struct {
	user    p2core.UserID
	sk      []byte // user(8)|session
	base    []byte // kpBase(sk)
	kps     []preparedKP
	lr      *preparedKP // rec with its suite prefix
	fresh   int
	max     int
	nowKey  []byte
	checked bool
}

// prepareUpload checks kps and lr (nil when there is none) with the
// p2core rules that need nothing stored and encodes them, for the session
// of user and sid.
func prepareUpload(user p2core.UserID, sid p2core.SessionID, kps []p2core.KeyPackage, lr *p2core.KeyPackage, max int, now time.Time) (*upload, error) {
	fresh, err := p2core.CheckUpload(kps, lr, now)
	if err != nil {
		return nil, err
	}
	if len(sid) == 0 || len(sid) > maxSessionLen {
		return nil, errSessionID
	}
	sk := userSessionKey(user, sid)
	u := &upload{user: user, sk: sk, base: kpBase(sk), fresh: fresh, max: max, nowKey: timeKey(now)}
	for _, kp := range kps {
		u.kps = append(u.kps, preparedKP{initKey: bytes.Clone(kp.InitKey), rec: encodeKP(kp, false), suite: u16(kp.CipherSuite), notAfter: timeKey(kp.NotAfter)})
	}
	if lr != nil {
		u.lr = &preparedKP{initKey: bytes.Clone(lr.InitKey), rec: encodeKP(*lr, true), notAfter: timeKey(lr.NotAfter)}
	}
	return u, nil
}

// userAvailable counts the user's live regular KeyPackages across its
// sessions (the user's headers sit together in kp_sessions).
func userAvailable(tx *bolt.Tx, user p2core.UserID, nowKey []byte) (int, error) {
	prefix := u64(uint64(user))
	var bases [][]byte
	c := tx.Bucket([]byte(bKPSessions)).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		bases = append(bases, bytes.Clone(k))
	}
	n := 0
	for _, base := range bases {
		sp, err := openSupply(tx, base)
		if err != nil {
			return 0, err
		}
		n += sp.available(nowKey)
	}
	return n, nil
}

// check makes every check of the upload in tx, before anything is
// written: init keys not in use (a last resort replacing one with the
// same init key does not collide with it), then the user's cap.
func (u *upload) check(tx *bolt.Tx) error {
	for i, p := range u.kps {
		dup, err := initKeyInUse(tx, p.initKey, u.nowKey)
		if err != nil {
			return err
		}
		if dup {
			return fmt.Errorf("boltstore: KeyPackage %d: init key in use: %w", i, p2core.ErrDuplicateKeyPackage)
		}
	}
	if u.lr != nil {
		replacesSame := false
		if v := kpBucket(tx).Get(kpKey(u.base, tagLastResort)); len(v) >= 2 {
			old, err := kpInitKey(v[2:])
			if err != nil {
				return err
			}
			replacesSame = bytes.Equal(old, u.lr.initKey)
		}
		if !replacesSame {
			inUse, err := initKeyInUse(tx, u.lr.initKey, u.nowKey)
			if err != nil {
				return err
			}
			if inUse {
				return fmt.Errorf("boltstore: last resort: init key in use: %w", p2core.ErrDuplicateKeyPackage)
			}
		}
	}
	if len(u.kps) > 0 {
		have, err := userAvailable(tx, u.user, u.nowKey)
		if err != nil {
			return err
		}
		if err := p2core.CheckKeyPackageCap(have, u.fresh, u.max); err != nil {
			return err
		}
	}
	u.checked = true
	return nil
}

// write stores the checked upload in tx.
func (u *upload) write(tx *bolt.Tx) error {
	if !u.checked {
		return errors.New("boltstore: upload written before it was checked")
	}
	sp, err := openSupply(tx, u.base)
	if err != nil {
		return err
	}
	if len(u.kps) > 0 {
		for _, name := range []string{bKP, bInitKeyExpiry} {
			tx.Bucket([]byte(name)).FillPercent = uploadFill
		}
		// The upload writes the session's queue anyway: the records its
		// claims left go now, many to a page.
		if err := sp.dropSpent(); err != nil {
			return err
		}
	}
	for _, p := range u.kps {
		seq, err := sp.b.NextSequence()
		if err != nil {
			return err
		}
		sq := u64(seq)
		if err := sp.b.Put(kpKey(u.base, tagQueue, p.suite, sq), p.rec); err != nil {
			return err
		}
		if err := setInitKey(tx, p.initKey, encodeInitKeyUse(p.notAfter, kindRegular, sq, p.suite, u.sk)); err != nil {
			return err
		}
		sp.noteAfter(p.notAfter)
		sp.h.count++
	}
	if u.lr != nil {
		if err := dropLastResort(tx, sp, u.nowKey); err != nil {
			return err
		}
		if err := sp.b.Put(kpKey(u.base, tagLastResort), u.lr.rec); err != nil {
			return err
		}
		if err := setInitKey(tx, u.lr.initKey, encodeInitKeyUse(u.lr.notAfter, kindLastResort, nil, nil, u.sk)); err != nil {
			return err
		}
	}
	return sp.save()
}

// uploadFill is the FillPercent of the kp and init_key_expiry buckets in
// uploads: their records go in key order (a session's new KeyPackages
// after its others; expiries mostly after the ones stored), so a page that
// splits is left nearly full rather than half empty.
var uploadFill = 0.9

// AddKeyPackages implements p2core.KeyPackageStore.
func (s *Store) AddKeyPackages(ctx context.Context, kps []p2core.KeyPackage, max int, now time.Time) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if len(kps) == 0 {
		return nil
	}
	u, err := prepareUpload(kps[0].UserID, kps[0].SessionID, kps, nil, max, now)
	if err != nil {
		return err
	}
	return s.update(ctx, u.run)
}

// run checks and writes the upload in tx.
func (u *upload) run(tx *bolt.Tx) error {
	if err := u.check(tx); err != nil {
		return err
	}
	return u.write(tx)
}

// SetLastResort implements p2core.KeyPackageStore. A replaced last resort
// that was handed out keeps its init key blocked until its NotAfter.
func (s *Store) SetLastResort(ctx context.Context, kp p2core.KeyPackage, now time.Time) error {
	u, err := prepareUpload(kp.UserID, kp.SessionID, nil, &kp, 0, now)
	if err != nil {
		return err
	}
	return s.update(ctx, u.run)
}

// InitKeyInUse implements p2core.KeyPackageStore.
func (s *Store) InitKeyInUse(ctx context.Context, initKeys [][]byte, now time.Time) (int, error) {
	nowKey := timeKey(now)
	out := -1
	err := s.view(ctx, func(tx *bolt.Tx) error {
		for i, k := range initKeys {
			inUse, err := initKeyInUse(tx, k, nowKey)
			if err != nil {
				return err
			}
			if inUse {
				out = i
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return out, nil
}

// oldestLive returns the key (copied) and value of the session's oldest
// regular KeyPackage of the suite (any suite when 0) that is not spent and
// that p2core.Claimable allows, and whether it is the first unspent record
// of its suite. Expired records are skipped, not removed: now is the
// caller's and need not grow from call to call.
func oldestLive(c *bolt.Cursor, h *header, base []byte, suite uint16, now time.Time) (k, v []byte, first bool) {
	queue := kpKey(base, tagQueue)
	liveIn := func(s uint16) ([]byte, []byte, bool) {
		prefix := cat(queue, u16(s))
		first := true
		for k, v := c.Seek(cat(prefix, u64(h.head(s)))); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(v) >= 8 && p2core.Claimable(fromKey(v[:8]), s, suite, now) {
				return bytes.Clone(k), v, first
			}
			first = false
		}
		return nil, nil, false
	}
	if suite != 0 {
		return liveIn(suite)
	}
	// Each suite's queue is in upload order; the oldest live KeyPackage
	// is the first live one of some suite with the lowest sequence.
	qlen := len(queue)
	var bestK, bestV []byte
	var bestFirst bool
	for k, _ := c.Seek(queue); k != nil && bytes.HasPrefix(k, queue) && len(k) == qlen+10; {
		s := binary.BigEndian.Uint16(k[qlen:])
		if lk, lv, f := liveIn(s); lk != nil && (bestK == nil || bytes.Compare(lk[qlen+2:], bestK[qlen+2:]) < 0) {
			bestK, bestV, bestFirst = lk, lv, f
		}
		if s == 0xffff {
			break
		}
		k, _ = c.Seek(cat(queue, u16(s+1)))
	}
	return bestK, bestV, bestFirst
}

// claimSource is one user's supply inside a claim's transaction, seen by
// p2core.ClaimFrom. Taking the first unspent record of its suite (the
// usual case) moves the suite's head past it, which writes only the
// header; a record after expired ones is deleted instead. The init key's
// entry stays and now means "handed out".
type claimSource struct {
	tx       *bolt.Tx
	user     p2core.UserID
	supplies map[p2core.SessionID]*supply
	wrote    bool
}

func (c *claimSource) supply(sid p2core.SessionID) (*supply, error) {
	if sp := c.supplies[sid]; sp != nil {
		return sp, nil
	}
	sp, err := openSupply(c.tx, kpBase(userSessionKey(c.user, sid)))
	if err != nil {
		return nil, err
	}
	if !sp.exists {
		return nil, errCorrupt
	}
	c.supplies[sid] = sp
	return sp, nil
}

// ended reports whether the session has ended under ends, by
// p2core.SessionEnds.Over on its stored record and (for a foreign
// session) its current cert; one without a record has not.
func (c *claimSource) ended(sid p2core.SessionID, ends p2core.SessionEnds) (bool, error) {
	key := userSessionKey(c.user, sid)
	v := c.tx.Bucket([]byte(bSessions)).Get(key)
	if v == nil {
		return false, nil
	}
	r, err := decodeSession(key, v)
	if err != nil {
		return false, err
	}
	var cert *p2core.IDCert
	if r.Home != "" {
		cc, found, err := certIn(c.tx, bCertCurrent, key)
		if err != nil {
			return false, err
		}
		if found {
			cert = &cc
		}
	}
	return ends.Over(r.Session, cert) != "", nil
}

// TakeOldest walks the user's sessions with a header (they sit together
// in kp_sessions), skipping those that have ended.
func (c *claimSource) TakeOldest(suite uint16, now time.Time, ends p2core.SessionEnds) ([]p2core.ClaimedKeyPackage, []p2core.SessionID, error) {
	prefix := u64(uint64(c.user))
	var sessions []p2core.SessionID
	cur := c.tx.Bucket([]byte(bKPSessions)).Cursor()
	for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
		if len(k) < 10 || len(k) != 9+int(k[8]) {
			return nil, nil, errCorrupt
		}
		sessions = append(sessions, p2core.SessionID(k[9:]))
	}
	nowKey := timeKey(now)
	var out []p2core.ClaimedKeyPackage
	var rest []p2core.SessionID
	for _, sid := range sessions {
		over, err := c.ended(sid, ends)
		if err != nil {
			return nil, nil, err
		}
		if over {
			continue
		}
		sp, err := c.supply(sid)
		if err != nil {
			return nil, nil, err
		}
		var qk, qv []byte
		var first bool
		if sp.h.count > 0 {
			qk, qv, first = oldestLive(sp.b.Cursor(), &sp.h, sp.base, suite, now)
		}
		if qk == nil {
			rest = append(rest, sid)
			continue
		}
		ks := binary.BigEndian.Uint16(qk[len(qk)-10:])
		kp, err := decodeKP(c.user, sid, ks, qv)
		if err != nil {
			return nil, nil, err
		}
		if first {
			sp.h.setHead(ks, binary.BigEndian.Uint64(qk[len(qk)-8:])+1)
		} else if err := sp.b.Delete(qk); err != nil {
			return nil, nil, err
		}
		sp.h.count--
		remaining := sp.available(nowKey)
		if err := sp.save(); err != nil {
			return nil, nil, err
		}
		c.wrote = true
		out = append(out, p2core.ClaimedKeyPackage{KeyPackage: kp, Remaining: remaining})
	}
	return out, rest, nil
}

func (c *claimSource) LastResort(sid p2core.SessionID) (p2core.KeyPackage, bool, error) {
	sp, err := c.supply(sid)
	if err != nil {
		return p2core.KeyPackage{}, false, err
	}
	v := sp.b.Get(kpKey(sp.base, tagLastResort))
	if v == nil {
		return p2core.KeyPackage{}, false, nil
	}
	lr, err := decodeLR(c.user, sid, v)
	return lr, err == nil, err
}

func (c *claimSource) MarkLastResortUsed(sid p2core.SessionID) error {
	sp, err := c.supply(sid)
	if err != nil || sp.h.lrUsed {
		return err
	}
	sp.h.lrUsed = true
	c.wrote = true
	return sp.save()
}

func (c *claimSource) Available(sid p2core.SessionID, now time.Time) (int, error) {
	sp, err := c.supply(sid)
	if err != nil {
		return 0, err
	}
	return sp.available(timeKey(now)), nil
}

// ClaimKeyPackages implements p2core.KeyPackageStore with
// p2core.ClaimFrom. The cost per session is a few page reads (plus a walk
// of its queue while it holds expired KeyPackages not yet purged), and it
// writes only the session's header (and, when expired KeyPackages came
// first, deletes the one it hands out).
func (s *Store) ClaimKeyPackages(ctx context.Context, user p2core.UserID, suite uint16, now time.Time, ends p2core.SessionEnds) ([]p2core.ClaimedKeyPackage, error) {
	now = trunc(now)
	var out []p2core.ClaimedKeyPackage
	err := s.update(ctx, func(tx *bolt.Tx) error {
		src := &claimSource{tx: tx, user: user, supplies: map[p2core.SessionID]*supply{}}
		var err error
		if out, err = p2core.ClaimFrom(src, suite, now, ends); err != nil {
			return err
		}
		if !src.wrote {
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
	if len(sid) > maxSessionLen {
		return p2core.KeyPackageStatus{}, s.ready(ctx) // stores none
	}
	nowKey := timeKey(now)
	base := kpBase(userSessionKey(user, sid))
	var out p2core.KeyPackageStatus
	err := s.view(ctx, func(tx *bolt.Tx) error {
		sp, err := openSupply(tx, base)
		if err != nil || !sp.exists {
			return err
		}
		out.Available = sp.available(nowKey)
		out.LastResort = sp.b.Get(kpKey(base, tagLastResort)) != nil
		out.LastResortUsed = out.LastResort && sp.h.lrUsed
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
		sessions := map[string]*supply{} // read
		changed := map[*supply]bool{}    // header to save
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
			u.session, u.seq, u.suite = bytes.Clone(u.session), bytes.Clone(u.seq), bytes.Clone(u.suite)
			stored, err := u.stored(tx, initKey)
			if err != nil {
				return err
			}
			sp := sessions[string(u.session)]
			if sp == nil {
				if sp, err = openSupply(tx, kpBase(u.session)); err != nil {
					return err
				}
				sessions[string(u.session)] = sp
			}
			if stored {
				if err := deleteStored(sp, u); err != nil {
					return err
				}
				changed[sp] = true
				n++
			} else if k := kpKey(sp.base, tagQueue, u.suite, u.seq); u.kind == kindRegular && sp.h.spent(k) {
				if err := sp.b.Delete(k); err != nil { // handed out, left by its claim
					return err
				}
			}
			if err := forgetInitKey(tx, initKey); err != nil {
				return err
			}
		}
		for sp := range changed {
			if err := sp.save(); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// deleteStored deletes the stored KeyPackage an init_keys entry points at;
// the caller saves the header.
func deleteStored(sp *supply, u initKeyUse) error {
	if u.kind == kindLastResort {
		sp.h.lrUsed = false
		return sp.b.Delete(kpKey(sp.base, tagLastResort))
	}
	if err := sp.b.Delete(kpKey(sp.base, tagQueue, u.suite, u.seq)); err != nil {
		return err
	}
	if sp.h.count == 0 {
		return errCorrupt
	}
	sp.h.count--
	return nil
}
