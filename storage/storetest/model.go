package storetest

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// The model test runs random sequences of KeyPackage operations (uploads
// with reused init keys and mixed suites, last resorts, sessions created
// with KeyPackages, claims at times that go back and forth and that leave
// out sessions created too long ago, statuses,
// purges, ended sessions and, for persistent backends, reopens) on the
// store and on model, and requires the same answer to every call.
//
// The reference is model, not memstore: memstore is a store tuned for
// speed (per-suite queues, an expiry index, a heap of handed-out keys),
// and checking a store against another tuned store checks two
// implementations of the rules against each other. model is the
// specification written as plainly as possible, with linear scans over
// flat lists, and states each rule again in its own words; it is not
// built from the p2core rule functions, so a wrong rule there shows up
// too.

// model is the plain reference of the KeyPackage semantics.
type model struct {
	seq      int
	kps      []modelKP // regular KeyPackages, in upload order
	lrs      map[modelSession]*modelLR
	initKeys map[string]modelKey
	sessions map[modelSession]time.Time // created by CreateSession, at
}

type modelSession struct {
	user p2core.UserID
	id   p2core.SessionID
}

type modelKP struct {
	s   modelSession
	kp  p2core.KeyPackage
	seq int
}

type modelLR struct {
	kp   p2core.KeyPackage
	used bool
}

// modelKey is where an init key is in use: stored (regular or last
// resort), or handed out until notAfter.
type modelKey struct {
	handedOut bool
	notAfter  time.Time
}

func newModel() *model {
	return &model{lrs: map[modelSession]*modelLR{}, initKeys: map[string]modelKey{}, sessions: map[modelSession]time.Time{}}
}

// taken: a stored KeyPackage's init key is always taken; a handed-out
// one's while its NotAfter is after now.
func (m *model) taken(key []byte, now time.Time) bool {
	u, ok := m.initKeys[string(key)]
	return ok && (!u.handedOut || u.notAfter.After(now))
}

func (m *model) live(user p2core.UserID, sid *p2core.SessionID, now time.Time) int {
	n := 0
	for _, e := range m.kps {
		if e.s.user == user && (sid == nil || e.s.id == *sid) && e.kp.NotAfter.After(now) {
			n++
		}
	}
	return n
}

// check is the refusal an upload of kps and lr to s would get.
func (m *model) check(s modelSession, kps []p2core.KeyPackage, lr *p2core.KeyPackage, max int, now time.Time) error {
	seen := map[string]bool{}
	all := slices.Clone(kps)
	if lr != nil {
		all = append(all, *lr)
	}
	for _, kp := range all {
		if seen[string(kp.InitKey)] {
			return p2core.ErrDuplicateKeyPackage
		}
		seen[string(kp.InitKey)] = true
	}
	for _, kp := range kps {
		if m.taken(kp.InitKey, now) {
			return p2core.ErrDuplicateKeyPackage
		}
	}
	if lr != nil {
		old := m.lrs[s]
		if (old == nil || string(old.kp.InitKey) != string(lr.InitKey)) && m.taken(lr.InitKey, now) {
			return p2core.ErrDuplicateKeyPackage
		}
	}
	fresh := 0
	for _, kp := range kps {
		if kp.NotAfter.After(now) {
			fresh++
		}
	}
	if len(kps) > 0 && m.live(s.user, nil, now)+fresh > max {
		return p2core.ErrTooManyKeyPackages
	}
	return nil
}

func (m *model) add(s modelSession, kps []p2core.KeyPackage) {
	for _, kp := range kps {
		m.seq++
		m.kps = append(m.kps, modelKP{s: s, kp: kp, seq: m.seq})
		m.initKeys[string(kp.InitKey)] = modelKey{}
	}
}

// dropLR removes s's last resort: one handed out since it was set stays
// taken until its NotAfter.
func (m *model) dropLR(s modelSession, now time.Time) {
	lr := m.lrs[s]
	if lr == nil {
		return
	}
	delete(m.lrs, s)
	if lr.used && lr.kp.NotAfter.After(now) {
		m.initKeys[string(lr.kp.InitKey)] = modelKey{handedOut: true, notAfter: lr.kp.NotAfter}
	} else {
		delete(m.initKeys, string(lr.kp.InitKey))
	}
}

func (m *model) setLR(s modelSession, kp p2core.KeyPackage, now time.Time) {
	m.dropLR(s, now)
	m.lrs[s] = &modelLR{kp: kp}
	m.initKeys[string(kp.InitKey)] = modelKey{}
}

func (m *model) AddKeyPackages(kps []p2core.KeyPackage, max int, now time.Time) error {
	s := modelSession{kps[0].UserID, kps[0].SessionID}
	if err := m.check(s, kps, nil, max, now); err != nil {
		return err
	}
	m.add(s, kps)
	return nil
}

func (m *model) SetLastResort(kp p2core.KeyPackage, now time.Time) error {
	s := modelSession{kp.UserID, kp.SessionID}
	if err := m.check(s, nil, &kp, 0, now); err != nil {
		return err
	}
	m.setLR(s, kp, now)
	return nil
}

func (m *model) CreateSession(s modelSession, kps []p2core.KeyPackage, lr *p2core.KeyPackage, lim p2core.Limits, now time.Time) error {
	n := 0
	for x := range m.sessions {
		if x.user == s.user {
			n++
		}
	}
	if n+1 > lim.MaxSessions {
		return p2core.ErrTooManySessions
	}
	if err := m.check(s, kps, lr, lim.MaxKeyPackages, now); err != nil {
		return err
	}
	m.sessions[s] = now
	m.add(s, kps)
	if lr != nil {
		m.setLR(s, *lr, now)
	}
	return nil
}

// over: a session has ended by itself under ends when it was created at
// or before ends.CreatedBy, or last used at or before ends.UsedBy (a zero
// bound ends nothing). The model's sessions are local ones that nothing
// uses after their creation, so their creation is their last use and no
// ID-Cert matters; KeyPackages of a session that CreateSession did not
// make never end.
func (m *model) over(s modelSession, ends p2core.SessionEnds) bool {
	created, ok := m.sessions[s]
	if !ok {
		return false
	}
	return (!ends.CreatedBy.IsZero() && !created.After(ends.CreatedBy)) ||
		(!ends.UsedBy.IsZero() && !created.After(ends.UsedBy))
}

// Claim: per session (by ID) that is not over, the oldest regular
// KeyPackage still valid at now and of the suite, deleted and its init
// key handed out; else the last resort if valid and of the suite, kept
// and marked used. A session that is over gives nothing and keeps all.
func (m *model) Claim(user p2core.UserID, suite uint16, now time.Time, ends p2core.SessionEnds) []p2core.ClaimedKeyPackage {
	var ids []p2core.SessionID
	for _, e := range m.kps {
		if e.s.user == user && !slices.Contains(ids, e.s.id) {
			ids = append(ids, e.s.id)
		}
	}
	for s := range m.lrs {
		if s.user == user && !slices.Contains(ids, s.id) {
			ids = append(ids, s.id)
		}
	}
	slices.Sort(ids)
	out := []p2core.ClaimedKeyPackage{}
	for _, id := range ids {
		if m.over(modelSession{user, id}, ends) {
			continue
		}
		best := -1
		for i, e := range m.kps {
			if e.s == (modelSession{user, id}) && e.kp.NotAfter.After(now) && (suite == 0 || e.kp.CipherSuite == suite) &&
				(best < 0 || e.seq < m.kps[best].seq) {
				best = i
			}
		}
		if best >= 0 {
			e := m.kps[best]
			m.kps = slices.Delete(m.kps, best, best+1)
			m.initKeys[string(e.kp.InitKey)] = modelKey{handedOut: true, notAfter: e.kp.NotAfter}
			out = append(out, p2core.ClaimedKeyPackage{KeyPackage: e.kp, Remaining: m.live(user, &id, now)})
			continue
		}
		lr := m.lrs[modelSession{user, id}]
		if lr != nil && lr.kp.NotAfter.After(now) && (suite == 0 || lr.kp.CipherSuite == suite) {
			lr.used = true
			out = append(out, p2core.ClaimedKeyPackage{KeyPackage: lr.kp, LastResort: true, Remaining: m.live(user, &id, now)})
		}
	}
	return out
}

func (m *model) Status(s modelSession, now time.Time) p2core.KeyPackageStatus {
	lr := m.lrs[s]
	return p2core.KeyPackageStatus{Available: m.live(s.user, &s.id, now), LastResort: lr != nil, LastResortUsed: lr != nil && lr.used}
}

func (m *model) Purge(now time.Time) int {
	n := 0
	m.kps = slices.DeleteFunc(m.kps, func(e modelKP) bool {
		if e.kp.NotAfter.After(now) {
			return false
		}
		delete(m.initKeys, string(e.kp.InitKey))
		n++
		return true
	})
	for s, lr := range m.lrs {
		if !lr.kp.NotAfter.After(now) {
			delete(m.lrs, s)
			delete(m.initKeys, string(lr.kp.InitKey))
			n++
		}
	}
	for k, u := range m.initKeys {
		if u.handedOut && !u.notAfter.After(now) {
			delete(m.initKeys, k)
		}
	}
	return n
}

// EndSession: the session's regular KeyPackages go and free their init
// keys; its last resort goes as when replaced.
func (m *model) EndSession(s modelSession, now time.Time) {
	delete(m.sessions, s)
	m.kps = slices.DeleteFunc(m.kps, func(e modelKP) bool {
		if e.s != s {
			return false
		}
		delete(m.initKeys, string(e.kp.InitKey))
		return true
	})
	m.dropLR(s, now)
}

// modelKPFor is a KeyPackage whose init key is sha256(n), so that small
// n collide on purpose.
func modelKPFor(user p2core.UserID, sid p2core.SessionID, suite uint16, n uint64, notAfter, uploaded time.Time) p2core.KeyPackage {
	var seed [8]byte
	binary.BigEndian.PutUint64(seed[:], n)
	ik := sha256.Sum256(seed[:])
	data := append([]byte("kp-"), ik[:]...)
	ref := sha256.Sum256(data)
	return p2core.KeyPackage{UserID: user, SessionID: sid, CipherSuite: suite, Ref: ref[:], InitKey: ik[:], Data: data,
		NotAfter: notAfter, UploadedAt: uploaded}
}

func errClass(err error) string {
	for _, e := range []error{p2core.ErrDuplicateKeyPackage, p2core.ErrTooManyKeyPackages, p2core.ErrTooManySessions, p2core.ErrConflict} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	if err == nil {
		return "ok"
	}
	return "error: " + err.Error()
}

func claimsText(c []p2core.ClaimedKeyPackage) string {
	var b strings.Builder
	for _, x := range c {
		fmt.Fprintf(&b, " [%s ik=%x lr=%v rem=%d]", x.SessionID, x.InitKey[:4], x.LastResort, x.Remaining)
	}
	return b.String()
}

// runModel runs steps random operations from seed on s and on a model,
// failing at the first answer that differs. reopen, when not nil, closes
// and reopens the store (persistent backends) and is one of the steps.
func runModel(t *testing.T, s p2core.Store, reopen func(p2core.Store) p2core.Store, seed uint64, steps int) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	m := newModel()
	var g gen
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	users := []p2core.UserID{1, 2}
	ids := []p2core.SessionID{"a", "b", "c"}
	kp := func(u p2core.UserID, sid p2core.SessionID) p2core.KeyPackage {
		return modelKPFor(u, sid, uint16(1+rng.IntN(2)), uint64(rng.IntN(60)), now.Add(time.Duration(rng.IntN(8)-1)*time.Hour), now)
	}
	kps := func(u p2core.UserID, sid p2core.SessionID, n int) []p2core.KeyPackage {
		out := make([]p2core.KeyPackage, n)
		for i := range out {
			out[i] = kp(u, sid)
		}
		return out
	}
	const max = 6
	for step := range steps {
		u, sid := users[rng.IntN(len(users))], ids[rng.IntN(len(ids))]
		ms := modelSession{u, sid}
		var op, got, want string
		switch r := rng.IntN(100); {
		case r < 22:
			batch := kps(u, sid, 1+rng.IntN(4))
			op = fmt.Sprintf("AddKeyPackages(%d/%s, %d)", u, sid, len(batch))
			got, want = errClass(s.AddKeyPackages(ctx, batch, max, now)), errClass(m.AddKeyPackages(batch, max, now))
		case r < 29:
			lr := kp(u, sid)
			op = fmt.Sprintf("SetLastResort(%d/%s)", u, sid)
			got, want = errClass(s.SetLastResort(ctx, lr, now)), errClass(m.SetLastResort(lr, now))
		case r < 35:
			if _, ok := m.sessions[ms]; ok {
				continue // a taken session ID is ErrConflict, checked elsewhere
			}
			batch := kps(u, sid, rng.IntN(3))
			var lr *p2core.KeyPackage
			if rng.IntN(2) == 0 {
				k := kp(u, sid)
				lr = &k
			}
			lim := p2core.Limits{MaxSessions: 2, MaxKeyPackages: max}
			ss := g.session(u, sid, now)
			op = fmt.Sprintf("CreateSession(%d/%s, %d KeyPackages, last resort %v)", u, sid, len(batch), lr != nil)
			_, err := s.CreateSession(ctx, p2core.NewSession{Session: ss, KeyPackages: batch, LastResort: lr}, lim, now)
			got, want = errClass(err), errClass(m.CreateSession(ms, batch, lr, lim, now))
		case r < 70:
			suite := uint16(rng.IntN(3))
			at := now.Add(time.Duration(rng.IntN(5)-2) * time.Hour)
			// Each bound, in half the claims, ends the sessions
			// created (or last used) up to 0-3 hours before at.
			var ends p2core.SessionEnds
			if rng.IntN(2) == 0 {
				ends.CreatedBy = at.Add(-time.Duration(rng.IntN(4)) * time.Hour)
			}
			if rng.IntN(2) == 0 {
				ends.UsedBy = at.Add(-time.Duration(rng.IntN(4)) * time.Hour)
			}
			op = fmt.Sprintf("ClaimKeyPackages(%d, suite %d, now%+v, ends %+v)", u, suite, at.Sub(now), ends)
			c, err := s.ClaimKeyPackages(ctx, u, suite, at, ends)
			got, want = errClass(err)+claimsText(c), "ok"+claimsText(m.Claim(u, suite, at, ends))
		case r < 80:
			at := now.Add(time.Duration(rng.IntN(5)-2) * time.Hour)
			op = fmt.Sprintf("KeyPackageStatus(%d/%s, now%+v)", u, sid, at.Sub(now))
			st, err := s.KeyPackageStatus(ctx, u, sid, at)
			got, want = fmt.Sprintf("%s %+v", errClass(err), st), fmt.Sprintf("ok %+v", m.Status(ms, at))
		case r < 85:
			op = "PurgeExpiredKeyPackages"
			n, err := s.PurgeExpiredKeyPackages(ctx, now)
			got, want = fmt.Sprintf("%s %d", errClass(err), n), fmt.Sprintf("ok %d", m.Purge(now))
		case r < 90:
			op = fmt.Sprintf("EndSession(%d/%s)", u, sid)
			got, want = errClass(s.EndSession(ctx, u, sid, now)), "ok"
			m.EndSession(ms, now)
		case r < 97 || reopen == nil:
			d := time.Duration(rng.IntN(90)) * time.Minute
			now = now.Add(d)
			continue
		default:
			s = reopen(s)
			continue
		}
		if got != want {
			t.Fatalf("seed %d, step %d: %s:\n store: %s\n model: %s", seed, step, op, got, want)
		}
	}
}

// modelCases runs the model test on fresh stores.
func modelCases() []testCase {
	var cases []testCase
	for seed := range 8 {
		cases = append(cases, testCase{fmt.Sprintf("RandomKeyPackageOperationsMatchTheModel/seed=%d", seed), func(t *testing.T, s p2core.Store) {
			steps := 250
			if testing.Short() {
				steps = 60
			}
			runModel(t, s, nil, uint64(seed), steps)
		}})
	}
	return cases
}
