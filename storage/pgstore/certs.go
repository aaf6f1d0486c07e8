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

// PutIDCert implements p2core.CertStore in one transaction. The session's
// p2kit_cert_heads row is upserted first, which locks it: concurrent
// PutIDCert calls for one session (on any instance) run one after another,
// and each supersedes the cert its predecessor stored. ErrConflict if the
// serial is taken.
func (s *Store) PutIDCert(ctx context.Context, c p2core.IDCert) error {
	return s.tx(ctx, "PutIDCert", func(tx pgx.Tx) error { return putIDCert(ctx, tx, c) })
}

// putIDCert makes c its session's current cert in tx.
func putIDCert(ctx context.Context, tx pgx.Tx, c p2core.IDCert) error {
	u, id := uid(c.UserID), string(c.SessionID)
	issued := ts(c.IssuedAt)
	if _, err := tx.Exec(ctx, `INSERT INTO p2kit_cert_heads (user_id, session_id, current_serial) VALUES ($1, $2, $3)
		ON CONFLICT (user_id, session_id) DO UPDATE SET current_serial = EXCLUDED.current_serial`,
		u, id, c.Serial); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `UPDATE p2kit_id_certs SET superseded_at = $3
		WHERE user_id = $1 AND session_id = $2 AND superseded_at IS NULL`, u, id, issued); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, `INSERT INTO p2kit_id_certs (serial, user_id, session_id, fid, cert, signature_key,
			server_key_fingerprint, issued_at, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		c.Serial, u, id, string(c.FID), nn(c.Cert), orNil(c.SignatureKey), orNil(c.ServerKeyFingerprint),
		issued, ts(c.ExpiresAt))
	if pgCode(err) == "23505" {
		return fmt.Errorf("pgstore: ID-Cert serial %q exists: %w", c.Serial, p2core.ErrConflict)
	}
	return err
}

// IDCertBySerial implements p2core.CertStore: ErrNotFound for an unknown
// serial.
func (s *Store) IDCertBySerial(ctx context.Context, serial string) (p2core.IDCert, error) {
	var c p2core.IDCert
	err := s.do(ctx, "IDCertBySerial", func(q querier) error {
		var err error
		c, err = scanCert(q.QueryRow(ctx, `SELECT `+certColumns+` FROM p2kit_id_certs WHERE serial = $1`, serial))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgstore: ID-Cert serial %q: %w", serial, p2core.ErrNotFound)
		}
		return err
	})
	return c, err
}

const certColumns = `serial, user_id, session_id, fid, cert, signature_key, server_key_fingerprint,
	issued_at, expires_at, superseded_at`

func scanCert(row pgx.Row) (p2core.IDCert, error) {
	var (
		c          p2core.IDCert
		user       int64
		superseded *time.Time
	)
	err := row.Scan(&c.Serial, &user, &c.SessionID, &c.FID, &c.Cert, &c.SignatureKey, &c.ServerKeyFingerprint,
		&c.IssuedAt, &c.ExpiresAt, &superseded)
	if err != nil {
		return p2core.IDCert{}, err
	}
	c.UserID = p2core.UserID(user)
	c.Cert, c.SignatureKey, c.ServerKeyFingerprint = orNil(c.Cert), orNil(c.SignatureKey), orNil(c.ServerKeyFingerprint)
	c.IssuedAt, c.ExpiresAt, c.SupersededAt = c.IssuedAt.UTC(), c.ExpiresAt.UTC(), fromNull(superseded)
	return c, nil
}

// CurrentIDCert implements p2core.CertStore: ErrNotFound when the session
// has no current cert.
func (s *Store) CurrentIDCert(ctx context.Context, user p2core.UserID, sid p2core.SessionID) (p2core.IDCert, error) {
	var c p2core.IDCert
	err := s.do(ctx, "CurrentIDCert", func(q querier) error {
		var err error
		c, err = scanCert(q.QueryRow(ctx, `SELECT `+certColumns+` FROM p2kit_id_certs
			WHERE user_id = $1 AND session_id = $2 AND superseded_at IS NULL`, uid(user), string(sid)))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgstore: ID-Cert of session %q: %w", sid, p2core.ErrNotFound)
		}
		return err
	})
	return c, err
}

// IDCertsAt implements p2core.CertStore: ordered by IssuedAt, then by
// serial (byte order, whatever the database's collation).
func (s *Store) IDCertsAt(ctx context.Context, user p2core.UserID, at time.Time) ([]p2core.IDCert, error) {
	at = ts(at)
	var out []p2core.IDCert
	err := s.do(ctx, "IDCertsAt", func(q querier) error {
		// Two branches, so that each has an index that holds only its
		// rows: the current certs (p2kit_id_certs_current_idx) and those
		// superseded after at (p2kit_id_certs_superseded_idx, an empty
		// range when at is now). One index on (user_id, issued_at) would
		// walk the user's whole history.
		rows, err := q.Query(ctx, `SELECT `+certColumns+` FROM p2kit_id_certs
			WHERE user_id = $1 AND superseded_at IS NULL AND issued_at <= $2 AND expires_at > $2
			UNION ALL
			SELECT `+certColumns+` FROM p2kit_id_certs
			WHERE user_id = $1 AND superseded_at > $2 AND issued_at <= $2 AND expires_at > $2`, uid(user), at)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (p2core.IDCert, error) { return scanCert(row) })
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b p2core.IDCert) int {
		if c := a.IssuedAt.Compare(b.IssuedAt); c != 0 {
			return c
		}
		return strings.Compare(a.Serial, b.Serial)
	})
	return out, nil
}

// Server keys

// ServerKeys implements p2core.ServerKeyStore: oldest first.
func (s *Store) ServerKeys(ctx context.Context) ([]p2core.ServerKey, error) {
	var out []p2core.ServerKey
	err := s.do(ctx, "ServerKeys", func(q querier) error {
		out = []p2core.ServerKey{}
		rows, err := q.Query(ctx, `SELECT fingerprint, public_key, private_key, algorithm, created_at, retired_at, expires_at
			FROM p2kit_server_keys ORDER BY seq`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				k                p2core.ServerKey
				retired, expires *time.Time
			)
			if err := rows.Scan(&k.Fingerprint, &k.Public, &k.Private, &k.Algorithm, &k.CreatedAt, &retired, &expires); err != nil {
				return err
			}
			k.Fingerprint, k.Public, k.Private = orNil(k.Fingerprint), orNil(k.Public), orNil(k.Private)
			k.CreatedAt, k.RetiredAt, k.ExpiresAt = k.CreatedAt.UTC(), fromNull(retired), fromNull(expires)
			out = append(out, k)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// AddServerKey implements p2core.ServerKeyStore as a compare-and-swap in
// one transaction: the current key is retired only if its fingerprint is
// previous (a row lock settles races between instances), and a first key
// takes sequence number 1, which only one can. An empty previous counts as
// nil. k is stored as current: its RetiredAt is ignored.
func (s *Store) AddServerKey(ctx context.Context, k p2core.ServerKey, previous []byte) error {
	return s.tx(ctx, "AddServerKey", func(tx pgx.Tx) error {
		seq := int64(1)
		if len(previous) > 0 {
			var cur []byte
			err := tx.QueryRow(ctx, `UPDATE p2kit_server_keys SET retired_at = $1
				WHERE retired_at IS NULL AND fingerprint = $2
				RETURNING seq + 1, fingerprint`, ts(k.CreatedAt), previous).Scan(&seq, &cur)
			if errors.Is(err, pgx.ErrNoRows) || (err == nil && !bytes.Equal(cur, previous)) {
				return fmt.Errorf("pgstore: the current server key is not %x: %w", previous, p2core.ErrConflict)
			}
			if err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `INSERT INTO p2kit_server_keys (seq, fingerprint, public_key, private_key, algorithm,
				created_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			seq, nn(k.Fingerprint), nn(k.Public), nn(k.Private), k.Algorithm, ts(k.CreatedAt), nullTime(k.ExpiresAt))
		if pgCode(err) == "23505" {
			return fmt.Errorf("pgstore: a server key exists: %w", p2core.ErrConflict)
		}
		return err
	})
}
