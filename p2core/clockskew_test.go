package p2core_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
	"github.com/p2kit/p2kit/storage/memstore"
)

// skewService is a Service whose clock stands still at now, with
// cfg.ClockSkew skew.
func skewService(t *testing.T, now time.Time, skew time.Duration) *p2core.Service {
	t.Helper()
	svc, err := p2core.NewService(memstore.New(), p2core.Config{Domain: "home.test", Now: func() time.Time { return now }, ClockSkew: skew})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// wantRefusal checks that err matches kind and its message names the
// allowed skew.
func wantRefusal(t *testing.T, what string, err, kind error, skew string) {
	t.Helper()
	if !errors.Is(err, kind) || !strings.Contains(p2core.Message(err), "allowed clock skew of "+skew) {
		t.Errorf("%s: err = %v, want %v naming the allowed clock skew of %s", what, err, kind, skew)
	}
}

// A client whose clock runs 30 s ahead makes its key and stamps its
// KeyPackages' not_before with its own now. With the default ClockSkew
// (zero Config field) route 8 certifies the key, as of its creation, and
// route 12 takes the KeyPackage at once.
func TestDefaultClockSkewAcceptsAClientClock30sAhead(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	svc := skewService(t, now, 0)
	if got := svc.Config().ClockSkew; got != 5*time.Minute {
		t.Fatalf("default ClockSkew = %s, want 5m", got)
	}
	client := now.Add(30 * time.Second)
	p := p2core.Principal{UserID: 5, FID: "alice@home.test", SessionID: "laptop"}
	key, err := idcerttest.NewClientKey("alice@home.test", nil, client)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := svc.IssueIDCert(ctx, p, []byte(key.Armored))
	if err != nil {
		t.Fatalf("key created 30 s ahead: %v", err)
	}
	if !cert.IssuedAt.Equal(client) {
		t.Errorf("ID-Cert issued at %s, want the key's creation %s (GnuPG refuses certifications older than the key)", cert.IssuedAt, client)
	}
	b := mlstest.NewEd25519(key.Signer)
	b.Identity = []byte(p.FID)
	b.NotBefore, b.NotAfter = client, client.Add(24*time.Hour)
	kp, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.UploadKeyPackages(ctx, p, [][]byte{kp}); err != nil {
		t.Fatalf("KeyPackage with not_before 30 s ahead: %v", err)
	}
	if st, err := svc.KeyPackageStatus(ctx, p); err != nil || st.Available != 1 {
		t.Fatalf("status = %+v, %v; want 1 available", st, err)
	}
}

// One second past the configured skew, the key and the KeyPackage are
// refused with a message naming the skew; a negative ClockSkew allows
// none.
func TestClockSkewRefusesOneSecondPastTheConfiguredSkew(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	for _, c := range []struct {
		skew  time.Duration
		ahead time.Duration
		named string
	}{
		{time.Minute, time.Minute + time.Second, "1m0s"},
		{-1, time.Second, "0s"},
	} {
		svc := skewService(t, now, c.skew)
		p := p2core.Principal{UserID: 5, FID: "alice@home.test", SessionID: "laptop"}
		ahead, err := idcerttest.NewClientKey("alice@home.test", nil, now.Add(c.ahead))
		if err != nil {
			t.Fatal(err)
		}
		_, err = svc.IssueIDCert(ctx, p, []byte(ahead.Armored))
		wantRefusal(t, "key created "+c.ahead.String()+" ahead", err, p2core.ErrInvalidPublicKey, c.named)

		key, err := idcerttest.NewClientKey("alice@home.test", nil, now.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := svc.IssueIDCert(ctx, p, []byte(key.Armored)); err != nil {
			t.Fatal(err)
		}
		b := mlstest.NewEd25519(key.Signer)
		b.Identity = []byte(p.FID)
		b.NotBefore, b.NotAfter = now.Add(c.ahead), now.Add(24*time.Hour)
		kp, err := b.Build()
		if err != nil {
			t.Fatal(err)
		}
		err = svc.UploadKeyPackages(ctx, p, [][]byte{kp})
		wantRefusal(t, "KeyPackage not_before "+c.ahead.String()+" ahead", err, p2core.ErrInvalidKeyPackage, c.named)
		if c.skew > 0 {
			b.NotBefore = now.Add(c.skew)
			if kp, err = b.Build(); err != nil {
				t.Fatal(err)
			}
			if err := svc.UploadKeyPackages(ctx, p, [][]byte{kp}); err != nil {
				t.Errorf("KeyPackage not_before exactly the skew %s ahead: %v", c.skew, err)
			}
		}
	}
}

// A home server whose clock runs ahead of this one dates its ID-Certs in
// this server's future: route 16 accepts them within the skew and refuses
// them, naming the skew, beyond it.
func TestForeignLoginToleratesAHomeClockAheadWithinTheSkew(t *testing.T) {
	for _, c := range []struct {
		behind time.Duration // this server's clock behind the home's
		ok     bool
	}{
		{30 * time.Second, true},
		{time.Minute + time.Second, false},
	} {
		var f *fed
		f = newFed(t, func(cfg *p2core.Config) {
			cfg.ClockSkew = time.Minute
			cfg.Now = func() time.Time { return f.clock.Now().Add(-c.behind) }
		})
		alice := f.user(t, 1, "alice")
		_, _, err := f.here.ForeignLogin(ctx, p2core.ForeignLoginRequest{FederationToken: f.token(t, alice), IDCert: alice.cert})
		if c.ok && err != nil {
			t.Errorf("home clock %s ahead, skew 1m: %v", c.behind, err)
		}
		if !c.ok {
			wantRefusal(t, "home clock "+c.behind.String()+" ahead", err, p2core.ErrInvalidIDCert, "1m0s")
		}
	}
}
