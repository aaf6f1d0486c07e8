package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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

var errMixedSessions = errors.New("pgstore: AddKeyPackages: KeyPackages of more than one session")

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

// claimInitKeys inserts keys (as kind, each in use until the matching
// notAfter) into p2kit_init_keys, taking over rows of handed-out keys whose
// NotAfter is not after now. It returns ErrDuplicateKeyPackage if any key
// is in use. keys must be free of repeats.
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
	tag, err := tx.Exec(ctx, `INSERT INTO p2kit_init_keys (init_key, kind, not_after)
		SELECT u.k, $3::SMALLINT, u.na FROM unnest($1::BYTEA[], $2::TIMESTAMPTZ[]) WITH ORDINALITY AS u(k, na, ord)
		ORDER BY u.ord
		ON CONFLICT (init_key) DO UPDATE SET kind = EXCLUDED.kind, not_after = EXCLUDED.not_after
			WHERE p2kit_init_keys.kind = 3 AND p2kit_init_keys.not_after <= $4`,
		ks, nas, kind, now)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != int64(len(keys)) {
		return fmt.Errorf("pgstore: init key in use: %w", p2core.ErrDuplicateKeyPackage)
	}
	return nil
}

// releaseLastResort frees the init key of a last resort that is replaced
// or removed: one that was handed out stays blocked until its NotAfter.
func releaseLastResort(ctx context.Context, tx pgx.Tx, key []byte, used bool, notAfter, now time.Time) error {
	var err error
	if used && notAfter.After(now) {
		_, err = tx.Exec(ctx, `UPDATE p2kit_init_keys SET kind = 3 WHERE init_key = $1 AND kind = 2`, key)
	} else {
		_, err = tx.Exec(ctx, `DELETE FROM p2kit_init_keys WHERE init_key = $1 AND kind = 2`, key)
	}
	return err
}

// AddKeyPackages implements p2core.KeyPackageStore in one transaction:
// all or nothing. Init-key uniqueness holds across instances through the
// primary key of p2kit_init_keys; the cap through the session's row lock.
// Duplicates are checked before the cap. KeyPackages of more than one
// session are refused with an error that matches no sentinel (a caller
// bug).
func (s *Store) AddKeyPackages(ctx context.Context, kps []p2core.KeyPackage, max int, now time.Time) error {
	if err := s.enter(ctx); err != nil {
		return err
	}
	if len(kps) == 0 {
		return nil
	}
	now = ts(now)
	user, sid := kps[0].UserID, kps[0].SessionID
	n := len(kps)
	var (
		suites              = make([]int32, n)
		refs, keys, datas   = make([][]byte, n), make([][]byte, n), make([][]byte, n)
		notAfters, uploaded = make([]time.Time, n), make([]time.Time, n)
		seen                = make(map[string]struct{}, n)
		fresh               int64
	)
	for i, kp := range kps {
		if kp.UserID != user || kp.SessionID != sid {
			return errMixedSessions
		}
		if _, dup := seen[string(kp.InitKey)]; dup {
			return fmt.Errorf("pgstore: KeyPackage %d: init key repeated in the batch: %w", i, p2core.ErrDuplicateKeyPackage)
		}
		seen[string(kp.InitKey)] = struct{}{}
		suites[i] = int32(kp.CipherSuite)
		refs[i], keys[i], datas[i] = nn(kp.Ref), nn(kp.InitKey), nn(kp.Data)
		notAfters[i], uploaded[i] = ts(kp.NotAfter), ts(kp.UploadedAt)
		if notAfters[i].After(now) {
			fresh++
		}
	}
	u, id := uid(user), string(sid)
	return s.tx(ctx, "AddKeyPackages", func(tx pgx.Tx) error {
		ks, err := lockKPSession(ctx, tx, u, id, n)
		if err != nil {
			return err
		}
		if err := claimInitKeys(ctx, tx, keys, notAfters, keyStored, now); err != nil {
			return err
		}
		var have int64
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM p2kit_key_packages
			WHERE user_id = $1 AND session_id = $2 AND not_after > $3`, u, id, now).Scan(&have); err != nil {
			return err
		}
		if have+fresh > int64(max) {
			return fmt.Errorf("pgstore: session would hold %d KeyPackages, more than %d: %w", have+fresh, max, p2core.ErrTooManyKeyPackages)
		}
		_, err = tx.Exec(ctx, `INSERT INTO p2kit_key_packages
				(user_id, session_id, seq, cipher_suite, ref, init_key, data, not_after, uploaded_at)
			SELECT $1, $2, $3::BIGINT + u.ord - 1, u.suite, u.ref, u.ik, u.data, u.na, u.ua
			FROM unnest($4::INTEGER[], $5::BYTEA[], $6::BYTEA[], $7::BYTEA[], $8::TIMESTAMPTZ[], $9::TIMESTAMPTZ[])
				WITH ORDINALITY AS u(suite, ref, ik, data, na, ua, ord)`,
			u, id, ks.first, suites, refs, keys, datas, notAfters, uploaded)
		return err
	})
}

// SetLastResort implements p2core.KeyPackageStore in one transaction,
// under the session's row lock. A replaced last resort that was handed out
// keeps its init key blocked until its NotAfter.
func (s *Store) SetLastResort(ctx context.Context, kp p2core.KeyPackage, now time.Time) error {
	now = ts(now)
	u, id := uid(kp.UserID), string(kp.SessionID)
	key, notAfter := nn(kp.InitKey), ts(kp.NotAfter)
	return s.tx(ctx, "SetLastResort", func(tx pgx.Tx) error {
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
	})
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

// claimLastResortSQL hands out the session's unexpired last resort (of
// suite $3 unless 0) and marks it used.
const claimLastResortSQL = `UPDATE p2kit_kp_sessions SET lr_used = TRUE
WHERE user_id = $1 AND session_id = $4 AND lr_init_key IS NOT NULL
	AND lr_not_after > $2 AND ($3::INTEGER = 0 OR lr_cipher_suite = $3::INTEGER)
RETURNING lr_cipher_suite, lr_ref, lr_init_key, lr_data, lr_not_after, lr_uploaded_at,
	(SELECT count(*) FROM p2kit_key_packages a WHERE a.user_id = $1 AND a.session_id = $4 AND a.not_after > $2)`

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
// by session (see claimBatched).
var errOutOfOrder = errors.New("pgstore: claim must wait out of session order")

// ClaimKeyPackages implements p2core.KeyPackageStore in one transaction
// (see the package doc for how it stays exactly-once across instances). A
// last resort is handed out only when it matches suite (when suite is not
// 0). Remaining counts the session's unexpired regular KeyPackages of every
// suite, as of the claim's snapshot: claims by concurrent transactions that
// have not committed yet are still counted.
//
// Deadlock freedom: a claim only ever waits for a lock in session X (a
// KeyPackage another claimer holds, or X's last-resort row) while holding
// locks in sessions ordered before X only, so claimers cannot wait for
// each other in a cycle. The batched first statement takes rows of every
// session at once without waiting (SKIP LOCKED); when a session then needs
// a wait that would break the order, the transaction is rolled back and
// the claim runs session by session in order instead.
func (s *Store) ClaimKeyPackages(ctx context.Context, user p2core.UserID, suite uint16, now time.Time) ([]p2core.ClaimedKeyPackage, error) {
	now = ts(now)
	c := claim{user: user, u: uid(user), suite: int32(suite), now: now}
	err := s.tx(ctx, "ClaimKeyPackages", func(tx pgx.Tx) error { return c.batched(ctx, tx) })
	if errors.Is(err, errOutOfOrder) {
		err = s.tx(ctx, "ClaimKeyPackages", func(tx pgx.Tx) error { return c.sequential(ctx, tx) })
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(c.out, func(a, b p2core.ClaimedKeyPackage) int {
		return strings.Compare(string(a.SessionID), string(b.SessionID))
	})
	return c.out, nil
}

// claim is one ClaimKeyPackages call.
type claim struct {
	user  p2core.UserID
	u     int64
	suite int32
	now   time.Time
	out   []p2core.ClaimedKeyPackage
}

// batched claims for every session with one statement that never waits,
// then handles the sessions it got nothing from (in session order): those
// whose candidates are all locked by concurrent claimers wait for them,
// and those left without a KeyPackage get their last resort. If such a
// session is ordered before one a KeyPackage was taken from, waiting would
// break the lock order: errOutOfOrder.
func (c *claim) batched(ctx context.Context, tx pgx.Tx) error {
	c.out = []p2core.ClaimedKeyPackage{}
	rows, err := tx.Query(ctx, claimSQL, c.u, c.now, c.suite)
	if err != nil {
		return err
	}
	var (
		rest    []string // sessions to wait for or fall back in
		wait    = map[string]bool{}
		maxDone string // the greatest session a KeyPackage was taken from
		anyDone bool
	)
	for rows.Next() {
		var (
			sid        string
			r          claimRow
			candidates bool
		)
		if err := rows.Scan(&sid, &r.suite, &r.ref, &r.key, &r.data, &r.notAfter, &r.uploadedAt, &r.available, &candidates); err != nil {
			rows.Close()
			return err
		}
		if r.suite != nil {
			c.out = append(c.out, p2core.ClaimedKeyPackage{KeyPackage: r.keyPackage(c.user, sid), Remaining: int(r.available - 1)})
			if !anyDone || sid > maxDone {
				maxDone, anyDone = sid, true
			}
			continue
		}
		rest = append(rest, sid)
		wait[sid] = candidates // every candidate is locked by a concurrent claim
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	slices.Sort(rest)
	if len(rest) > 0 && anyDone && rest[0] < maxDone {
		return errOutOfOrder
	}
	for _, sid := range rest {
		if err := c.session(ctx, tx, sid, wait[sid]); err != nil {
			return err
		}
	}
	return nil
}

// sequential claims session by session in session order, waiting where
// needed.
func (c *claim) sequential(ctx context.Context, tx pgx.Tx) error {
	c.out = []p2core.ClaimedKeyPackage{}
	rows, err := tx.Query(ctx, `SELECT session_id FROM p2kit_kp_sessions WHERE user_id = $1`, c.u)
	if err != nil {
		return err
	}
	sids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	slices.Sort(sids)
	for _, sid := range sids {
		if err := c.session(ctx, tx, sid, true); err != nil {
			return err
		}
	}
	return nil
}

// session claims from one session: when wait is set, the oldest claimable
// KeyPackage, waiting for concurrent claimers that hold candidates; if
// there is none, the last resort.
func (c *claim) session(ctx context.Context, tx pgx.Tx, sid string, wait bool) error {
	var r claimRow
	if wait {
		err := tx.QueryRow(ctx, claimWaitSQL, c.u, c.now, c.suite, sid).Scan(&r.suite, &r.ref, &r.key, &r.data, &r.notAfter, &r.uploadedAt, &r.available)
		if err == nil {
			c.out = append(c.out, p2core.ClaimedKeyPackage{KeyPackage: r.keyPackage(c.user, sid), Remaining: int(r.available)})
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
	}
	err := tx.QueryRow(ctx, claimLastResortSQL, c.u, c.now, c.suite, sid).Scan(&r.suite, &r.ref, &r.key, &r.data, &r.notAfter, &r.uploadedAt, &r.available)
	switch {
	case err == nil:
		c.out = append(c.out, p2core.ClaimedKeyPackage{KeyPackage: r.keyPackage(c.user, sid), LastResort: true, Remaining: int(r.available)})
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	}
	return err
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
