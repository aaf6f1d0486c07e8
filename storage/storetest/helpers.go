package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// base is the instant most tests are built around. It has microsecond
// precision, which every backend must keep.
func base() time.Time { return time.Date(2031, 3, 4, 5, 6, 7, 891011000, time.UTC) }

// gen makes distinct test values: every call yields fresh hashes, init keys
// and serials. A gen is local to one test.
type gen struct {
	mu sync.Mutex
	n  uint64
}

func (g *gen) next() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	return g.n
}

// bytesN returns n bytes derived from a fresh counter and a label.
func (g *gen) bytesN(label string, n int) []byte {
	seed := g.next()
	var out []byte
	for i := uint64(0); len(out) < n; i++ {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:8], seed)
		binary.BigEndian.PutUint64(b[8:], i)
		h := sha256.Sum256(append([]byte(label), b[:]...))
		out = append(out, h[:]...)
	}
	return out[:n]
}

func (g *gen) hash() [32]byte {
	var h [32]byte
	copy(h[:], g.bytesN("hash", 32))
	return h
}

func (g *gen) token(user p2core.UserID, server string, issued, expires time.Time) p2core.FederationToken {
	return p2core.FederationToken{
		Hash:      g.hash(),
		UserID:    user,
		FID:       p2core.FID(fmt.Sprintf("user%d@home.example", user)),
		Server:    server,
		IssuedAt:  issued,
		ExpiresAt: expires,
	}
}

func (g *gen) session(user p2core.UserID, id p2core.SessionID, created time.Time) p2core.Session {
	return p2core.Session{
		UserID:    user,
		SessionID: id,
		FID:       p2core.FID(fmt.Sprintf("user%d@home.example", user)),
		TokenHash: g.hash(),
		CreatedAt: created,
	}
}

func (g *gen) cert(user p2core.UserID, session p2core.SessionID, issued, expires time.Time) p2core.IDCert {
	n := g.next()
	return p2core.IDCert{
		UserID:               user,
		SessionID:            session,
		FID:                  p2core.FID(fmt.Sprintf("user%d@home.example", user)),
		Serial:               fmt.Sprintf("0190a1b2-c3d4-7e5f-8a9b-%012x", n),
		Cert:                 g.bytesN("cert", 300),
		SignatureKey:         g.bytesN("sigkey", 32),
		ServerKeyFingerprint: g.bytesN("fpr", 20),
		IssuedAt:             issued,
		ExpiresAt:            expires,
	}
}

func (g *gen) serverKey(created time.Time) p2core.ServerKey {
	return p2core.ServerKey{
		Fingerprint: g.bytesN("fingerprint", 20),
		Public:      g.bytesN("public", 120),
		Private:     g.bytesN("private", 140),
		Algorithm:   "ed25519",
		CreatedAt:   created,
		ExpiresAt:   created.Add(5 * 365 * 24 * time.Hour),
	}
}

func (g *gen) kp(user p2core.UserID, session p2core.SessionID, suite uint16, notAfter time.Time) p2core.KeyPackage {
	data := g.bytesN("keypackage", 280)
	ref := sha256.Sum256(data)
	return p2core.KeyPackage{
		UserID:      user,
		SessionID:   session,
		Ref:         ref[:],
		CipherSuite: suite,
		InitKey:     g.bytesN("initkey", 32),
		Data:        data,
		NotAfter:    notAfter,
		UploadedAt:  notAfter.Add(-30 * 24 * time.Hour),
	}
}

// kps makes n KeyPackages of one session.
func (g *gen) kps(n int, user p2core.UserID, session p2core.SessionID, suite uint16, notAfter time.Time) []p2core.KeyPackage {
	out := make([]p2core.KeyPackage, n)
	for i := range out {
		out[i] = g.kp(user, session, suite, notAfter)
	}
	return out
}

// ok fails the test if err is not nil.
func ok(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: unexpected error: %v", what, err)
	}
}

// isErr fails the test unless errors.Is(err, target).
func isErr(t *testing.T, err, target error, what string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one matching %q", what, err, target)
	}
}

// count fails the test unless got == want.
func count(t *testing.T, got, want int, what string) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %d, want %d", what, got, want)
	}
}

// run starts n goroutines that call fn(i) at (nearly) the same moment and
// waits for them all.
func run(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			fn(i)
		}()
	}
	close(start)
	wg.Wait()
}

// sameTime reports whether a and b are the same instant and b is in UTC.
func sameTime(a, b time.Time) bool {
	return a.Equal(b) && b.Location() == time.UTC
}

func diffTime(name string, want, got time.Time) string {
	if !sameTime(want, got) {
		return fmt.Sprintf("%s: got %v, want %v in UTC", name, got, want)
	}
	return ""
}

func diffBytes(name string, want, got []byte) string {
	if !bytes.Equal(want, got) {
		return fmt.Sprintf("%s: got %x, want %x", name, got, want)
	}
	return ""
}

func diffs(ds ...string) error {
	var out []string
	for _, d := range ds {
		if d != "" {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return fmt.Errorf("%v", out)
}

func diffToken(want, got p2core.FederationToken) error {
	var d []string
	if want.Hash != got.Hash {
		d = append(d, fmt.Sprintf("Hash: got %x, want %x", got.Hash, want.Hash))
	}
	if want.UserID != got.UserID || want.FID != got.FID || want.Server != got.Server {
		d = append(d, fmt.Sprintf("got user %d fid %q server %q, want %d %q %q",
			got.UserID, got.FID, got.Server, want.UserID, want.FID, want.Server))
	}
	d = append(d, diffTime("IssuedAt", want.IssuedAt, got.IssuedAt), diffTime("ExpiresAt", want.ExpiresAt, got.ExpiresAt))
	return diffs(d...)
}

func diffSession(want, got p2core.Session) error {
	var d []string
	if want.UserID != got.UserID || want.SessionID != got.SessionID || want.FID != got.FID || want.Home != got.Home {
		d = append(d, fmt.Sprintf("got %d/%q fid %q home %q, want %d/%q %q %q",
			got.UserID, got.SessionID, got.FID, got.Home, want.UserID, want.SessionID, want.FID, want.Home))
	}
	if want.TokenHash != got.TokenHash {
		d = append(d, fmt.Sprintf("TokenHash: got %x, want %x", got.TokenHash, want.TokenHash))
	}
	d = append(d, diffTime("CreatedAt", want.CreatedAt, got.CreatedAt), diffTime("LastUsedAt", want.LastUsedAt, got.LastUsedAt))
	return diffs(d...)
}

func diffCert(want, got p2core.IDCert) error {
	var d []string
	if want.UserID != got.UserID || want.SessionID != got.SessionID || want.FID != got.FID || want.Serial != got.Serial {
		d = append(d, fmt.Sprintf("got %d/%q fid %q serial %q, want %d/%q %q %q",
			got.UserID, got.SessionID, got.FID, got.Serial, want.UserID, want.SessionID, want.FID, want.Serial))
	}
	d = append(d,
		diffBytes("Cert", want.Cert, got.Cert),
		diffBytes("SignatureKey", want.SignatureKey, got.SignatureKey),
		diffBytes("ServerKeyFingerprint", want.ServerKeyFingerprint, got.ServerKeyFingerprint),
		diffTime("IssuedAt", want.IssuedAt, got.IssuedAt),
		diffTime("ExpiresAt", want.ExpiresAt, got.ExpiresAt),
		diffTime("SupersededAt", want.SupersededAt, got.SupersededAt))
	return diffs(d...)
}

func diffServerKey(want, got p2core.ServerKey) error {
	var d []string
	if want.Algorithm != got.Algorithm {
		d = append(d, fmt.Sprintf("Algorithm: got %q, want %q", got.Algorithm, want.Algorithm))
	}
	d = append(d,
		diffBytes("Fingerprint", want.Fingerprint, got.Fingerprint),
		diffBytes("Public", want.Public, got.Public),
		diffBytes("Private", want.Private, got.Private),
		diffTime("CreatedAt", want.CreatedAt, got.CreatedAt),
		diffTime("RetiredAt", want.RetiredAt, got.RetiredAt),
		diffTime("ExpiresAt", want.ExpiresAt, got.ExpiresAt))
	return diffs(d...)
}

func diffKP(want, got p2core.KeyPackage) error {
	var d []string
	if want.UserID != got.UserID || want.SessionID != got.SessionID || want.CipherSuite != got.CipherSuite {
		d = append(d, fmt.Sprintf("got %d/%q suite %d, want %d/%q suite %d",
			got.UserID, got.SessionID, got.CipherSuite, want.UserID, want.SessionID, want.CipherSuite))
	}
	d = append(d,
		diffBytes("Ref", want.Ref, got.Ref),
		diffBytes("InitKey", want.InitKey, got.InitKey),
		diffBytes("Data", want.Data, got.Data),
		diffTime("NotAfter", want.NotAfter, got.NotAfter),
		diffTime("UploadedAt", want.UploadedAt, got.UploadedAt))
	return diffs(d...)
}

func sameToken(t *testing.T, want, got p2core.FederationToken) {
	t.Helper()
	if err := diffToken(want, got); err != nil {
		t.Fatalf("token differs: %v", err)
	}
}

func sameSession(t *testing.T, want, got p2core.Session) {
	t.Helper()
	if err := diffSession(want, got); err != nil {
		t.Fatalf("session differs: %v", err)
	}
}

func sameCert(t *testing.T, want, got p2core.IDCert) {
	t.Helper()
	if err := diffCert(want, got); err != nil {
		t.Fatalf("ID-Cert %s differs: %v", want.Serial, err)
	}
}

func sameServerKey(t *testing.T, want, got p2core.ServerKey) {
	t.Helper()
	if err := diffServerKey(want, got); err != nil {
		t.Fatalf("server key differs: %v", err)
	}
}

func sameKP(t *testing.T, want, got p2core.KeyPackage) {
	t.Helper()
	if err := diffKP(want, got); err != nil {
		t.Fatalf("KeyPackage differs: %v", err)
	}
}

// superseded returns c as it should look after being superseded at at.
func superseded(c p2core.IDCert, at time.Time) p2core.IDCert {
	c.SupersededAt = at
	return c
}

// retired returns k as it should look after being retired at at.
func retired(k p2core.ServerKey, at time.Time) p2core.ServerKey {
	k.RetiredAt = at
	return k
}

// certSerials lists the serials of cs in order.
func certSerials(cs []p2core.IDCert) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Serial
	}
	return out
}

// wantCerts checks that IDCertsAt(user, at) returns exactly want, in order.
func wantCerts(t *testing.T, s p2core.Store, user p2core.UserID, at time.Time, want ...p2core.IDCert) {
	t.Helper()
	got, err := s.IDCertsAt(t.Context(), user, at)
	ok(t, err, "IDCertsAt")
	if fmt.Sprint(certSerials(got)) != fmt.Sprint(certSerials(want)) {
		t.Fatalf("IDCertsAt(%v): got serials %v, want %v", at, certSerials(got), certSerials(want))
	}
	for i := range want {
		sameCert(t, want[i], got[i])
	}
}

// claimOne claims from user and expects exactly one result.
func claimOne(t *testing.T, s p2core.Store, user p2core.UserID, suite uint16, now time.Time) p2core.ClaimedKeyPackage {
	t.Helper()
	got, err := s.ClaimKeyPackages(t.Context(), user, suite, now, p2core.SessionEnds{})
	ok(t, err, "ClaimKeyPackages")
	if len(got) != 1 {
		t.Fatalf("ClaimKeyPackages: got %d results, want 1", len(got))
	}
	return got[0]
}

// claimNone claims from user and expects nothing.
func claimNone(t *testing.T, s p2core.Store, user p2core.UserID, suite uint16, now time.Time) {
	t.Helper()
	got, err := s.ClaimKeyPackages(t.Context(), user, suite, now, p2core.SessionEnds{})
	ok(t, err, "ClaimKeyPackages")
	if len(got) != 0 {
		t.Fatalf("ClaimKeyPackages: got %d results (first of session %q), want none", len(got), got[0].SessionID)
	}
}

// status returns the session's KeyPackage status.
func status(t *testing.T, s p2core.Store, user p2core.UserID, session p2core.SessionID, now time.Time) p2core.KeyPackageStatus {
	t.Helper()
	st, err := s.KeyPackageStatus(t.Context(), user, session, now)
	ok(t, err, "KeyPackageStatus")
	return st
}

func wantStatus(t *testing.T, s p2core.Store, user p2core.UserID, session p2core.SessionID, now time.Time, want p2core.KeyPackageStatus) {
	t.Helper()
	if got := status(t, s, user, session, now); got != want {
		t.Fatalf("KeyPackageStatus(%d, %q): got %+v, want %+v", user, session, got, want)
	}
}

// roomy are caps no test reaches unless it means to.
var roomy = p2core.Limits{MaxSessions: 1000, MaxKeyPackages: 100000}

// create stores a bare session with Store.CreateSession.
func create(ctx context.Context, s p2core.Store, ss p2core.Session) error {
	_, err := s.CreateSession(ctx, p2core.NewSession{Session: ss}, roomy, ss.CreatedAt)
	return err
}

// login stores a bare foreign session of fid with Store.CreateSession
// and returns the user ID it was mapped to.
func login(ctx context.Context, s p2core.Store, g *gen, fid p2core.FID, candidate p2core.UserID, sid p2core.SessionID, now time.Time) (p2core.UserID, error) {
	ss := g.session(0, sid, now)
	ss.FID, ss.Home = fid, fid.Domain()
	got, err := s.CreateSession(ctx, p2core.NewSession{Session: ss, ForeignCandidate: candidate}, roomy, now)
	return got.UserID, err
}
