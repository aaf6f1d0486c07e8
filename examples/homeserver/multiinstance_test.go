package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

// Sizes of the multi-instance test.
const (
	miKeyPackages = 1000 // regular KeyPackages alice uploads (the default per-session cap)
	miBatch       = 100  // per upload (the route's maximum)
	miClaimers    = 64   // concurrent claimers in every phase
	miPhase       = 400  // claims of each measured phase; the rest are drained
	miRedeemers   = 50   // concurrent redemptions of one federation token
	miPoolConns   = 16   // pool_max_conns of each instance
)

// TestMultiInstanceOnOnePostgresHandsOutEachKeyPackageOnceAndRedeemsOnce
// runs two example server processes on one PostgreSQL schema (both
// starting at once on an empty schema, so they also race to migrate it and
// to create the server key). Alice uploads KeyPackages through both; then
// 64 concurrent claimers make 400 claims at one instance, 400 more split
// over both (the two measured phases), and finally drain the supply, split
// over both, each until it gets the last resort: every regular KeyPackage
// must be handed out exactly once, none lost, and no claim that starts
// after a last-resort answer may get a regular one. Then 50 concurrent
// redemptions of one federation token, split over the two instances,
// must give exactly one success. It logs the claim rate of one instance
// and of two.
func TestMultiInstanceOnOnePostgresHandsOutEachKeyPackageOnceAndRedeemsOnce(t *testing.T) {
	dsn := os.Getenv("P2KIT_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("set P2KIT_POSTGRES_DSN to a PostgreSQL connection string to run the multi-instance test (CI: source .ci/postgres.sh && pg_start)")
	}
	ctx := t.Context()
	dir := t.TempDir()
	bin := miBuild(t, dir)

	// A schema of its own, named in the DSN: pgstore creates it.
	schema := fmt.Sprintf("p2kit_multi_%d_%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { miDropSchema(t, dsn, schema) })
	idsn := miWithParams(t, dsn, map[string]string{"search_path": schema, "pool_max_conns": fmt.Sprint(miPoolConns)})

	var a, b *miServer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a = miStart(t, bin, dir, "a", idsn) }()
	go func() { defer wg.Done(); b = miStart(t, bin, dir, "b", idsn) }()
	wg.Wait()
	if a == nil || b == nil {
		t.FailNow()
	}

	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: miClaimers}}
	defer hc.CloseIdleConnections()

	// Alice: account and session on a, ID-Cert, KeyPackages through both.
	miAccount(t, hc, a, "alice")
	alice := miLogin(t, hc, a, "alice")
	key, err := idcerttest.NewClientKey("alice@home.test", nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	aliceAt := func(s *miServer) *httpadapter.Client {
		return &httpadapter.Client{BaseURL: s.url, Token: alice.Token, HTTPClient: hc}
	}
	if _, err := aliceAt(a).IssueIDCert(ctx, key.Armored); err != nil {
		t.Fatalf("IssueIDCert: %v", err)
	}
	builder := mlstest.NewEd25519(key.Signer)
	builder.Identity = []byte("alice@home.test")
	uploaded := map[string]bool{}
	var batch [][]byte
	for i := range miKeyPackages {
		kp, err := builder.Build()
		if err != nil {
			t.Fatal(err)
		}
		uploaded[string(kp)] = true
		batch = append(batch, kp)
		if len(batch) == miBatch {
			to := []*miServer{a, b}[(i/miBatch)%2]
			if err := aliceAt(to).UploadKeyPackages(ctx, batch); err != nil {
				t.Fatalf("UploadKeyPackages to %s: %v", to.name, err)
			}
			batch = nil
		}
	}
	lastResort, err := builder.Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := aliceAt(b).SetLastResort(ctx, lastResort); err != nil {
		t.Fatalf("SetLastResort: %v", err)
	}
	st, err := aliceAt(a).KeyPackageStatus(ctx)
	if err != nil || st.Available != miKeyPackages || !st.LastResort {
		t.Fatalf("KeyPackageStatus after the uploads: %+v, %v", st, err)
	}

	// Bob claims alice's KeyPackages.
	miAccount(t, hc, b, "bob")
	bob := miLogin(t, hc, b, "bob")
	bobAt := map[string]*httpadapter.Client{}
	for _, s := range []*miServer{a, b} {
		bobAt[s.name] = &httpadapter.Client{BaseURL: s.url, Token: bob.Token, HTTPClient: hc}
	}

	var (
		mu      sync.Mutex
		seen    = map[string]int{} // regular KeyPackage -> times handed out
		perInst = map[string]int{} // instance -> regular KeyPackages it handed out
		lrSeen  atomic.Int64
		errs    []error
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}
	// firstLR is when the first last-resort answer arrived, as time since
	// epoch (monotonic).
	epoch := time.Now()
	var firstLR atomic.Int64
	firstLR.Store(1<<63 - 1)
	// claim makes one claim at s and records it; it reports whether the
	// result was the last resort.
	claim := func(s *miServer) (lr bool, ok bool) {
		began := int64(time.Since(epoch))
		got, err := bobAt[s.name].ClaimKeyPackages(ctx, alice.UserID, 0)
		if err != nil {
			fail(fmt.Errorf("claim at %s: %w", s.name, err))
			return false, false
		}
		if len(got) != 1 {
			fail(fmt.Errorf("claim at %s: %d KeyPackages, want 1 (alice has one session)", s.name, len(got)))
			return false, false
		}
		kp := string(got[0])
		if kp == string(lastResort) {
			lrSeen.Add(1)
			for at := int64(time.Since(epoch)); ; {
				cur := firstLR.Load()
				if at >= cur || firstLR.CompareAndSwap(cur, at) {
					break
				}
			}
			return true, true
		}
		if began > firstLR.Load() {
			fail(fmt.Errorf("claim at %s started after a last-resort answer and got a regular KeyPackage", s.name))
		}
		mu.Lock()
		defer mu.Unlock()
		if !uploaded[kp] {
			errs = append(errs, fmt.Errorf("claim at %s: a KeyPackage nobody uploaded", s.name))
			return false, false
		}
		seen[kp]++
		perInst[s.name]++
		return false, true
	}
	// phase runs miClaimers claimers, claimer i at servers[i%len], each
	// taking tickets until n claims have been made; every one of them must
	// be a regular KeyPackage. It returns the claims per second.
	phase := func(name string, n int, servers ...*miServer) float64 {
		var tickets atomic.Int64
		var wg sync.WaitGroup
		start := time.Now()
		for i := range miClaimers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s := servers[i%len(servers)]
				for tickets.Add(1) <= int64(n) {
					lr, ok := claim(s)
					if !ok {
						return
					}
					if lr {
						fail(fmt.Errorf("%s: the last resort was handed out while regular KeyPackages were left", name))
						return
					}
				}
			}()
		}
		wg.Wait()
		rate := float64(n) / time.Since(start).Seconds()
		if len(errs) > 0 {
			t.Fatalf("%s: %v", name, errors.Join(errs...))
		}
		return rate
	}
	one := phase("phase 1 (instance a)", miPhase, a)
	two := phase("phase 2 (instances a and b)", miPhase, a, b)

	// Drain: every claimer claims until it gets the last resort. With
	// fewer KeyPackages left than claimers, the last ones are contended.
	var drain sync.WaitGroup
	for i := range miClaimers {
		drain.Add(1)
		go func() {
			defer drain.Done()
			s := []*miServer{a, b}[i%2]
			for {
				if lr, ok := claim(s); !ok || lr {
					return
				}
			}
		}()
	}
	drain.Wait()
	if len(errs) > 0 {
		t.Fatalf("drain: %v", errors.Join(errs...))
	}
	if n := lrSeen.Load(); n != miClaimers {
		t.Fatalf("%d last-resort answers, want one per claimer (%d)", n, miClaimers)
	}
	for kp := range uploaded {
		if seen[kp] != 1 {
			t.Fatalf("a KeyPackage was handed out %d times, want exactly once", seen[kp])
		}
	}
	if perInst["a"] == 0 || perInst["b"] == 0 {
		t.Fatalf("KeyPackages handed out per instance: %v, want some from each", perInst)
	}
	st, err = aliceAt(b).KeyPackageStatus(ctx)
	if err != nil || st.Available != 0 || !st.LastResort || !st.LastResortUsed {
		t.Fatalf("KeyPackageStatus after the drain: %+v, %v", st, err)
	}
	t.Logf("%d KeyPackages, each handed out exactly once (%d by a, %d by b), pool_max_conns=%d per instance",
		miKeyPackages, perInst["a"], perInst["b"], miPoolConns)
	t.Logf("claims/s: one instance %.0f, two instances %.0f (%d claims each, %d clients), ratio %.2f",
		one, two, miPhase, miClaimers, two/one)

	// One federation token, 50 concurrent redemptions over both instances.
	token, err := aliceAt(a).IssueToken(ctx, "https://b.example")
	if err != nil {
		t.Fatalf("IssueToken: %v", err)
	}
	var wins, invalid atomic.Int64
	var rwg sync.WaitGroup
	start := make(chan struct{})
	for i := range miRedeemers {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			s := []*miServer{a, b}[i%2]
			anon := &httpadapter.Client{BaseURL: s.url, HTTPClient: hc}
			<-start
			got, err := anon.RedeemToken(ctx, token, "https://b.example")
			switch {
			case err == nil:
				wins.Add(1)
				if got.UserID != alice.UserID || got.FID != "alice@home.test" {
					fail(fmt.Errorf("redeemed token names %v %q, want alice", got.UserID, got.FID))
				}
			case errors.Is(err, p2core.ErrTokenInvalid):
				invalid.Add(1)
			default:
				fail(fmt.Errorf("redeem at %s: %w", s.name, err))
			}
		}()
	}
	close(start)
	rwg.Wait()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	if wins.Load() != 1 || invalid.Load() != miRedeemers-1 {
		t.Fatalf("%d of %d concurrent redemptions succeeded (%d refused as invalid), want exactly 1", wins.Load(), miRedeemers, invalid.Load())
	}
}

// miServer is one example server process.
type miServer struct {
	name string
	url  string
}

// miBuild builds the example server into dir.
func miBuild(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the multi-instance test builds the server with the go command: %v", err)
	}
	bin := filepath.Join(dir, "homeserver")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// miStart starts a server process and waits for its "listening on" line.
// Its log goes to dir/NAME.log and is shown if the test fails. It is
// stopped with SIGTERM when the test ends. On failure it reports with
// t.Errorf (it runs in a goroutine) and returns nil.
func miStart(t *testing.T, bin, dir, name, dsn string) *miServer {
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Error(err)
		return nil
	}
	cmd := exec.Command(bin, "-store", "postgres", "-dsn", dsn, "-addr", "127.0.0.1:0",
		"-pbkdf2-iterations", "1000", "-domain", "home.test", "-no-rate-limits", "-data", filepath.Join(dir, name))
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Error(err)
		return nil
	}
	if err := cmd.Start(); err != nil {
		t.Errorf("start %s: %v", name, err)
		return nil
	}
	exited := make(chan struct{})
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("log of server %s:\n%s", name, b)
			}
		}
	})
	select {
	case line := <-lines:
		u, ok := strings.CutPrefix(line, "listening on ")
		if !ok {
			t.Errorf("server %s: first line %q", name, line)
			return nil
		}
		return &miServer{name: name, url: u}
	case <-exited:
		t.Errorf("server %s exited before listening", name)
	case <-time.After(60 * time.Second):
		t.Errorf("server %s: no \"listening on\" line within 60 s", name)
	}
	return nil
}

// miPost posts a JSON body and decodes a 201 answer into out.
func miPost(t *testing.T, hc *http.Client, u string, body, out any) {
	t.Helper()
	b, _ := json.Marshal(body)
	resp, err := hc.Post(u, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", u, resp.StatusCode, rb)
	}
	if out != nil {
		if err := json.Unmarshal(rb, out); err != nil {
			t.Fatalf("POST %s: %v", u, err)
		}
	}
}

type miSession struct {
	Token     string           `json:"token"`
	UserID    p2core.UserID    `json:"user_id"`
	SessionID p2core.SessionID `json:"session_id"`
	FID       p2core.FID       `json:"fid"`
}

func miAccount(t *testing.T, hc *http.Client, s *miServer, name string) {
	t.Helper()
	miPost(t, hc, s.url+"/register", map[string]string{"username": name, "password": "correct horse"}, nil)
}

func miLogin(t *testing.T, hc *http.Client, s *miServer, name string) miSession {
	t.Helper()
	var out miSession
	miPost(t, hc, s.url+"/login", map[string]string{"username": name, "password": "correct horse"}, &out)
	return out
}

// miWithParams adds connection parameters to a URL or key=value DSN.
func miWithParams(t *testing.T, dsn string, params map[string]string) string {
	t.Helper()
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("parse P2KIT_POSTGRES_DSN: %v", err)
		}
		q := u.Query()
		for k, v := range params {
			q.Set(k, v)
		}
		u.RawQuery = q.Encode()
		return u.String()
	}
	for k, v := range params {
		dsn += " " + k + "='" + v + "'"
	}
	return dsn
}

// miDropSchema removes the test's schema. pgx is used here only to clean
// up after the servers; the test itself talks to them over HTTP.
func miDropSchema(t *testing.T, dsn, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
	}
}
