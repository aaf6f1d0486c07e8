package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/p2kit/p2kit/p2core"
)

// Tokens

// CreateToken implements p2core.TokenStore: ErrConflict if the hash is
// taken.
func (s *Store) CreateToken(ctx context.Context, t p2core.FederationToken) error {
	return s.write(ctx, "CreateToken", func(ctx context.Context, q querier) error {
		_, err := q.Exec(ctx, `INSERT INTO p2kit_tokens (hash, user_id, fid, server, issued_at, expires_at)
			VALUES ($1, $2, $3, $4, $5, $6)`,
			t.Hash[:], uid(t.UserID), string(t.FID), t.Server, ts(t.IssuedAt), ts(t.ExpiresAt))
		return err
	})
}

// RedeemToken implements p2core.TokenStore with one DELETE ... RETURNING:
// atomic, and of concurrent calls (from any instance) at most one
// succeeds. The same statement deletes the token if it has expired.
func (s *Store) RedeemToken(ctx context.Context, hash [32]byte, server string, now time.Time) (p2core.FederationToken, error) {
	t := p2core.FederationToken{Hash: hash}
	err := s.write(ctx, "RedeemToken", func(ctx context.Context, q querier) error {
		var user int64
		err := q.QueryRow(ctx, `DELETE FROM p2kit_tokens
			WHERE hash = $1 AND server = $2 AND expires_at > $3
			RETURNING user_id, fid, server, issued_at, expires_at`,
			hash[:], server, ts(now)).Scan(&user, &t.FID, &t.Server, &t.IssuedAt, &t.ExpiresAt)
		if errors.Is(err, pgx.ErrNoRows) {
			return p2core.ErrTokenInvalid
		}
		t.UserID = p2core.UserID(user)
		return err
	})
	if err != nil {
		return p2core.FederationToken{}, err
	}
	t.IssuedAt, t.ExpiresAt = t.IssuedAt.UTC(), t.ExpiresAt.UTC()
	return t, nil
}

// DeleteUserTokens implements p2core.TokenStore. Atomic (one statement).
func (s *Store) DeleteUserTokens(ctx context.Context, user p2core.UserID) (int, error) {
	return s.deleteTokens(ctx, "DeleteUserTokens", `DELETE FROM p2kit_tokens WHERE user_id = $1`, uid(user))
}

// DeleteAllTokens implements p2core.TokenStore. Atomic (one statement).
func (s *Store) DeleteAllTokens(ctx context.Context) (int, error) {
	return s.deleteTokens(ctx, "DeleteAllTokens", `DELETE FROM p2kit_tokens`)
}

// PurgeExpiredTokens implements p2core.TokenStore.
func (s *Store) PurgeExpiredTokens(ctx context.Context, now time.Time) (int, error) {
	return s.deleteTokens(ctx, "PurgeExpiredTokens", `DELETE FROM p2kit_tokens WHERE expires_at <= $1`, ts(now))
}

func (s *Store) deleteTokens(ctx context.Context, op, sql string, args ...any) (int, error) {
	var n int64
	err := s.write(ctx, op, func(ctx context.Context, q querier) error {
		tag, err := q.Exec(ctx, sql, args...)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, err
	}
	return int(n), nil
}

// Settings

// Setting implements p2core.SettingsStore: ErrNotFound for a missing key.
func (s *Store) Setting(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.do(ctx, "Setting", func(q querier) error {
		err := q.QueryRow(ctx, `SELECT value FROM p2kit_settings WHERE key = $1`, key).Scan(&v)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("pgstore: setting %q: %w", key, p2core.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// CreateSetting implements p2core.SettingsStore. Atomic (one statement).
func (s *Store) CreateSetting(ctx context.Context, key string, value []byte) error {
	return s.write(ctx, "CreateSetting", func(ctx context.Context, q querier) error {
		tag, err := q.Exec(ctx, `INSERT INTO p2kit_settings (key, value) VALUES ($1, $2)
			ON CONFLICT (key) DO NOTHING`, key, nn(value))
		if err == nil && tag.RowsAffected() == 0 {
			return fmt.Errorf("pgstore: setting %q exists: %w", key, p2core.ErrConflict)
		}
		return err
	})
}

// PutSetting implements p2core.SettingsStore.
func (s *Store) PutSetting(ctx context.Context, key string, value []byte) error {
	return s.write(ctx, "PutSetting", func(ctx context.Context, q querier) error {
		_, err := q.Exec(ctx, `INSERT INTO p2kit_settings (key, value) VALUES ($1, $2)
			ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`, key, nn(value))
		return err
	})
}
