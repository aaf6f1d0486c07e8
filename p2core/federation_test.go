package p2core_test

import (
	"context"
	"encoding/base64"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
	"github.com/p2kit/p2kit/storage/memstore"
)

var ctx = context.Background()

// fakeClock is a settable clock shared by the servers of a test.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// directHomes answers HomeServers calls from home Services in the same
// process, and records them.
type directHomes struct {
	mu      sync.Mutex
	homes   map[string]*p2core.Service
	keyAt   []time.Time // the at of every ServerKey call
	redeems int
	// override, when set, replaces the answer of RedeemToken.
	override func(p2core.FederationToken) (p2core.FederationToken, error)
	keyErr   error
}

func (d *directHomes) ServerKey(ctx context.Context, domain string, at time.Time) ([]byte, error) {
	d.mu.Lock()
	d.keyAt = append(d.keyAt, at)
	svc, err := d.homes[domain], d.keyErr
	d.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if svc == nil {
		return nil, p2core.Errorf(p2core.ErrUnknownHome, "no home for %s", domain)
	}
	k, err := svc.ServerPublicKey(ctx, at)
	if errors.Is(err, p2core.ErrNotFound) {
		return nil, p2core.Errorf(p2core.ErrUnknownHome, "no key then")
	}
	return k.Public, err
}

func (d *directHomes) RedeemToken(ctx context.Context, domain, token, self string) (p2core.FederationToken, error) {
	d.mu.Lock()
	d.redeems++
	svc, override := d.homes[domain], d.override
	d.mu.Unlock()
	t, err := svc.RedeemFederationToken(ctx, token, self)
	if err == nil && override != nil {
		return override(t)
	}
	return t, err
}

func (d *directHomes) calls() (keys []time.Time, redeems int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]time.Time(nil), d.keyAt...), d.redeems
}

type fed struct {
	clock *fakeClock
	home  *p2core.Service // a.test
	here  *p2core.Service // b.test
	store p2core.Store    // here's
	homes *directHomes
}

func newFed(t *testing.T, mutate func(*p2core.Config)) *fed {
	t.Helper()
	f := &fed{clock: &fakeClock{t: time.Now().UTC().Truncate(time.Second)}, homes: &directHomes{homes: map[string]*p2core.Service{}}}
	home, err := p2core.NewService(memstore.New(), p2core.Config{Domain: "a.test", Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	cfg := p2core.Config{Domain: "b.test", Now: f.clock.Now, Homes: f.homes}
	if mutate != nil {
		mutate(&cfg)
	}
	f.store = memstore.New()
	here, err := p2core.NewService(f.store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.home, f.here = home, here
	f.homes.homes["a.test"] = home
	return f
}

// user is a session on the home server with a key and an ID-Cert.
type homeUser struct {
	p    p2core.Principal
	key  *idcerttest.ClientKey
	cert []byte
}

func (f *fed) user(t *testing.T, id p2core.UserID, name string) *homeUser {
	t.Helper()
	fid := p2core.FID(name + "@a.test")
	_, sess, err := f.home.CreateSession(ctx, id, fid)
	if err != nil {
		t.Fatal(err)
	}
	u := &homeUser{p: p2core.Principal{UserID: id, FID: fid, SessionID: sess.SessionID}}
	f.recertify(t, u)
	return u
}

func (f *fed) recertify(t *testing.T, u *homeUser) {
	t.Helper()
	k, err := idcerttest.NewClientKey(string(u.p.FID), nil, f.clock.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.home.IssueIDCert(ctx, u.p, []byte(k.Armored))
	if err != nil {
		t.Fatal(err)
	}
	u.key, u.cert = k, c.Cert
}

func (f *fed) token(t *testing.T, u *homeUser) string {
	t.Helper()
	tok, _, err := f.home.IssueFederationToken(ctx, u.p, f.here.Config().SelfURL)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (f *fed) login(t *testing.T, u *homeUser, kps ...[]byte) (string, p2core.Session) {
	t.Helper()
	tok, sess, err := f.here.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: f.token(t, u), IDCert: u.cert, KeyPackages: kps})
	if err != nil {
		t.Fatal(err)
	}
	return tok, sess
}

func TestForeignLoginCachesTheHomeKeyForHomeKeyTTL(t *testing.T) {
	f := newFed(t, func(c *p2core.Config) { c.HomeKeyTTL = time.Minute })
	alice, bob := f.user(t, 1, "alice"), f.user(t, 2, "bob")
	f.login(t, alice)
	f.login(t, bob)
	if keys, redeems := f.homes.calls(); len(keys) != 1 || !keys[0].IsZero() || redeems != 2 {
		t.Fatalf("two logins: key fetches %v, redeems %d; want one fetch of the current key", keys, redeems)
	}
	f.clock.Add(time.Minute)
	f.recertify(t, alice)
	f.login(t, alice)
	if keys, _ := f.homes.calls(); len(keys) != 2 {
		t.Fatalf("after the TTL: key fetches %v, want a second one", keys)
	}
}

func TestForeignLoginFollowsHomeKeyRotation(t *testing.T) {
	f := newFed(t, nil)
	alice, bob := f.user(t, 1, "alice"), f.user(t, 2, "bob")
	f.login(t, alice) // caches the first key
	f.clock.Add(time.Minute)
	if _, err := f.home.RotateServerKey(ctx, p2core.Principal{UserID: 9, FID: "root@a.test", SessionID: "s", Admin: true}); err != nil {
		t.Fatal(err)
	}
	f.clock.Add(time.Second)
	f.recertify(t, alice) // certified by the new key
	f.login(t, alice)
	keys, _ := f.homes.calls()
	if len(keys) != 2 || !keys[1].IsZero() {
		t.Fatalf("cert by a new key: key fetches %v, want one refetch of the current key", keys)
	}
	f.recertify(t, alice)
	f.login(t, alice)
	// bob's cert is by the old key: the key current when it was issued is
	// asked for.
	parsed, err := idcert.ParseCert(bob.cert)
	if err != nil {
		t.Fatal(err)
	}
	f.login(t, bob)
	keys, _ = f.homes.calls()
	if len(keys) != 3 || !keys[2].Equal(parsed.IssuedAt) {
		t.Fatalf("cert by the old key: key fetches %v, want a third at %v", keys, parsed.IssuedAt)
	}
}

func TestForeignLoginDoesNotRefetchForEveryUnknownIssuer(t *testing.T) {
	f := newFed(t, nil)
	alice := f.user(t, 1, "alice")
	f.login(t, alice)
	// Certs by a key the home never had, presented right after the fetch:
	// each costs one lookup of the key current at its issue time, but the
	// cached current key is not refetched.
	impostor, err := idcert.GenerateServerKey("a.test", "", f.clock.Now().Add(-time.Hour), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := idcert.ParseClientKey([]byte(alice.key.Armored), "alice@a.test", f.clock.Now(), idcert.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := idcert.Issue(impostor, ck, idcert.IssueParams{SessionID: string(alice.p.SessionID), Now: f.clock.Now()})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		_, _, err := f.here.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: "tok", IDCert: forged.Raw})
		if !errors.Is(err, p2core.ErrInvalidIDCert) {
			t.Fatalf("forged cert: %v", err)
		}
	}
	keys, redeems := f.homes.calls()
	for _, at := range keys[1:] {
		if at.IsZero() {
			t.Fatalf("key fetches %v: the current key was refetched", keys)
		}
	}
	if redeems != 1 {
		t.Fatalf("%d redemptions, want only the first login's", redeems)
	}
}

func TestForeignLoginChecksEverythingBeforeRedeeming(t *testing.T) {
	f := newFed(t, nil)
	alice, bob := f.user(t, 1, "alice"), f.user(t, 2, "bob")
	kb := mlstest.NewEd25519(bob.key.Signer)
	kb.Now = f.clock.Now
	kb.Identity = []byte(bob.p.FID)
	bobsKP, err := kb.Build()
	if err != nil {
		t.Fatal(err)
	}
	tok := f.token(t, alice)
	for _, tc := range []struct {
		name string
		req  p2core.ForeignLoginRequest
		want error
	}{
		{"not a cert", p2core.ForeignLoginRequest{FederationToken: tok, IDCert: []byte("junk")}, p2core.ErrInvalidIDCert},
		{"KeyPackage of bob", p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert, KeyPackages: [][]byte{bobsKP}}, p2core.ErrInvalidKeyPackage},
		{"last resort of bob", p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert, LastResort: bobsKP}, p2core.ErrInvalidKeyPackage},
		{"101 KeyPackages", p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert, KeyPackages: make([][]byte, 101)}, p2core.ErrBadRequest},
		{"token with a space", p2core.ForeignLoginRequest{FederationToken: "a b", IDCert: alice.cert}, p2core.ErrBadRequest},
		{"cert of a local user", p2core.ForeignLoginRequest{FederationToken: tok, IDCert: f.localCert(t)}, p2core.ErrForbidden},
		{"cert expired next year", p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert}, p2core.ErrInvalidIDCert},
	} {
		if tc.name == "cert expired next year" {
			f.clock.Add(365 * 24 * time.Hour)
		}
		if _, _, err := f.here.ForeignLogin(ctx, tc.req); !errors.Is(err, tc.want) {
			t.Fatalf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, redeems := f.homes.calls(); redeems != 0 {
		t.Fatalf("%d redemptions for refused requests", redeems)
	}
}

// localCert returns an ID-Cert the foreign server itself issued.
func (f *fed) localCert(t *testing.T) []byte {
	t.Helper()
	p := p2core.Principal{UserID: 77, FID: "carol@b.test", SessionID: "s1"}
	k, err := idcerttest.NewClientKey("carol@b.test", nil, f.clock.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.here.IssueIDCert(ctx, p, []byte(k.Armored))
	if err != nil {
		t.Fatal(err)
	}
	return c.Cert
}

func TestForeignLoginRefusesRepeatedInitKeysBeforeRedeemingTheToken(t *testing.T) {
	f := newFed(t, nil)
	alice := f.user(t, 1, "alice")
	b := mlstest.NewEd25519(alice.key.Signer)
	b.Now = f.clock.Now
	b.Identity = []byte(alice.p.FID)
	kp, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	tok := f.token(t, alice)
	_, _, err = f.here.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert, KeyPackages: [][]byte{kp, kp}})
	if !errors.Is(err, p2core.ErrDuplicateKeyPackage) {
		t.Fatalf("err = %v, want ErrDuplicateKeyPackage", err)
	}
	// Refused before the redemption: the token still works.
	if _, _, err := f.here.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert}); err != nil {
		t.Fatalf("login with the same token after the refusal: %v", err)
	}
}

// A login that fails in the Store, after the token was redeemed, leaves
// nothing behind: no session, no cert, no FID mapping.
func TestFailedForeignLoginLeavesNothing(t *testing.T) {
	next := p2core.UserID(1000)
	f := newFed(t, func(c *p2core.Config) {
		c.MaxKeyPackagesPerUser = 1
		c.ForeignUserIDs = func() p2core.UserID { next++; return next }
	})
	alice := f.user(t, 1, "alice")
	b := mlstest.NewEd25519(alice.key.Signer)
	b.Now = f.clock.Now
	b.Identity = []byte(alice.p.FID)
	kp1, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	kp2, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	tok := f.token(t, alice)
	_, _, err = f.here.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert, KeyPackages: [][]byte{kp1, kp2}})
	if !errors.Is(err, p2core.ErrTooManyKeyPackages) {
		t.Fatalf("err = %v, want ErrTooManyKeyPackages", err)
	}
	if sessions, err := f.store.Sessions(ctx, 1001); err != nil || len(sessions) != 0 {
		t.Fatalf("sessions left: %+v, %v", sessions, err)
	}
	parsed, err := idcert.ParseCert(alice.cert)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.IDCertBySerial(ctx, parsed.Serial.String()); !errors.Is(err, p2core.ErrNotFound) {
		t.Fatalf("cert of the failed login: %v, want ErrNotFound", err)
	}
	// The token was spent: documented, the client needs a new one.
	_, _, err = f.here.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert})
	if !errors.Is(err, p2core.ErrTokenInvalid) {
		t.Fatalf("reusing the spent token: %v", err)
	}
	// No FID mapping was left: the next login maps alice afresh.
	_, sess := f.login(t, alice, kp1)
	if sess.UserID != 1003 {
		t.Fatalf("user of the next login %d, want the fresh candidate 1003 (a failed login left a mapping)", sess.UserID)
	}
}

// Route 16 does the cheap work first: a garbage token costs one ID-Cert
// verification and no KeyPackage signature, however many KeyPackages
// come with it.
func TestForeignLoginVerifiesNoKeyPackageBeforeTheTokenIsRedeemed(t *testing.T) {
	var mu sync.Mutex
	checks := map[string]int{}
	f := newFed(t, func(c *p2core.Config) {
		c.SignatureChecks = func(kind string) { mu.Lock(); checks[kind]++; mu.Unlock() }
	})
	alice := f.user(t, 1, "alice")
	b := mlstest.NewEd25519(alice.key.Signer)
	b.Now = f.clock.Now
	b.Identity = []byte(alice.p.FID)
	var kps [][]byte
	for range 20 {
		kp, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		kps = append(kps, kp)
	}
	_, _, err := f.here.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: "garbage", IDCert: alice.cert, KeyPackages: kps})
	if !errors.Is(err, p2core.ErrTokenInvalid) {
		t.Fatalf("err = %v, want ErrTokenInvalid", err)
	}
	mu.Lock()
	if checks["keypackage"] != 0 || checks["id_cert"] != 1 {
		t.Fatalf("a garbage token cost %v verifications, want 1 id_cert and no keypackage", checks)
	}
	mu.Unlock()
	f.login(t, alice, kps...)
	mu.Lock()
	defer mu.Unlock()
	if checks["keypackage"] != 20 {
		t.Fatalf("a good login verified %d KeyPackages, want 20 (the counter counts nothing?)", checks["keypackage"])
	}
}

func TestForeignLoginRefusesMisbehavingHomes(t *testing.T) {
	f := newFed(t, nil)
	alice := f.user(t, 1, "alice")
	f.homes.override = func(tok p2core.FederationToken) (p2core.FederationToken, error) {
		tok.Server = "https://elsewhere.test"
		return tok, nil
	}
	_, _, err := f.here.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: f.token(t, alice), IDCert: alice.cert})
	if !errors.Is(err, p2core.ErrHomeUnreachable) {
		t.Fatalf("token for another server: %v", err)
	}
	f2 := newFed(t, nil) // a fresh cache
	f2.homes.keyErr = errors.New("some transport failure")
	alice2 := f2.user(t, 1, "alice")
	_, _, err = f2.here.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: f2.token(t, alice2), IDCert: alice2.cert})
	if !errors.Is(err, p2core.ErrHomeUnreachable) || p2core.Message(err) == "some transport failure" {
		t.Fatalf("unclassified home error: %v (message %q)", err, p2core.Message(err))
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = f2.here.ForeignLogin(cctx, p2core.ForeignLoginRequest{FederationToken: f2.token(t, alice2), IDCert: alice2.cert})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled request: %v", err)
	}
}

func TestForeignLoginConfig(t *testing.T) {
	if _, err := p2core.NewService(memstore.New(), p2core.Config{Domain: "b.test", SelfURL: "http://b.test"}); err == nil {
		t.Fatal("http SelfURL accepted without AllowInsecureFederation")
	}
	svc, err := p2core.NewService(memstore.New(), p2core.Config{Domain: "b.test"})
	if err != nil {
		t.Fatal(err)
	}
	if got := svc.Config().SelfURL; got != "https://b.test" {
		t.Fatalf("default SelfURL %q", got)
	}
	_, _, err = svc.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: "t", IDCert: []byte{1}})
	if !errors.Is(err, p2core.ErrNotFederated) {
		t.Fatalf("no Homes: %v", err)
	}
	// ForeignUserIDs picks the local ID of a new foreign user.
	f := newFed(t, func(c *p2core.Config) { c.ForeignUserIDs = func() p2core.UserID { return 4242 } })
	_, sess := f.login(t, f.user(t, 1, "alice"))
	if sess.UserID != 4242 || sess.Home != "a.test" || sess.FID != "alice@a.test" {
		t.Fatalf("session %+v", sess)
	}
}

func TestRoute8RecordsForeignIDCertsByTheirRules(t *testing.T) {
	f := newFed(t, nil)
	alice := f.user(t, 1, "alice")
	_, sess := f.login(t, alice)
	p := p2core.Principal{UserID: sess.UserID, FID: sess.FID, SessionID: sess.SessionID, Home: sess.Home}
	old := alice.cert
	f.clock.Add(time.Second)
	f.recertify(t, alice)
	b64 := func(b []byte) []byte { return []byte(base64.StdEncoding.EncodeToString(b)) }
	c, err := f.here.IssueIDCert(ctx, p, b64(alice.cert))
	if err != nil || c.SessionID != sess.SessionID || c.UserID != sess.UserID {
		t.Fatalf("new cert: %+v, %v", c, err)
	}
	if _, err := f.here.IssueIDCert(ctx, p, b64(old)); !errors.Is(err, p2core.ErrInvalidIDCert) {
		t.Fatalf("older cert: %v", err)
	}
	if _, err := f.here.IssueIDCert(ctx, p, alice.cert); !errors.Is(err, p2core.ErrInvalidIDCert) {
		t.Fatalf("cert not in Base64: %v", err)
	}
	// A local principal's value is a public key: a cert is no key.
	local := p2core.Principal{UserID: 5, FID: "dave@b.test", SessionID: "s"}
	if _, err := f.here.IssueIDCert(ctx, local, b64(alice.cert)); !errors.Is(err, p2core.ErrInvalidPublicKey) {
		t.Fatalf("local principal: %v", err)
	}
	noCert := p
	noCert.SessionID = "other"
	if _, err := f.here.IssueIDCert(ctx, noCert, b64(alice.cert)); !errors.Is(err, p2core.ErrNoIDCert) {
		t.Fatalf("session without a cert: %v", err)
	}
}
