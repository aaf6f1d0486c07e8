package customstore_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2kit/p2kit/examples/customstore"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/memstore"
	"github.com/p2kit/p2kit/storage/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) p2core.Store {
		s := customstore.NewMetricsStore(memstore.New(), customstore.Options{})
		t.Cleanup(func() { s.Close() })
		return s
	})
}

// stats returns the counters of one method.
func stats(t *testing.T, m *customstore.MetricsStore, method string) customstore.MethodStats {
	t.Helper()
	for _, st := range m.Stats() {
		if st.Method == method {
			return st
		}
	}
	t.Fatalf("no stats for %s", method)
	return customstore.MethodStats{}
}

func TestCountsCallsRefusalsAndFailuresPerMethod(t *testing.T) {
	m := customstore.NewMetricsStore(memstore.New(), customstore.Options{})
	ctx := t.Context()
	if err := m.PutSetting(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Setting(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Setting(ctx, "missing"); !errors.Is(err, p2core.ErrNotFound) {
		t.Fatalf("Setting of a missing key through the wrapper: %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Setting(cancelled, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Setting with a cancelled context through the wrapper: %v", err)
	}
	m.Close()
	if err := m.PutSetting(ctx, "k", nil); !errors.Is(err, p2core.ErrClosed) {
		t.Fatalf("PutSetting after Close through the wrapper: %v", err)
	}

	want := map[string]customstore.MethodStats{
		"Setting":    {Method: "Setting", Calls: 3, Refusals: 1, Failures: 1},
		"PutSetting": {Method: "PutSetting", Calls: 2, Failures: 1},
		"Close":      {Method: "Close", Calls: 1},
	}
	for _, st := range m.Stats() {
		st.Total = 0
		if st != want[st.Method] && (st.Calls != 0 || want[st.Method].Calls != 0) {
			t.Errorf("%s: got %+v, want %+v", st.Method, st, want[st.Method])
		}
	}
}

// clock advances by step on every reading.
type clock struct {
	mu   sync.Mutex
	t    time.Time
	step time.Duration
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(c.step)
	return c.t
}

func TestSlowCallsAreLoggedWithoutSecrets(t *testing.T) {
	var buf bytes.Buffer
	clk := &clock{t: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), step: 300 * time.Millisecond}
	m := customstore.NewMetricsStore(memstore.New(), customstore.Options{
		SlowThreshold: 250 * time.Millisecond,
		Logger:        slog.New(slog.NewTextHandler(&buf, nil)),
		Now:           clk.now,
	})
	ctx := t.Context()
	now := time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)
	secret := func(label string) []byte { return bytes.Repeat([]byte(label[:1]), 32) }
	var tokenHash, sessionHash [32]byte
	copy(tokenHash[:], secret("token"))
	copy(sessionHash[:], secret("session"))
	kp := p2core.KeyPackage{UserID: 7, SessionID: "laptop", CipherSuite: 1, Ref: secret("ref"),
		InitKey: secret("init"), Data: secret("data"), NotAfter: now.Add(time.Hour), UploadedAt: now}
	lr := kp
	lr.InitKey, lr.Data = secret("Init"), secret("Data")
	key := p2core.ServerKey{Fingerprint: secret("fpr"), Public: secret("public"), Private: secret("private"),
		Algorithm: "ed25519", CreatedAt: now}
	cert := p2core.IDCert{UserID: 7, SessionID: "laptop", FID: "alice@home.example", Serial: "s1",
		Cert: secret("cert"), SignatureKey: secret("sigkey"), IssuedAt: now, ExpiresAt: now.Add(time.Hour)}

	steps := []error{
		m.CreateToken(ctx, p2core.FederationToken{Hash: tokenHash, UserID: 7, FID: "alice@home.example",
			Server: "https://b.example", IssuedAt: now, ExpiresAt: now.Add(time.Minute)}),
		m.PutSetting(ctx, "flag", secret("value")),
		createSession(ctx, m, p2core.Session{UserID: 7, SessionID: "laptop", TokenHash: sessionHash, CreatedAt: now}),
		m.PutIDCert(ctx, cert),
		m.AddServerKey(ctx, key, nil),
		m.AddKeyPackages(ctx, []p2core.KeyPackage{kp}, 100, now),
		m.SetLastResort(ctx, lr, now),
	}
	_, err := m.RedeemToken(ctx, tokenHash, "https://b.example", now)
	steps = append(steps, err)
	_, err = m.SessionByToken(ctx, sessionHash)
	steps = append(steps, err)
	_, err = m.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{})
	steps = append(steps, err)
	_, err = m.ServerKeys(ctx)
	steps = append(steps, err)
	_, err = m.Setting(ctx, "flag")
	steps = append(steps, err)
	for i, err := range steps {
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}

	out := buf.String()
	for _, method := range []string{"CreateToken", "RedeemToken", "PutSetting", "CreateSession", "SessionByToken",
		"PutIDCert", "AddServerKey", "ServerKeys", "AddKeyPackages", "SetLastResort", "ClaimKeyPackages"} {
		if !strings.Contains(out, "method="+method+" ") {
			t.Errorf("no slow-call record for %s", method)
		}
	}
	if !strings.Contains(out, "user_id=7") || !strings.Contains(out, "session_id=laptop") {
		t.Errorf("slow-call records do not name the user and session:\n%s", out)
	}
	for _, label := range []string{"token", "session", "ref", "init", "Init", "data", "Data", "fpr", "public", "private", "cert", "sigkey", "value"} {
		b := secret(label)
		for _, form := range []string{string(b), hex.EncodeToString(b), base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b)} {
			if strings.Contains(out, form) {
				t.Errorf("the log holds secret %q (as %q)", label, form)
			}
		}
	}
	if st := stats(t, m, "ClaimKeyPackages"); st.Slow != 1 || st.Total != 300*time.Millisecond {
		t.Errorf("ClaimKeyPackages stats: %+v, want 1 slow call of 300ms", st)
	}
}

func TestNegativeSlowThresholdLogsNothing(t *testing.T) {
	var buf bytes.Buffer
	m := customstore.NewMetricsStore(memstore.New(), customstore.Options{
		SlowThreshold: -1,
		Logger:        slog.New(slog.NewTextHandler(&buf, nil)),
		Now:           (&clock{step: time.Hour}).now,
	})
	if _, err := m.Sessions(t.Context(), 7); err != nil {
		t.Fatal(err)
	}
	if buf.Len() != 0 || stats(t, m, "Sessions").Slow != 0 {
		t.Fatalf("slow-call logging is off but logged %q", buf.String())
	}
}

// createSession stores a bare session.
func createSession(ctx context.Context, m p2core.Store, s p2core.Session) error {
	_, err := m.CreateSession(ctx, p2core.NewSession{Session: s}, p2core.Limits{MaxSessions: 10}, s.CreatedAt)
	return err
}
