package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

// script numbers and prints the steps. Tokens are secrets and are never
// printed.
type script struct {
	out io.Writer
	n   int
}

func (s *script) say(format string, args ...any) {
	s.n++
	fmt.Fprintf(s.out, "%2d. %s\n", s.n, fmt.Sprintf(format, args...))
}

// demo is the client script. Every p2kit call goes over HTTP with
// httpadapter.Client; only account creation is in-process (see
// server.register).
func demo(ctx context.Context, out io.Writer, a, b *server) error {
	sc := &script{out: out}
	sc.say("server A serves a.localhost at %s (data in %s)", a.url, a.dbPath)
	sc.say("server B serves b.localhost at %s (data in %s)", b.url, b.dbPath)

	// alice, at home on A.
	aliceA, sessA, err := a.register(ctx, "alice")
	if err != nil {
		return fmt.Errorf("register alice on A: %w", err)
	}
	sc.say("alice registered on A and logged in: %s, user %s, session %s", sessA.FID, sessA.UserID, sessA.SessionID)

	key, err := idcerttest.NewClientKey(string(sessA.FID), nil, time.Time{})
	if err != nil {
		return err
	}
	cert, err := aliceA.IssueIDCert(ctx, key.Armored)
	if err != nil {
		return fmt.Errorf("route 8 on A: %w", err)
	}
	info, err := idcert.ParseCert(cert)
	if err != nil {
		return err
	}
	sc.say("A certified alice's OpenPGP key (route 8): ID-Cert %s for session %s, valid until %s",
		info.Serial, info.SessionID, info.Expires.Format(time.RFC3339))

	token, err := aliceA.IssueToken(ctx, b.url)
	if err != nil {
		return fmt.Errorf("route 1 on A: %w", err)
	}
	sc.say("A issued alice a one-time federation token for %s (route 1; a secret, not shown)", b.url)

	// alice, visiting B.
	kps := mlstest.NewEd25519(key.Signer)
	kps.Identity = []byte(sessA.FID) // the credential names the session's FID
	atLogin, err := buildKeyPackages(kps, 2)
	if err != nil {
		return err
	}
	lastResort, err := buildKeyPackages(kps, 1)
	if err != nil {
		return err
	}
	login, err := b.client().ForeignLogin(ctx, p2core.ForeignLoginRequest{
		FederationToken: token, IDCert: cert, KeyPackages: atLogin, LastResort: lastResort[0]})
	if err != nil {
		return fmt.Errorf("route 16 on B: %w", err)
	}
	if login.Extra == nil || login.Extra.FID != sessA.FID {
		return fmt.Errorf("route 16 on B: answer without alice's FID: %+v", login.Extra)
	}
	aliceID := login.Extra.UserID
	sc.say("B verified the ID-Cert against A's key (route 10 on A), redeemed the token at A (route 7) and admitted %s as B's user %s, session %s, with %d KeyPackages and a last resort (route 16)",
		login.Extra.FID, aliceID, login.Extra.SessionID, len(atLogin))
	aliceB := b.client().WithToken(login.SessionToken)

	more, err := buildKeyPackages(kps, 3)
	if err != nil {
		return err
	}
	if err := aliceB.UploadKeyPackages(ctx, more); err != nil {
		return fmt.Errorf("route 12 on B: %w", err)
	}
	st, err := aliceB.KeyPackageStatus(ctx)
	if err != nil {
		return fmt.Errorf("route 15 on B: %w", err)
	}
	if st.Available != len(atLogin)+len(more) || !st.LastResort {
		return fmt.Errorf("route 15 on B: %+v, want %d KeyPackages and a last resort", st, len(atLogin)+len(more))
	}
	sc.say("alice uploaded %d more KeyPackages on B (route 12); B holds %d for her session and a last resort (route 15)", len(more), st.Available)

	// bob, at home on B.
	bobB, sessB, err := b.register(ctx, "bob")
	if err != nil {
		return fmt.Errorf("register bob on B: %w", err)
	}
	sc.say("bob registered on B and logged in: %s, user %s", sessB.FID, sessB.UserID)

	certs, err := bobB.UserIDCerts(ctx, aliceID, time.Time{})
	if err != nil {
		return fmt.Errorf("route 9 on B: %w", err)
	}
	// One cert per session of alice's on B: with -data, earlier runs' sessions
	// are still there.
	if !containsBytes(certs, cert) {
		return fmt.Errorf("route 9 on B: the %d ID-Certs for alice do not include the one she presented", len(certs))
	}
	pub, err := a.client().ServerKey(ctx, info.IssuedAt)
	if err != nil {
		return fmt.Errorf("route 10 on A: %w", err)
	}
	homeKey, err := idcert.ParsePublicServerKey(pub)
	if err != nil {
		return err
	}
	verified, err := idcert.Verify(cert, homeKey, time.Now())
	if err != nil {
		return fmt.Errorf("alice's ID-Cert from B does not verify against A's key: %w", err)
	}
	sc.say("bob fetched alice's ID-Cert from B (route 9) and verified it against A's server key (route 10 on A): %s", verified.FID)

	claimed, err := bobB.ClaimKeyPackages(ctx, aliceID, 0)
	if err != nil {
		return fmt.Errorf("route 14 on B: %w", err)
	}
	uploaded := slices.Concat(atLogin, more)
	mine := -1
	for i, kp := range claimed { // one per session of alice's on B
		if containsBytes(uploaded, kp) {
			mine = i
		}
	}
	if mine < 0 {
		return fmt.Errorf("route 14 on B: %d KeyPackages, none of those alice uploaded", len(claimed))
	}
	sc.say("bob claimed a KeyPackage of alice on B (route 14): %d bytes, one alice uploaded, bound to her ID-Cert's key", len(claimed[mine]))

	// A federation token works once.
	cert2, err := aliceA.IssueIDCert(ctx, key.Armored)
	if err != nil {
		return fmt.Errorf("route 8 on A: %w", err)
	}
	_, err = b.client().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: token, IDCert: cert2})
	var apiErr *httpadapter.APIError
	if !errors.As(err, &apiErr) || apiErr.Code != "P2CORE_TOKEN_INVALID" {
		return fmt.Errorf("replaying the federation token at B: got %v, want 404 P2CORE_TOKEN_INVALID", err)
	}
	sc.say("replaying the federation token at B is refused: %d %s", apiErr.Status, apiErr.Code)
	sc.say("done: %s has a session on B, and bob holds one of her KeyPackages", sessA.FID)
	return nil
}

func buildKeyPackages(b *mlstest.Builder, n int) ([][]byte, error) {
	out := make([][]byte, n)
	for i := range out {
		kp, err := b.Build()
		if err != nil {
			return nil, fmt.Errorf("build KeyPackage: %w", err)
		}
		out[i] = kp
	}
	return out, nil
}

func containsBytes(list [][]byte, b []byte) bool {
	for _, x := range list {
		if bytes.Equal(x, b) {
			return true
		}
	}
	return false
}
