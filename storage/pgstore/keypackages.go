package pgstore

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/p2kit/p2kit/p2core"
)

// Kinds of rows in p2kit_init_keys. Kind 3, a handed-out last resort's
// (in use until not_after), is written by SQL alone (releaseLastResort).
const (
	keyStored     = 1 // a regular KeyPackage's: stored while its row is, handed out once it is gone
	keyLastResort = 2 // a stored last resort's
)

// kpSession is what lockKPSession reads of a session's row.
type kpSession struct {
	first      int64      // the first reserved upload sequence number
	lrKey      []byte     // the last resort's init key; nil when none
	lrNotAfter *time.Time // the last resort's NotAfter
	lrUsed     bool       // the last resort was handed out
}

// lockKPSessionSQL upserts session ($1, $2)'s p2kit_kp_sessions row,
// which locks it until the transaction ends, reserving $3 upload sequence
// numbers for as many new regular KeyPackages, whose earliest NotAfter is
// $4 (NULL when none).
const lockKPSessionSQL = `INSERT INTO p2kit_kp_sessions (user_id, session_id, next_seq, available, min_not_after)
	VALUES ($1, $2, 1 + $3::BIGINT, $3::BIGINT, $4::TIMESTAMPTZ)
	ON CONFLICT (user_id, session_id) DO UPDATE SET next_seq = p2kit_kp_sessions.next_seq + $3::BIGINT,
		available = p2kit_kp_sessions.available + $3::BIGINT,
		min_not_after = least(p2kit_kp_sessions.min_not_after, $4::TIMESTAMPTZ)
	RETURNING next_seq, lr_init_key, lr_not_after, lr_used`

// lockKPSession runs lockKPSessionSQL for no new KeyPackage.
func lockKPSession(ctx context.Context, tx pgx.Tx, user int64, sid string) (kpSession, error) {
	var (
		ks   kpSession
		next int64
	)
	err := tx.QueryRow(ctx, lockKPSessionSQL, user, sid, int64(0), nil).Scan(&next, &ks.lrKey, &ks.lrNotAfter, &ks.lrUsed)
	ks.first = next
	return ks, err
}

// initKeys is a set of init keys to record, in byte order: every
// transaction inserts init keys in that order, so two uploads sharing
// keys wait for each other instead of deadlocking.
type initKeys struct {
	keys      [][]byte    // each non-nil, in byte order
	notAfters []time.Time // keys[i]'s KeyPackage's NotAfter
	pos       []int64     // keys[i]'s index in the upload: its KeyPackage's upload sequence number, less the first reserved
	kind      int16
	// The session whose regular KeyPackages these are (kind keyStored;
	// user 0 otherwise): each row records (user, session, seq) of its
	// KeyPackage, whose row being gone is what makes it handed out.
	user int64
	sid  string
	n    int64 // how many sequence numbers lockKPSessionSQL reserved last
}

// newInitKeys sorts keys (with their notAfters) for recording as kind.
func newInitKeys(keys [][]byte, notAfters []time.Time, kind int16) *initKeys {
	idx := make([]int, len(keys))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return bytes.Compare(keys[a], keys[b]) })
	ik := &initKeys{keys: make([][]byte, len(keys)), notAfters: make([]time.Time, len(keys)), pos: make([]int64, len(keys)), kind: kind}
	for i, j := range idx {
		ik.keys[i], ik.notAfters[i], ik.pos[i] = nn(keys[j]), notAfters[j], int64(j)
	}
	return ik
}

// locatorSQL is the upload sequence number of the KeyPackage at position
// $pos of session ($user, $sid)'s last upload (NULL for a user of NULL),
// from the sequence numbers lockKPSessionSQL reserved ($n of them).
const locatorSQL = `CASE WHEN $4::BIGINT IS NULL THEN NULL ELSE (SELECT next_seq FROM p2kit_kp_sessions
	WHERE user_id = $4::BIGINT AND session_id = $5::TEXT) - $6::BIGINT + %s END`

// insertInitKeysSQL records the init keys $1 (sorted), in use until $2,
// as kind $3, their KeyPackages at positions $7 of session ($4, $5)'s
// upload of $6 (see locatorSQL), skipping those already recorded; it
// returns those recorded.
var insertInitKeysSQL = `INSERT INTO p2kit_init_keys (init_key, kind, not_after, user_id, session_id, seq)
	SELECT u.k, $3::SMALLINT, u.na, $4::BIGINT, $5::TEXT, ` + fmt.Sprintf(locatorSQL, "u.pos") + `
	FROM unnest($1::BYTEA[], $2::TIMESTAMPTZ[], $7::BIGINT[]) WITH ORDINALITY AS u(k, na, pos, ord)
	ORDER BY u.ord
	ON CONFLICT (init_key) DO NOTHING
	RETURNING init_key`

// args returns insertInitKeysSQL's arguments.
func (ik *initKeys) args() []any {
	user, sid := ik.owner()
	return []any{ik.keys, ik.notAfters, ik.kind, user, sid, ik.n, ik.pos}
}

// owner returns the session the keys' KeyPackages are stored in, as
// statement arguments: NULLs unless they are regular KeyPackages'.
func (ik *initKeys) owner() (user, sid any) {
	if ik.user != 0 {
		return ik.user, ik.sid
	}
	return nil, nil
}

// claimInitKeys records ik in p2kit_init_keys. It returns
// ErrDuplicateKeyPackage if any key is held by the rule
// p2core.InitKeyHeld. ik's keys must be free of repeats.
func claimInitKeys(ctx context.Context, tx pgx.Tx, ik *initKeys, now time.Time) error {
	rows, err := tx.Query(ctx, insertInitKeysSQL, ik.args()...)
	if err != nil {
		return err
	}
	inserted, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return err
	}
	return takeOverInitKeys(ctx, tx, ik, inserted, now)
}

// handedOutSQL says whether init key row i is a handed-out KeyPackage's:
// kind 3, or kind 1 whose KeyPackage row is gone (claims delete the
// KeyPackage's row and leave the init key's alone). A kind 1 row without
// a locator (recorded before schema version 2, whose claims set kind 3)
// is a stored KeyPackage's.
const handedOutSQL = `(i.kind = 3 OR (i.kind = 1 AND i.seq IS NOT NULL AND NOT EXISTS (
		SELECT 1 FROM p2kit_key_packages k
		WHERE k.user_id = i.user_id AND k.session_id = i.session_id AND k.seq = i.seq AND k.init_key = i.init_key)))`

// initKeyHeldSQL reads init key $1's row, locked: whether it is handed
// out, and its NotAfter.
const initKeyHeldSQL = `SELECT ` + handedOutSQL + `, i.not_after FROM p2kit_init_keys i WHERE i.init_key = $1 FOR UPDATE OF i`

// takeOverInitKeys applies p2core.InitKeyHeld to the keys of ik that
// insertInitKeysSQL did not insert, as they are recorded already:
// ErrDuplicateKeyPackage if one is held, else they are taken over as ik's
// kind. Only keys already recorded are read (and locked), so the common
// case, all keys new, costs nothing here. A claim that deletes a
// KeyPackage while this reads does not change the answer: a claimable
// KeyPackage's init key is held stored or handed out.
func takeOverInitKeys(ctx context.Context, tx pgx.Tx, ik *initKeys, inserted [][]byte, now time.Time) error {
	if len(inserted) == len(ik.keys) {
		return nil
	}
	done := make(map[string]bool, len(inserted))
	for _, k := range inserted {
		done[string(k)] = true
	}
	user, sid := ik.owner()
	for i, k := range ik.keys {
		if done[string(k)] {
			continue
		}
		var (
			handedOut bool
			notAfter  time.Time
		)
		if err := tx.QueryRow(ctx, initKeyHeldSQL, k).Scan(&handedOut, &notAfter); err != nil {
			return err
		}
		if p2core.InitKeyHeld(handedOut, notAfter, now) {
			return fmt.Errorf("pgstore: init key in use: %w", p2core.ErrDuplicateKeyPackage)
		}
		if _, err := tx.Exec(ctx, `UPDATE p2kit_init_keys SET kind = $3, not_after = $2, user_id = $4, session_id = $5,
				seq = `+fmt.Sprintf(locatorSQL, "$7::BIGINT")+` WHERE init_key = $1`,
			k, ik.notAfters[i], ik.kind, user, sid, ik.n, ik.pos[i]); err != nil {
			return err
		}
	}
	return nil
}

// releaseLastResort frees the init key of a last resort that is replaced
// or removed, unless p2core.LastResortStaysHeld says it stays held (as
// handed out).
func releaseLastResort(ctx context.Context, tx pgx.Tx, key []byte, used bool, notAfter, now time.Time) error {
	var err error
	if p2core.LastResortStaysHeld(used, notAfter, now) {
		_, err = tx.Exec(ctx, `UPDATE p2kit_init_keys SET kind = 3 WHERE init_key = $1 AND kind = 2`, key)
	} else {
		_, err = tx.Exec(ctx, `DELETE FROM p2kit_init_keys WHERE init_key = $1 AND kind = 2`, key)
	}
	return err
}

// lockUserSQL upserts user $1's p2kit_users row, which locks it until the
// transaction ends: the per-user caps are checked and kept under it.
const lockUserSQL = `INSERT INTO p2kit_users (user_id) VALUES ($1)
	ON CONFLICT (user_id) DO UPDATE SET user_id = EXCLUDED.user_id`

// lockUser runs lockUserSQL.
func lockUser(ctx context.Context, tx pgx.Tx, user int64) error {
	_, err := tx.Exec(ctx, lockUserSQL, user)
	return err
}

// userLiveSQL counts user $1's live regular KeyPackages at $2 from the
// sessions' counts (see claimSQL), less $3 (the KeyPackages this
// transaction has counted already but not inserted yet).
const userLiveSQL = `SELECT coalesce(sum(s.available - CASE WHEN s.min_not_after <= $2 THEN (SELECT count(*) FROM p2kit_key_packages e
		WHERE e.user_id = $1 AND e.session_id = s.session_id AND e.not_after <= $2) ELSE 0 END), 0) - $3::BIGINT
	FROM p2kit_kp_sessions s WHERE s.user_id = $1`

// insertKeyPackagesSQL stores the KeyPackages of session ($1, $2) with
// the upload sequence numbers lockKPSessionSQL reserved last ($3 of them).
const insertKeyPackagesSQL = `INSERT INTO p2kit_key_packages
		(user_id, session_id, seq, cipher_suite, ref, init_key, data, not_after, uploaded_at)
	SELECT $1, $2, (SELECT next_seq FROM p2kit_kp_sessions WHERE user_id = $1 AND session_id = $2) - $3::BIGINT + u.ord - 1,
		u.suite, u.ref, u.ik, u.data, u.na, u.ua
	FROM unnest($4::INTEGER[], $5::BYTEA[], $6::BYTEA[], $7::BYTEA[], $8::TIMESTAMPTZ[], $9::TIMESTAMPTZ[])
		WITH ORDINALITY AS u(suite, ref, ik, data, na, ua, ord)`

// addKeyPackages stores kps (checked by p2core.CheckUpload, fresh of them
// live) for one session in tx, under the user's lock, or refuses them.
// Its statements go in one round trip (a pgx batch): lock the user and
// the session (reserving sequence numbers and counting the KeyPackages
// in), record the init keys, count the user's live KeyPackages and store
// the new ones; the rules are applied to the results (a duplicate init
// key, then the cap) before COMMIT, which undoes everything on a refusal.
func addKeyPackages(ctx context.Context, tx pgx.Tx, kps []p2core.KeyPackage, fresh, max int, now time.Time) error {
	n := len(kps)
	var (
		suites              = make([]int32, n)
		refs, keys, datas   = make([][]byte, n), make([][]byte, n), make([][]byte, n)
		notAfters, uploaded = make([]time.Time, n), make([]time.Time, n)
		earliest            = ts(kps[0].NotAfter)
	)
	for i, kp := range kps {
		suites[i] = int32(kp.CipherSuite)
		refs[i], keys[i], datas[i] = nn(kp.Ref), nn(kp.InitKey), nn(kp.Data)
		notAfters[i], uploaded[i] = ts(kp.NotAfter), ts(kp.UploadedAt)
		if notAfters[i].Before(earliest) {
			earliest = notAfters[i]
		}
	}
	u, id := uid(kps[0].UserID), string(kps[0].SessionID)
	ik := newInitKeys(keys, notAfters, keyStored)
	ik.user, ik.sid, ik.n = u, id, int64(n)
	b := &pgx.Batch{}
	b.Queue(lockUserSQL, u)
	b.Queue(lockKPSessionSQL, u, id, int64(n), earliest)
	b.Queue(insertInitKeysSQL, ik.args()...)
	b.Queue(userLiveSQL, u, now, int64(n))
	b.Queue(insertKeyPackagesSQL, u, id, int64(n), suites, refs, keys, datas, notAfters, uploaded)
	br := tx.SendBatch(ctx, b)
	var (
		inserted [][]byte
		have     int64
	)
	_, err := br.Exec()
	if err == nil {
		_, err = br.Exec()
	}
	if err == nil {
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			inserted, err = pgx.CollectRows(rows, pgx.RowTo[[]byte])
		}
	}
	if err == nil {
		err = br.QueryRow().Scan(&have)
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := takeOverInitKeys(ctx, tx, ik, inserted, now); err != nil {
		return err
	}
	return p2core.CheckKeyPackageCap(int(have), fresh, max)
}

// AddKeyPackages implements p2core.KeyPackageStore in one transaction:
// all or nothing. Init-key uniqueness holds across instances through the
// primary key of p2kit_init_keys; the user's cap through the user's row
// lock.
func (s *Store) AddKeyPackages(ctx context.Context, kps []p2core.KeyPackage, max int, now time.Time) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	if len(kps) == 0 {
		return nil
	}
	now = ts(now)
	fresh, err := p2core.CheckUpload(kps, nil, now)
	if err != nil {
		return err
	}
	return s.tx(ctx, "AddKeyPackages", func(tx pgx.Tx) error {
		return addKeyPackages(ctx, tx, kps, fresh, max, now)
	})
}

// setLastResort makes kp its session's last resort in tx, under the
// session's row lock.
func setLastResort(ctx context.Context, tx pgx.Tx, kp p2core.KeyPackage, now time.Time) error {
	u, id := uid(kp.UserID), string(kp.SessionID)
	key, notAfter := nn(kp.InitKey), ts(kp.NotAfter)
	old, err := lockKPSession(ctx, tx, u, id)
	if err != nil {
		return err
	}
	if old.lrKey != nil && bytes.Equal(old.lrKey, key) {
		if _, err := tx.Exec(ctx, `UPDATE p2kit_init_keys SET kind = 2, not_after = $2 WHERE init_key = $1`, key, notAfter); err != nil {
			return err
		}
	} else {
		if err := claimInitKeys(ctx, tx, newInitKeys([][]byte{key}, []time.Time{notAfter}, keyLastResort), now); err != nil {
			return fmt.Errorf("pgstore: last resort: %w", err)
		}
		if old.lrKey != nil {
			if err := releaseLastResort(ctx, tx, old.lrKey, old.lrUsed, fromNull(old.lrNotAfter), now); err != nil {
				return err
			}
		}
	}
	_, err = tx.Exec(ctx, `UPDATE p2kit_kp_sessions SET lr_cipher_suite = $3, lr_ref = $4, lr_init_key = $5,
			lr_data = $6, lr_not_after = $7, lr_uploaded_at = $8, lr_used = FALSE
		WHERE user_id = $1 AND session_id = $2`,
		u, id, int32(kp.CipherSuite), nn(kp.Ref), key, nn(kp.Data), notAfter, ts(kp.UploadedAt))
	return err
}

// SetLastResort implements p2core.KeyPackageStore in one transaction,
// under the session's row lock.
func (s *Store) SetLastResort(ctx context.Context, kp p2core.KeyPackage, now time.Time) error {
	now = ts(now)
	return s.tx(ctx, "SetLastResort", func(tx pgx.Tx) error { return setLastResort(ctx, tx, kp, now) })
}

// InitKeyInUse implements p2core.KeyPackageStore with one read.
func (s *Store) InitKeyInUse(ctx context.Context, initKeys [][]byte, now time.Time) (int, error) {
	now = ts(now)
	out := -1
	err := s.do(ctx, "InitKeyInUse", func(q querier) error {
		out = -1
		keys := make([][]byte, len(initKeys))
		for i, k := range initKeys {
			keys[i] = nn(k)
		}
		rows, err := q.Query(ctx, `SELECT u.ord, `+handedOutSQL+`, i.not_after
			FROM unnest($1::BYTEA[]) WITH ORDINALITY AS u(k, ord) JOIN p2kit_init_keys i ON i.init_key = u.k`, keys)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				ord       int64
				handedOut bool
				notAfter  time.Time
			)
			if err := rows.Scan(&ord, &handedOut, &notAfter); err != nil {
				return err
			}
			if p2core.InitKeyHeld(handedOut, notAfter, now) && (out < 0 || int(ord-1) < out) {
				out = int(ord - 1)
			}
		}
		return rows.Err()
	})
	if err != nil {
		return 0, err
	}
	return out, nil
}

// claimSQL is a claim's common case, one statement: for every session of
// user $1, in session order, it locks the session's p2kit_kp_sessions row
// (so claims of one session take turns: the row holds the counts they
// update) and takes the first regular KeyPackage at or after the
// session's head that is claimable at $2 for suite $3 (0: any), through
// the primary key's (user_id, session_id, seq) order: deleted (which
// makes its init key handed out, see handedOutSQL: the init key's row is
// not written), the session's count decremented and, when it was the
// first KeyPackage stored at or after the head, the head moved past it
// (every KeyPackage before the head is gone, so no claim walks over the
// index entries its predecessors deleted). In the common case that first
// KeyPackage is the one taken, found by one index probe; only when it is
// not claimable at this claim's time or for its suite does a second probe
// look further, and the head stays, as a claim at another time or of
// another suite may take it. It returns one row per session: the
// KeyPackage taken (NULLs when none), the session's stored regular
// KeyPackages after the claim, whether the session stores anything (a
// session that gave nothing and stores something goes to
// p2core.ClaimFrom's last-resort rule), and whether some of them may have
// expired.
//
// Counting is this backend's form of p2core.Live: available counts every
// stored regular KeyPackage, expired or not, and min_not_after is a lower
// bound of their NotAfter. Only when that bound has passed (a KeyPackage
// expired and is not purged yet, which purges, every minute in the
// example server, keep rare) does the claim count the session's live
// ones, in a statement of its own (availableSQL); the statement itself
// stays small, as PostgreSQL sets up every node of it on every run.
//
// The probes lock their rows (FOR UPDATE): a claim that waited for the
// session row sees, in its snapshot, rows another claim deleted meanwhile
// without moving the head past them; locking skips them.
//
// Sessions that have ended by themselves are not in s, so nothing of
// them is taken, counted or returned (nor, since only sessions s returns
// go to it, is their last resort handed out). The NOT EXISTS is this
// backend's form of p2core.SessionEnds.Over, on the session's
// p2kit_sessions row (a session without one has not ended) and, for a
// foreign session, its current cert (p2kit_id_certs_current_idx): created
// at or before $4, last used at or before $5, or foreign with no current
// cert or one expiring at or before $6. A NULL bound is no bound.
const claimSQL = `WITH s AS (
	SELECT session_id, head, available, min_not_after, lr_init_key IS NOT NULL OR available > 0 AS stores
	FROM p2kit_kp_sessions k
	WHERE user_id = $1 AND NOT EXISTS (
		SELECT 1 FROM p2kit_sessions x
		WHERE x.user_id = $1 AND x.session_id = k.session_id AND (
			x.created_at <= $4::TIMESTAMPTZ
			OR greatest(x.created_at, x.last_used_at) <= $5::TIMESTAMPTZ
			OR (x.home <> '' AND NOT EXISTS (SELECT 1 FROM p2kit_id_certs c
				WHERE c.user_id = $1 AND c.session_id = x.session_id AND c.superseded_at IS NULL
					AND ($6::TIMESTAMPTZ IS NULL OR c.expires_at > $6::TIMESTAMPTZ)))))
	ORDER BY session_id
	FOR UPDATE
), pick AS (
	SELECT s.session_id, f.claimable AS at_head,
		CASE WHEN f.claimable THEN f.seq ELSE (SELECT c.seq FROM p2kit_key_packages c
			WHERE c.user_id = $1 AND c.session_id = s.session_id AND c.seq > f.seq
				AND c.not_after > $2 AND ($3::INTEGER = 0 OR c.cipher_suite = $3::INTEGER)
			ORDER BY c.seq
			LIMIT 1
			FOR UPDATE) END AS seq
	FROM s CROSS JOIN LATERAL (
		SELECT c.seq, c.not_after > $2 AND ($3::INTEGER = 0 OR c.cipher_suite = $3::INTEGER) AS claimable
		FROM p2kit_key_packages c
		WHERE c.user_id = $1 AND c.session_id = s.session_id AND c.seq >= s.head
		ORDER BY c.seq
		LIMIT 1
		FOR UPDATE
	) f
), taken AS (
	DELETE FROM p2kit_key_packages k USING pick
	WHERE k.user_id = $1 AND k.session_id = pick.session_id AND k.seq = pick.seq
	RETURNING k.session_id, k.seq, k.cipher_suite, k.ref, k.init_key, k.data, k.not_after, k.uploaded_at, pick.at_head
), counted AS (
	UPDATE p2kit_kp_sessions x SET available = x.available - 1,
		head = CASE WHEN t.at_head THEN t.seq + 1 ELSE x.head END
	FROM taken t
	WHERE x.user_id = $1 AND x.session_id = t.session_id
	RETURNING x.session_id, x.available, t.cipher_suite, t.ref, t.init_key, t.data, t.not_after, t.uploaded_at
)
SELECT s.session_id, c.cipher_suite, c.ref, c.init_key, c.data, c.not_after, c.uploaded_at,
	coalesce(c.available, s.available), s.stores, coalesce(s.min_not_after <= $2, FALSE)
FROM s LEFT JOIN counted c ON c.session_id = s.session_id
ORDER BY s.session_id`

// claimRow scans the KeyPackage columns shared by the claim statements.
type claimRow struct {
	suite      *int32
	ref, key   []byte
	data       []byte
	notAfter   *time.Time
	uploadedAt *time.Time
	available  int64
}

func (r claimRow) keyPackage(user p2core.UserID, sid string) p2core.KeyPackage {
	return p2core.KeyPackage{
		UserID:      user,
		SessionID:   p2core.SessionID(sid),
		Ref:         orNil(r.ref),
		CipherSuite: uint16(*r.suite),
		InitKey:     orNil(r.key),
		Data:        orNil(r.data),
		NotAfter:    fromNull(r.notAfter),
		UploadedAt:  fromNull(r.uploadedAt),
	}
}

// ClaimKeyPackages implements p2core.KeyPackageStore with
// p2core.ClaimFrom. Its common case (every session gives a regular
// KeyPackage) is one statement, claimSQL; only when a session gave
// nothing does a transaction follow for the last-resort rule, which
// re-checks under the session's row lock that no claimable regular
// KeyPackage has been uploaded since (if one has, that session gives
// nothing this time).
//
// Concurrent claims share commits: a claim that arrives while
// Options.BatchesInFlight batches of claims are running waits for the next
// batch, which sends the statements of all claims that waited meanwhile
// (up to Options.MaxBatch) in one round trip as one transaction, ordered
// by user, so that they lock session rows in one global order. A lone
// claim runs at once and commits on its own.
//
// Once sent, a claim's statement runs without ctx's cancellation (the
// operation deadline still bounds it); a cancel asks the server to abort
// it (with the rest of its batch, whose other claims then run again on
// their own): either it is aborted and nothing changes, or it has run and
// the claim goes on to its end and reports it, not lost to a late cancel.
// Should the follow-up transaction fail (the deadline, the database
// gone), the KeyPackages the statement took are lost, never handed out
// twice.
//
// Deadlock freedom: a claim locks its user's session rows in session
// order before any KeyPackage or init key, as uploads (one session row,
// then init keys) and EndSession (the session row first) do; a batch
// takes its users in ascending order.
func (s *Store) ClaimKeyPackages(ctx context.Context, user p2core.UserID, suite uint16, now time.Time, ends p2core.SessionEnds) ([]p2core.ClaimedKeyPackage, error) {
	if err := s.enter(ctx); err != nil {
		return nil, err
	}
	now = ts(now)
	c := &claim{ctx: ctx, user: user, u: uid(user), now: now, suite: int32(suite), ends: ends}
	if err := s.claims.do(ctx, c, true, s.runClaims); err != nil {
		return nil, fmt.Errorf("pgstore: ClaimKeyPackages: %w", err)
	}
	if c.alone {
		s.runClaims([]*claim{c})
	}
	if c.err != nil {
		return nil, c.err
	}
	if len(c.recount) > 0 {
		// The claim has committed: a failure to count now is reported as
		// the claim's, which loses what it took, never hands it out twice.
		if err := s.do(context.WithoutCancel(ctx), "ClaimKeyPackages", c.count); err != nil {
			return nil, err
		}
	}
	if len(c.rest) == 0 {
		return p2core.ClaimFrom(c, suite, now, ends)
	}
	// The statement has committed what it took: the rest of the claim
	// runs to its end whatever ctx says, so that it is reported.
	ctx = context.WithoutCancel(ctx)
	c.ctx = ctx
	var out []p2core.ClaimedKeyPackage
	err := s.tx(ctx, "ClaimKeyPackages", func(tx pgx.Tx) (err error) {
		c.tx = tx
		out, err = p2core.ClaimFrom(c, suite, now, ends)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// runClaims runs claims' statements together (claimTogether), users in
// ascending order. A lone claim waits for a connection as its ctx allows;
// a batch does not give up for one member's ctx. When a member's ctx ends
// while the statements run, the server is asked to abort them; if it did,
// that member reports its ctx's error and the others run again, each on
// its own (alone).
func (s *Store) runClaims(cs []*claim) {
	slices.SortStableFunc(cs, func(a, b *claim) int { return cmp.Compare(a.u, b.u) })
	ctx := context.Background()
	if len(cs) == 1 {
		ctx = cs[0].ctx
	}
	var cancelled atomic.Bool
	err := s.doConn(ctx, "ClaimKeyPackages", func(conn *pgxpool.Conn) error {
		return claimTogether(conn, cs, &cancelled)
	})
	for _, c := range cs {
		c.alone = false
		switch {
		case err == nil:
		case cancelled.Load() && c.ctx.Err() != nil:
			c.err = fmt.Errorf("pgstore: ClaimKeyPackages: %w", c.ctx.Err())
		case cancelled.Load():
			c.alone = true
		default:
			c.err = err
		}
	}
}

// claimTogether sends the claims' statements in one pipeline with one
// Sync, so that PostgreSQL runs them as one implicit transaction: all
// commit together, or none does (one claim: it commits on its own). The
// claims' ctxs do not cancel the statements; when one ends, the server is
// asked to abort them (cancelled is set): a statement still running
// (waiting for a lock) is aborted and nothing changes; statements that
// have finished are reported, not lost. The connection a cancel request
// was sent for is closed afterwards, not pooled, so the request cannot
// cancel a later statement on it.
func claimTogether(conn *pgxpool.Conn, cs []*claim, cancelled *atomic.Bool) error {
	sent := make(chan struct{})
	var once sync.Once
	cancel := func() {
		once.Do(func() {
			defer close(sent)
			cancelled.Store(true)
			cctx, stop := context.WithTimeout(context.Background(), commitTimeout)
			defer stop()
			_ = conn.Conn().PgConn().CancelRequest(cctx)
		})
	}
	stops := make([]func() bool, len(cs))
	for i, c := range cs {
		c.reset()
		stops[i] = context.AfterFunc(c.ctx, cancel)
	}
	defer func() {
		fired := false
		for _, stop := range stops {
			if !stop() {
				fired = true // cancel has run or is running
			}
		}
		if fired {
			<-sent
			cctx, stop := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Conn().Close(cctx)
			stop()
		}
	}()
	ctx := context.Background()
	if len(cs) == 1 {
		// One claim alone: a plain query. At 1 client a pipeline of
		// one (with = ANY for a lone token lookup) measured 1,092-1,233
		// claims/s in 4 runs, against 1,298-1,350 alternating with it.
		rows, err := conn.Query(ctx, claimSQL, cs[0].args()...)
		if err != nil {
			return err
		}
		return cs[0].scan(rows)
	}
	b := &pgx.Batch{}
	for _, c := range cs {
		b.Queue(claimSQL, c.args()...)
	}
	br := conn.SendBatch(ctx, b)
	for _, c := range cs {
		rows, err := br.Query()
		if err == nil {
			err = c.scan(rows)
		}
		if err != nil {
			br.Close()
			return err
		}
	}
	// Close reads the end of the implicit transaction: its COMMIT.
	return br.Close()
}

// claim is one ClaimKeyPackages call: the p2core.ClaimSource whose
// TakeOldest is claimSQL's result and whose last-resort steps run in tx.
type claim struct {
	ctx   context.Context
	tx    pgx.Tx
	user  p2core.UserID
	u     int64
	now   time.Time
	suite int32
	ends  p2core.SessionEnds
	taken []p2core.ClaimedKeyPackage
	rest  []p2core.SessionID
	// recount holds the indexes in taken of sessions whose NotAfter bound
	// has passed: their Remaining is counted after the statement (count).
	recount []int
	// err is the statement's failure (runClaims); alone asks the claim
	// to run again on its own (its batch was aborted for another's ctx).
	err   error
	alone bool
}

func (c *claim) reset() { c.taken, c.rest, c.recount = nil, nil, nil }

// args are claimSQL's arguments.
func (c *claim) args() []any {
	return []any{c.u, c.now, c.suite, nullTime(c.ends.CreatedBy), nullTime(c.ends.UsedBy), nullTime(c.ends.CertExpiredBy)}
}

// scan reads claimSQL's rows into taken, rest and recount, and closes
// rows.
func (c *claim) scan(rows pgx.Rows) error {
	defer rows.Close()
	for rows.Next() {
		var (
			sid           string
			r             claimRow
			stores, stale bool
		)
		if err := rows.Scan(&sid, &r.suite, &r.ref, &r.key, &r.data, &r.notAfter, &r.uploadedAt, &r.available, &stores, &stale); err != nil {
			return err
		}
		switch {
		case r.suite != nil:
			if stale {
				c.recount = append(c.recount, len(c.taken))
			}
			c.taken = append(c.taken, p2core.ClaimedKeyPackage{KeyPackage: r.keyPackage(c.user, sid), Remaining: int(r.available)})
		case stores:
			c.rest = append(c.rest, p2core.SessionID(sid))
		}
	}
	return rows.Err()
}

// count sets the Remaining of the taken KeyPackages whose sessions' NotAfter
// bound has passed, counting their live KeyPackages (availableSQL).
func (c *claim) count(q querier) error {
	for _, i := range c.recount {
		if err := q.QueryRow(context.WithoutCancel(c.ctx), availableSQL, c.u, string(c.taken[i].SessionID), c.now).Scan(&c.taken[i].Remaining); err != nil {
			return err
		}
	}
	return nil
}

// TakeOldest returns what claimSQL took, which left out the sessions that
// have ended under c.ends.
func (c *claim) TakeOldest(uint16, time.Time, p2core.SessionEnds) ([]p2core.ClaimedKeyPackage, []p2core.SessionID, error) {
	return c.taken, c.rest, nil
}

// LastResort reads the session's last resort and locks its row. It finds
// none when a regular KeyPackage claimable for the claim's suite has been
// stored since claimSQL found none, so a last resort is never handed out
// while one remains.
func (c *claim) LastResort(sid p2core.SessionID) (p2core.KeyPackage, bool, error) {
	var (
		r       claimRow
		regular bool
	)
	err := c.tx.QueryRow(c.ctx, `SELECT lr_cipher_suite, lr_ref, lr_init_key, lr_data, lr_not_after, lr_uploaded_at,
			EXISTS (SELECT 1 FROM p2kit_key_packages k WHERE k.user_id = s.user_id AND k.session_id = s.session_id
				AND k.seq >= s.head AND k.not_after > $3 AND ($4::INTEGER = 0 OR k.cipher_suite = $4::INTEGER))
		FROM p2kit_kp_sessions s WHERE user_id = $1 AND session_id = $2 FOR UPDATE`, c.u, string(sid), c.now, c.suite).
		Scan(&r.suite, &r.ref, &r.key, &r.data, &r.notAfter, &r.uploadedAt, &regular)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && (r.key == nil || regular)) {
		return p2core.KeyPackage{}, false, nil
	}
	if err != nil {
		return p2core.KeyPackage{}, false, err
	}
	return r.keyPackage(c.user, string(sid)), true, nil
}

func (c *claim) MarkLastResortUsed(sid p2core.SessionID) error {
	_, err := c.tx.Exec(c.ctx, `UPDATE p2kit_kp_sessions SET lr_used = TRUE WHERE user_id = $1 AND session_id = $2`, c.u, string(sid))
	return err
}

// Available counts the session's live regular KeyPackages from its count
// (see claimSQL).
func (c *claim) Available(sid p2core.SessionID, now time.Time) (int, error) {
	var n int64
	err := c.tx.QueryRow(c.ctx, availableSQL, c.u, string(sid), now).Scan(&n)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	return int(n), err
}

// availableSQL counts session ($1, $2)'s live regular KeyPackages at $3:
// its stored count, less its expired KeyPackages when its NotAfter bound
// says there may be some.
const availableSQL = `SELECT s.available - CASE WHEN s.min_not_after <= $3 THEN (SELECT count(*) FROM p2kit_key_packages e
		WHERE e.user_id = $1 AND e.session_id = $2 AND e.not_after <= $3) ELSE 0 END
	FROM p2kit_kp_sessions s WHERE s.user_id = $1 AND s.session_id = $2`

// KeyPackageStatus implements p2core.KeyPackageStore. LastResort reports a
// stored last resort even when it has expired (until it is purged).
func (s *Store) KeyPackageStatus(ctx context.Context, user p2core.UserID, sid p2core.SessionID, now time.Time) (p2core.KeyPackageStatus, error) {
	var (
		st        p2core.KeyPackageStatus
		available int64
	)
	err := s.do(ctx, "KeyPackageStatus", func(q querier) error {
		err := q.QueryRow(ctx, `SELECT s.available - CASE WHEN s.min_not_after <= $3 THEN (SELECT count(*) FROM p2kit_key_packages e
					WHERE e.user_id = $1 AND e.session_id = $2 AND e.not_after <= $3) ELSE 0 END,
				s.lr_init_key IS NOT NULL, s.lr_init_key IS NOT NULL AND s.lr_used
			FROM p2kit_kp_sessions s WHERE s.user_id = $1 AND s.session_id = $2`,
			uid(user), string(sid), ts(now)).Scan(&available, &st.LastResort, &st.LastResortUsed)
		if errors.Is(err, pgx.ErrNoRows) {
			available, st = 0, p2core.KeyPackageStatus{}
			return nil
		}
		return err
	})
	if err != nil {
		return p2core.KeyPackageStatus{}, err
	}
	st.Available = int(available)
	return st, nil
}

// PurgeExpiredKeyPackages implements p2core.KeyPackageStore in one
// transaction: it deletes every init key whose NotAfter is not after now
// (each init key row carries its KeyPackage's NotAfter), then the regular
// KeyPackages and last resorts whose NotAfter is not after now. Init keys
// go first: an upload committing between the statements can then only
// leave an init key blocked until the next purge, never a stored
// KeyPackage whose init key is free.
func (s *Store) PurgeExpiredKeyPackages(ctx context.Context, now time.Time) (int, error) {
	now = ts(now)
	var n int64
	err := s.tx(ctx, "PurgeExpiredKeyPackages", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM p2kit_init_keys WHERE not_after <= $1`, now); err != nil {
			return err
		}
		// The sessions' rows first, in order, as claims lock them, then
		// their expired KeyPackages, counted out of available, and the
		// NotAfter bound renewed from what remains.
		if _, err := tx.Exec(ctx, `SELECT 1 FROM p2kit_kp_sessions s
			WHERE (s.user_id, s.session_id) IN (SELECT DISTINCT user_id, session_id FROM p2kit_key_packages WHERE not_after <= $1)
			ORDER BY s.user_id, s.session_id FOR UPDATE`, now); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, `WITH gone AS (
				DELETE FROM p2kit_key_packages WHERE not_after <= $1 RETURNING user_id, session_id
			), per AS (
				SELECT user_id, session_id, count(*) AS n FROM gone GROUP BY user_id, session_id
			), counted AS (
				UPDATE p2kit_kp_sessions x SET available = x.available - per.n,
					min_not_after = (SELECT min(e.not_after) FROM p2kit_key_packages e
						WHERE e.user_id = x.user_id AND e.session_id = x.session_id AND e.not_after > $1)
				FROM per WHERE x.user_id = per.user_id AND x.session_id = per.session_id
			)
			SELECT coalesce(sum(n), 0) FROM per`, now).Scan(&n); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE p2kit_kp_sessions SET lr_cipher_suite = NULL, lr_ref = NULL, lr_init_key = NULL,
				lr_data = NULL, lr_not_after = NULL, lr_uploaded_at = NULL, lr_used = FALSE
			WHERE lr_not_after <= $1`, now)
		n += tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}
