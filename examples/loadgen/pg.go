package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/pgstore"
)

// PostgreSQL (-store postgres): every server, limit store and bare loop of
// a run lives in a schema of its own, named in the DSN's search_path
// (pgstore creates it) and dropped when the run ends, so runs never see
// each other's rows.

// limitBare is the limit_name of the bare statement loop.
const limitBare = "bare DELETE ... FOR UPDATE SKIP LOCKED LIMIT 1"

// withParams returns dsn with the given connection parameters set, for
// both URL and key=value DSNs.
func withParams(dsn string, params map[string]string) (string, error) {
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("-dsn: %w", err)
		}
		q := u.Query()
		for k, v := range params {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	for k, v := range params {
		dsn += " " + k + "='" + strings.ReplaceAll(v, "'", `\'`) + "'"
	}
	return dsn, nil
}

// pgRun is the PostgreSQL side of one load generator run: the base DSN and
// the schemas it created, dropped by close.
type pgRun struct {
	dsn       string
	serverDSN string // the example servers' schema
	tag       string // unique per run, part of every schema name
	schemas   []string
	n         atomic.Int64
}

func newPGRun(dsn string) *pgRun {
	var tag [3]byte
	_, _ = rand.Read(tag[:])
	return &pgRun{dsn: dsn, tag: hex.EncodeToString(tag[:])}
}

// schemaDSN names a new schema for what (created by whoever opens it
// first) and returns it with the DSN that selects it.
func (p *pgRun) schemaDSN(what string) (schema, dsn string, err error) {
	schema = fmt.Sprintf("loadgen_%s_%s_%d", p.tag, what, p.n.Add(1))
	p.schemas = append(p.schemas, schema)
	dsn, err = withParams(p.dsn, map[string]string{"search_path": schema})
	return schema, dsn, err
}

// dropSchema drops one schema of the run and forgets it.
func (p *pgRun) dropSchema(schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := connect(ctx, p.dsn)
	if err != nil {
		return
	}
	defer conn.Close(ctx)
	_, _ = conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`)
	for i, s := range p.schemas {
		if s == schema {
			p.schemas = append(p.schemas[:i], p.schemas[i+1:]...)
			break
		}
	}
}

// connect opens one connection to dsn, which may carry pgxpool's
// pool_* parameters (they configure the servers' and limits' pools).
func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg.ConnConfig)
}

// close drops every schema the run created.
func (p *pgRun) close() {
	for len(p.schemas) > 0 {
		p.dropSchema(p.schemas[len(p.schemas)-1])
	}
}

// pgLimit is a pgstore.Store opened in process on a schema of its own,
// as the example server opens its store (pgstore.Open(ctx, dsn, nil)).
type pgLimit struct {
	run    *pgRun
	schema string
	dsn    string
	s      *pgstore.Store
}

func (p *pgRun) openLimit(ctx context.Context) (*pgLimit, error) {
	schema, dsn, err := p.schemaDSN("limit")
	if err != nil {
		return nil, err
	}
	s, err := pgstore.Open(ctx, dsn, nil)
	if err != nil {
		return nil, fmt.Errorf("pgstore.Open: %w", err)
	}
	return &pgLimit{run: p, schema: schema, dsn: dsn, s: s}, nil
}

func (l *pgLimit) store() p2core.Store                      { return l.s }
func (l *pgLimit) seed(fn func(s p2core.Store) error) error { return fn(l.s) }
func (l *pgLimit) close() {
	l.s.Close()
	l.run.dropSchema(l.schema)
}

// bareClaimSQL is the physical limit of a claim: one statement deleting the
// oldest row of one session that no concurrent claimer holds, committed on
// its own, on a table of the same shape as pgstore's.
const bareClaimSQL = `DELETE FROM p2kit_key_packages WHERE (user_id, session_id, seq) IN (
	SELECT user_id, session_id, seq FROM p2kit_key_packages
	WHERE user_id = $1 AND session_id = 's'
	ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING init_key`

// bareClaim is the spec of the bare statement loop: one bareClaimSQL per
// claim over the same users, levels and round-robin order as the store
// limit, on a copy of pgstore's KeyPackage table (CREATE TABLE ... LIKE
// ... INCLUDING ALL: same columns, keys and indexes) in a schema of its
// own, through a pgx pool of the size pgstore.Open gives its own. Every returned init key goes
// through dups, so a row returned twice is counted.
func (l *limits) bareClaim(ctx context.Context, dups *dupCounter) (spec, func(), error) {
	p := l.pg
	shape, err := p.openLimit(ctx) // pgstore creates the table whose shape is copied
	if err != nil {
		return spec{}, nil, err
	}
	schema, dsn, err := p.schemaDSN("bare")
	if err != nil {
		shape.close()
		return spec{}, nil, err
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		shape.close()
		return spec{}, nil, err
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		cfg.MaxConns = pgstore.DefaultMaxConns // as pgstore.Open sizes its pool
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		shape.close()
		return spec{}, nil, err
	}
	done := func() {
		pool.Close()
		p.dropSchema(schema)
	}
	sch := pgx.Identifier{schema}.Sanitize()
	_, err = pool.Exec(ctx, `CREATE SCHEMA `+sch+`;
		CREATE TABLE `+sch+`.p2kit_key_packages (LIKE `+pgx.Identifier{shape.schema}.Sanitize()+`.p2kit_key_packages INCLUDING ALL)`)
	shape.close()
	if err != nil {
		done()
		return spec{}, nil, fmt.Errorf("bare table: %w", err)
	}
	type bareUser struct {
		id       int64
		uploaded int
		claimed  atomic.Int64
	}
	var users []*bareUser
	var next atomic.Uint64
	prepare := func(ctx context.Context, need int) error {
		n := max(len(users), ceilDiv(need, l.kpCap), l.claimUsers, 1)
		for len(users) < n {
			users = append(users, &bareUser{id: int64(len(users) + 1)})
		}
		level := min(l.kpCap, ceilDiv(need, n))
		for _, u := range users {
			if c := int(u.claimed.Load()); c > u.uploaded {
				u.claimed.Store(int64(u.uploaded))
			}
			add := level - (u.uploaded - int(u.claimed.Load()))
			if add <= 0 {
				continue
			}
			// Rows as pgstore stores a 275-byte KeyPackage: a unique
			// 32-byte init key and ref, valid for 30 days.
			_, err := pool.Exec(ctx, `INSERT INTO p2kit_key_packages
					(user_id, session_id, seq, cipher_suite, ref, init_key, data, not_after, uploaded_at)
				SELECT $1, 's', g, 1, sha256(int8send(g) || 'r'::bytea || $4::bytea), sha256(int8send(g) || $4::bytea),
					sha256(int8send(g) || $4::bytea) || decode(repeat('00', 243), 'hex'),
					date_trunc('second', now() + interval '30 days'), now()
				FROM generate_series($2::BIGINT, $3::BIGINT) g`,
				u.id, int64(u.uploaded+1), int64(u.uploaded+add), []byte(fmt.Sprint(u.id)))
			if err != nil {
				return err
			}
			u.uploaded += add
		}
		_, err := pool.Exec(ctx, `ANALYZE p2kit_key_packages`)
		return err
	}
	op := func(ctx context.Context, _ int) error {
		u := users[(next.Add(1)-1)%uint64(len(users))]
		u.claimed.Add(1)
		var key []byte
		err := pool.QueryRow(ctx, bareClaimSQL, u.id).Scan(&key)
		if errors.Is(err, pgx.ErrNoRows) {
			return errPoolDry
		}
		if err == nil {
			dups.add(string(key))
		}
		return err
	}
	return spec{name: limitBare, prepare: prepare, calib: 20000, op: op}, done, nil
}

// depthPool is the claim-depth phases' users: synthetic user IDs whose
// one session each holds KeyPackages seeded directly into the server's
// database through pgstore (the server does not validate what it hands
// out, so the KeyPackages need not be real), topped up to the depth
// before every phase.
type depthPool struct {
	s     *pgstore.Store
	users map[int][]*claimTarget // per depth
	next  atomic.Uint64
	ids   atomic.Int64
	keys  atomic.Uint64
}

// depthUsers is the least number of users a depth phase spreads its
// claims over, so concurrent claims rarely meet in one session.
const depthUsers = 64

// prepareDepth makes sure depth's users hold depth KeyPackages each and
// are enough for need claims without any losing more than half.
func (e *env) prepareDepth(ctx context.Context, pg *pgRun, depth, need int) error {
	p := &e.depth
	if p.s == nil {
		s, err := pgstore.Open(ctx, pg.serverDSN, nil)
		if err != nil {
			return err
		}
		p.s, p.users = s, map[int][]*claimTarget{}
		p.ids.Store(1 << 40) // far from the server's Snowflake IDs
	}
	n := max(len(p.users[depth]), ceilDiv(2*need, depth), depthUsers)
	for len(p.users[depth]) < n {
		id := p2core.UserID(p.ids.Add(1))
		p.users[depth] = append(p.users[depth], &claimTarget{path: "/p2core/keypackage/" + id.String(), a: &actor{sess: loginResponse{UserID: id}}})
	}
	total := 0
	for _, t := range p.users[depth] {
		if c := int(t.claimed.Load()); c > t.uploaded {
			t.claimed.Store(int64(t.uploaded))
		}
		total += max(0, depth-(t.uploaded-int(t.claimed.Load())))
	}
	if total == 0 {
		return nil
	}
	e.progress("  seeding %d KeyPackages for %d users of %d each, directly into the server's database", total, n, depth)
	now := time.Now()
	return parallel(ctx, len(p.users[depth]), 2, func(i int) error {
		t := p.users[depth][i]
		add := depth - (t.uploaded - int(t.claimed.Load()))
		for add > 0 {
			k := min(add, 1000)
			kps := make([]p2core.KeyPackage, k)
			for j := range kps {
				kps[j] = synthKP(p.keys.Add(1), t.a.sess.UserID, "s", now)
			}
			if err := p.s.AddKeyPackages(ctx, kps, 1<<30, now); err != nil {
				return err
			}
			add -= k
			t.uploaded += k
		}
		return nil
	})
}

// depthOp claims (route 14) from the next user of depth.
func (e *env) depthOp(depth int) func(ctx context.Context, w int) error {
	return func(ctx context.Context, w int) error {
		users := e.depth.users[depth]
		t := users[(e.depth.next.Add(1)-1)%uint64(len(users))]
		t.claimed.Add(1)
		b, err := e.hc.expect(ctx, 200, "GET", e.at(w)+t.path, e.actors[w].auth, nil)
		if err != nil {
			return err
		}
		return e.countClaimed(b)
	}
}

// runDepth measures HTTP claims from sessions holding depth KeyPackages
// at n clients.
func runDepth(ctx context.Context, e *env, pg *pgRun, m measurer, depth, n int, watch *procWatch, db *dbWatch) (Result, error) {
	sp := spec{name: fmt.Sprintf("claim-depth-%d", depth), op: e.depthOp(depth),
		setup:   func(ctx context.Context) error { return e.ensureActors(ctx, n) },
		prepare: func(ctx context.Context, need int) error { return e.prepareDepth(ctx, pg, depth, need) }}
	st, err := m.measure(ctx, sp, n, watch, db)
	if err != nil {
		return Result{}, err
	}
	res := Result{Scenario: sp.name, Clients: n, Runs: 1, Servers: len(e.bases), Depth: depth,
		Requests: st.requests, RPS: st.rps(), P50: st.quantile(.50), P95: st.quantile(.95), P99: st.quantile(.99),
		Max: st.quantile(1), Errors: st.errors, ErrorSamples: st.errMsgs, LimitName: "-", LoadgenCPU: st.selfCPU,
		Duplicates: e.claimed.count()}
	if st.procCPU >= 0 {
		res.ServerCPU = st.procCPU
	}
	res.dbCosts(st, stats{})
	return res, nil
}
