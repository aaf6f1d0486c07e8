package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

// syncBuffer is a bytes.Buffer safe for the server's concurrent log writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestSixtyFourConcurrentClaimersGetEachKeyPackageOnce(t *testing.T) {
	s := startServer(t, t.TempDir(), "-no-rate-limits")
	ctx := context.Background()
	register(t, s, "alice")
	a := login(t, s, "alice")
	key, err := idcerttest.NewClientKey("alice@home.test", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client(s, a).IssueIDCert(ctx, key.Armored); err != nil {
		t.Fatal(err)
	}
	b := mlstest.NewEd25519(key.Signer)
	b.Identity = []byte("alice@home.test")
	const total = 1000
	uploaded := map[string]bool{}
	for i := 0; i < total/100; i++ {
		batch := make([][]byte, 100)
		for j := range batch {
			if batch[j], err = b.Build(); err != nil {
				t.Fatal(err)
			}
			uploaded[string(batch[j])] = true
		}
		if err := client(s, a).UploadKeyPackages(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	lr, _ := b.Build()
	if err := client(s, a).SetLastResort(ctx, lr); err != nil {
		t.Fatal(err)
	}

	const claimers = 64
	var mu sync.Mutex
	counts := map[string]int{}
	lastResorts := 0
	var wg sync.WaitGroup
	for i := 0; i < claimers; i++ {
		register(t, s, "c"+string(rune('a'+i/26))+string(rune('a'+i%26)))
	}
	for i := 0; i < claimers; i++ {
		c := client(s, login(t, s, "c"+string(rune('a'+i/26))+string(rune('a'+i%26))))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				got, err := c.ClaimKeyPackages(ctx, a.UserID, 0)
				if err != nil || len(got) != 1 {
					t.Errorf("claim: %d packages, %v", len(got), err)
					return
				}
				mu.Lock()
				if bytes.Equal(got[0], lr) {
					lastResorts++
					mu.Unlock()
					return // exhausted: from now on only the last resort
				}
				counts[string(got[0])]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	dups := 0
	for kp, n := range counts {
		if !uploaded[kp] {
			t.Fatal("a claim returned bytes that were never uploaded")
		}
		if n > 1 {
			dups++
		}
	}
	if dups != 0 || len(counts) != total || lastResorts != claimers {
		t.Fatalf("%d distinct of %d handed out, %d handed out more than once, %d last resorts (want %d)", len(counts), total, dups, lastResorts, claimers)
	}
}

func TestLogsHoldNoSecrets(t *testing.T) {
	logs := &syncBuffer{}
	s := startServerLogging(t, t.TempDir(), logs, "-admin", "root")
	ctx := context.Background()
	register(t, s, "alice")
	a := login(t, s, "alice")
	root := adminLogin(t, s)
	fed, err := client(s, a).IssueToken(ctx, "https://b.example")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := idcerttest.NewClientKey("alice@home.test", nil, time.Time{})
	if _, err := client(s, a).IssueIDCert(ctx, key.Armored); err != nil {
		t.Fatal(err)
	}
	kb := mlstest.NewEd25519(key.Signer)
	kb.Identity = []byte("alice@home.test")
	kp, _ := kb.Build()
	if err := client(s, a).UploadKeyPackages(ctx, [][]byte{kp}); err != nil {
		t.Fatal(err)
	}
	// The server made its first key in the second it started; a rotation
	// in that same second is refused as a conflict, to be retried.
	for attempt := 0; ; attempt++ {
		_, err := client(s, root).RotateServerKey(ctx)
		if err == nil {
			break
		}
		if !errors.Is(err, p2core.ErrConflict) || attempt == 2 {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	}
	if _, err := client(s, root).ClaimKeyPackages(ctx, a.UserID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := (&httpadapter.Client{BaseURL: s.url}).RedeemToken(ctx, fed, "https://b.example"); err != nil {
		t.Fatal(err)
	}
	// Failures get logged too: try bad tokens and a bad redemption.
	_, err = client(s, session{Token: fed}).KeyPackageStatus(ctx)
	if !errors.Is(err, p2core.ErrUnauthorized) {
		t.Fatalf("federation token accepted as a session token: %v", err)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	out := logs.String()
	if len(out) == 0 {
		t.Fatal("no log output captured; the test would prove nothing")
	}
	adminPassword, err := os.ReadFile(filepath.Join(s.data, "admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"the administrator password": string(adminPassword),
		"alice's session token":      a.Token,
		"root's session token":       root.Token,
		"federation token":           fed,
		"password":                   "correct horse",
		"a private key block":        "PRIVATE KEY",
		"KeyPackage bytes (b64)":     base64.StdEncoding.EncodeToString(kp)[:40],
	}
	for what, secret := range secrets {
		if bytes.Contains([]byte(out), []byte(secret)) {
			t.Errorf("the log holds %s", what)
		}
	}
}
