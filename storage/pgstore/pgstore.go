// Package pgstore is a PostgreSQL p2core.Store (pgx/v5): several server
// instances share one database, and every atomic Store method stays atomic
// across them.
//
//	store, err := pgstore.Open(ctx, "postgres://p2kit@db.internal/p2kit", nil)
//
// # Schema
//
// Open creates and migrates its own tables (all named p2kit_*). Migrations
// are versioned in p2kit_schema_migrations and run in one transaction that
// first takes pg_advisory_xact_lock, so any number of instances may start
// at once against an empty database: one migrates, the others wait and
// find the work done. Open refuses a database migrated by a newer pgstore.
// The tables live in Options.Schema, else in the first schema of the DSN's
// search_path parameter (for example
// "postgres://host/db?search_path=p2kit"), else in the connection's
// default schema (normally public); a named schema is created if missing.
// Open therefore needs the CREATE privilege the first time.
//
// # How the atomic methods are made atomic
//
//   - RedeemToken is one DELETE ... WHERE hash AND server AND expires_at >
//     now RETURNING; the same statement deletes the token when it has
//     expired. Of concurrent redemptions one deletes the row and the others
//     find nothing.
//   - Init keys are unique through the primary key of p2kit_init_keys,
//     which holds every live init key: stored KeyPackages, last resorts and
//     handed-out KeyPackages (until their NotAfter). Two uploads of one init
//     key race on that index, so exactly one wins. A regular KeyPackage's
//     row records where the KeyPackage is stored; once a claim has deleted
//     it, the init key is handed out, so claims never write that table. An upload takes the
//     user's p2kit_users row lock (an upsert) and its session's
//     p2kit_kp_sessions row lock before counting against the per-user cap,
//     so concurrent uploads cannot overshoot it; it stores all its
//     KeyPackages in one transaction or none, its statements sent in one
//     round trip (the init keys and KeyPackages each one INSERT ... SELECT
//     FROM unnest).
//   - Counts are columns: each session's p2kit_kp_sessions row holds how
//     many regular KeyPackages it stores (available), a lower bound of
//     their NotAfter, and its head (every regular KeyPackage with a lower
//     upload sequence number is gone). Uploads, claims and purges update
//     them in the statements that change the KeyPackages, under the row's
//     lock, so nothing counts rows to answer Remaining, route 15 or the
//     cap; only when the NotAfter bound has passed (a KeyPackage expired
//     and is not purged yet) are the session's expired ones counted.
//   - ClaimKeyPackages is, in the common case, one statement committed on
//     its own: it locks the user's session rows in session order (leaving
//     out, by the session's p2kit_sessions row and current cert, those
//     that p2core.SessionEnds says have ended by themselves), takes
//     from each session the first claimable KeyPackage at or after its head
//     through the primary key (user_id, session_id, seq) (one index probe
//     when that is the first KeyPackage at the head, as it is unless a
//     suite filter or an expired KeyPackage skips it), deletes it, and
//     updates the session's counts and head.
//     So claims of one session take turns on its row (about one commit
//     time each), claims of different users run side by side, and a claim
//     never walks over index entries its predecessors deleted. Only a
//     session that gives nothing goes on to p2core.ClaimFrom's last-resort
//     rule, in a transaction that re-checks under the row lock that no
//     claimable regular KeyPackage has arrived since. So no KeyPackage is
//     handed out twice, and the last resort is never handed out while a
//     regular KeyPackage remains. Every writer of KeyPackages locks the
//     session row before the KeyPackage rows, so they cannot deadlock.
//   - Concurrent claims share their commit. While Options.BatchesInFlight
//     batches of claims run, the claims that arrive wait and then go
//     together (up to Options.MaxBatch): their statements are sent in one
//     round trip with one Sync, so PostgreSQL runs them as one implicit
//     transaction, each statement seeing the ones before it (two claims
//     of one user take different KeyPackages); all commit, or none does.
//     A batch takes its users in ascending order, so batches lock session
//     rows in one order and cannot deadlock each other. A lone claim
//     runs at once, on its own. Session-token lookups (SessionByToken)
//     are gathered the same way into one statement (token_hash = ANY).
//   - PutIDCert and EndSession serialise per session on a p2kit_cert_heads
//     row; a partial unique index guarantees one current cert per session.
//   - AddServerKey is a compare-and-swap: the current key's row is updated
//     (retired) only if its fingerprint is the expected one, and the first
//     key takes a fixed primary key, so of racing instances one wins and
//     the others get ErrConflict.
//   - CreateSession is one transaction: the FID mapping (INSERT ... ON
//     CONFLICT DO NOTHING, then SELECT), the user's p2kit_users row lock
//     under which the per-user caps are counted, the session, its cert
//     and its KeyPackages.
//
// Serialisation failures (40001) and deadlocks (40P01) are retried a
// bounded number of times (Options.MaxRetries). Unique violations (23505)
// become p2core.ErrConflict, or p2core.ErrDuplicateKeyPackage for init keys.
//
// # Context, deadlines and timeouts
//
// Every method returns an error matching ctx.Err() when ctx is done before
// it starts. Reads pass ctx to every statement. A multi-statement method
// runs in one transaction and checks ctx again before COMMIT, which it then
// sends without ctx's cancellation: once the work is done it is committed
// and reported, not lost to a late cancel. A single-statement write is,
// like a COMMIT, not interrupted by ctx once sent: the server may commit
// it whatever the client does, so a cancellation during it cannot
// honestly be reported as "nothing changed".
//
// A database that stops answering cannot hold a caller: each method's
// database work (waiting for a pooled connection, statements, retries and
// COMMIT) has a deadline, Options.OperationTimeout (10 s by default). When
// it passes, the connection in use is cut off (and replaced by the pool
// later) and the method returns an error matching p2core.ErrUnavailable
// and context.DeadlineExceeded, which httpadapter answers with 503
// P2CORE_UNAVAILABLE; as after any lost answer, the caller cannot tell
// whether a write cut off during its COMMIT took effect. Every new
// connection, and Open as a whole, is bounded by Options.ConnectTimeout
// (the DSN's connect_timeout, else 10 s), so Open fails with a message
// naming the timeout instead of waiting forever for a server that accepts
// connections but never answers. Close waits for the connections to
// close, at most 15 s each when the database no longer answers (pgx's
// bound).
//
// # Portability
//
// The SQL uses standard types (BYTEA, BIGINT, INTEGER, SMALLINT, BOOLEAN,
// TEXT, TIMESTAMPTZ) and identity columns, no PL/pgSQL, triggers or
// LISTEN/NOTIFY, and orders text in Go rather than by collation.
// PostgreSQL-specific constructs, each also offered by YugabyteDB and (except
// where noted) CockroachDB: pg_advisory_xact_lock for the migration lock
// (a no-op stub in CockroachDB releases before 2026: there, start the
// first instance alone), FOR
// UPDATE, INSERT ... ON CONFLICT, data-modifying WITH queries,
// multi-argument unnest WITH ORDINALITY, partial unique indexes, and
// search_path for the schema. Each connection sets random_page_cost to
// 1.1 (PostgreSQL's advice for data in memory or on SSD; at the default
// of 4 the planner read small, often-updated tables whole instead of by
// key) unless the DSN sets it, and plans as before on a database without
// the setting. Statements are prepared and cached per
// connection (pgx's default); behind PgBouncer in transaction mode, set
// default_query_exec_mode=exec in the DSN.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/p2kit/p2kit/p2core"
)

// Options tunes a Store. The zero value (or a nil *Options) gives the
// documented defaults.
type Options struct {
	// MaxConns is the size of the connection pool. Zero means the DSN's
	// pool_max_conns parameter when it has one, else DefaultMaxConns.
	MaxConns int32
	// Schema is the PostgreSQL schema that holds the tables; Open creates
	// it if it does not exist and sets every connection's search_path to
	// it. Empty means the first schema named by the DSN's search_path
	// parameter (created if missing), or else the connection's default
	// schema (normally public).
	Schema string
	// StatementTimeout makes the server abort any statement that runs
	// longer (statement_timeout). Open's schema migration is exempt (an
	// index built on a large table may take longer; Open's ctx bounds it).
	// Zero leaves the server's setting, which is no limit by default.
	StatementTimeout time.Duration
	// MaxRetries is how many times an operation is retried after a
	// serialisation failure or a deadlock. Zero means 8; negative means no
	// retries.
	MaxRetries int
	// ConnectTimeout bounds every new connection (dial, TLS, start-up
	// and authentication) and Open as a whole (connecting, and checking
	// or creating the schema under its lock). Zero means the DSN's
	// connect_timeout parameter (whole seconds) when it is positive, else
	// 10 s; negative means no limit. A server that accepts connections
	// but never answers makes Open fail after it.
	ConnectTimeout time.Duration
	// OperationTimeout is the deadline of each Store method's database
	// work: waiting for a pooled connection, every statement and retry,
	// and the COMMIT. When it passes the method returns an error matching
	// both p2core.ErrUnavailable and context.DeadlineExceeded (the HTTP
	// adapter answers 503 P2CORE_UNAVAILABLE), and the connection is
	// closed, so a database that stops answering cannot hold a request
	// longer. Zero means 10 s; negative means no deadline (the caller's
	// ctx alone).
	OperationTimeout time.Duration
	// MaxBatch is the most concurrent calls of one kind (KeyPackage
	// claims; session-token lookups) that are sent to the database
	// together, in one round trip (claims: as one transaction, one
	// commit). Calls are gathered only while BatchesInFlight batches of
	// their kind already run, so a lone call never waits for others.
	// Zero means 64; 1 or less turns the gathering off, every call then
	// running on its own.
	MaxBatch int
	// BatchesInFlight is how many batches of one kind run at once; a
	// call that finds them all running waits for the next batch. Zero
	// means 2. It should be well below the pool's size (MaxConns), as
	// each batch holds a connection while it runs.
	BatchesInFlight int
}

// DefaultMaxConns is the connection pool's size unless Options.MaxConns
// or the DSN's pool_max_conns says otherwise. Concurrent commits are
// flushed to the WAL together, so the pool's size bounds how many
// commits share a flush: measured on two cores with 64 concurrent
// claimers (examples/loadgen), before claims were batched, 16 connections
// claimed twice as fast as pgx's default of 4, and 48 no faster than 16. A server runs
// at most this many statements at once; several instances on one
// database need that many connections each (max_connections is 100 by
// default).
const DefaultMaxConns = 16

// randomPageCost is the random_page_cost pgstore's connections plan with
// unless the DSN sets one. Every pgstore statement reaches its rows
// through a key, but PostgreSQL's default (4, priced for spinning disks)
// makes it read small tables whole instead: the claim then scanned every
// session row of every user, and the session table, updated on every
// claim, grows between vacuums, so the claim's cost grew with its history
// (measured with examples/loadgen's 200 users: a third of the claim's
// database CPU). 1.1 is PostgreSQL's advice for data in memory or on SSD.
const randomPageCost = "1.1"

// setRandomPageCost sets randomPageCost on a new connection; a database
// that does not know the setting (SQLSTATE 42704) keeps its own planning.
func setRandomPageCost(ctx context.Context, conn *pgx.Conn) error {
	_, err := conn.Exec(ctx, `SET random_page_cost = `+randomPageCost)
	if pgCode(err) == "42704" {
		return nil
	}
	return err
}

// Defaults of the zero Options.
const (
	defaultMaxRetries       = 8
	defaultConnectTimeout   = 10 * time.Second
	defaultOperationTimeout = 10 * time.Second
	defaultMaxBatch         = 64
	defaultBatchesInFlight  = 2
)

// Store is a p2core.Store kept in PostgreSQL. It is safe for concurrent use
// by any number of goroutines and, sharing one database, by any number of
// processes. Create it with Open.
type Store struct {
	pool       *pgxpool.Pool
	maxRetries int
	// opTimeout is Options.OperationTimeout (0: none); Open's start-up
	// runs with the connect timeout instead.
	opTimeout time.Duration
	closed    atomic.Bool
	closeOnce sync.Once
	// claims and lookups gather concurrent claims and session-token
	// lookups into batches (Options.MaxBatch).
	claims  coalescer[*claim]
	lookups coalescer[*lookup]
}

// The compiler checks that *Store is a p2core.Store.
var _ p2core.Store = (*Store)(nil)

// Open connects to the database named by dsn (a libpq URL or key=value
// string, as pgx accepts), creates or migrates the schema, and returns the
// Store. It fails if the database cannot be reached or does not answer
// within Options.ConnectTimeout (10 s by default), the schema cannot be
// migrated, or the database was migrated by a newer version of pgstore.
// opts may be nil.
func Open(ctx context.Context, dsn string, opts *Options) (*Store, error) {
	return open(ctx, dsn, opts, migrations)
}

// open is Open with the schema history to migrate along.
func open(ctx context.Context, dsn string, opts *Options, history []migration) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = defaultMaxRetries
	} else if o.MaxRetries < 0 {
		o.MaxRetries = 0
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: parse DSN: %w", err)
	}
	rp := cfg.ConnConfig.RuntimeParams
	schema := o.Schema
	if schema != "" {
		rp["search_path"] = pgx.Identifier{schema}.Sanitize()
	} else {
		schema = firstSchema(rp["search_path"])
	}
	if o.StatementTimeout > 0 {
		rp["statement_timeout"] = strconv.FormatInt(max(o.StatementTimeout.Milliseconds(), 1), 10)
	}
	if rp["application_name"] == "" {
		rp["application_name"] = "p2kit"
	}
	if rp["random_page_cost"] == "" {
		// Set after connecting rather than as a start-up parameter, so
		// that a database without the setting still connects.
		cfg.AfterConnect = setRandomPageCost
	}
	switch {
	case o.MaxConns > 0:
		cfg.MaxConns = o.MaxConns
	case !strings.Contains(dsn, "pool_max_conns"):
		cfg.MaxConns = DefaultMaxConns
	}
	connect := o.ConnectTimeout
	switch {
	case connect == 0 && cfg.ConnConfig.ConnectTimeout > 0:
		connect = cfg.ConnConfig.ConnectTimeout
	case connect == 0:
		connect = defaultConnectTimeout
	case connect < 0:
		connect = 0
	}
	cfg.ConnConfig.ConnectTimeout = connect
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connect: %w", err)
	}
	s := &Store{pool: pool, maxRetries: o.MaxRetries, opTimeout: connect}
	size, inFlight := o.MaxBatch, o.BatchesInFlight
	if size == 0 {
		size = defaultMaxBatch
	}
	if inFlight <= 0 {
		inFlight = defaultBatchesInFlight
	}
	if size <= 1 {
		// Every call finds a free slot: none waits, none is gathered.
		size, inFlight = 1, math.MaxInt
	}
	s.claims = coalescer[*claim]{max: size, inFlight: inFlight}
	s.lookups = coalescer[*lookup]{max: size, inFlight: inFlight}
	if err := s.migrate(ctx, schema, history); err != nil {
		pool.Close()
		return nil, err
	}
	switch {
	case o.OperationTimeout == 0:
		s.opTimeout = defaultOperationTimeout
	case o.OperationTimeout < 0:
		s.opTimeout = 0
	default:
		s.opTimeout = o.OperationTimeout
	}
	return s, nil
}

// firstSchema returns the first schema of a search_path setting, unquoted,
// or "" when there is none or it is "$user".
func firstSchema(searchPath string) string {
	first, _, _ := strings.Cut(searchPath, ",")
	first = strings.TrimSpace(first)
	if len(first) >= 2 && first[0] == '"' && first[len(first)-1] == '"' {
		first = strings.ReplaceAll(first[1:len(first)-1], `""`, `"`)
	}
	if first == "$user" {
		return ""
	}
	return first
}

// Close closes the connection pool, waiting for calls in progress to
// release their connections. Later calls return p2core.ErrClosed. It is
// safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.pool.Close()
	})
	return nil
}

// enter is called first by every method: a done ctx or a closed store
// refuses the call before anything is sent.
func (s *Store) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return p2core.ErrClosed
	}
	return nil
}

// fail translates an error of operation op at the backend boundary: a done
// ctx wins (so errors.Is(err, context.Canceled) holds), then a closed
// store, then the operation's deadline (dl, when done: the error matches
// context.DeadlineExceeded); p2core sentinels pass through; a unique
// violation becomes ErrConflict; anything else is wrapped as an internal
// failure.
func (s *Store) fail(ctx context.Context, dl *deadline, op string, err error) error {
	if err == nil {
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("pgstore: %s: %w", op, cerr)
	}
	if s.closed.Load() {
		return fmt.Errorf("pgstore: %s: %w", op, p2core.ErrClosed)
	}
	if dl.passed() {
		return fmt.Errorf("pgstore: %s: the database did not answer within %v: %w: %w", op, s.opTimeout, p2core.ErrUnavailable, context.DeadlineExceeded)
	}
	if isSentinel(err) {
		return err
	}
	if transient(err) {
		return fmt.Errorf("pgstore: %s: %w: %w", op, p2core.ErrUnavailable, err)
	}
	if pgCode(err) == "23505" {
		return fmt.Errorf("pgstore: %s: %w (%v)", op, p2core.ErrConflict, constraintName(err))
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}

// isSentinel reports whether err already carries a p2core Store sentinel.
func isSentinel(err error) bool {
	for _, target := range []error{p2core.ErrNotFound, p2core.ErrConflict, p2core.ErrTokenInvalid,
		p2core.ErrDuplicateKeyPackage, p2core.ErrTooManyKeyPackages, p2core.ErrTooManySessions,
		p2core.ErrClosed, p2core.ErrUnavailable} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// transient reports whether err is a failure expected to pass, which the
// Store reports as p2core.ErrUnavailable: the server cannot be reached
// (connection refused or reset, no connection could be made), a
// connection exception (SQLSTATE class 08), or the server is shutting
// down, crashed or starting up (57P01, 57P02, 57P03).
func transient(err error) bool {
	code := pgCode(err)
	if strings.HasPrefix(code, "08") {
		return true
	}
	switch code {
	case "57P01", "57P02", "57P03":
		return true
	}
	var ce *pgconn.ConnectError
	return errors.As(err, &ce) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// pgCode returns the SQLSTATE of a server error, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

func constraintName(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.ConstraintName
	}
	return ""
}

// retryable reports whether a transaction that failed with err may simply
// be run again: a serialisation failure or a detected deadlock.
func retryable(err error) bool {
	switch pgCode(err) {
	case "40001", "40P01":
		return true
	}
	return false
}

// backoff sleeps before retry attempt n (from 1), or returns early when ctx
// is done.
func backoff(ctx context.Context, n int) {
	d := time.Duration(n) * time.Millisecond
	d += rand.N(d + time.Millisecond)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// querier is what both the pool and a transaction offer.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// deadline is one operation's Options.OperationTimeout: ctx is the
// caller's ctx with the deadline (for waiting on the pool), and end is
// the deadline alone, without the caller's cancellation (for COMMIT).
// A nil *deadline is no deadline.
type deadline struct {
	at     time.Time
	ctx    context.Context
	end    context.Context
	cancel func()
}

// deadline starts the operation's deadline; call done when it returns.
func (s *Store) deadline(ctx context.Context) *deadline {
	if s.opTimeout <= 0 {
		return nil
	}
	at := time.Now().Add(s.opTimeout)
	dctx, cancel1 := context.WithDeadline(ctx, at)
	end, cancel2 := context.WithDeadline(context.WithoutCancel(ctx), at)
	return &deadline{at: at, ctx: dctx, end: end, cancel: func() { cancel1(); cancel2() }}
}

func (d *deadline) done() {
	if d != nil {
		d.cancel()
	}
}

// passed reports whether the deadline has passed.
func (d *deadline) passed() bool { return d != nil && !time.Now().Before(d.at) }

// waitCtx is what waiting for a pooled connection honours.
func (d *deadline) waitCtx(ctx context.Context) context.Context {
	if d == nil {
		return ctx
	}
	return d.ctx
}

// commitCtx is what COMMIT and ROLLBACK honour: the deadline, not the
// caller's cancellation (bounded by commitTimeout without a deadline).
func (d *deadline) commitCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if d == nil {
		return context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	}
	return context.WithCancel(d.end)
}

// commitTimeout bounds a COMMIT, which is sent without the caller's
// cancellation, when there is no operation deadline.
const commitTimeout = 30 * time.Second

// guard cuts conn off when the deadline passes, whatever statement it is
// in: the statements of an operation run with the caller's ctx, so the
// deadline reaches them through the network connection (its read and
// write deadline set to now, which pgx treats as a broken connection and
// closes). The returned func must be called before conn is released.
func (d *deadline) guard(conn *pgxpool.Conn) (release func()) {
	if d == nil {
		return func() {}
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(d.end, func() {
		_ = conn.Conn().PgConn().Conn().SetDeadline(time.Now())
		close(fired)
	})
	return func() {
		if !stop() {
			<-fired // the connection is broken; the pool discards it
		}
	}
}

// acquire takes a pooled connection guarded by the deadline.
func (s *Store) acquire(ctx context.Context, d *deadline) (*pgxpool.Conn, func(), error) {
	conn, err := s.pool.Acquire(d.waitCtx(ctx))
	if err != nil {
		return nil, nil, err
	}
	unguard := d.guard(conn)
	return conn, func() { unguard(); conn.Release() }, nil
}

// do runs a single-statement read, retrying it on serialisation failures
// and deadlocks, within the operation deadline. ctx cancels it at any
// point.
func (s *Store) do(ctx context.Context, op string, fn func(q querier) error) error {
	return s.doConn(ctx, op, func(conn *pgxpool.Conn) error { return fn(conn) })
}

// doConn is do for operations that need the connection itself.
func (s *Store) doConn(ctx context.Context, op string, fn func(conn *pgxpool.Conn) error) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	d := s.deadline(ctx)
	defer d.done()
	for attempt := 0; ; attempt++ {
		conn, release, err := s.acquire(ctx, d)
		if err == nil {
			err = fn(conn)
			release()
		}
		if err != nil && retryable(err) && attempt < s.maxRetries && ctx.Err() == nil && !d.passed() {
			backoff(d.waitCtx(ctx), attempt+1)
			continue
		}
		return s.fail(ctx, d, op, err)
	}
}

// write runs a single-statement write (atomic by itself), retrying it on
// serialisation failures and deadlocks, within the operation deadline.
// ctx is checked before the statement is sent; the statement then runs
// without ctx's cancellation, bounded by the deadline, as a COMMIT does: once sent it may commit on
// the server however the client gives up, so a cancellation that arrives
// during it must not be reported as "nothing changed". fn gets the
// context to run the statement with.
func (s *Store) write(ctx context.Context, op string, fn func(ctx context.Context, q querier) error) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	d := s.deadline(ctx)
	defer d.done()
	wctx, cancel := d.commitCtx(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		conn, release, err := s.acquire(ctx, d)
		if err == nil {
			err = fn(wctx, conn)
			release()
		}
		if err != nil && retryable(err) && attempt < s.maxRetries && ctx.Err() == nil && !d.passed() {
			backoff(d.waitCtx(ctx), attempt+1)
			continue
		}
		return s.fail(ctx, d, op, err)
	}
}

// tx runs fn in one READ COMMITTED transaction and commits it, retrying
// the whole transaction on serialisation failures and deadlocks (so fn must
// reset anything it accumulates), within the operation deadline. An error
// from fn rolls back. ctx is checked before COMMIT; the COMMIT itself is
// not cancelled by ctx, only by the deadline.
func (s *Store) tx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	d := s.deadline(ctx)
	defer d.done()
	for attempt := 0; ; attempt++ {
		err := s.runTx(ctx, d, fn)
		if err != nil && retryable(err) && attempt < s.maxRetries && ctx.Err() == nil && !d.passed() {
			backoff(d.waitCtx(ctx), attempt+1)
			continue
		}
		return s.fail(ctx, d, op, err)
	}
}

func (s *Store) runTx(ctx context.Context, d *deadline, fn func(tx pgx.Tx) error) (err error) {
	conn, release, err := s.acquire(ctx, d)
	if err != nil {
		return err
	}
	defer release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			rctx, cancel := d.commitCtx(ctx)
			_ = tx.Rollback(rctx)
			cancel()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	cctx, cancel := d.commitCtx(ctx)
	defer cancel()
	return tx.Commit(cctx)
}

// ts normalises a time as stored: microsecond precision, UTC.
func ts(t time.Time) time.Time { return t.Truncate(time.Microsecond).UTC() }

// nullTime maps the zero time to SQL NULL.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := ts(t)
	return &u
}

// fromNull maps SQL NULL back to the zero time; other times come back in
// UTC.
func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// nn makes a nil slice an empty one, for NOT NULL BYTEA columns.
func nn(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// orNil returns nil for an empty slice, as every backend returns empty
// byte fields.
func orNil(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

// uid stores a user ID (a uint64 Snowflake) in a BIGINT, bit for bit.
func uid(u p2core.UserID) int64 { return int64(u) }
