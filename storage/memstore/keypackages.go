package memstore

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// kpEntry is one stored regular KeyPackage; seq orders uploads.
type kpEntry struct {
	kp  p2core.KeyPackage
	seq uint64
}

// kpSession is one session's KeyPackage supply. Regular KeyPackages sit in
// one FIFO queue per cipher suite (a claim looks at the queue heads only)
// and in one list ordered by NotAfter (counting the unexpired ones is a
// binary search).
type kpSession struct {
	id       p2core.SessionID
	queues   map[uint16][]*kpEntry // oldest first
	byExpiry []*kpEntry            // by (NotAfter, seq)
	lr       *p2core.KeyPackage
	lrUsed   bool
}

// initKeyKind says where an init key is in use.
type initKeyKind uint8

const (
	keyStored     initKeyKind = iota // a stored regular KeyPackage
	keyLastResort                    // a stored last resort
	keyHandedOut                     // handed out, remembered until notAfter
)

type initKeyUse struct {
	kind     initKeyKind
	notAfter time.Time
}

// expiryHeap orders handed-out init keys by NotAfter so a purge finds the
// expired ones without a scan. Entries are checked against initKeys when
// popped, so a stale entry is harmless.
type expiryHeap []expiryEntry

type expiryEntry struct {
	notAfter time.Time
	key      string
}

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].notAfter.Before(h[j].notAfter) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

func copyKP(kp p2core.KeyPackage) p2core.KeyPackage {
	kp.Ref = clone(kp.Ref)
	kp.InitKey = clone(kp.InitKey)
	kp.Data = clone(kp.Data)
	kp.NotAfter, kp.UploadedAt = ts(kp.NotAfter), ts(kp.UploadedAt)
	return kp
}

func cmpExpiry(a, b *kpEntry) int {
	if c := a.kp.NotAfter.Compare(b.kp.NotAfter); c != 0 {
		return c
	}
	return cmpSeq(a.seq, b.seq)
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// expired returns how many of the session's regular KeyPackages have a
// NotAfter not after now.
func (ks *kpSession) expired(now time.Time) int {
	return sort.Search(len(ks.byExpiry), func(i int) bool { return p2core.Live(ks.byExpiry[i].kp.NotAfter, now) })
}

// available returns the number of unexpired regular KeyPackages.
func (ks *kpSession) available(now time.Time) int {
	if ks == nil {
		return 0
	}
	return len(ks.byExpiry) - ks.expired(now)
}

// oldest finds the oldest unexpired regular KeyPackage of the suite (any
// suite when 0) and its index in its queue. Expired heads are skipped, not
// removed: now is the caller's and need not grow from call to call.
func (ks *kpSession) oldest(suite uint16, now time.Time) (*kpEntry, int) {
	var best *kpEntry
	bestIdx := 0
	look := func(q []*kpEntry) {
		for i, e := range q {
			if p2core.Claimable(e.kp.NotAfter, e.kp.CipherSuite, suite, now) {
				if best == nil || e.seq < best.seq {
					best, bestIdx = e, i
				}
				return
			}
		}
	}
	if suite != 0 {
		look(ks.queues[suite])
	} else {
		for _, q := range ks.queues {
			look(q)
		}
	}
	return best, bestIdx
}

// remove deletes e, found at index i of its suite's queue.
func (ks *kpSession) remove(e *kpEntry, i int) {
	suite := e.kp.CipherSuite
	q := ks.queues[suite]
	if i == 0 {
		q[0] = nil
		q = q[1:]
	} else {
		q = slices.Delete(q, i, i+1)
	}
	if len(q) == 0 {
		delete(ks.queues, suite)
	} else {
		ks.queues[suite] = q
	}
	if j, ok := slices.BinarySearchFunc(ks.byExpiry, e, cmpExpiry); ok {
		if j == 0 {
			ks.byExpiry[0] = nil
			ks.byExpiry = ks.byExpiry[1:]
		} else {
			ks.byExpiry = slices.Delete(ks.byExpiry, j, j+1)
		}
	}
}

// kpSession returns the supply of (user, sid), creating it if create is
// set; otherwise nil when there is none.
func (s *Store) kpSession(user p2core.UserID, sid p2core.SessionID, create bool) *kpSession {
	list := s.kpUsers[user]
	i, found := slices.BinarySearchFunc(list, sid, func(ks *kpSession, id p2core.SessionID) int {
		return strings.Compare(string(ks.id), string(id))
	})
	if found {
		return list[i]
	}
	if !create {
		return nil
	}
	ks := &kpSession{id: sid, queues: map[uint16][]*kpEntry{}}
	s.kpUsers[user] = slices.Insert(list, i, ks)
	return ks
}

// removeIfEmpty forgets a session's supply once it holds nothing.
func (s *Store) removeIfEmpty(user p2core.UserID, ks *kpSession) {
	if len(ks.byExpiry) > 0 || ks.lr != nil {
		return
	}
	list := slices.DeleteFunc(s.kpUsers[user], func(x *kpSession) bool { return x == ks })
	if len(list) == 0 {
		delete(s.kpUsers, user)
	} else {
		s.kpUsers[user] = list
	}
}

// initKeyInUse reports whether an upload of key is refused at now.
func (s *Store) initKeyInUse(key string, now time.Time) bool {
	u, ok := s.initKeys[key]
	return ok && p2core.InitKeyHeld(u.kind == keyHandedOut, u.notAfter, now)
}

// handOut remembers key as handed out until notAfter.
func (s *Store) handOut(key string, notAfter, now time.Time) {
	if !p2core.InitKeyHeld(true, notAfter, now) {
		delete(s.initKeys, key)
		return
	}
	s.initKeys[key] = initKeyUse{kind: keyHandedOut, notAfter: notAfter}
	heap.Push(&s.handed, expiryEntry{notAfter: notAfter, key: key})
}

// dropLastResort removes the session's last resort.
func (s *Store) dropLastResort(ks *kpSession, now time.Time) {
	if ks.lr == nil {
		return
	}
	key := string(ks.lr.InitKey)
	if p2core.LastResortStaysHeld(ks.lrUsed, ks.lr.NotAfter, now) {
		s.handOut(key, ks.lr.NotAfter, now)
	} else {
		delete(s.initKeys, key)
	}
	ks.lr, ks.lrUsed = nil, false
}

// userAvailable counts the user's live regular KeyPackages.
func (s *Store) userAvailable(user p2core.UserID, now time.Time) int {
	n := 0
	for _, ks := range s.kpUsers[user] {
		n += ks.available(now)
	}
	return n
}

// checkKeyPackages checks, changing nothing, that kps (of one session, or
// none) and lr (nil, or of the same session) may be stored at now under
// the cap max: the p2core rules, with this store's counts. A last resort
// replacing one with the same init key does not collide with it.
func (s *Store) checkKeyPackages(kps []p2core.KeyPackage, lr *p2core.KeyPackage, max int, now time.Time) error {
	fresh, err := p2core.CheckUpload(kps, lr, now)
	if err != nil {
		return err
	}
	for i, kp := range kps {
		if s.initKeyInUse(string(kp.InitKey), now) {
			return fmt.Errorf("memstore: KeyPackage %d: init key in use: %w", i, p2core.ErrDuplicateKeyPackage)
		}
	}
	if lr != nil {
		key := string(lr.InitKey)
		ks := s.kpSession(lr.UserID, lr.SessionID, false)
		replacesSame := ks != nil && ks.lr != nil && string(ks.lr.InitKey) == key
		if !replacesSame && s.initKeyInUse(key, now) {
			return fmt.Errorf("memstore: last resort: init key in use: %w", p2core.ErrDuplicateKeyPackage)
		}
	}
	if len(kps) == 0 {
		return nil
	}
	return p2core.CheckKeyPackageCap(s.userAvailable(kps[0].UserID, now), fresh, max)
}

// addKeyPackages stores kps, checked by checkKeyPackages.
func (s *Store) addKeyPackages(kps []p2core.KeyPackage) {
	if len(kps) == 0 {
		return
	}
	ks := s.kpSession(kps[0].UserID, kps[0].SessionID, true)
	for _, kp := range kps {
		s.seq++
		e := &kpEntry{kp: copyKP(kp), seq: s.seq}
		ks.queues[kp.CipherSuite] = append(ks.queues[kp.CipherSuite], e)
		i, _ := slices.BinarySearchFunc(ks.byExpiry, e, cmpExpiry)
		ks.byExpiry = slices.Insert(ks.byExpiry, i, e)
		s.initKeys[string(e.kp.InitKey)] = initKeyUse{kind: keyStored, notAfter: e.kp.NotAfter}
	}
}

// setLastResort makes kp its session's last resort, checked by
// checkKeyPackages.
func (s *Store) setLastResort(kp p2core.KeyPackage, now time.Time) {
	ks := s.kpSession(kp.UserID, kp.SessionID, true)
	s.dropLastResort(ks, now)
	lr := copyKP(kp)
	ks.lr, ks.lrUsed = &lr, false
	s.initKeys[string(lr.InitKey)] = initKeyUse{kind: keyLastResort, notAfter: lr.NotAfter}
}

// AddKeyPackages implements p2core.KeyPackageStore.
func (s *Store) AddKeyPackages(ctx context.Context, kps []p2core.KeyPackage, max int, now time.Time) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	if len(kps) == 0 {
		return nil
	}
	now = ts(now)
	if err := s.checkKeyPackages(kps, nil, max, now); err != nil {
		return err
	}
	s.addKeyPackages(kps)
	return nil
}

// SetLastResort implements p2core.KeyPackageStore.
func (s *Store) SetLastResort(ctx context.Context, kp p2core.KeyPackage, now time.Time) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	now = ts(now)
	if err := s.checkKeyPackages(nil, &kp, 0, now); err != nil {
		return err
	}
	s.setLastResort(kp, now)
	return nil
}

// InitKeyInUse implements p2core.KeyPackageStore.
func (s *Store) InitKeyInUse(ctx context.Context, initKeys [][]byte, now time.Time) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	now = ts(now)
	for i, k := range initKeys {
		if s.initKeyInUse(string(k), now) {
			return i, nil
		}
	}
	return -1, nil
}

// claimSource is one user's supply, seen by p2core.ClaimFrom under the
// store's lock.
type claimSource struct {
	s    *Store
	user p2core.UserID
}

// ended reports whether the session has ended under ends, by
// p2core.SessionEnds.Over on its stored record and current cert; one
// without a record has not.
func (c claimSource) ended(sid p2core.SessionID, ends p2core.SessionEnds) bool {
	k := sessionKey{c.user, sid}
	ss, ok := c.s.sessions[k]
	return ok && ends.Over(ss.Session, c.s.currentCerts[k]) != ""
}

func (c claimSource) TakeOldest(suite uint16, now time.Time, ends p2core.SessionEnds) ([]p2core.ClaimedKeyPackage, []p2core.SessionID, error) {
	var out []p2core.ClaimedKeyPackage
	var rest []p2core.SessionID
	for _, ks := range slices.Clone(c.s.kpUsers[c.user]) {
		if c.ended(ks.id, ends) {
			continue
		}
		e, i := ks.oldest(suite, now)
		if e == nil {
			rest = append(rest, ks.id)
			continue
		}
		ks.remove(e, i)
		c.s.handOut(string(e.kp.InitKey), e.kp.NotAfter, now)
		out = append(out, p2core.ClaimedKeyPackage{KeyPackage: copyKP(e.kp), Remaining: ks.available(now)})
		c.s.removeIfEmpty(c.user, ks)
	}
	return out, rest, nil
}

func (c claimSource) LastResort(sid p2core.SessionID) (p2core.KeyPackage, bool, error) {
	ks := c.s.kpSession(c.user, sid, false)
	if ks == nil || ks.lr == nil {
		return p2core.KeyPackage{}, false, nil
	}
	return copyKP(*ks.lr), true, nil
}

func (c claimSource) MarkLastResortUsed(sid p2core.SessionID) error {
	c.s.kpSession(c.user, sid, false).lrUsed = true
	return nil
}

func (c claimSource) Available(sid p2core.SessionID, now time.Time) (int, error) {
	return c.s.kpSession(c.user, sid, false).available(now), nil
}

// ClaimKeyPackages implements p2core.KeyPackageStore with p2core.ClaimFrom.
func (s *Store) ClaimKeyPackages(ctx context.Context, user p2core.UserID, suite uint16, now time.Time, ends p2core.SessionEnds) ([]p2core.ClaimedKeyPackage, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return p2core.ClaimFrom(claimSource{s, user}, suite, ts(now), ends)
}

// KeyPackageStatus implements p2core.KeyPackageStore. LastResort reports a
// stored last resort even when it has expired (until it is purged).
func (s *Store) KeyPackageStatus(ctx context.Context, user p2core.UserID, sid p2core.SessionID, now time.Time) (p2core.KeyPackageStatus, error) {
	if err := s.lock(ctx); err != nil {
		return p2core.KeyPackageStatus{}, err
	}
	defer s.mu.Unlock()
	ks := s.kpSession(user, sid, false)
	if ks == nil {
		return p2core.KeyPackageStatus{}, nil
	}
	return p2core.KeyPackageStatus{
		Available:      ks.available(ts(now)),
		LastResort:     ks.lr != nil,
		LastResortUsed: ks.lr != nil && ks.lrUsed,
	}, nil
}

// PurgeExpiredKeyPackages implements p2core.KeyPackageStore. Its cost is
// the number of sessions with KeyPackages plus the number purged.
func (s *Store) PurgeExpiredKeyPackages(ctx context.Context, now time.Time) (int, error) {
	if err := s.lock(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	now = ts(now)
	n := 0
	for user, list := range s.kpUsers {
		for _, ks := range slices.Clone(list) {
			cut := ks.expired(now)
			for _, e := range ks.byExpiry[:cut] {
				q := ks.queues[e.kp.CipherSuite]
				if i, ok := slices.BinarySearchFunc(q, e.seq, func(x *kpEntry, seq uint64) int { return cmpSeq(x.seq, seq) }); ok {
					q = slices.Delete(q, i, i+1)
				}
				if len(q) == 0 {
					delete(ks.queues, e.kp.CipherSuite)
				} else {
					ks.queues[e.kp.CipherSuite] = q
				}
				delete(s.initKeys, string(e.kp.InitKey))
				n++
			}
			ks.byExpiry = slices.Clone(ks.byExpiry[cut:])
			if ks.lr != nil && !ks.lr.NotAfter.After(now) {
				delete(s.initKeys, string(ks.lr.InitKey))
				ks.lr, ks.lrUsed = nil, false
				n++
			}
			s.removeIfEmpty(user, ks)
		}
	}
	for len(s.handed) > 0 && !s.handed[0].notAfter.After(now) {
		e := heap.Pop(&s.handed).(expiryEntry)
		if u, ok := s.initKeys[e.key]; ok && u.kind == keyHandedOut && !u.notAfter.After(now) {
			delete(s.initKeys, e.key)
		}
	}
	return n, nil
}
