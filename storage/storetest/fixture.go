package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// fixture is a store holding one of everything, and the means to check
// that it still holds exactly that.
type fixture struct {
	g        gen
	now      time.Time
	token    p2core.FederationToken
	session  p2core.Session
	cert     p2core.IDCert
	key      p2core.ServerKey
	kps      []p2core.KeyPackage
	lr       p2core.KeyPackage
	handed   p2core.KeyPackage // claimed from session "phone"
	usedLR   p2core.KeyPackage // last resort of "phone", handed out
	fid      p2core.FID
	fidUser  p2core.UserID
	settingK string
	settingV []byte
}

// seed fills s with the fixture.
func seed(t *testing.T, s p2core.Store) *fixture {
	t.Helper()
	ctx := t.Context()
	f := &fixture{now: base(), fid: "bob@foreign.example", fidUser: 1001, settingK: "token_generation", settingV: []byte("enabled")}
	g := &f.g
	now := f.now
	f.token = g.token(7, serverA, now, now.Add(5*time.Minute))
	f.session = g.session(7, "laptop", now.Add(-time.Hour))
	f.cert = g.cert(7, "laptop", now.Add(-time.Hour), now.Add(30*24*time.Hour))
	f.key = g.serverKey(now.Add(-24 * time.Hour))
	f.kps = g.kps(2, 7, "laptop", 1, now.Add(time.Hour))
	f.lr = g.kp(7, "laptop", 1, now.Add(time.Hour))
	f.handed = g.kp(7, "phone", 1, now.Add(time.Hour))
	f.usedLR = g.kp(7, "phone", 1, now.Add(time.Hour))

	ok(t, s.CreateToken(ctx, f.token), "CreateToken")
	ok(t, s.PutSetting(ctx, f.settingK, f.settingV), "PutSetting")
	ok(t, create(ctx, s, f.session), "CreateSession")
	id, err := login(ctx, s, g, f.fid, f.fidUser, "foreign", now.Add(-time.Hour))
	ok(t, err, "CreateSession of a foreign login")
	count(t, int(id), int(f.fidUser), "mapped user")
	ok(t, s.PutIDCert(ctx, f.cert), "PutIDCert")
	ok(t, s.AddServerKey(ctx, f.key, nil), "AddServerKey")
	// Session "phone": one KeyPackage and a last resort, both handed out.
	ok(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{f.handed}, 100, now), "AddKeyPackages")
	ok(t, s.SetLastResort(ctx, f.usedLR, now), "SetLastResort")
	claimOne(t, s, 7, 0, now)
	claimOne(t, s, 7, 0, now)
	ok(t, s.AddKeyPackages(ctx, f.kps, 100, now), "AddKeyPackages")
	ok(t, s.SetLastResort(ctx, f.lr, now), "SetLastResort")
	return f
}

// verify checks that s holds exactly the fixture. It consumes the token
// and the KeyPackages, so it can run once.
func (f *fixture) verify(t *testing.T, s p2core.Store) {
	t.Helper()
	ctx := t.Context()
	g := &f.g
	now := f.now

	wantSetting(t, s, f.settingK, f.settingV)

	got, err := s.SessionByToken(ctx, f.session.TokenHash)
	ok(t, err, "SessionByToken")
	sameSession(t, f.session, got)
	for _, user := range []p2core.UserID{7, 8} {
		ss, err := s.Sessions(ctx, user)
		ok(t, err, "Sessions")
		want := 0
		if user == 7 {
			want = 1
		}
		count(t, len(ss), want, "sessions")
	}

	ss, err := s.Sessions(ctx, f.fidUser)
	ok(t, err, "Sessions")
	count(t, len(ss), 1, "sessions of the foreign user")
	id, err := login(ctx, s, g, f.fid, 1, "again", now)
	ok(t, err, "CreateSession of a foreign login")
	count(t, int(id), int(f.fidUser), "mapped user")
	id, err = login(ctx, s, g, "new@foreign.example", 2002, "new", now)
	ok(t, err, "CreateSession of a new FID")
	count(t, int(id), 2002, "new FID gets the candidate")

	cur, err := s.CurrentIDCert(ctx, 7, "laptop")
	ok(t, err, "CurrentIDCert")
	sameCert(t, f.cert, cur)
	wantCerts(t, s, 7, now, f.cert)

	wantServerKeys(t, s, f.key)

	wantStatus(t, s, 7, "laptop", now, p2core.KeyPackageStatus{Available: 2, LastResort: true})
	wantStatus(t, s, 7, "phone", now, p2core.KeyPackageStatus{LastResort: true, LastResortUsed: true})
	for _, used := range []p2core.KeyPackage{f.handed, f.usedLR} {
		reuse := g.kp(8, "x", 1, now.Add(time.Hour))
		reuse.InitKey = used.InitKey
		isErr(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{reuse}, 100, now), p2core.ErrDuplicateKeyPackage,
			"AddKeyPackages with a handed-out init key")
	}
	for i, want := range append(f.kps, f.lr) {
		res, err := s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{})
		ok(t, err, "ClaimKeyPackages")
		count(t, len(res), 2, "claim results (laptop, phone)")
		sameKP(t, want, res[0].KeyPackage)
		if res[0].LastResort != (i == len(f.kps)) {
			t.Fatalf("claim %d: LastResort %v", i, res[0].LastResort)
		}
		sameKP(t, f.usedLR, res[1].KeyPackage)
	}

	n, err := s.DeleteUserTokens(ctx, 8)
	ok(t, err, "DeleteUserTokens")
	count(t, n, 0, "tokens of user 8")
	tk, err := s.RedeemToken(ctx, f.token.Hash, serverA, now)
	ok(t, err, "RedeemToken")
	sameToken(t, f.token, tk)
	n, err = s.DeleteAllTokens(ctx)
	ok(t, err, "DeleteAllTokens")
	count(t, n, 0, "tokens left")
}

// call is one Store method called with arguments that would change the
// fixture (or read it), for checks that apply to every method.
type call struct {
	name string
	fn   func(ctx context.Context, s p2core.Store, f *fixture) error
}

// everyMethod lists every Store method except Close.
func everyMethod() []call {
	later := func(f *fixture) time.Time { return f.now.Add(365 * 24 * time.Hour) }
	return []call{
		{"CreateToken", func(ctx context.Context, s p2core.Store, f *fixture) error {
			return s.CreateToken(ctx, f.g.token(8, serverA, f.now, f.now.Add(time.Hour)))
		}},
		{"RedeemToken", func(ctx context.Context, s p2core.Store, f *fixture) error {
			_, err := s.RedeemToken(ctx, f.token.Hash, serverA, f.now)
			return err
		}},
		{"DeleteUserTokens", func(ctx context.Context, s p2core.Store, f *fixture) error {
			_, err := s.DeleteUserTokens(ctx, 7)
			return err
		}},
		{"DeleteAllTokens", func(ctx context.Context, s p2core.Store, f *fixture) error {
			_, err := s.DeleteAllTokens(ctx)
			return err
		}},
		{"PurgeExpiredTokens", func(ctx context.Context, s p2core.Store, f *fixture) error {
			_, err := s.PurgeExpiredTokens(ctx, later(f))
			return err
		}},
		{"Setting", func(ctx context.Context, s p2core.Store, f *fixture) error {
			_, err := s.Setting(ctx, f.settingK)
			return err
		}},
		{"PutSetting", func(ctx context.Context, s p2core.Store, f *fixture) error {
			return s.PutSetting(ctx, f.settingK, []byte("disabled"))
		}},
		{"CreateSetting", func(ctx context.Context, s p2core.Store, f *fixture) error {
			return s.CreateSetting(ctx, "new-"+f.settingK, []byte("x"))
		}},
		{"CreateSession", func(ctx context.Context, s p2core.Store, f *fixture) error {
			return create(ctx, s, f.g.session(8, "x", f.now))
		}},
		{"SessionByToken", func(ctx context.Context, s p2core.Store, f *fixture) error {
			_, err := s.SessionByToken(ctx, f.session.TokenHash)
			return err
		}},
		{"Sessions", func(ctx context.Context, s p2core.Store, f *fixture) error {
			_, err := s.Sessions(ctx, 7)
			return err
		}},
		{"EndSession", func(ctx context.Context, s p2core.Store, f *fixture) error {
			return s.EndSession(ctx, 7, "laptop", f.now)
		}},
		{"CreateSessionForeignLogin", func(ctx context.Context, s p2core.Store, f *fixture) error {
			g := &f.g
			ss := g.session(0, "x", f.now)
			ss.FID, ss.Home = "new@foreign.example", "foreign.example"
			c := g.cert(0, "", f.now, f.now.Add(time.Hour))
			lr := g.kp(0, "", 1, f.now.Add(time.Hour))
			_, err := s.CreateSession(ctx, p2core.NewSession{Session: ss, ForeignCandidate: 3003, Cert: &c,
				KeyPackages: g.kps(2, 0, "", 1, f.now.Add(time.Hour)), LastResort: &lr}, roomy, f.now)
			return err
		}},
		{"IDCertBySerial", func(ctx context.Context, s p2core.Store, f *fixture) error {
			_, err := s.IDCertBySerial(ctx, f.cert.Serial)
			return err
		}},
		{"InitKeyInUse", func(ctx context.Context, s p2core.Store, f *fixture) error {
			_, err := s.InitKeyInUse(ctx, [][]byte{f.kps[0].InitKey}, f.now)
			return err
		}},
		{"PutIDCert", func(ctx context.Context, s p2core.Store, f *fixture) error {
			return s.PutIDCert(ctx, f.g.cert(7, "laptop", f.now.Add(-time.Minute), f.now.Add(time.Hour)))
		}},
		{"CurrentIDCert", func(ctx context.Context, s p2core.Store, f *fixture) error {
			_, err := s.CurrentIDCert(ctx, 7, "laptop")
			return err
		}},
		{"IDCertsAt", func(ctx context.Context, s p2core.Store, f *fixture) error {
			_, err := s.IDCertsAt(ctx, 7, f.now)
			return err
		}},
		{"ServerKeys", func(ctx context.Context, s p2core.Store, f *fixture) error {
			_, err := s.ServerKeys(ctx)
			return err
		}},
		{"AddServerKey", func(ctx context.Context, s p2core.Store, f *fixture) error {
			return s.AddServerKey(ctx, f.g.serverKey(f.now), f.key.Fingerprint)
		}},
		{"AddKeyPackages", func(ctx context.Context, s p2core.Store, f *fixture) error {
			return s.AddKeyPackages(ctx, f.g.kps(2, 7, "laptop", 1, f.now.Add(time.Hour)), 100, f.now)
		}},
		{"SetLastResort", func(ctx context.Context, s p2core.Store, f *fixture) error {
			return s.SetLastResort(ctx, f.g.kp(7, "laptop", 1, f.now.Add(time.Hour)), f.now)
		}},
		{"ClaimKeyPackages", func(ctx context.Context, s p2core.Store, f *fixture) error {
			_, err := s.ClaimKeyPackages(ctx, 7, 0, f.now, p2core.SessionEnds{})
			return err
		}},
		{"KeyPackageStatus", func(ctx context.Context, s p2core.Store, f *fixture) error {
			_, err := s.KeyPackageStatus(ctx, 7, "laptop", f.now)
			return err
		}},
		{"PurgeExpiredKeyPackages", func(ctx context.Context, s p2core.Store, f *fixture) error {
			_, err := s.PurgeExpiredKeyPackages(ctx, later(f))
			return err
		}},
	}
}
