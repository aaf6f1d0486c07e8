package p2core_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/storage/memstore"
)

// issueAndVerify issues an ID-Cert to alice on svc and verifies it with the
// server key route 10 names for its issue time, at verifyAt.
func issueAndVerify(t *testing.T, svc *p2core.Service, verifyAt time.Time) (p2core.IDCert, p2core.ServerKey) {
	t.Helper()
	user := p2core.UserID(101)
	_, sess, err := svc.CreateSession(ctx, user, "alice@home.test")
	if err != nil {
		t.Fatal(err)
	}
	p := p2core.Principal{UserID: user, FID: sess.FID, SessionID: sess.SessionID}
	key, err := idcerttest.NewClientKey("alice@home.test", nil, verifyAt.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c, err := svc.IssueIDCert(ctx, p, []byte(key.Armored))
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	sk, err := svc.ServerPublicKey(ctx, c.IssuedAt)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sk.Fingerprint, c.ServerKeyFingerprint) {
		t.Fatalf("ID-Cert signed by %X, but route 10 names %X for its issue time %s", c.ServerKeyFingerprint, sk.Fingerprint, c.IssuedAt)
	}
	pub, err := idcert.ParsePublicServerKey(sk.Public)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := idcert.Verify(c.Cert, pub, verifyAt); err != nil {
		t.Fatalf("verify: %v", err)
	}
	return c, sk
}

// A second rotation within the same second would date the new key after
// the clock, so that nothing could be signed until the clock caught up
// (the fuzzer found route 8 answering 500 after two quick rotations). It is
// refused as a conflict, and issuing keeps working.
func TestRotateTwiceInOneSecond(t *testing.T) {
	clock := &fakeClock{t: time.Now().UTC().Truncate(time.Second)}
	svc, err := p2core.NewService(memstore.New(), p2core.Config{Domain: "home.test", Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	admin := p2core.Principal{UserID: 1, FID: "root@home.test", SessionID: "s", Admin: true}
	if err := svc.Init(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = svc.RotateServerKey(ctx, admin)
	if !errors.Is(err, p2core.ErrConflict) {
		t.Fatalf("rotation in the first key's second: %v, want ErrConflict", err)
	}
	clock.Add(time.Second)
	k1, err := svc.RotateServerKey(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	_, err = svc.RotateServerKey(ctx, admin)
	if !errors.Is(err, p2core.ErrConflict) {
		t.Fatalf("second rotation in one second: %v, want ErrConflict", err)
	}
	c, _ := issueAndVerify(t, svc, clock.Now())
	if !bytes.Equal(c.ServerKeyFingerprint, k1.Fingerprint) {
		t.Fatalf("signed by %X, want the rotated key %X", c.ServerKeyFingerprint, k1.Fingerprint)
	}
}

// Instances sharing a Store may disagree on the time by a little. A key
// that an instance whose clock runs ahead made must not stop another from
// issuing: it signs with the newest key already valid by its own clock, or,
// when there is none, dates the ID-Cert at the key's creation.
func TestIssueWithServerKeyFromAFastClock(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	fast, slow := &fakeClock{t: now.Add(5 * time.Second)}, &fakeClock{t: now}
	admin := p2core.Principal{UserID: 1, FID: "root@home.test", SessionID: "s", Admin: true}

	t.Run("previous key", func(t *testing.T) {
		store := memstore.New()
		a, _ := p2core.NewService(store, p2core.Config{Domain: "home.test", Now: slow.Now})
		if err := a.Init(ctx); err != nil {
			t.Fatal(err)
		}
		first, _ := a.ServerPublicKey(ctx, time.Time{})
		b, _ := p2core.NewService(store, p2core.Config{Domain: "home.test", Now: fast.Now})
		if _, err := b.RotateServerKey(ctx, admin); err != nil {
			t.Fatal(err)
		}
		c2, _ := p2core.NewService(store, p2core.Config{Domain: "home.test", Now: slow.Now}) // a fresh cache
		c, _ := issueAndVerify(t, c2, now)
		if !bytes.Equal(c.ServerKeyFingerprint, first.Fingerprint) || !c.IssuedAt.Equal(now) {
			t.Fatalf("signed by %X at %s, want the first key %X at %s", c.ServerKeyFingerprint, c.IssuedAt, first.Fingerprint, now)
		}
	})
	t.Run("no key valid yet", func(t *testing.T) {
		store := memstore.New()
		b, _ := p2core.NewService(store, p2core.Config{Domain: "home.test", Now: fast.Now})
		if err := b.Init(ctx); err != nil {
			t.Fatal(err)
		}
		a, _ := p2core.NewService(store, p2core.Config{Domain: "home.test", Now: slow.Now})
		c, k := issueAndVerify(t, a, fast.Now())
		if !c.IssuedAt.Equal(k.CreatedAt) {
			t.Fatalf("issued at %s, want the key's creation %s", c.IssuedAt, k.CreatedAt)
		}
	})
}

// TestNewServiceRefusesConfigItCannotApply checks that a bad value is an
// error of NewService naming the field, not a failure at the first use.
func TestNewServiceRefusesConfigItCannotApply(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  p2core.Config
		want string
	}{
		{"server key algorithm", p2core.Config{ServerKeyAlgorithm: "bogus"}, "ServerKeyAlgorithm"},
		{"v6 name of the old vocabulary", p2core.Config{ServerKeyAlgorithm: "ed25519-v6"}, "ServerKeyAlgorithm"},
		{"client key algorithm", p2core.Config{ClientKeyAlgorithms: []idcert.ClientKeyAlgorithm{"ed25519", "dsa"}}, `"dsa"`},
		{"server name as client name", p2core.Config{ClientKeyAlgorithms: []idcert.ClientKeyAlgorithm{"rsa3072"}}, `"rsa3072"`},
		{"RSA bits", p2core.Config{MinRSABits: 16384}, "MinRSABits"},
		{"negative RSA bits", p2core.Config{MinRSABits: -1}, "MinRSABits"},
		{"negative key size", p2core.Config{MaxPublicKeySize: -1}, "MaxArmoredSize"},
		{"domain", p2core.Config{Domain: "not a domain"}, "Domain"},
		{"cipher suite", p2core.Config{CipherSuites: []uint16{1, 8}}, "CipherSuites"},
		{"cipher suite 0", p2core.Config{CipherSuites: []uint16{0}}, "CipherSuites"},
	} {
		svc, err := p2core.NewService(memstore.New(), c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: NewService = %v, %v; want an error naming %s", c.name, svc, err, c.want)
		}
	}
}

// TestConfigDefaultsAreTheRulePackagesDefaults checks that the effective
// Config takes its ID-Cert and client key defaults from idcert, which
// defines them, and generates the default server key.
func TestConfigDefaultsAreTheRulePackagesDefaults(t *testing.T) {
	svc, err := p2core.NewService(memstore.New(), p2core.Config{Domain: "home.test"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := svc.Config()
	if cfg.IDCertLifetime != idcert.DefaultCertLifetime || cfg.MaxPublicKeySize != idcert.DefaultMaxArmoredSize ||
		cfg.MinRSABits != idcert.DefaultMinRSABits || len(cfg.ClientKeyAlgorithms) != len(idcert.DefaultClientKeyAlgorithms()) ||
		cfg.ServerKeyAlgorithm != idcert.ServerEd25519Legacy {
		t.Fatalf("effective config %+v", cfg)
	}
	k, err := svc.ServerPublicKey(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if k.Algorithm != string(idcert.ServerEd25519Legacy) {
		t.Fatalf("default server key algorithm %q", k.Algorithm)
	}
}

// TestClientKeyAlgorithmsConfigRestrictsRoute8 sets the client key policy
// through Config: with only ECDSA P-256 allowed, route 8 refuses the
// Ed25519 key it accepts by default.
func TestClientKeyAlgorithmsConfigRestrictsRoute8(t *testing.T) {
	key, err := idcerttest.NewClientKey("alice@home.test", nil, time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	p := p2core.Principal{UserID: 101, FID: "alice@home.test", SessionID: "s1"}
	for _, c := range []struct {
		algs []idcert.ClientKeyAlgorithm
		ok   bool
	}{{nil, true}, {[]idcert.ClientKeyAlgorithm{idcert.ClientECDSAP256}, false}} {
		svc, err := p2core.NewService(memstore.New(), p2core.Config{Domain: "home.test", ClientKeyAlgorithms: c.algs})
		if err != nil {
			t.Fatal(err)
		}
		_, err = svc.IssueIDCert(ctx, p, []byte(key.Armored))
		if c.ok && err != nil {
			t.Errorf("algorithms %v: %v", c.algs, err)
		}
		if !c.ok && (!errors.Is(err, p2core.ErrInvalidPublicKey) || !strings.Contains(p2core.Message(err), "not allowed")) {
			t.Errorf("algorithms %v: %v, want ErrInvalidPublicKey saying the algorithm is not allowed", c.algs, err)
		}
	}
}
