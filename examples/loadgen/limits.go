package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/boltstore"
	"github.com/p2kit/p2kit/storage/memstore"
)

// Limit names, as they appear in the output's limit_name (the store
// limits' prefixed with the backend: boltstore. or pgstore.).
const (
	limitStoreClaim  = "ClaimKeyPackages"
	limitStoreAdd    = "AddKeyPackages"
	limitStoreCreate = "CreateToken"
	limitStoreRedeem = "RedeemToken"
	limitIssue       = "Service.IssueIDCert/memstore"
	limitStaticCert  = "static-handler(route 9 bytes)"
	limitStaticKey   = "static-handler(route 10 bytes)"
	limitNoop        = "noop-handler"
)

// limits measures, in this process, what each scenario is compared
// against: the raw Store call on a store opened as the example server
// opens it (a boltstore file with fsync and group commit on, or with
// -store postgres a pgstore.Store on a schema of its own), the raw ID-Cert
// issue, and trivial net/http handlers behind the same HTTP client.
type limits struct {
	dir     string // temporary folder for store files
	pg      *pgRun // nil: boltstore
	hc      *httpClient
	files   atomic.Int64
	initKey atomic.Uint64 // makes every synthetic init key unique
	tokens  atomic.Uint64 // makes every synthetic token hash unique
	kpCap   int
	batch   int
	// claimUsers is the least number of users claims are spread over.
	claimUsers int

	trivial *trivialServers
}

func newLimits(dir string, pg *pgRun, hc *httpClient, kpCap, batch int, inProcess bool) *limits {
	return &limits{dir: dir, pg: pg, hc: hc, kpCap: kpCap, batch: batch, trivial: newTrivialServers(dir, inProcess)}
}

// limitBackend is a store of the limits: boltstore or pgstore.
type limitBackend interface {
	store() p2core.Store
	// seed runs fn on the store opened for fast seeding (bbolt: fsync
	// off), then reopens it as the server would.
	seed(fn func(s p2core.Store) error) error
	close()
}

// storeName prefixes a store limit's name with the backend.
func (l *limits) storeName(op string) string {
	if l.pg != nil {
		return "pgstore." + op
	}
	return "boltstore." + op
}

// open opens a fresh store of the run's backend.
func (l *limits) open() (limitBackend, error) {
	if l.pg != nil {
		return l.pg.openLimit(context.Background())
	}
	return l.newStore()
}

// close stops the trivial servers.
func (l *limits) close() { l.trivial.close() }

// limitStore is a boltstore file opened with the example server's options
// (boltstore.Open(path, nil)): fsync on, group commit on. Seeding reopens
// it without fsync, since what is measured is the claim, not the seeding.
type limitStore struct {
	path string
	s    *boltstore.Store
}

func (l *limits) newStore() (*limitStore, error) {
	path := filepath.Join(l.dir, fmt.Sprintf("limit-%d.db", l.files.Add(1)))
	s, err := boltstore.Open(path, nil)
	if err != nil {
		return nil, err
	}
	return &limitStore{path: path, s: s}, nil
}

// seed runs fn on the file opened without fsync, then reopens it as the
// example server would.
func (ls *limitStore) store() p2core.Store { return ls.s }

func (ls *limitStore) seed(fn func(s p2core.Store) error) error {
	if err := ls.s.Close(); err != nil {
		return err
	}
	s, err := boltstore.Open(ls.path, &boltstore.Options{NoSync: true})
	if err != nil {
		return err
	}
	ferr := fn(s)
	if err := s.Close(); err != nil && ferr == nil {
		ferr = err
	}
	if ls.s, err = boltstore.Open(ls.path, nil); err != nil {
		return err
	}
	return ferr
}

func (ls *limitStore) close() {
	ls.s.Close()
	os.Remove(ls.path)
}

// synthKP returns a KeyPackage record of realistic size (275 bytes, as
// mlstest's Ed25519 ones) with a unique init key and, like a real one
// built at that moment, a lifetime ending 30 days from now in whole
// seconds. The Store does not validate KeyPackages, so they need not be
// real ones.
func (l *limits) synthKP(user p2core.UserID, sid p2core.SessionID, now time.Time) p2core.KeyPackage {
	return synthKP(l.initKey.Add(1), user, sid, now)
}

// synthKP is limits.synthKP with the init key made from n.
func synthKP(n uint64, user p2core.UserID, sid p2core.SessionID, now time.Time) p2core.KeyPackage {
	ik := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("synth"), n))
	data := make([]byte, 275)
	copy(data, ik[:])
	ref := sha256.Sum256(data)
	return p2core.KeyPackage{UserID: user, SessionID: sid, Ref: ref[:], CipherSuite: 1, InitKey: ik[:], Data: data,
		NotAfter: time.Now().Add(30 * 24 * time.Hour).Truncate(time.Second), UploadedAt: now}
}

// synthUser is a user of the claim limit's store with one session.
type synthUser struct {
	id       p2core.UserID
	uploaded int
	claimed  atomic.Int64
}

// storeClaim is the spec of the raw claim at workers goroutines: the same
// shape as the HTTP scenario (one session per target user, at most the
// per-session cap each, claims round-robin over the users). Every claimed
// init key goes through dups.
func (l *limits) storeClaim(dups *dupCounter) (spec, func(), error) {
	ls, err := l.open()
	if err != nil {
		return spec{}, nil, err
	}
	var users []*synthUser
	var next atomic.Uint64
	prepare := func(ctx context.Context, need int) error {
		n := max(len(users), ceilDiv(need, l.kpCap), l.claimUsers, 1)
		for len(users) < n {
			users = append(users, &synthUser{id: p2core.UserID(len(users) + 1)})
		}
		level := min(l.kpCap, ceilDiv(need, n))
		now := time.Now()
		return ls.seed(func(s p2core.Store) error {
			for _, u := range users {
				if c := int(u.claimed.Load()); c > u.uploaded {
					u.claimed.Store(int64(u.uploaded))
				}
				add := level - (u.uploaded - int(u.claimed.Load()))
				for add > 0 {
					k := min(add, 1000)
					kps := make([]p2core.KeyPackage, k)
					for i := range kps {
						kps[i] = l.synthKP(u.id, "s", now)
					}
					if err := s.AddKeyPackages(ctx, kps, l.kpCap, now); err != nil {
						return err
					}
					add -= k
					u.uploaded += k
				}
			}
			return nil
		})
	}
	op := func(ctx context.Context, _ int) error {
		u := users[(next.Add(1)-1)%uint64(len(users))]
		u.claimed.Add(1)
		now := time.Now()
		got, err := ls.store().ClaimKeyPackages(ctx, u.id, 0, now, serviceEnds(now))
		for _, kp := range got {
			dups.add(string(kp.InitKey))
		}
		if err == nil && (len(got) != 1 || got[0].LastResort) {
			err = errPoolDry
		}
		return err
	}
	return spec{name: l.storeName(limitStoreClaim), prepare: prepare, calib: 20000, op: op}, ls.close, nil
}

// serviceEnds is the p2core.SessionEnds a Service with the default
// session lifetimes passes to its claims at now, so the raw claim does the
// same work as the server's.
func serviceEnds(now time.Time) p2core.SessionEnds {
	return p2core.SessionEnds{CreatedBy: now.Add(-p2core.DefaultSessionTTL), UsedBy: now.Add(-p2core.DefaultSessionIdleTTL), CertExpiredBy: now}
}

// storeAdd is the spec of the raw upload: AddKeyPackages of batches of the
// HTTP scenario's size, each session filled up to the cap and then a new
// one, as the HTTP scenario does.
func (l *limits) storeAdd() (spec, func(), error) {
	ls, err := l.open()
	if err != nil {
		return spec{}, nil, err
	}
	var next atomic.Int64
	perSession := int64(max(1, l.kpCap/l.batch))
	op := func(ctx context.Context, _ int) error {
		i := next.Add(1) - 1
		sid := p2core.SessionID(fmt.Sprintf("s%d", i/perSession))
		now := time.Now()
		kps := make([]p2core.KeyPackage, l.batch)
		for j := range kps {
			kps[j] = l.synthKP(1, sid, now)
		}
		return ls.store().AddKeyPackages(ctx, kps, l.kpCap, now)
	}
	return spec{name: l.storeName(limitStoreAdd), op: op}, ls.close, nil
}

func (l *limits) synthToken(now time.Time) p2core.FederationToken {
	h := sha256.Sum256(binary.BigEndian.AppendUint64(nil, l.tokens.Add(1)))
	return p2core.FederationToken{Hash: h, UserID: 1, FID: "loadgen@home.localhost", Server: foreignServer,
		IssuedAt: now, ExpiresAt: now.Add(p2core.DefaultTokenTTL)}
}

// storeCreate is the spec of the raw CreateToken.
func (l *limits) storeCreate() (spec, func(), error) {
	ls, err := l.open()
	if err != nil {
		return spec{}, nil, err
	}
	op := func(ctx context.Context, _ int) error {
		return ls.store().CreateToken(ctx, l.synthToken(time.Now()))
	}
	return spec{name: l.storeName(limitStoreCreate), op: op}, ls.close, nil
}

// storeRedeem is the spec of the raw RedeemToken of pre-created tokens.
func (l *limits) storeRedeem() (spec, func(), error) {
	ls, err := l.open()
	if err != nil {
		return spec{}, nil, err
	}
	var hashes [][32]byte
	var next atomic.Int64
	prepare := func(ctx context.Context, need int) error {
		hashes = hashes[min(int(next.Load()), len(hashes)):]
		next.Store(0)
		add := need - len(hashes)
		if add <= 0 {
			return nil
		}
		now := time.Now()
		more := make([][32]byte, add)
		err := ls.seed(func(s p2core.Store) error {
			return parallel(ctx, add, 16, func(i int) error {
				t := l.synthToken(now)
				more[i] = t.Hash
				return s.CreateToken(ctx, t)
			})
		})
		hashes = append(hashes, more...)
		return err
	}
	op := func(ctx context.Context, _ int) error {
		i := int(next.Add(1) - 1)
		if i >= len(hashes) {
			return errPoolDry
		}
		_, err := ls.store().RedeemToken(ctx, hashes[i], foreignServer, time.Now())
		return err
	}
	return spec{name: l.storeName(limitStoreRedeem), prepare: prepare, calib: 20000, op: op}, ls.close, nil
}

// issue is the spec of the raw ID-Cert issue: p2core.Service.IssueIDCert
// over memstore with the same keys, FIDs and sessions as the HTTP
// scenario, one principal per goroutine.
func (l *limits) issue(actors []*actor) (spec, func(), error) {
	store := memstore.New()
	svc, err := p2core.NewService(store, p2core.Config{Domain: actors[0].sess.FID.Domain()})
	if err != nil {
		return spec{}, nil, err
	}
	if err := svc.Init(context.Background()); err != nil {
		return spec{}, nil, err
	}
	ps := make([]p2core.Principal, len(actors))
	keys := make([][]byte, len(actors))
	for i, a := range actors {
		ps[i] = p2core.Principal{UserID: a.sess.UserID, FID: a.sess.FID, SessionID: a.sess.SessionID}
		keys[i] = []byte(a.key.Armored)
	}
	op := func(ctx context.Context, w int) error {
		_, err := svc.IssueIDCert(ctx, ps[w], keys[w])
		return err
	}
	return spec{name: limitIssue, op: op}, func() { store.Close() }, nil
}

// staticSpec is the spec of a GET of the trivial handler serving body
// (nil: the do-nothing handler).
func (l *limits) staticSpec(name string, body []byte) (spec, error) {
	url, err := l.trivial.url(name, body)
	if err != nil {
		return spec{}, err
	}
	return spec{name: name, op: func(ctx context.Context, _ int) error {
		_, err := l.hc.expect(ctx, 200, "GET", url, "", nil)
		return err
	}}, nil
}
