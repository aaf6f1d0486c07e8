package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

// Crash test parameters: 20 SIGKILLs at random moments under load.
const (
	crashKills     = 20
	crashUploaders = 4 // users whose KeyPackages are uploaded and claimed
	crashClaimers  = 3 // users who claim, and issue and redeem tokens
	crashPoolLimit = 40
	crashMinUptime = 100 * time.Millisecond
	crashMaxUptime = 1500 * time.Millisecond
)

// crashServer runs the example server binary on one data folder and
// restarts it after each kill; clients follow it to its new port.
type crashServer struct {
	t      *testing.T
	bin    string
	data   string
	stderr *os.File

	mu      sync.Mutex
	cmd     *exec.Cmd
	url     string
	changed chan struct{} // closed when url is replaced by a restart
	starts  int
}

// start runs the server and waits for its "listening on" line. A server
// that does not come up (say, because its database does not open) fails
// the test.
func (s *crashServer) start() {
	s.t.Helper()
	cmd := exec.Command(s.bin, "-addr", "127.0.0.1:0", "-data", s.data, "-domain", "home.test",
		"-pbkdf2-iterations", "1000", "-no-rate-limits")
	cmd.Stderr = s.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	line := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		l, _ := r.ReadString('\n')
		line <- strings.TrimSpace(l)
		_, _ = io.Copy(io.Discard, r)
	}()
	var url string
	select {
	case l := <-line:
		var ok bool
		if url, ok = strings.CutPrefix(l, "listening on "); !ok {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			s.t.Fatalf("start %d: the server did not come up (database did not open?): first line %q; see %s", s.starts+1, l, s.stderr.Name())
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		s.t.Fatalf("start %d: no \"listening on\" line within 30 s", s.starts+1)
	}
	s.mu.Lock()
	s.cmd, s.url = cmd, url
	s.starts++
	old := s.changed
	s.changed = make(chan struct{})
	s.mu.Unlock()
	if old != nil {
		close(old)
	}
}

// kill sends SIGKILL and reaps the process.
func (s *crashServer) kill() {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
}

// stop shuts the server down with SIGTERM and returns its exit error.
func (s *crashServer) stop() error {
	s.mu.Lock()
	cmd := s.cmd
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	return cmd.Wait()
}

// current returns the server's URL, its epoch (how many times it has
// started) and a channel closed when it is replaced.
func (s *crashServer) current() (string, int, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url, s.starts, s.changed
}

// result is what a client knows about one request's effect.
type result int

const (
	acked   result = iota // a 2xx answer: it took effect
	refused               // an error answer: it took no effect
	unknown               // sent, but no answer: it may or may not have taken effect
	stopped               // never sent: the test stopped first
)

// crashClient calls the server as one session, following restarts.
type crashClient struct {
	srv   *crashServer
	token string
	hc    *http.Client
	stop  <-chan struct{}
	// epoch is the server epoch of the last request's last attempt.
	epoch int
	// counters for the log
	sent, ack, unk *atomic.Int64
}

// call runs fn against the current server. A request that could not be
// sent (connection refused: the server is down) took no effect and is
// retried once the server is back. A 5xx or an error the test did not
// expect fails the test.
func (c *crashClient) call(t *testing.T, what string, fn func(*httpadapter.Client) error) (result, error) {
	for {
		url, epoch, changed := c.srv.current()
		c.epoch = epoch
		err := fn(&httpadapter.Client{BaseURL: url, Token: c.token, HTTPClient: c.hc})
		var op *net.OpError
		if err != nil && errors.As(err, &op) && op.Op == "dial" {
			select {
			case <-changed:
				continue
			case <-c.stop:
				return stopped, err
			}
		}
		c.sent.Add(1)
		var ae *httpadapter.APIError
		switch {
		case err == nil:
			c.ack.Add(1)
			return acked, nil
		case errors.As(err, &ae):
			if ae.Status >= 500 {
				t.Errorf("%s: server error %v", what, ae)
			}
			return refused, err
		default:
			c.unk.Add(1)
			return unknown, err
		}
	}
}

// crashLedger is the clients' own record of what they did.
type crashLedger struct {
	mu sync.Mutex
	// KeyPackages by content, per target user.
	owner    map[string]p2core.UserID // every KeyPackage ever sent, regular or last resort
	order    map[string]int           // upload order: increasing per user
	sentIn   map[string]int           // server epoch its upload was sent in
	ackedKP  map[string]bool          // uploads answered 201
	unkKP    map[string]bool          // uploads with no answer
	refKP    map[string]bool          // uploads refused
	lastRes  map[string]bool          // sent as last resort
	claimed  map[string]int           // regular KeyPackages handed out, and how often
	lrClaims int                      // last-resort hand-outs (may repeat)
	// handouts are the regular KeyPackages handed out per target, with
	// the server epoch of the answer.
	handouts map[p2core.UserID][]handout
	// lostClaims are the epochs of the claims on each target whose answer
	// was lost: each may have consumed one regular KeyPackage of the
	// target's (single) session.
	lostClaims map[p2core.UserID][]int
	nextOrder  int
	claimCalls int
	phantom    int // handed out, but never sent by any client

	// Federation tokens.
	issued      map[string]bool // answered 201
	redeemedOK  map[string]int  // redemptions answered 200
	redeemUnk   map[string]int  // redemptions with no answer
	lostTokens  int             // an acknowledged token refused before any redemption
	tokenIssues int
}

func newCrashLedger() *crashLedger {
	return &crashLedger{owner: map[string]p2core.UserID{}, order: map[string]int{}, sentIn: map[string]int{},
		handouts: map[p2core.UserID][]handout{}, ackedKP: map[string]bool{}, unkKP: map[string]bool{},
		refKP: map[string]bool{}, lastRes: map[string]bool{}, claimed: map[string]int{},
		lostClaims: map[p2core.UserID][]int{}, issued: map[string]bool{}, redeemedOK: map[string]int{}, redeemUnk: map[string]int{}}
}

// handout is a regular KeyPackage handed out in a server epoch.
type handout struct{ epoch, order int }

// recordClaim files the KeyPackages a claim on target, answered in epoch,
// handed out.
func (l *crashLedger) recordClaim(target p2core.UserID, epoch int, got [][]byte) (lastResort bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, kp := range got {
		k := string(kp)
		switch {
		case l.owner[k] != target:
			l.phantom++
		case l.lastRes[k]:
			l.lrClaims++
			lastResort = true
		default:
			l.claimed[k]++
			l.handouts[target] = append(l.handouts[target], handout{epoch, l.order[k]})
		}
	}
	return lastResort
}

// crashUser is a registered account with one logged-in session.
type crashUser struct {
	name  string
	id    p2core.UserID
	token string
	key   *idcerttest.ClientKey
}

func crashAccount(t *testing.T, base, name string) crashUser {
	t.Helper()
	cred, _ := json.Marshal(map[string]string{"username": name, "password": "correct horse"})
	for _, route := range []string{"/register", "/login"} {
		resp, err := http.Post(base+route, "application/json", bytes.NewReader(cred))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("%s %s: %d %s", route, name, resp.StatusCode, body)
		}
		if route == "/login" {
			var s struct {
				Token  string        `json:"token"`
				UserID p2core.UserID `json:"user_id"`
			}
			if err := json.Unmarshal(body, &s); err != nil || s.Token == "" {
				t.Fatalf("login %s: %s %v", name, body, err)
			}
			return crashUser{name: name, id: s.UserID, token: s.Token}
		}
	}
	panic("unreachable")
}

// TestCrashSafetyUnderSIGKILL builds the example server, runs mixed load
// against it (KeyPackage uploads, last-resort updates, claims, federation
// token issue and redeem) from concurrent clients, kills it with SIGKILL
// at random moments 20 times, restarting it on the same data each time,
// and then checks the clients' records against what the server hands out:
// no KeyPackage handed out twice, no acknowledged upload lost, no token
// redeemed twice, no acknowledged token lost, and the database opens
// after every kill.
//
// Requests in flight at a kill have no answer; their effect is unknown and
// the checks account for both outcomes: an unanswered upload may or may
// not exist (it may be claimed or not), and an unanswered claim may have
// consumed one KeyPackage of its target, so each target may miss at most
// as many acknowledged KeyPackages as it had unanswered claims.
func TestCrashSafetyUnderSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: builds and kills the example server 20 times")
	}
	began := time.Now()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the crash test builds the server with the go command: %v", err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "homeserver")
	if out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	built := time.Since(began)
	stderr, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	srv := &crashServer{t: t, bin: bin, data: filepath.Join(dir, "data"), stderr: stderr}
	srv.start()
	t.Cleanup(srv.kill)

	// Accounts, ID-Certs and first last-resort KeyPackages, before the
	// chaos.
	ctx := context.Background()
	base, _, _ := srv.current()
	// No keep-alive: on a reused connection net/http silently resends an
	// idempotent request (a claim is a GET) whose first attempt failed, and
	// the error then seen is the resend's, say "connection refused",
	// hiding that the first attempt may have taken effect. On a fresh
	// connection a dial error means the request was never sent.
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	ledger := newCrashLedger()
	uploaders := make([]crashUser, crashUploaders)
	builders := make([]*mlstest.Builder, crashUploaders)
	for i := range uploaders {
		u := crashAccount(t, base, fmt.Sprintf("up%d", i))
		if u.key, err = idcerttest.NewClientKey(u.name+"@home.test", nil, time.Time{}); err != nil {
			t.Fatal(err)
		}
		c := &httpadapter.Client{BaseURL: base, Token: u.token, HTTPClient: hc}
		if _, err := c.IssueIDCert(ctx, u.key.Armored); err != nil {
			t.Fatal(err)
		}
		builders[i] = mlstest.NewEd25519(u.key.Signer)
		builders[i].Identity = []byte(u.name + "@home.test")
		lr, err := builders[i].Build()
		if err != nil {
			t.Fatal(err)
		}
		ledger.owner[string(lr)], ledger.lastRes[string(lr)] = u.id, true
		if err := c.SetLastResort(ctx, lr); err != nil {
			t.Fatal(err)
		}
		uploaders[i] = u
	}
	claimers := make([]crashUser, crashClaimers)
	for i := range claimers {
		claimers[i] = crashAccount(t, base, fmt.Sprintf("cl%d", i))
	}

	stop := make(chan struct{})
	var sent, ack, unk atomic.Int64
	client := func(token string) *crashClient {
		return &crashClient{srv: srv, token: token, hc: hc, stop: stop, sent: &sent, ack: &ack, unk: &unk}
	}
	// claimedFrom[i] is signalled after each claim on uploader i, so an
	// uploader whose pool is full waits for a claim instead of polling.
	claimedFrom := make([]chan struct{}, crashUploaders)
	for i := range claimedFrom {
		claimedFrom[i] = make(chan struct{}, 1)
	}
	var wg sync.WaitGroup
	for i, u := range uploaders {
		wg.Go(func() { crashUpload(t, client(u.token), u, builders[i], ledger, claimedFrom[i], stop) })
	}
	for _, c := range claimers {
		wg.Go(func() { crashClaim(t, client(c.token), uploaders, ledger, claimedFrom, stop) })
		wg.Go(func() { crashTokens(t, client(c.token), client(""), ledger, stop) })
	}

	// Chaos: kill at a random moment, restart on the same data, 20 times.
	kills := 0
	for kills < crashKills {
		time.Sleep(crashMinUptime + rand.N(crashMaxUptime-crashMinUptime))
		srv.kill()
		kills++
		srv.start()
	}
	close(stop)
	wg.Wait()
	chaos := time.Since(began) - built
	loadSent, loadAck, loadUnk := sent.Load(), ack.Load(), unk.Load()

	// Drain: claim every target until only its last resort comes back.
	drainer := client(claimers[0].token)
	drained := 0
	for _, u := range uploaders {
		for n := 0; ; n++ {
			var got [][]byte
			r, err := drainer.call(t, "drain", func(c *httpadapter.Client) (err error) {
				got, err = c.ClaimKeyPackages(ctx, u.id, 0)
				return err
			})
			if r != acked {
				t.Fatalf("drain claim on %s: %v", u.name, err)
			}
			if len(got) == 0 || ledger.recordClaim(u.id, drainer.epoch, got) {
				break
			}
			drained++
			if n > 10000 {
				t.Fatalf("drain of %s does not end", u.name)
			}
		}
	}

	// Every redeemed token stays redeemed; every acknowledged token that
	// was never redeemed must still be redeemable once.
	anon := client("")
	ledger.mu.Lock()
	var tokens []string
	for tok := range ledger.issued {
		tokens = append(tokens, tok)
	}
	ledger.mu.Unlock()
	tokenDup, tokenLost := 0, ledger.lostTokens
	for _, tok := range tokens {
		r, err := anon.call(t, "final redeem", func(c *httpadapter.Client) error {
			_, err := c.RedeemToken(ctx, tok, "https://b.example")
			return err
		})
		switch {
		case r == acked && ledger.redeemedOK[tok] > 0:
			tokenDup++
			t.Errorf("token redeemed twice: acknowledged before the crashes and again after")
		case r == acked:
			// Its only earlier redemption attempts went unanswered and
			// had not consumed it.
		case r == refused && ledger.redeemedOK[tok] == 0 && ledger.redeemUnk[tok] == 0:
			tokenLost++
			t.Errorf("acknowledged token lost: never redeemed, yet refused: %v", err)
		case r != refused:
			t.Errorf("final redeem: %v", err)
		}
	}
	for _, n := range ledger.redeemedOK {
		if n > 1 {
			tokenDup++
			t.Errorf("token redeemed %d times", n)
		}
	}

	// The server still shuts down cleanly, and never panicked.
	if err := srv.stop(); err != nil {
		t.Errorf("graceful shutdown after the crashes: %v", err)
	}
	if log, err := os.ReadFile(stderr.Name()); err == nil && (bytes.Contains(log, []byte("panic:")) || bytes.Contains(log, []byte("fatal error:"))) {
		t.Errorf("the server panicked; log:\n%s", log[max(0, len(log)-4096):])
	}

	// KeyPackages: exactly once, nothing acknowledged lost.
	l := ledger
	dups, missing, losses := 0, map[p2core.UserID]int{}, 0
	for kp, n := range l.claimed {
		if n > 1 {
			dups++
			t.Errorf("KeyPackage of user %d handed out %d times", l.owner[kp], n)
		}
		if l.refKP[kp] {
			t.Errorf("KeyPackage of a refused upload was handed out")
		}
	}
	lostClaims := 0
	for _, u := range uploaders {
		lostClaims += len(l.lostClaims[u.id])
		var gone []missingKP
		for kp := range l.ackedKP {
			if l.owner[kp] == u.id && l.claimed[kp] == 0 {
				gone = append(gone, missingKP{from: l.sentIn[kp], to: firstNewer(l.handouts[u.id], l.order[kp], srv.starts)})
			}
		}
		missing[u.id] = len(gone)
		if lost := unexplained(gone, l.lostClaims[u.id]); lost > 0 {
			losses += lost
			t.Errorf("user %s: %d acknowledged KeyPackages were never handed out; unanswered claims can explain only %d of them (epochs of those claims: %v): %d lost",
				u.name, len(gone), len(gone)-lost, l.lostClaims[u.id], lost)
		}
	}
	if l.phantom > 0 {
		t.Errorf("%d KeyPackages handed out that no client uploaded for that user", l.phantom)
	}
	unkFound := 0
	for kp := range l.unkKP {
		if l.claimed[kp] > 0 {
			unkFound++
		}
	}
	if srv.starts != crashKills+1 {
		t.Errorf("server started %d times, want %d", srv.starts, crashKills+1)
	}
	if len(l.ackedKP) < 100 || len(l.claimed) < 100 || len(l.issued) < 20 {
		t.Errorf("too little load to mean anything: %d uploads acknowledged, %d claimed, %d tokens", len(l.ackedKP), len(l.claimed), len(l.issued))
	}
	t.Logf("kills: %d (database opened %d times); build %v, load %v, total %v", kills, srv.starts, built.Round(time.Millisecond), chaos.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
	t.Logf("requests during the load: %d sent, %d acknowledged, %d refused (second redemptions), %d unanswered (effect unknown)",
		loadSent, loadAck, loadSent-loadAck-loadUnk, loadUnk)
	t.Logf("KeyPackages: %d uploads acknowledged, %d unanswered (%d of them turned up in claims), %d refused; %d handed out (%d by the final drain), %d last-resort hand-outs",
		len(l.ackedKP), len(l.unkKP), unkFound, len(l.refKP), len(l.claimed), drained, l.lrClaims)
	t.Logf("claims: %d during the load, %d unanswered; acknowledged KeyPackages never handed out: %d, each matched to an unanswered claim that could have consumed it",
		l.claimCalls, lostClaims, sumMap(missing))
	t.Logf("tokens: %d issued and acknowledged, %d redemptions acknowledged, %d unanswered", len(l.issued), len(l.redeemedOK), sumMap(l.redeemUnk))
	t.Logf("duplicates = %d (KeyPackages %d, tokens %d); losses = %d (KeyPackages %d, tokens %d)", dups+tokenDup, dups, tokenDup, losses+tokenLost, losses, tokenLost)
}

// missingKP is an acknowledged KeyPackage never handed out. Only an
// unanswered claim processed in a server epoch from..to can have consumed
// it: not before its upload was sent (epoch from), and not after a newer
// KeyPackage of the same session was handed out (epoch to), because claims
// hand out the oldest KeyPackage first and this one was committed before
// any newer one was uploaded.
type missingKP struct{ from, to int }

// firstNewer returns the first epoch in which a KeyPackage uploaded after
// order was handed out, or last when none was.
func firstNewer(hs []handout, order, last int) int {
	first := last
	for _, h := range hs {
		if h.order > order && h.epoch < first {
			first = h.epoch
		}
	}
	return first
}

// unexplained matches missing KeyPackages to unanswered claims (each
// claim consumes at most one) and returns how many cannot be matched: a
// maximum matching of intervals to points, by earliest interval end.
func unexplained(gone []missingKP, lostEpochs []int) int {
	sort.Slice(gone, func(i, j int) bool { return gone[i].to < gone[j].to })
	claims := slices.Clone(lostEpochs)
	sort.Ints(claims)
	used := make([]bool, len(claims))
	n := 0
	for _, g := range gone {
		matched := false
		for i, e := range claims {
			if !used[i] && e >= g.from && e <= g.to {
				used[i], matched = true, true
				break
			}
		}
		if !matched {
			n++
		}
	}
	return n
}

func sumMap[K comparable](m map[K]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// crashUpload keeps an uploader's pool topped up with batches of 1-5
// KeyPackages, and now and then replaces its last resort.
func crashUpload(t *testing.T, c *crashClient, u crashUser, b *mlstest.Builder, l *crashLedger, claimed <-chan struct{}, stop <-chan struct{}) {
	ctx := context.Background()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		var st p2core.KeyPackageStatus
		r, err := c.call(t, "status", func(hc *httpadapter.Client) (err error) {
			st, err = hc.KeyPackageStatus(ctx)
			return err
		})
		if r == stopped {
			return
		}
		if r == refused {
			t.Errorf("status of %s: %v", u.name, err)
			return
		}
		if r == acked && st.Available >= crashPoolLimit {
			select {
			case <-claimed:
			case <-stop:
				return
			}
			continue
		}
		batch := make([][]byte, 1+rand.IntN(5))
		for i := range batch {
			if batch[i], err = b.Build(); err != nil {
				t.Error(err)
				return
			}
		}
		lr := n%10 == 9
		if lr {
			batch = batch[:1]
		}
		l.mu.Lock()
		for _, kp := range batch {
			l.owner[string(kp)] = u.id
			l.order[string(kp)] = l.nextOrder
			l.nextOrder++
			if lr {
				l.lastRes[string(kp)] = true
			}
		}
		l.mu.Unlock()
		r, err = c.call(t, "upload", func(hc *httpadapter.Client) error {
			if lr {
				return hc.SetLastResort(ctx, batch[0])
			}
			return hc.UploadKeyPackages(ctx, batch)
		})
		if lr {
			if r == refused {
				t.Errorf("last resort of %s refused: %v", u.name, err)
			}
			continue
		}
		l.mu.Lock()
		for _, kp := range batch {
			l.sentIn[string(kp)] = c.epoch
			switch r {
			case acked:
				l.ackedKP[string(kp)] = true
			case unknown, stopped:
				// stopped: never sent, but filed as unknown: harmless.
				l.unkKP[string(kp)] = true
			case refused:
				l.refKP[string(kp)] = true
			}
		}
		l.mu.Unlock()
		if r == refused {
			t.Errorf("upload of %s refused: %v", u.name, err)
		}
	}
}

// crashClaim claims the KeyPackages of random uploaders.
func crashClaim(t *testing.T, c *crashClient, targets []crashUser, l *crashLedger, claimedFrom []chan struct{}, stop <-chan struct{}) {
	ctx := context.Background()
	for {
		select {
		case <-stop:
			return
		default:
		}
		i := rand.IntN(len(targets))
		var got [][]byte
		r, err := c.call(t, "claim", func(hc *httpadapter.Client) (err error) {
			got, err = hc.ClaimKeyPackages(ctx, targets[i].id, 0)
			return err
		})
		switch r {
		case stopped:
			return
		case acked:
			l.recordClaim(targets[i].id, c.epoch, got)
		case unknown:
			l.mu.Lock()
			l.lostClaims[targets[i].id] = append(l.lostClaims[targets[i].id], c.epoch)
			l.mu.Unlock()
		case refused:
			t.Errorf("claim refused: %v", err)
		}
		l.mu.Lock()
		l.claimCalls++
		l.mu.Unlock()
		select {
		case claimedFrom[i] <- struct{}{}:
		default:
		}
	}
}

// crashTokens issues federation tokens and redeems each twice; the second
// redemption must be refused.
func crashTokens(t *testing.T, user, anon *crashClient, l *crashLedger, stop <-chan struct{}) {
	ctx := context.Background()
	for {
		select {
		case <-stop:
			return
		default:
		}
		var tok string
		r, err := user.call(t, "issue", func(hc *httpadapter.Client) (err error) {
			tok, err = hc.IssueToken(ctx, "https://b.example")
			return err
		})
		switch r {
		case stopped:
			return
		case refused:
			t.Errorf("token issue refused: %v", err)
			return
		case unknown:
			continue
		}
		l.mu.Lock()
		l.issued[tok] = true
		l.tokenIssues++
		l.mu.Unlock()
		for range 2 {
			r, err := anon.call(t, "redeem", func(hc *httpadapter.Client) error {
				_, err := hc.RedeemToken(ctx, tok, "https://b.example")
				return err
			})
			l.mu.Lock()
			switch r {
			case acked:
				l.redeemedOK[tok]++
			case unknown:
				l.redeemUnk[tok]++
			case refused:
				if !errors.Is(err, p2core.ErrTokenInvalid) {
					t.Errorf("redeem: %v", err)
				} else if l.redeemedOK[tok] == 0 && l.redeemUnk[tok] == 0 {
					l.lostTokens++
					t.Errorf("acknowledged token refused at its first redemption: %v", err)
				}
			}
			l.mu.Unlock()
			if r == stopped {
				return
			}
		}
	}
}
