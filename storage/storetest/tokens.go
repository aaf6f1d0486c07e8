package storetest

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

const (
	serverA = "https://a.example"
	serverB = "https://b.example:8443"
)

func tokenCases() []testCase {
	return []testCase{
		{"CreateTokenThenRedeemReturnsItOnce", testRedeemReturnsTokenOnce},
		{"CreateTokenWithExistingHashIsConflict", testCreateTokenDuplicate},
		{"RedeemUnknownTokenIsTokenInvalid", testRedeemUnknown},
		{"RedeemAtOrAfterExpiryIsTokenInvalid", testRedeemExpired},
		{"RedeemForOtherServerIsTokenInvalidAndKeepsToken", testRedeemWrongServer},
		{"RedeemIsExactlyOnceUnder100Goroutines", testRedeemConcurrent},
		{"DeleteUserTokensCountsAllOfThatUserOnly", testDeleteUserTokens},
		{"DeleteUserTokensWithNoneReturnsZero", testDeleteUserTokensNone},
		{"DeleteAllTokensCountsAndRevokesEveryToken", testDeleteAllTokens},
		{"PurgeExpiredTokensDeletesOnlyExpired", testPurgeExpiredTokens},
	}
}

func testRedeemReturnsTokenOnce(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	tk := g.token(7, serverA, now, now.Add(5*time.Minute))
	ok(t, s.CreateToken(ctx, tk), "CreateToken")
	got, err := s.RedeemToken(ctx, tk.Hash, serverA, now.Add(time.Minute))
	ok(t, err, "RedeemToken")
	sameToken(t, tk, got)
	_, err = s.RedeemToken(ctx, tk.Hash, serverA, now.Add(time.Minute))
	isErr(t, err, p2core.ErrTokenInvalid, "second RedeemToken")
}

func testCreateTokenDuplicate(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	tk := g.token(7, serverA, now, now.Add(5*time.Minute))
	ok(t, s.CreateToken(ctx, tk), "CreateToken")
	dup := g.token(8, serverB, now, now.Add(time.Hour))
	dup.Hash = tk.Hash
	isErr(t, s.CreateToken(ctx, dup), p2core.ErrConflict, "CreateToken with an existing hash")
	got, err := s.RedeemToken(ctx, tk.Hash, serverA, now)
	ok(t, err, "RedeemToken of the first token")
	sameToken(t, tk, got)
	n, err := s.DeleteAllTokens(ctx)
	ok(t, err, "DeleteAllTokens")
	count(t, n, 0, "tokens left after redeeming the only stored one")
}

func testRedeemUnknown(t *testing.T, s p2core.Store) {
	var g gen
	_, err := s.RedeemToken(t.Context(), g.hash(), serverA, base())
	isErr(t, err, p2core.ErrTokenInvalid, "RedeemToken of an unknown hash")
}

func testRedeemExpired(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	tk := g.token(7, serverA, now, now.Add(5*time.Minute))
	ok(t, s.CreateToken(ctx, tk), "CreateToken")
	_, err := s.RedeemToken(ctx, tk.Hash, serverA, tk.ExpiresAt)
	isErr(t, err, p2core.ErrTokenInvalid, "RedeemToken at ExpiresAt")
	_, err = s.RedeemToken(ctx, tk.Hash, serverA, tk.ExpiresAt.Add(time.Hour))
	isErr(t, err, p2core.ErrTokenInvalid, "RedeemToken after ExpiresAt")

	// One microsecond before the expiry is still in time.
	tk2 := g.token(7, serverA, now, now.Add(5*time.Minute))
	ok(t, s.CreateToken(ctx, tk2), "CreateToken")
	got, err := s.RedeemToken(ctx, tk2.Hash, serverA, tk2.ExpiresAt.Add(-time.Microsecond))
	ok(t, err, "RedeemToken 1µs before ExpiresAt")
	sameToken(t, tk2, got)
}

func testRedeemWrongServer(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	tk := g.token(7, serverA, now, now.Add(5*time.Minute))
	ok(t, s.CreateToken(ctx, tk), "CreateToken")
	_, err := s.RedeemToken(ctx, tk.Hash, serverB, now)
	isErr(t, err, p2core.ErrTokenInvalid, "RedeemToken for another server")
	got, err := s.RedeemToken(ctx, tk.Hash, serverA, now)
	ok(t, err, "RedeemToken for the right server after a wrong one")
	sameToken(t, tk, got)
}

func testRedeemConcurrent(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	tk := g.token(7, serverA, now, now.Add(5*time.Minute))
	ok(t, s.CreateToken(ctx, tk), "CreateToken")
	var wins, invalid atomic.Int32
	errs := make([]error, 100)
	run(100, func(i int) {
		got, err := s.RedeemToken(ctx, tk.Hash, serverA, now)
		switch {
		case err == nil:
			wins.Add(1)
			if d := diffToken(tk, got); d != nil {
				errs[i] = d
			}
		case errors.Is(err, p2core.ErrTokenInvalid):
			invalid.Add(1)
		default:
			errs[i] = err
		}
	})
	for _, err := range errs {
		ok(t, err, "concurrent RedeemToken")
	}
	count(t, int(wins.Load()), 1, "successful redemptions")
	count(t, int(invalid.Load()), 99, "ErrTokenInvalid redemptions")
}

func testDeleteUserTokens(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	mine := []p2core.FederationToken{
		g.token(7, serverA, now, now.Add(5*time.Minute)),
		g.token(7, serverB, now, now.Add(5*time.Minute)),
		g.token(7, serverA, now.Add(-time.Hour), now.Add(-time.Hour+5*time.Minute)), // expired
	}
	other := g.token(8, serverA, now, now.Add(5*time.Minute))
	for _, tk := range append(mine, other) {
		ok(t, s.CreateToken(ctx, tk), "CreateToken")
	}
	n, err := s.DeleteUserTokens(ctx, 7)
	ok(t, err, "DeleteUserTokens")
	count(t, n, 3, "DeleteUserTokens count (expired tokens included)")
	for _, tk := range mine[:2] {
		_, err := s.RedeemToken(ctx, tk.Hash, tk.Server, now)
		isErr(t, err, p2core.ErrTokenInvalid, "RedeemToken of a deleted token")
	}
	got, err := s.RedeemToken(ctx, other.Hash, serverA, now)
	ok(t, err, "RedeemToken of another user's token")
	sameToken(t, other, got)
	n, err = s.DeleteUserTokens(ctx, 7)
	ok(t, err, "second DeleteUserTokens")
	count(t, n, 0, "second DeleteUserTokens count")
}

func testDeleteUserTokensNone(t *testing.T, s p2core.Store) {
	n, err := s.DeleteUserTokens(t.Context(), 99)
	ok(t, err, "DeleteUserTokens")
	count(t, n, 0, "DeleteUserTokens count")
}

func testDeleteAllTokens(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	tks := []p2core.FederationToken{
		g.token(7, serverA, now, now.Add(5*time.Minute)),
		g.token(8, serverB, now, now.Add(5*time.Minute)),
		g.token(9, serverA, now.Add(-time.Hour), now.Add(-time.Hour+5*time.Minute)),
	}
	for _, tk := range tks {
		ok(t, s.CreateToken(ctx, tk), "CreateToken")
	}
	n, err := s.DeleteAllTokens(ctx)
	ok(t, err, "DeleteAllTokens")
	count(t, n, 3, "DeleteAllTokens count")
	for _, tk := range tks[:2] {
		_, err := s.RedeemToken(ctx, tk.Hash, tk.Server, now)
		isErr(t, err, p2core.ErrTokenInvalid, "RedeemToken after DeleteAllTokens")
	}
	n, err = s.DeleteAllTokens(ctx)
	ok(t, err, "second DeleteAllTokens")
	count(t, n, 0, "second DeleteAllTokens count")

	// The store still works afterwards.
	tk := g.token(7, serverA, now, now.Add(5*time.Minute))
	ok(t, s.CreateToken(ctx, tk), "CreateToken after DeleteAllTokens")
	_, err = s.RedeemToken(ctx, tk.Hash, serverA, now)
	ok(t, err, "RedeemToken after DeleteAllTokens")
}

func testPurgeExpiredTokens(t *testing.T, s p2core.Store) {
	var g gen
	ctx := t.Context()
	now := base()
	past := g.token(7, serverA, now.Add(-time.Hour), now.Add(-time.Second))
	boundary := g.token(7, serverA, now.Add(-5*time.Minute), now) // ExpiresAt == now: expired
	live := g.token(8, serverA, now, now.Add(time.Microsecond))
	for _, tk := range []p2core.FederationToken{past, boundary, live} {
		ok(t, s.CreateToken(ctx, tk), "CreateToken")
	}
	n, err := s.PurgeExpiredTokens(ctx, now)
	ok(t, err, "PurgeExpiredTokens")
	count(t, n, 2, "PurgeExpiredTokens count")
	n, err = s.PurgeExpiredTokens(ctx, now)
	ok(t, err, "second PurgeExpiredTokens")
	count(t, n, 0, "second PurgeExpiredTokens count")
	n, err = s.DeleteUserTokens(ctx, 7)
	ok(t, err, "DeleteUserTokens")
	count(t, n, 0, "tokens of user 7 left after purge")
	got, err := s.RedeemToken(ctx, live.Hash, serverA, now)
	ok(t, err, "RedeemToken of the unexpired token")
	sameToken(t, live, got)
}
