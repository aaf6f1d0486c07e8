package httpadapter_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
	"github.com/p2kit/p2kit/storage/memstore"
)

// recorder is an EventSink that keeps every event.
type recorder struct {
	mu     sync.Mutex
	events []p2core.Event
}

func (r *recorder) Publish(_ context.Context, e p2core.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) find(typ p2core.EventType, user p2core.UserID) []p2core.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []p2core.Event
	for _, e := range r.events {
		if e.Type == typ && e.UserID == user {
			out = append(out, e)
		}
	}
	return out
}

// fedServer is one p2kit server of a federation test: memstore behind
// httptest on loopback, its own clock, and a HomeClient whose static
// resolver the test fills in.
type fedServer struct {
	t      *testing.T
	domain string
	url    string
	svc    *p2core.Service
	clock  *clock
	events *recorder
	homes  httpadapter.StaticResolver
}

// newFedServer starts a server for domain on clk, which the servers of a
// test share so that what one issues is valid on the others.
func newFedServer(t *testing.T, domain string, clk *clock, mutate ...func(*p2core.Config)) *fedServer {
	t.Helper()
	return newFedServerWith(t, domain, clk, httpadapter.Options{}, mutate...)
}

// newFedServerWith is newFedServer with a change to the Service's Config
// and the handler's Options (the Authenticator is set here).
func newFedServerWith(t *testing.T, domain string, clk *clock, opts httpadapter.Options, mutate ...func(*p2core.Config)) *fedServer {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	s := &fedServer{t: t, domain: domain, url: "http://" + srv.Listener.Addr().String(),
		clock: clk, events: &recorder{}, homes: httpadapter.StaticResolver{}}
	store := memstore.New()
	cfg := p2core.Config{
		Domain: domain, Now: s.clock.Now, Events: s.events,
		AllowInsecureFederation: true, SelfURL: s.url,
		Homes: httpadapter.NewHomeClient(httpadapter.HomeClientOptions{
			Resolver: s.homes, AllowInsecure: true, AllowPrivateAddresses: true, Timeout: 5 * time.Second}),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	svc, err := p2core.NewService(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.svc = svc
	opts.Authenticator = httpadapter.SessionAuthenticator{Service: svc, IsAdmin: func(context.Context, p2core.UserID) bool { return true }}
	srv.Config.Handler = httpadapter.New(svc, opts)
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(func() { store.Close() })
	return s
}

// knows makes s resolve other's domain to other's URL.
func (s *fedServer) knows(other *fedServer) { s.homes[other.domain] = other.url }

// login makes a session for a local user. Every local user is an
// administrator (IsAdmin says yes to all), so tests can show that foreign
// sessions still are not.
func (s *fedServer) login(id p2core.UserID, name string) *user {
	s.t.Helper()
	fid := p2core.FID(name + "@" + s.domain)
	tok, sess, err := s.svc.CreateSession(ctx, id, fid)
	if err != nil {
		s.t.Fatal(err)
	}
	return &user{id: id, fid: fid, session: sess.SessionID, token: tok, c: &httpadapter.Client{BaseURL: s.url, Token: tok}}
}

func (s *fedServer) anon() *httpadapter.Client { return &httpadapter.Client{BaseURL: s.url} }

// traveller is a local user of a home server with an ID-Cert and a
// KeyPackage builder for its key.
type traveller struct {
	*user
	cert []byte
	kp   *mlstest.Builder
}

func (s *fedServer) traveller(id p2core.UserID, name string) *traveller {
	s.t.Helper()
	u := s.login(id, name)
	k := clientKey(s.t, string(u.fid))
	cert, err := u.c.IssueIDCert(ctx, k.Armored)
	if err != nil {
		s.t.Fatal(err)
	}
	b := mlstest.NewEd25519(k.Signer)
	b.Now = s.clock.Now
	b.Identity = []byte(u.fid)
	return &traveller{user: u, cert: cert, kp: b}
}

func (tr *traveller) token(t *testing.T, server string) string {
	t.Helper()
	tok, err := tr.c.IssueToken(ctx, server)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// pair is the usual set-up: alice and bob live on A, B resolves A.
func pair(t *testing.T) (a, b *fedServer) {
	clk := newClock()
	a, b = newFedServer(t, "a.localhost", clk), newFedServer(t, "b.localhost", clk)
	b.knows(a)
	a.knows(b)
	return a, b
}

func TestForeignLoginEndToEnd(t *testing.T) {
	a, b := pair(t)
	alice := a.traveller(101, "alice")
	kps := build(t, alice.kp, 3)
	lr := build(t, alice.kp, 1)[0]

	resp, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{
		FederationToken: alice.token(t, b.url), IDCert: alice.cert, KeyPackages: kps, LastResort: lr})
	if err != nil {
		t.Fatal(err)
	}
	if resp.SessionToken == "" || resp.Extra == nil || resp.Extra.UserID == 0 || resp.Extra.FID != "alice@a.localhost" || resp.Extra.SessionID == "" {
		t.Fatalf("route 16 answer %+v", resp)
	}
	aliceB := b.anon().WithToken(resp.SessionToken)
	localID := resp.Extra.UserID

	// The session works, with the presented cert as its current one.
	st, err := aliceB.KeyPackageStatus(ctx)
	if err != nil || st.Available != 3 || !st.LastResort {
		t.Fatalf("status on B: %+v, %v", st, err)
	}
	certs, err := b.anon().UserIDCerts(ctx, localID, time.Time{})
	if err != nil || len(certs) != 1 || !bytes.Equal(certs[0], alice.cert) {
		t.Fatalf("B lists %d certs for alice (%v), want her ID-Cert from A", len(certs), err)
	}

	// bob, a user of B, claims alice's KeyPackages, each once.
	bob := b.login(201, "bob")
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		got, err := bob.c.ClaimKeyPackages(ctx, localID, 0)
		if err != nil || len(got) != 1 {
			t.Fatalf("claim %d: %d KeyPackages, %v", i, len(got), err)
		}
		seen[string(got[0])] = true
	}
	for i, kp := range kps {
		if !seen[string(kp)] {
			t.Fatalf("KeyPackage %d never handed out", i)
		}
	}
	got, err := bob.c.ClaimKeyPackages(ctx, localID, 0)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0], lr) {
		t.Fatalf("fourth claim: want the last resort, got %d, %v", len(got), err)
	}
	// Route 12 on B is bound to the cert from A.
	if err := aliceB.UploadKeyPackages(ctx, build(t, alice.kp, 2)); err != nil {
		t.Fatal(err)
	}

	// A second login maps to the same local user and tells the first
	// session with NEW_SESSION.
	alice2 := a.traveller(101, "alice")
	resp2, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: alice2.token(t, b.url), IDCert: alice2.cert})
	if err != nil {
		t.Fatal(err)
	}
	if resp2.Extra.UserID != localID || resp2.Extra.SessionID == resp.Extra.SessionID {
		t.Fatalf("second login: %+v, first %+v", resp2.Extra, resp.Extra)
	}
	// Each login announces itself to the user's other sessions: the
	// event names the new session in Except and lists no sessions.
	ev := b.events.find(p2core.EventNewSession, localID)
	if len(ev) != 2 || len(ev[1].Sessions) != 0 || ev[1].Except != resp2.Extra.SessionID || ev[0].Except != resp.Extra.SessionID {
		t.Fatalf("NEW_SESSION events %+v", ev)
	}
	if p := ev[1].Payload.(p2core.NewSessionPayload); p.Home != "a.localhost" || p.SessionID != resp2.Extra.SessionID {
		t.Fatalf("NEW_SESSION payload %+v", p)
	}
}

func TestForeignLoginRefusesTokenForAnotherServer(t *testing.T) {
	a, b := pair(t)
	alice := a.traveller(101, "alice")
	tok := alice.token(t, "http://c.localhost:9")
	_, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert})
	apiErr(t, err, 404, "P2CORE_TOKEN_INVALID")
	// B's misdirected attempt did not consume it: the right server can.
	if _, err := a.anon().RedeemToken(ctx, tok, "http://c.localhost:9"); err != nil {
		t.Fatalf("token for C after B tried it: %v", err)
	}
}

func TestForeignLoginRefusesReusedToken(t *testing.T) {
	a, b := pair(t)
	alice := a.traveller(101, "alice")
	tok := alice.token(t, b.url)
	if _, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert}); err != nil {
		t.Fatal(err)
	}
	// A fresh cert, so only the token is stale.
	a.clock.Add(time.Second)
	cert2, err := alice.c.IssueIDCert(ctx, clientKey(t, "alice@a.localhost").Armored)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: cert2})
	apiErr(t, err, 404, "P2CORE_TOKEN_INVALID")
}

func TestForeignLoginRefusesCertAlreadyUsedBeforeSpendingTheToken(t *testing.T) {
	a, b := pair(t)
	alice := a.traveller(101, "alice")
	if _, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: alice.token(t, b.url), IDCert: alice.cert}); err != nil {
		t.Fatal(err)
	}
	tok := alice.token(t, b.url)
	_, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert})
	apiErr(t, err, 409, "P2CORE_CONFLICT")
	cert2, err := alice.c.IssueIDCert(ctx, clientKey(t, "alice@a.localhost").Armored)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: cert2}); err != nil {
		t.Fatalf("the token should have survived the refused cert: %v", err)
	}
}

func TestForeignLoginRefusesCertNotSignedByTheHomeKey(t *testing.T) {
	a, b := pair(t)
	alice := a.traveller(101, "alice")
	// A third server signs a cert claiming alice@a.localhost, with a key
	// that even names a.localhost.
	for _, domain := range []string{"c.localhost", "a.localhost"} {
		impostor, err := idcert.GenerateServerKey(domain, "", time.Now().Add(-time.Hour), 0, nil)
		if err != nil {
			t.Fatal(err)
		}
		k := clientKey(t, "alice@a.localhost")
		ck, err := idcert.ParseClientKey([]byte(k.Armored), "alice@a.localhost", time.Now(), idcert.Policy{})
		if err != nil {
			t.Fatal(err)
		}
		forged, err := idcert.Issue(impostor, ck, idcert.IssueParams{SessionID: string(alice.session)})
		if err != nil {
			t.Fatal(err)
		}
		tok := alice.token(t, b.url)
		_, err = b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: forged.Raw})
		apiErr(t, err, 400, "P2CORE_INVALID_ID_CERT")
		// The cert is checked before the token is redeemed: it still works.
		if _, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert}); err != nil {
			t.Fatalf("%s: token burnt by a refused cert: %v", domain, err)
		}
		a.clock.Add(time.Second)
		if alice.cert, err = alice.c.IssueIDCert(ctx, clientKey(t, "alice@a.localhost").Armored); err != nil {
			t.Fatal(err)
		}
	}
}

func TestForeignLoginRefusesFIDMismatch(t *testing.T) {
	a, b := pair(t)
	alice := a.traveller(101, "alice")
	bob := a.traveller(102, "bob")
	_, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: bob.token(t, b.url), IDCert: alice.cert})
	apiErr(t, err, 403, "P2CORE_FID_MISMATCH")
}

func TestForeignLoginRefusesExpiredCert(t *testing.T) {
	a, b := pair(t)
	alice := a.traveller(101, "alice")
	tok := alice.token(t, b.url)
	b.clock.Add(idcert.DefaultCertLifetime + time.Second)
	_, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert})
	apiErr(t, err, 400, "P2CORE_INVALID_ID_CERT")
	if !strings.Contains(err.Error(), "expired") {
		t.Fatalf("message does not say expired: %v", err)
	}
}

func TestForeignLoginRefusesUnknownHome(t *testing.T) {
	clk := newClock()
	a, b := newFedServer(t, "a.localhost", clk), newFedServer(t, "b.localhost", clk) // B does not know A
	alice := a.traveller(101, "alice")
	_, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: alice.token(t, b.url), IDCert: alice.cert})
	apiErr(t, err, 400, "P2CORE_UNKNOWN_HOME_SERVER")

	// A resolver entry pointing at a server with another domain's key is
	// no home either.
	c := newFedServer(t, "c.localhost", clk)
	b.homes["a.localhost"] = c.url
	_, err = b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: alice.token(t, b.url), IDCert: alice.cert})
	apiErr(t, err, 400, "P2CORE_UNKNOWN_HOME_SERVER")
}

func TestForeignLoginReportsUnreachableHome(t *testing.T) {
	clk := newClock()
	a, b := newFedServer(t, "a.localhost", clk), newFedServer(t, "b.localhost", clk)
	alice := a.traveller(101, "alice")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	b.homes["a.localhost"] = closed
	_, err = b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: alice.token(t, b.url), IDCert: alice.cert})
	apiErr(t, err, 502, "P2CORE_HOME_UNREACHABLE")
	if strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("the message shows the internal address: %v", err)
	}
}

func TestForeignLoginRefusesUsersOfThisServer(t *testing.T) {
	_, b := pair(t)
	carol := b.traveller(301, "carol")
	_, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: carol.token(t, b.url), IDCert: carol.cert})
	apiErr(t, err, 403, "P2CORE_FORBIDDEN")
}

func TestForeignLoginRefusesBadKeyPackagesBeforeSpendingTheToken(t *testing.T) {
	a, b := pair(t)
	alice := a.traveller(101, "alice")
	other := a.traveller(102, "bob")
	tok := alice.token(t, b.url)
	_, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert, KeyPackages: build(t, other.kp, 1)})
	apiErr(t, err, 400, "P2CORE_INVALID_KEYPACKAGE")
	_, err = b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert, LastResort: []byte{0, 1, 0, 5}})
	apiErr(t, err, 400, "P2CORE_INVALID_KEYPACKAGE")
	// Alice's key, but a credential naming bob.
	forged := *alice.kp
	forged.Identity = []byte("bob@a.localhost")
	_, err = b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert, KeyPackages: build(t, &forged, 1)})
	apiErr(t, err, 400, "P2CORE_INVALID_KEYPACKAGE")
	if _, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: tok, IDCert: alice.cert, KeyPackages: build(t, alice.kp, 1)}); err != nil {
		t.Fatalf("token burnt by refused KeyPackages: %v", err)
	}
}

func TestRoute16RefusesMalformedRequests(t *testing.T) {
	_, b := pair(t)
	e := &env{t: t, srv: &httptest.Server{URL: b.url}} // only for e.raw
	for _, tc := range []struct {
		body   string
		status int
		code   string
	}{
		{`{}`, 400, "P2CORE_BAD_REQUEST"},
		{`{"federation_token":"x","id_cert":"AAAA","extra":1}`, 400, "P2CORE_BAD_REQUEST"},
		{`{"federation_token":"x","id_cert":"not base64!"}`, 400, "P2CORE_INVALID_ID_CERT"},
		{`{"federation_token":"x","id_cert":"AAAA"}`, 400, "P2CORE_INVALID_ID_CERT"},
		{`{"federation_token":"x","id_cert":"AAAA","key_packages":["%%"]}`, 400, "P2CORE_INVALID_KEYPACKAGE"},
		{`{"federation_token":"has space","id_cert":"AAAA"}`, 400, "P2CORE_BAD_REQUEST"},
	} {
		status, _, body := e.raw("POST", "/p2core/session/auth", "", tc.body)
		wantError(t, status, body, tc.status, tc.code)
	}
}

func TestForeignSessionsHaveNoHomeRights(t *testing.T) {
	a, b := pair(t)
	alice := a.traveller(101, "alice")
	resp, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: alice.token(t, b.url), IDCert: alice.cert})
	if err != nil {
		t.Fatal(err)
	}
	aliceB := b.anon().WithToken(resp.SessionToken)
	// Route 1: tokens for alice come from A only.
	_, err = aliceB.IssueToken(ctx, a.url)
	apiErr(t, err, 403, "P2CORE_FORBIDDEN")
	// Admin routes: IsAdmin says yes to every user of B, but not to a
	// foreign session.
	apiErr(t, aliceB.SetTokenGeneration(ctx, false), 403, "P2CORE_NOT_ADMINISTRATOR")
	_, err = aliceB.RotateServerKey(ctx)
	apiErr(t, err, 403, "P2CORE_NOT_ADMINISTRATOR")
	// Route 8 with a public key: B does not certify alice.
	_, err = aliceB.IssueIDCert(ctx, clientKey(t, "alice@a.localhost").Armored)
	apiErr(t, err, 400, "P2CORE_INVALID_ID_CERT")

	// The Service refuses too, whatever an Authenticator claims.
	p := p2core.Principal{UserID: resp.Extra.UserID, FID: resp.Extra.FID, SessionID: resp.Extra.SessionID, Admin: true, Home: "a.localhost"}
	if err := b.svc.SetTokenGeneration(ctx, p, false); !errors.Is(err, p2core.ErrNotAdministrator) {
		t.Fatalf("SetTokenGeneration by a foreign admin: %v", err)
	}
	if _, err := b.svc.IssueIDCert(ctx, p, []byte(clientKey(t, "alice@a.localhost").Armored)); !errors.Is(err, p2core.ErrInvalidIDCert) {
		t.Fatalf("IssueIDCert with a public key for a foreign principal: %v", err)
	}
	// A principal whose FID names another domain is foreign even without Home.
	p.Home, p.Admin = "", false
	if _, _, err := b.svc.IssueFederationToken(ctx, p, a.url); !errors.Is(err, p2core.ErrForbidden) {
		t.Fatalf("IssueFederationToken for another domain's FID: %v", err)
	}
}

func TestForeignSessionPresentsNewIDCert(t *testing.T) {
	a, b := pair(t)
	alice := a.traveller(101, "alice")
	resp, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: alice.token(t, b.url), IDCert: alice.cert})
	if err != nil {
		t.Fatal(err)
	}
	aliceB := b.anon().WithToken(resp.SessionToken)
	// alice's second device logs in to B too, to hear CLIENT_KEY_CHANGE.
	device2 := a.traveller(101, "alice")
	other, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: device2.token(t, b.url), IDCert: device2.cert})
	if err != nil {
		t.Fatal(err)
	}

	// Presenting the current cert again changes nothing.
	got, err := aliceB.PresentIDCert(ctx, alice.cert)
	if err != nil || !bytes.Equal(got, alice.cert) {
		t.Fatalf("re-presenting the current cert: %v", err)
	}

	// alice's client gets a new key certified at home, then tells B.
	a.clock.Add(time.Second)
	k2 := clientKey(t, "alice@a.localhost")
	cert2, err := alice.c.IssueIDCert(ctx, k2.Armored)
	if err != nil {
		t.Fatal(err)
	}
	got, err = aliceB.PresentIDCert(ctx, cert2)
	if err != nil || !bytes.Equal(got, cert2) {
		t.Fatalf("presenting the new cert: %v", err)
	}
	certs, err := b.anon().UserIDCerts(ctx, resp.Extra.UserID, time.Time{})
	if err != nil || len(certs) != 2 || !(bytes.Equal(certs[0], cert2) || bytes.Equal(certs[1], cert2)) {
		t.Fatalf("B lists %d certs (%v), want the new one among them", len(certs), err)
	}
	for _, c := range certs {
		if bytes.Equal(c, alice.cert) {
			t.Fatal("the superseded cert is still listed as valid")
		}
	}
	ev := b.events.find(p2core.EventClientKeyChange, resp.Extra.UserID)
	if len(ev) != 1 || len(ev[0].Sessions) != 0 || ev[0].Except != resp.Extra.SessionID || other.Extra.SessionID == resp.Extra.SessionID {
		t.Fatalf("CLIENT_KEY_CHANGE events %+v", ev)
	}
	// KeyPackages now bind to the new key, not the old one.
	b2 := mlstest.NewEd25519(k2.Signer)
	b2.Now = b.clock.Now
	b2.Identity = alice.kp.Identity
	if err := aliceB.UploadKeyPackages(ctx, build(t, b2, 1)); err != nil {
		t.Fatal(err)
	}
	apiErr(t, aliceB.UploadKeyPackages(ctx, build(t, alice.kp, 1)), 400, "P2CORE_INVALID_KEYPACKAGE")

	// Refused: an older cert, a cert of another home session, another
	// user's cert, a public key instead of a cert.
	_, err = aliceB.PresentIDCert(ctx, alice.cert)
	apiErr(t, err, 400, "P2CORE_INVALID_ID_CERT")
	other2 := a.traveller(101, "alice") // a different session at home
	_, err = aliceB.PresentIDCert(ctx, other2.cert)
	apiErr(t, err, 400, "P2CORE_INVALID_ID_CERT")
	_, err = aliceB.PresentIDCert(ctx, a.traveller(102, "bob").cert)
	apiErr(t, err, 400, "P2CORE_INVALID_ID_CERT")
	_, err = aliceB.IssueIDCert(ctx, k2.Armored)
	apiErr(t, err, 400, "P2CORE_INVALID_ID_CERT")
}

func TestForeignLoginAcceptsCertsAcrossHomeKeyRotation(t *testing.T) {
	a, b := pair(t)
	alice := a.traveller(101, "alice")
	bob := a.traveller(102, "bob")
	// B caches A's key with a first login.
	if _, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: alice.token(t, b.url), IDCert: alice.cert}); err != nil {
		t.Fatal(err)
	}
	a.clock.Add(time.Minute) // the servers share the clock
	root := p2core.Principal{UserID: 1, FID: "root@a.localhost", SessionID: "s", Admin: true}
	if _, err := a.svc.RotateServerKey(ctx, root); err != nil {
		t.Fatal(err)
	}
	a.clock.Add(time.Second)
	carol := a.traveller(103, "carol") // certified by A's new key
	// A cert by the new key, while B still caches the old one.
	if _, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: carol.token(t, b.url), IDCert: carol.cert}); err != nil {
		t.Fatalf("cert by the new key: %v", err)
	}
	// A cert by the old key, issued before the rotation, still verifies.
	a.clock.Add(time.Minute)
	if _, err := b.anon().ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: bob.token(t, b.url), IDCert: bob.cert}); err != nil {
		t.Fatalf("cert by the old key: %v", err)
	}
}

func newClock() *clock { return &clock{t: time.Now().UTC().Truncate(time.Second)} }
