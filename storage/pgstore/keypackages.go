package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/p2kit/p2kit/p2core"
)

// Kinds of rows in p2kit_init_keys.
const (
	keyStored     = 1 // a stored regular KeyPackage
	keyLastResort = 2 // a stored last resort
	keyHandedOut  = 3 // handed out; in use until not_after
)

// kpSession is what lockKPSession reads of a session's row.
type kpSession struct {
	first      int64      // the first reserved upload sequence number
	lrKey      []byte     // the last resort's init key; nil when none
	lrNotAfter *time.Time // the last resort's NotAfter
	lrUsed     bool       // the last resort was handed out
}

// lockKPSession upserts the session's p2kit_kp_sessions row, which locks
// it until the transaction ends, reserving n upload sequence numbers.
func lockKPSession(ctx context.Context, tx pgx.Tx, user int64, sid string, n int) (kpSession, error) {
	var (
		ks   kpSession
		next int64
	)
	err := tx.QueryRow(ctx, `INSERT INTO p2kit_kp_sessions (user_id, session_id, next_seq) VALUES ($1, $2, 1 + $3::BIGINT)
		ON CONFLICT (user_id, session_id) DO UPDATE SET next_seq = p2kit_kp_sessions.next_seq + $3::BIGINT
		RETURNING next_seq, lr_init_key, lr_not_after, lr_used`, user, sid, int64(n)).Scan(&next, &ks.lrKey, &ks.lrNotAfter, &ks.lrUsed)
	ks.first = next - int64(n)
	return ks, err
}

// claimInitKeys records keys (as kind, each in use until the matching
// notAfter) in p2kit_init_keys. It returns ErrDuplicateKeyPackage if any
// key is held by the rule p2core.InitKeyHeld. keys must be free of
// repeats. Keys not recorded yet are inserted in one statement; only keys
// already recorded are read (and locked) to apply the rule, and those
// found free are taken over.
func claimInitKeys(ctx context.Context, tx pgx.Tx, keys [][]byte, notAfters []time.Time, kind int16, now time.Time) error {
	// Insert in byte order, so two uploads sharing keys wait for each other
	// instead of deadlocking.
	idx := make([]int, len(keys))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return bytes.Compare(keys[a], keys[b]) })
	ks := make([][]byte, len(keys))
	nas := make([]time.Time, len(keys))
	for i, j := range idx {
		ks[i], nas[i] = nn(keys[j]), notAfters[j]
	}
	rows, err := tx.Query(ctx, `INSERT INTO p2kit_init_keys (init_key, kind, not_after)
		SELECT u.k, $3::SMALLINT, u.na FROM unnest($1::BYTEA[], $2::TIMESTAMPTZ[]) WITH ORDINALITY AS u(k, na, ord)
		ORDER BY u.ord
		ON CONFLICT (init_key) DO NOTHING
		RETURNING init_key`, ks, nas, kind)
	if err != nil {
		return err
	}
	inserted, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return err
	}
	if len(inserted) == len(ks) {
		return nil
	}
	done := make(map[string]bool, len(inserted))
	for _, k := range inserted {
		done[string(k)] = true
	}
	for i, k := range ks {
		if done[string(k)] {
			continue
		}
		var (
			had      int16
			notAfter time.Time
		)
		if err := tx.QueryRow(ctx, `SELECT kind, not_after FROM p2kit_init_keys WHERE init_key = $1 FOR UPDATE`, k).Scan(&had, &notAfter); err != nil {
			return err
		}
		if p2core.InitKeyHeld(had == keyHandedOut, notAfter, now) {
			return fmt.Errorf("pgstore: init key in use: %w", p2core.ErrDuplicateKeyPackage)
		}
		if _, err := tx.Exec(ctx, `UPDATE p2kit_init_keys SET kind = $2, not_after = $3 WHERE init_key = $1`, k, kind, nas[i]); err != nil {
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

// lockUser upserts the user's p2kit_users row, which locks it until the
// transaction ends: the per-user caps are checked and kept under it.
func lockUser(ctx context.Context, tx pgx.Tx, user int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO p2kit_users (user_id) VALUES ($1)
		ON CONFLICT (user_id) DO UPDATE SET user_id = EXCLUDED.user_id`, user)
	return err
}

// addKeyPackages stores kps (checked by p2core.CheckUpload, fresh of them
// live) for one session in tx, under the user's lock, or refuses them.
func addKeyPackages(ctx context.Context, tx pgx.Tx, kps []p2core.KeyPackage, fresh, max int, now time.Time) error {
	n := len(kps)
	var (
		suites              = make([]int32, n)
		refs, keys, datas   = make([][]byte, n), make([][]byte, n), make([][]byte, n)
		notAfters, uploaded = make([]time.Time, n), make([]time.Time, n)
	)
	for i, kp := range kps {
		suites[i] = int32(kp.CipherSuite)
		refs[i], keys[i], datas[i] = nn(kp.Ref), nn(kp.InitKey), nn(kp.Data)
		notAfters[i], uploaded[i] = ts(kp.NotAfter), ts(kp.UploadedAt)
	}
	u, id := uid(kps[0].UserID), string(kps[0].SessionID)
	if err := lockUser(ctx, tx, u); err != nil {
		return err
	}
	ks, err := lockKPSession(ctx, tx, u, id, n)
	if err != nil {
		return err
	}
	if err := claimInitKeys(ctx, tx, keys, notAfters, keyStored, now); err != nil {
		return err
	}
	// Counting is this backend's part of p2core.Live: not_after > now.
	var have int64
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM p2kit_key_packages
		WHERE user_id = $1 AND not_after > $2`, u, now).Scan(&have); err != nil {
		return err
	}
	if err := p2core.CheckKeyPackageCap(int(have), fresh, max); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `INSERT INTO p2kit_key_packages
			(user_id, session_id, seq, cipher_suite, ref, init_key, data, not_after, uploaded_at)
		SELECT $1, $2, $3::BIGINT + u.ord - 1, u.suite, u.ref, u.ik, u.data, u.na, u.ua
		FROM unnest($4::INTEGER[], $5::BYTEA[], $6::BYTEA[], $7::BYTEA[], $8::TIMESTAMPTZ[], $9::TIMESTAMPTZ[])
			WITH ORDINALITY AS u(suite, ref, ik, data, na, ua, ord)`,
		u, id, ks.first, suites, refs, keys, datas, notAfters, uploaded)
	return err
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
	old, err := lockKPSession(ctx, tx, u, id, 0)
	if err != nil {
		return err
	}
	if old.lrKey != nil && bytes.Equal(old.lrKey, key) {
		if _, err := tx.Exec(ctx, `UPDATE p2kit_init_keys SET kind = 2, not_after = $2 WHERE init_key = $1`, key, notAfter); err != nil {
			return err
		}
	} else {
		if err := claimInitKeys(ctx, tx, [][]byte{key}, []time.Time{notAfter}, keyLastResort, now); err != nil {
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
		rows, err := q.Query(ctx, `SELECT u.ord, i.kind, i.not_after
			FROM unnest($1::BYTEA[]) WITH ORDINALITY AS u(k, ord) JOIN p2kit_init_keys i ON i.init_key = u.k`, keys)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				ord      int64
				kind     int16
				notAfter time.Time
			)
			if err := rows.Scan(&ord, &kind, &notAfter); err != nil {
				return err
			}
			if p2core.InitKeyHeld(kind == keyHandedOut, notAfter, now) && (out < 0 || int(ord-1) < out) {
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

// claimSQL claims, for every session of user $1, the oldest regular
// KeyPackage whose NotAfter is after $2 (of suite $3 unless 0) that no
// concurrent transaction has locked, deletes it and marks its init key
// handed out, all in one statement. It returns one row per session of the
// user: the claimed KeyPackage (NULLs when none), the number of the
// session's unexpired regular KeyPackages in the statement's snapshot
// (which still counts the claimed one), and, when none was claimed,
// whether some would match (they are all locked by concurrent claims).
const claimSQL = `WITH pick AS (
	SELECT k.user_id, k.session_id, k.seq
	FROM p2kit_kp_sessions s
	CROSS JOIN LATERAL (
		SELECT c.user_id, c.session_id, c.seq FROM p2kit_key_packages c
		WHERE c.user_id = s.user_id AND c.session_id = s.session_id
			AND c.not_after > $2 AND ($3::INTEGER = 0 OR c.cipher_suite = $3::INTEGER)
		ORDER BY c.seq
		LIMIT 1
		FOR UPDATE SKIP LOCKED
	) k
	WHERE s.user_id = $1
), claimed AS (
	DELETE FROM p2kit_key_packages k USING pick
	WHERE k.user_id = pick.user_id AND k.session_id = pick.session_id AND k.seq = pick.seq
	RETURNING k.session_id, k.cipher_suite, k.ref, k.init_key, k.data, k.not_after, k.uploaded_at
), handed AS (
	UPDATE p2kit_init_keys i SET kind = 3 FROM claimed WHERE i.init_key = claimed.init_key
)
SELECT s.session_id, c.cipher_suite, c.ref, c.init_key, c.data, c.not_after, c.uploaded_at,
	(SELECT count(*) FROM p2kit_key_packages a
		WHERE a.user_id = $1 AND a.session_id = s.session_id AND a.not_after > $2),
	CASE WHEN c.session_id IS NULL THEN EXISTS (SELECT 1 FROM p2kit_key_packages a
		WHERE a.user_id = $1 AND a.session_id = s.session_id AND a.not_after > $2
			AND ($3::INTEGER = 0 OR a.cipher_suite = $3::INTEGER)) ELSE FALSE END
FROM p2kit_kp_sessions s LEFT JOIN claimed c ON c.session_id = s.session_id
WHERE s.user_id = $1`

// claimWaitSQL claims the oldest claimable KeyPackage of one session ($4),
// waiting for rows that concurrent claimers hold: a row they delete is
// skipped, a row they leave (rolled back) is taken.
const claimWaitSQL = `WITH pick AS (
	SELECT c.seq FROM p2kit_key_packages c
	WHERE c.user_id = $1 AND c.session_id = $4
		AND c.not_after > $2 AND ($3::INTEGER = 0 OR c.cipher_suite = $3::INTEGER)
	ORDER BY c.seq
	LIMIT 1
	FOR UPDATE
), claimed AS (
	DELETE FROM p2kit_key_packages k USING pick
	WHERE k.user_id = $1 AND k.session_id = $4 AND k.seq = pick.seq
	RETURNING k.cipher_suite, k.ref, k.init_key, k.data, k.not_after, k.uploaded_at
), handed AS (
	UPDATE p2kit_init_keys i SET kind = 3 FROM claimed WHERE i.init_key = claimed.init_key
)
SELECT c.cipher_suite, c.ref, c.init_key, c.data, c.not_after, c.uploaded_at,
	(SELECT count(*) FROM p2kit_key_packages a
		WHERE a.user_id = $1 AND a.session_id = $4 AND a.not_after > $2) - 1
FROM claimed c`

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

// errOutOfOrder makes the batched claim roll back and run again session
// by session (see claim.TakeOldest).
var errOutOfOrder = errors.New("pgstore: claim must wait out of session order")

// ClaimKeyPackages implements p2core.KeyPackageStore in one transaction
// with p2core.ClaimFrom (see the package doc for how it stays
// exactly-once across instances). Remaining counts the session's
// unexpired regular KeyPackages as of the claim's snapshot: claims by
// concurrent transactions that have not committed yet are still counted.
//
// Deadlock freedom: a claim only ever waits for a KeyPackage in session X
// that another claimer holds while holding KeyPackages of sessions
// ordered before X only, so claimers cannot wait for each other in a
// cycle; last resorts are locked after every KeyPackage wait, in session
// order. The batched first statement takes rows of every session at once
// without waiting (SKIP LOCKED); when a session then needs a wait that
// would break the order, the transaction is rolled back and the claim
// runs session by session in order instead.
func (s *Store) ClaimKeyPackages(ctx context.Context, user p2core.UserID, suite uint16, now time.Time) ([]p2core.ClaimedKeyPackage, error) {
	now = ts(now)
	c := &claim{ctx: ctx, user: user, u: uid(user)}
	var out []p2core.ClaimedKeyPackage
	run := func(tx pgx.Tx) (err error) {
		c.tx = tx
		out, err = p2core.ClaimFrom(c, suite, now)
		return err
	}
	err := s.tx(ctx, "ClaimKeyPackages", run)
	if errors.Is(err, errOutOfOrder) {
		c.sequential = true
		err = s.tx(ctx, "ClaimKeyPackages", run)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// claim is one ClaimKeyPackages call: the p2core.ClaimSource of one
// transaction.
type claim struct {
	ctx        context.Context
	tx         pgx.Tx
	user       p2core.UserID
	u          int64
	sequential bool
}

// TakeOldest claims for every session with one statement that never
// waits, then, in session order, waits for the sessions whose candidates
// are all locked by concurrent claimers. If such a session is ordered
// before one a KeyPackage was taken from, waiting would break the lock
// order: errOutOfOrder. In sequential mode it waits session by session.
func (c *claim) TakeOldest(suite uint16, now time.Time) ([]p2core.ClaimedKeyPackage, []p2core.SessionID, error) {
	var (
		out     []p2core.ClaimedKeyPackage
		others  []string
		wait    = map[string]bool{}
		maxDone string // the greatest session a KeyPackage was taken from
		anyDone bool
	)
	if c.sequential {
		rows, err := c.tx.Query(c.ctx, `SELECT session_id FROM p2kit_kp_sessions WHERE user_id = $1`, c.u)
		if err != nil {
			return nil, nil, err
		}
		if others, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return nil, nil, err
		}
		for _, sid := range others {
			wait[sid] = true
		}
	} else {
		rows, err := c.tx.Query(c.ctx, claimSQL, c.u, now, int32(suite))
		if err != nil {
			return nil, nil, err
		}
		for rows.Next() {
			var (
				sid        string
				r          claimRow
				candidates bool
			)
			if err := rows.Scan(&sid, &r.suite, &r.ref, &r.key, &r.data, &r.notAfter, &r.uploadedAt, &r.available, &candidates); err != nil {
				rows.Close()
				return nil, nil, err
			}
			if r.suite != nil {
				out = append(out, p2core.ClaimedKeyPackage{KeyPackage: r.keyPackage(c.user, sid), Remaining: int(r.available - 1)})
				if !anyDone || sid > maxDone {
					maxDone, anyDone = sid, true
				}
				continue
			}
			others = append(others, sid)
			wait[sid] = candidates // every candidate is locked by a concurrent claim
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, nil, err
		}
	}
	slices.Sort(others)
	var rest []p2core.SessionID
	for _, sid := range others {
		if !wait[sid] {
			rest = append(rest, p2core.SessionID(sid))
			continue
		}
		if anyDone && sid < maxDone {
			return nil, nil, errOutOfOrder
		}
		var r claimRow
		err := c.tx.QueryRow(c.ctx, claimWaitSQL, c.u, now, int32(suite), sid).Scan(&r.suite, &r.ref, &r.key, &r.data, &r.notAfter, &r.uploadedAt, &r.available)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			rest = append(rest, p2core.SessionID(sid))
		case err != nil:
			return nil, nil, err
		default:
			out = append(out, p2core.ClaimedKeyPackage{KeyPackage: r.keyPackage(c.user, sid), Remaining: int(r.available)})
		}
	}
	return out, rest, nil
}

// LastResort reads the session's last resort and locks its row.
func (c *claim) LastResort(sid p2core.SessionID) (p2core.KeyPackage, bool, error) {
	var r claimRow
	err := c.tx.QueryRow(c.ctx, `SELECT lr_cipher_suite, lr_ref, lr_init_key, lr_data, lr_not_after, lr_uploaded_at
		FROM p2kit_kp_sessions WHERE user_id = $1 AND session_id = $2 FOR UPDATE`, c.u, string(sid)).
		Scan(&r.suite, &r.ref, &r.key, &r.data, &r.notAfter, &r.uploadedAt)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && r.key == nil) {
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

// Available counts with not_after > now, this backend's form of
// p2core.Live.
func (c *claim) Available(sid p2core.SessionID, now time.Time) (int, error) {
	var n int64
	err := c.tx.QueryRow(c.ctx, `SELECT count(*) FROM p2kit_key_packages WHERE user_id = $1 AND session_id = $2 AND not_after > $3`,
		c.u, string(sid), now).Scan(&n)
	return int(n), err
}

// KeyPackageStatus implements p2core.KeyPackageStore. LastResort reports a
// stored last resort even when it has expired (until it is purged).
func (s *Store) KeyPackageStatus(ctx context.Context, user p2core.UserID, sid p2core.SessionID, now time.Time) (p2core.KeyPackageStatus, error) {
	var (
		st        p2core.KeyPackageStatus
		available int64
	)
	err := s.do(ctx, "KeyPackageStatus", func(q querier) error {
		return q.QueryRow(ctx, `SELECT
				(SELECT count(*) FROM p2kit_key_packages WHERE user_id = $1 AND session_id = $2 AND not_after > $3),
				coalesce(bool_or(s.lr_init_key IS NOT NULL), FALSE),
				coalesce(bool_or(s.lr_init_key IS NOT NULL AND s.lr_used), FALSE)
			FROM p2kit_kp_sessions s WHERE s.user_id = $1 AND s.session_id = $2`,
			uid(user), string(sid), ts(now)).Scan(&available, &st.LastResort, &st.LastResortUsed)
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
		tag, err := tx.Exec(ctx, `DELETE FROM p2kit_key_packages WHERE not_after <= $1`, now)
		if err != nil {
			return err
		}
		n = tag.RowsAffected()
		tag, err = tx.Exec(ctx, `UPDATE p2kit_kp_sessions SET lr_cipher_suite = NULL, lr_ref = NULL, lr_init_key = NULL,
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
