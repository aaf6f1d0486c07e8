package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/p2kit/p2kit/p2core"
)

// CreateSession implements p2core.Store in one transaction: the FID
// mapping (INSERT ... ON CONFLICT DO NOTHING, which waits for a concurrent
// login of the same FID to commit or roll back, then a SELECT that sees
// the winner), the user's row lock for the caps, the session, its cert
// and its KeyPackages. Any failure rolls all of it back.
func (s *Store) CreateSession(ctx context.Context, n p2core.NewSession, lim p2core.Limits, now time.Time) (p2core.Session, error) {
	if err := s.enter(ctx); err != nil {
		return p2core.Session{}, err
	}
	now = ts(now)
	fresh := 0
	if len(n.KeyPackages) > 0 {
		var err error
		if fresh, err = p2core.CheckUpload(n.KeyPackages, n.LastResort, now); err != nil {
			return p2core.Session{}, err
		}
	}
	var out p2core.Session
	err := s.tx(ctx, "CreateSession", func(tx pgx.Tx) error {
		in := n.Session
		in.CreatedAt = ts(in.CreatedAt)
		if n.ForeignCandidate != 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO p2kit_fids (fid, user_id) VALUES ($1, $2) ON CONFLICT (fid) DO NOTHING`,
				string(in.FID), uid(n.ForeignCandidate)); err != nil {
				return err
			}
			var id int64
			if err := tx.QueryRow(ctx, `SELECT user_id FROM p2kit_fids WHERE fid = $1`, string(in.FID)).Scan(&id); err != nil {
				return err
			}
			in.UserID = p2core.UserID(id)
		}
		u := uid(in.UserID)
		if err := lockUser(ctx, tx, u); err != nil {
			return err
		}
		var have int64
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM p2kit_sessions WHERE user_id = $1`, u).Scan(&have); err != nil {
			return err
		}
		if err := p2core.CheckSessionCap(int(have), lim.MaxSessions); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO p2kit_sessions (user_id, session_id, fid, token_hash, created_at, home)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			u, string(in.SessionID), string(in.FID), in.TokenHash[:], in.CreatedAt, in.Home)
		if pgCode(err) == "23505" {
			return fmt.Errorf("pgstore: session %q of user %d or its token hash exists: %w", in.SessionID, in.UserID, p2core.ErrConflict)
		}
		if err != nil {
			return err
		}
		cert, kps, lr := n.Parts(in.UserID)
		if cert != nil {
			if err := putIDCert(ctx, tx, *cert); err != nil {
				return err
			}
		}
		// The last resort first: its init key is checked before the cap
		// is counted, so a duplicate wins over the cap as documented.
		if lr != nil {
			if err := setLastResort(ctx, tx, *lr, now); err != nil {
				return err
			}
		}
		if len(kps) > 0 {
			if err := addKeyPackages(ctx, tx, kps, fresh, lim.MaxKeyPackages, now); err != nil {
				return err
			}
		}
		out = in
		return nil
	})
	if err != nil {
		return p2core.Session{}, err
	}
	return out, nil
}

const sessionColumns = `user_id, session_id, fid, token_hash, created_at, home, last_used_at`

func scanSession(row pgx.Row) (p2core.Session, error) {
	var (
		ss   p2core.Session
		user int64
		hash []byte
		used *time.Time
	)
	if err := row.Scan(&user, &ss.SessionID, &ss.FID, &hash, &ss.CreatedAt, &ss.Home, &used); err != nil {
		return p2core.Session{}, err
	}
	ss.UserID = p2core.UserID(user)
	copy(ss.TokenHash[:], hash)
	ss.CreatedAt = ss.CreatedAt.UTC()
	if used != nil {
		ss.LastUsedAt = used.UTC()
	}
	return ss, nil
}

// rowToSession scans a row of a Query selecting sessionColumns, for
// pgx.CollectRows.
func rowToSession(row pgx.CollectableRow) (p2core.Session, error) { return scanSession(row) }

// TouchSession implements p2core.SessionStore in one statement that moves
// last_used_at forward only.
func (s *Store) TouchSession(ctx context.Context, user p2core.UserID, sid p2core.SessionID, at time.Time) error {
	return s.do(ctx, "TouchSession", func(q querier) error {
		_, err := q.Exec(ctx, `UPDATE p2kit_sessions SET last_used_at = $3
			WHERE user_id = $1 AND session_id = $2 AND (last_used_at IS NULL OR last_used_at < $3)`,
			uid(user), string(sid), ts(at))
		return err
	})
}

// SessionByToken implements p2core.SessionStore: ErrNotFound for an unknown
// hash. Concurrent lookups are gathered as claims are (see
// ClaimKeyPackages and Options.MaxBatch): a lookup that arrives while
// Options.BatchesInFlight batches of lookups run waits for the next batch,
// one statement for the hashes of all lookups that waited meanwhile. Each
// lookup's statement starts after the lookup was called, so it sees
// every session change committed before. A lookup whose ctx ends before
// its batch is sent returns at once; one that runs a batch for others
// returns when the batch has run (within the operation deadline).
func (s *Store) SessionByToken(ctx context.Context, hash [32]byte) (p2core.Session, error) {
	if err := s.enter(ctx); err != nil {
		return p2core.Session{}, err
	}
	l := &lookup{ctx: ctx, hash: hash}
	if err := s.lookups.do(ctx, l, false, s.runLookups); err != nil {
		return p2core.Session{}, fmt.Errorf("pgstore: SessionByToken: %w", err)
	}
	switch {
	case l.err != nil:
		return p2core.Session{}, l.err
	case !l.found:
		return p2core.Session{}, fmt.Errorf("pgstore: session: %w", p2core.ErrNotFound)
	}
	return l.sess, nil
}

// lookup is one SessionByToken call.
type lookup struct {
	ctx   context.Context
	hash  [32]byte
	sess  p2core.Session
	found bool
	err   error
}

// runLookups looks up token hashes in one statement. A lone lookup
// honours its ctx; a batch is not cancelled by its members' ctxs.
func (s *Store) runLookups(ls []*lookup) {
	ctx := context.Background()
	if len(ls) == 1 {
		ctx = ls[0].ctx
	}
	byHash := make(map[[32]byte][]*lookup, len(ls))
	hashes := make([][]byte, 0, len(ls))
	for _, l := range ls {
		if byHash[l.hash] == nil {
			hashes = append(hashes, l.hash[:])
		}
		byHash[l.hash] = append(byHash[l.hash], l)
	}
	err := s.do(ctx, "SessionByToken", func(q querier) error {
		for _, l := range ls {
			l.found = false
		}
		// One hash alone: = $1 (see claimTogether for what = ANY of one
		// measured at 1 client).
		sql, arg := `SELECT `+sessionColumns+` FROM p2kit_sessions WHERE token_hash = ANY($1)`, any(hashes)
		if len(hashes) == 1 {
			sql, arg = `SELECT `+sessionColumns+` FROM p2kit_sessions WHERE token_hash = $1`, hashes[0]
		}
		rows, err := q.Query(ctx, sql, arg)
		if err != nil {
			return err
		}
		found, err := pgx.CollectRows(rows, rowToSession)
		for _, ss := range found {
			for _, l := range byHash[ss.TokenHash] {
				l.sess, l.found = ss, true
			}
		}
		return err
	})
	for _, l := range ls {
		l.err = err
	}
}

// Sessions implements p2core.SessionStore: oldest first (ties in creation
// order), empty when there are none.
func (s *Store) Sessions(ctx context.Context, user p2core.UserID) ([]p2core.Session, error) {
	var out []p2core.Session
	err := s.do(ctx, "Sessions", func(q querier) error {
		rows, err := q.Query(ctx, `SELECT `+sessionColumns+` FROM p2kit_sessions
			WHERE user_id = $1 ORDER BY created_at, seq`, uid(user))
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, rowToSession)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// EndSession implements p2core.Store in one transaction: it removes
// the session, its KeyPackages (freeing their init keys) and its last
// resort (whose init key stays blocked until its NotAfter if it was handed
// out), and supersedes its current ID-Cert at now.
func (s *Store) EndSession(ctx context.Context, user p2core.UserID, sid p2core.SessionID, now time.Time) error {
	now = ts(now)
	u, id := uid(user), string(sid)
	return s.tx(ctx, "EndSession", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM p2kit_sessions WHERE user_id = $1 AND session_id = $2`, u, id); err != nil {
			return err
		}
		// Deleting the session's KeyPackage row first takes its lock, so an
		// upload to this session runs wholly before or after.
		var (
			lrKey      []byte
			lrNotAfter *time.Time
			lrUsed     bool
		)
		err := tx.QueryRow(ctx, `DELETE FROM p2kit_kp_sessions WHERE user_id = $1 AND session_id = $2
			RETURNING lr_init_key, lr_not_after, lr_used`, u, id).Scan(&lrKey, &lrNotAfter, &lrUsed)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		default:
			if _, err := tx.Exec(ctx, `WITH gone AS (
					DELETE FROM p2kit_key_packages WHERE user_id = $1 AND session_id = $2 RETURNING init_key
				)
				DELETE FROM p2kit_init_keys i USING gone WHERE i.init_key = gone.init_key AND i.kind = 1`, u, id); err != nil {
				return err
			}
			if lrKey != nil {
				if err := releaseLastResort(ctx, tx, lrKey, lrUsed, fromNull(lrNotAfter), now); err != nil {
					return err
				}
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM p2kit_cert_heads WHERE user_id = $1 AND session_id = $2`, u, id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE p2kit_id_certs SET superseded_at = $3
			WHERE user_id = $1 AND session_id = $2 AND superseded_at IS NULL`, u, id, now)
		return err
	})
}
