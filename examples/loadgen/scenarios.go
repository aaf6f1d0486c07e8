package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

// scenarioNames lists every scenario, in the order they run.
var scenarioNames = []string{"claim", "upload", "token", "redeem", "idcert", "read-cert", "read-server-key", "mixed"}

// foreignServer is the audience of every federation token the load
// generator issues and redeems.
const foreignServer = "https://foreign.example"

// errPoolDry is returned when a pre-seeded pool has nothing left for a
// request; it is counted as an error, so a phase that runs dry shows.
var errPoolDry = errors.New("pre-seeded pool ran dry")

// env is the state the HTTP scenarios share during one load generator run
// against one server: accounts, pools of KeyPackages and tokens, and
// pre-encoded request bodies. Pools are filled between phases only; during
// a phase workers read them and move atomic cursors.
type env struct {
	hc       *httpClient
	base     string      // URL of the server that seeding goes through
	bases    []string    // every server; worker w's requests go to bases[w%len(bases)]
	claimed  *dupCounter // every KeyPackage handed out by a claim, over the whole run
	prefix   string      // username prefix, unique per run
	progress func(format string, args ...any)
	// kpCap is the server's per-session cap of regular KeyPackages
	// (p2core.DefaultMaxKeyPackagesPerUser for the example server).
	kpCap       int
	uploadBatch int
	// claimUsers is the least number of users claims are spread over.
	claimUsers int
	mixWeights []mixWeight

	names  atomic.Int64
	actors []*actor // actors[w] is the identity of worker w

	claim  claimPool
	depth  depthPool
	upload uploadPool
	tokens tokenPool
	// certHistory is how many superseded ID-Certs the read-cert user has.
	certHistory int
	certPath    string // route 9 of the read-cert user
	certBody    []byte // what route 9 answered while preparing
	keyBody     []byte // what route 10 answered while preparing
	rngs        []*rand.Rand
}

// actor is one account with one session and one OpenPGP client key.
type actor struct {
	name    string
	sess    loginResponse
	auth    string // "Bearer <session token>"
	key     *idcerttest.ClientKey
	keyBody []byte // body of route 8: the armored key as a JSON string
}

// newActor registers an account, logs in and makes a client key for the
// session's FID.
func (e *env) newActor(ctx context.Context) (*actor, error) {
	name := e.prefix + "-" + strconv.FormatInt(e.names.Add(1), 10)
	if err := e.hc.register(ctx, e.base, name); err != nil {
		return nil, err
	}
	sess, err := e.hc.login(ctx, e.base, name)
	if err != nil {
		return nil, err
	}
	key, err := idcerttest.NewClientKey(string(sess.FID), nil, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	return &actor{name: name, sess: sess, auth: "Bearer " + sess.Token, key: key, keyBody: mustJSON(key.Armored)}, nil
}

// keyPackages returns a KeyPackage builder for the actor: signed with its
// key, its credential naming its session's FID.
func (a *actor) keyPackages() *mlstest.Builder {
	b := mlstest.NewEd25519(a.key.Signer)
	b.Identity = []byte(a.sess.FID)
	return b
}

// newActors makes n actors, several at a time.
func (e *env) newActors(ctx context.Context, n int) ([]*actor, error) {
	out := make([]*actor, n)
	err := parallel(ctx, n, 16, func(i int) error {
		a, err := e.newActor(ctx)
		out[i] = a
		return err
	})
	return out, err
}

// certify gets an ID-Cert for the actor's session (route 8), which binds
// the KeyPackages its key signs to the session.
func (e *env) certify(ctx context.Context, a *actor) error {
	_, err := e.hc.expect(ctx, 201, "POST", e.base+"/p2core/key/user/@me", a.auth, a.keyBody)
	return err
}

// ensureActors makes sure workers 0..n-1 have an identity, and every
// worker a random source for the mixed scenario.
func (e *env) ensureActors(ctx context.Context, n int) error {
	if missing := n - len(e.actors); missing > 0 {
		more, err := e.newActors(ctx, missing)
		if err != nil {
			return err
		}
		e.actors = append(e.actors, more...)
	}
	for len(e.rngs) < n {
		e.rngs = append(e.rngs, rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())))
	}
	return nil
}

// enableTokens logs in as the administrator (created by the self-started
// server) and switches federation token generation on (route 3), in case
// an earlier run left it off. Without administrator rights (a -server that
// has no such account, or not with this password) it only checks that
// generation is on.
func (e *env) enableTokens(ctx context.Context) error {
	if admin, err := e.hc.login(ctx, e.base, adminName); err == nil {
		status, _, err := e.hc.do(ctx, "PUT", e.base+"/p2core/token/status", "Bearer "+admin.Token, []byte(`{"enabled":true}`))
		if err == nil && status == 204 {
			return nil
		}
	}
	b, err := e.hc.expect(ctx, 200, "GET", e.base+"/p2core/token/status", "", nil)
	if err != nil {
		return err
	}
	if !bytes.Contains(b, []byte("true")) {
		return errors.New("federation token generation is off on the server and the load generator is no administrator there")
	}
	return nil
}

// parallel calls fn(i) for i in [0, n) from up to workers goroutines and
// returns the first error (after which no new calls start).
func parallel(ctx context.Context, n, workers int, fn func(i int) error) error {
	var next atomic.Int64
	var failed atomic.Bool
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range min(n, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || failed.Load() || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					failed.Store(true)
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// buildKeyPackages makes n valid KeyPackages signed by b's key on all
// cores (each costs two X25519 and two Ed25519 operations, about 0.25 ms).
func buildKeyPackages(ctx context.Context, b *mlstest.Builder, n int) ([][]byte, error) {
	out := make([][]byte, n)
	err := parallel(ctx, n, runtime.GOMAXPROCS(0), func(i int) error {
		kp, err := b.Build()
		out[i] = kp
		return err
	})
	return out, err
}

// uploadBody is the body of route 12 for kps.
func uploadBody(kps [][]byte) []byte {
	s := make([]string, len(kps))
	for i, kp := range kps {
		s[i] = base64.StdEncoding.EncodeToString(kp)
	}
	return mustJSON(s)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// at is the URL of the server worker w sends its requests to.
func (e *env) at(w int) string {
	if len(e.bases) == 0 {
		return e.base
	}
	return e.bases[w%len(e.bases)]
}

// countClaimed checks that a claim's answer (route 14: a JSON array of
// Base64 KeyPackages) holds at least one KeyPackage and records each in
// the run's duplicate counter.
func (e *env) countClaimed(b []byte) error {
	// Base64 holds no quote or escape, so the strings are what lies
	// between the odd and even quotes (cheaper than a JSON decoder on the
	// cores the server shares).
	parts := strings.Split(string(b), `"`)
	if len(b) < 4 || b[0] != '[' || len(parts) < 3 || len(parts)%2 == 0 {
		return fmt.Errorf("claim answered %q: %w", b, errPoolDry)
	}
	if e.claimed != nil {
		for i := 1; i < len(parts); i += 2 {
			e.claimed.add(parts[i])
		}
	}
	return nil
}

// claimTarget is a user whose one session holds KeyPackages to claim.
type claimTarget struct {
	a        *actor
	b        *mlstest.Builder
	path     string // route 14 for this user
	uploaded int    // KeyPackages uploaded, changed between phases only
	claimed  atomic.Int64
}

// claimPool spreads claims round-robin over its targets, so every target
// loses the same number per phase.
type claimPool struct {
	targets []*claimTarget
	next    atomic.Uint64
}

// prepare makes sure at least need KeyPackages can be claimed, spread
// evenly over enough target users that none holds more than the
// per-session cap, uploading them through route 12 in batches of 100.
func (e *env) prepareClaim(ctx context.Context, need int) error {
	p := &e.claim
	n := max(len(p.targets), ceilDiv(need, e.kpCap), e.claimUsers, 1)
	if missing := n - len(p.targets); missing > 0 {
		actors, err := e.newActors(ctx, missing)
		if err != nil {
			return err
		}
		for _, a := range actors {
			if err := e.certify(ctx, a); err != nil {
				return err
			}
			p.targets = append(p.targets, &claimTarget{a: a, b: a.keyPackages(),
				path: "/p2core/keypackage/" + a.sess.UserID.String()})
		}
	}
	level := min(e.kpCap, ceilDiv(need, n))
	total := 0
	for _, t := range p.targets {
		if c := int(t.claimed.Load()); c > t.uploaded {
			t.claimed.Store(int64(t.uploaded)) // claims of an empty session took nothing
		}
		total += max(0, level-(t.uploaded-int(t.claimed.Load())))
	}
	if total == 0 {
		return nil
	}
	e.progress("  seeding %d KeyPackages for %d target users through route 12", total, n)
	return parallel(ctx, len(p.targets), 2, func(i int) error {
		t := p.targets[i]
		add := level - (t.uploaded - int(t.claimed.Load()))
		if add <= 0 {
			return nil
		}
		kps, err := buildKeyPackages(ctx, t.b, add)
		if err != nil {
			return err
		}
		for len(kps) > 0 {
			k := min(len(kps), 100)
			if _, err := e.hc.expect(ctx, 201, "POST", e.base+"/p2core/keypackage/@me", t.a.auth, uploadBody(kps[:k])); err != nil {
				return err
			}
			kps = kps[k:]
			t.uploaded += k
		}
		return nil
	})
}

// claimOp claims the next target's KeyPackage (route 14) as worker w.
func (e *env) claimOp(ctx context.Context, w int) error {
	p := &e.claim
	t := p.targets[(p.next.Add(1)-1)%uint64(len(p.targets))]
	t.claimed.Add(1)
	b, err := e.hc.expect(ctx, 200, "GET", e.at(w)+t.path, e.actors[w].auth, nil)
	if err != nil {
		return err
	}
	return e.countClaimed(b)
}

// uploadOwner is a user whose session receives uploads.
type uploadOwner struct {
	a    *actor
	b    *mlstest.Builder
	used int // KeyPackages planned for its session
}

// uploadReq is one prepared route 12 request.
type uploadReq struct {
	auth string
	body []byte
}

// uploadPool holds prepared uploads of fresh KeyPackages, each for a
// session with room for it under the per-session cap.
type uploadPool struct {
	owners []*uploadOwner
	reqs   []uploadReq
	next   atomic.Int64
}

// prepareUpload makes sure at least need unused upload requests are ready.
func (e *env) prepareUpload(ctx context.Context, need int) error {
	p := &e.upload
	used := min(int(p.next.Load()), len(p.reqs))
	p.reqs = append([]uploadReq(nil), p.reqs[used:]...)
	p.next.Store(0)
	add := need - len(p.reqs)
	if add <= 0 {
		return nil
	}
	batch := e.uploadBatch
	perOwner := e.kpCap / batch
	type job struct {
		o  *uploadOwner
		n  int // requests
		at int // index of its first request in p.reqs
	}
	var jobs []job
	for _, o := range p.owners {
		if k := min(add, (e.kpCap-o.used)/batch); k > 0 {
			jobs = append(jobs, job{o, k, 0})
			o.used += k * batch
			add -= k
		}
	}
	if add > 0 {
		actors, err := e.newActors(ctx, ceilDiv(add, perOwner))
		if err != nil {
			return err
		}
		for _, a := range actors {
			if err := e.certify(ctx, a); err != nil {
				return err
			}
			o := &uploadOwner{a: a, b: a.keyPackages()}
			p.owners = append(p.owners, o)
			k := min(add, perOwner)
			jobs = append(jobs, job{o, k, 0})
			o.used += k * batch
			add -= k
		}
	}
	start := len(p.reqs)
	total := 0
	for i := range jobs {
		jobs[i].at = start + total
		total += jobs[i].n
	}
	p.reqs = append(p.reqs, make([]uploadReq, total)...)
	e.progress("  building %d uploads of %d KeyPackage(s)", total, batch)
	return parallel(ctx, len(jobs), 2, func(i int) error {
		j := jobs[i]
		kps, err := buildKeyPackages(ctx, j.o.b, j.n*batch)
		if err != nil {
			return err
		}
		for r := range j.n {
			p.reqs[j.at+r] = uploadReq{auth: j.o.a.auth, body: uploadBody(kps[r*batch : (r+1)*batch])}
		}
		return nil
	})
}

// uploadOp sends the next prepared upload (route 12).
func (e *env) uploadOp(ctx context.Context, w int) error {
	p := &e.upload
	i := int(p.next.Add(1) - 1)
	if i >= len(p.reqs) {
		return errPoolDry
	}
	_, err := e.hc.expect(ctx, 201, "POST", e.at(w)+"/p2core/keypackage/@me", p.reqs[i].auth, p.reqs[i].body)
	return err
}

// issuedToken is a federation token and when it was issued.
type issuedToken struct {
	token string
	at    time.Time
}

// tokenPool holds federation tokens for the redeem scenario: those the
// token scenario issued and, when they are too few or too old, more
// issued through route 1 before the phase.
type tokenPool struct {
	bodies   [][]byte // route 7 bodies, in use order
	issued   []time.Time
	next     atomic.Int64
	produced [][]issuedToken // per worker, filled by tokenOp
}

// tokenMaxAge is how old a pooled token may be when a phase starts: the
// example server's tokens live 5 minutes.
const tokenMaxAge = 2 * time.Minute

var tokenBody = mustJSON(map[string]string{"server": foreignServer})

func redeemBody(tok string) []byte {
	return []byte(`{"token":"` + tok + `","server":"` + foreignServer + `"}`)
}

// prepareTokens sizes the per-worker buffers of the token scenario.
func (e *env) prepareTokens(workers int) {
	for len(e.tokens.produced) < workers {
		e.tokens.produced = append(e.tokens.produced, nil)
	}
}

// tokenOp issues a federation token (route 1) and keeps it for redeem.
func (e *env) tokenOp(ctx context.Context, w int) error {
	b, err := e.hc.expect(ctx, 201, "POST", e.at(w)+"/p2core/token", e.actors[w].auth, tokenBody)
	if err != nil {
		return err
	}
	tok := strings.Trim(string(bytes.TrimSpace(b)), `"`)
	e.tokens.produced[w] = append(e.tokens.produced[w], issuedToken{tok, time.Now()})
	return nil
}

// prepareRedeem makes sure at least need fresh unused tokens are pooled.
func (e *env) prepareRedeem(ctx context.Context, need int) error {
	p := &e.tokens
	cut := time.Now().Add(-tokenMaxAge)
	var bodies [][]byte
	var issued []time.Time
	for i := int(p.next.Load()); i < len(p.bodies); i++ {
		if p.issued[i].After(cut) {
			bodies, issued = append(bodies, p.bodies[i]), append(issued, p.issued[i])
		}
	}
	for w, toks := range p.produced {
		for _, t := range toks {
			if t.at.After(cut) {
				bodies, issued = append(bodies, redeemBody(t.token)), append(issued, t.at)
			}
		}
		p.produced[w] = nil
	}
	if add := need - len(bodies); add > 0 {
		e.progress("  issuing %d federation tokens through route 1", add)
		if err := e.ensureActors(ctx, 32); err != nil {
			return err
		}
		more := make([][]byte, add)
		err := parallel(ctx, add, 32, func(i int) error {
			b, err := e.hc.expect(ctx, 201, "POST", e.base+"/p2core/token", e.actors[i%32].auth, tokenBody)
			more[i] = redeemBody(strings.Trim(string(bytes.TrimSpace(b)), `"`))
			return err
		})
		if err != nil {
			return err
		}
		now := time.Now()
		for _, b := range more {
			bodies, issued = append(bodies, b), append(issued, now)
		}
	}
	p.bodies, p.issued = bodies, issued
	p.next.Store(0)
	return nil
}

// redeemOp redeems the next pooled token (route 7), anonymously as a
// foreign server would.
func (e *env) redeemOp(ctx context.Context, w int) error {
	p := &e.tokens
	i := int(p.next.Add(1) - 1)
	if i >= len(p.bodies) {
		return errPoolDry
	}
	_, err := e.hc.expect(ctx, 200, "POST", e.at(w)+"/p2core/token/redeem", "", p.bodies[i])
	return err
}

// idcertOp asks for a new ID-Cert of worker w's pre-generated key (route
// 8); each call supersedes the session's previous cert.
func (e *env) idcertOp(ctx context.Context, w int) error {
	a := e.actors[w]
	_, err := e.hc.expect(ctx, 201, "POST", e.at(w)+"/p2core/key/user/@me", a.auth, a.keyBody)
	return err
}

// prepareReads makes the user whose ID-Certs route 9 reads (an account of
// its own, with one session whose cert was renewed certHistory times, so
// it has that many superseded certs besides the current one) and records
// what routes 9 and 10 answer, for the trivial handlers that serve the
// same bytes.
func (e *env) prepareReads(ctx context.Context) error {
	if e.certPath == "" {
		a, err := e.newActor(ctx)
		if err != nil {
			return err
		}
		if err := e.certify(ctx, a); err != nil {
			return err
		}
		if e.certHistory > 0 {
			e.progress("  renewing the read-cert user's ID-Cert %d times", e.certHistory)
			if err := parallel(ctx, e.certHistory, 8, func(int) error { return e.certify(ctx, a) }); err != nil {
				return err
			}
		}
		e.certPath = "/p2core/key/user/" + a.sess.UserID.String()
	}
	var err error
	if e.certBody, err = e.hc.expect(ctx, 200, "GET", e.base+e.certPath, "", nil); err != nil {
		return err
	}
	e.keyBody, err = e.hc.expect(ctx, 200, "GET", e.base+"/p2core/key/server", "", nil)
	return err
}

// readCertOp reads the read-cert user's ID-Certs (route 9), anonymously.
func (e *env) readCertOp(ctx context.Context, w int) error {
	_, err := e.hc.expect(ctx, 200, "GET", e.at(w)+e.certPath, "", nil)
	return err
}

// readServerKeyOp reads the server key (route 10), anonymously.
func (e *env) readServerKeyOp(ctx context.Context, w int) error {
	_, err := e.hc.expect(ctx, 200, "GET", e.at(w)+"/p2core/key/server", "", nil)
	return err
}

// mixWeight is one scenario's share of the mixed scenario.
type mixWeight struct {
	name   string
	weight int
}

// defaultMix is the mixed scenario's default: mostly claims and public
// reads, as a server sees when many clients start conversations.
const defaultMix = "claim=35,read-cert=20,read-server-key=15,token=10,redeem=10,upload=5,idcert=5"

// parseMix parses "name=weight,..." into weights of known scenarios.
func parseMix(s string) ([]mixWeight, error) {
	var out []mixWeight
	for _, part := range strings.Split(s, ",") {
		name, w, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.Atoi(w)
		if !ok || err != nil || n < 0 {
			return nil, fmt.Errorf("-mix: %q is not name=weight", part)
		}
		switch name {
		case "claim", "upload", "token", "redeem", "idcert", "read-cert", "read-server-key":
		default:
			return nil, fmt.Errorf("-mix: unknown scenario %q", name)
		}
		if n > 0 {
			out = append(out, mixWeight{name, n})
		}
	}
	if len(out) == 0 {
		return nil, errors.New("-mix: no scenario has a positive weight")
	}
	return out, nil
}

// share is the part of need that the mix sends to scenario name.
func (e *env) share(name string, need int) int {
	total, w := 0, 0
	for _, m := range e.mixWeights {
		total += m.weight
		if m.name == name {
			w = m.weight
		}
	}
	return ceilDiv(need*w, total)
}

// prepareMixed fills every pool the mix uses with its share of need.
func (e *env) prepareMixed(ctx context.Context, workers, need int) error {
	if err := e.prepareReads(ctx); err != nil {
		return err
	}
	e.prepareTokens(workers)
	if n := e.share("claim", need); n > 0 {
		if err := e.prepareClaim(ctx, n); err != nil {
			return err
		}
	}
	if n := e.share("upload", need); n > 0 {
		if err := e.prepareUpload(ctx, n); err != nil {
			return err
		}
	}
	if n := e.share("redeem", need); n > 0 {
		if err := e.prepareRedeem(ctx, n); err != nil {
			return err
		}
	}
	return nil
}

// mixedOp makes one request of a scenario drawn by weight.
func (e *env) mixedOp(ctx context.Context, w int) error {
	total := 0
	for _, m := range e.mixWeights {
		total += m.weight
	}
	r := e.rngs[w].IntN(total)
	for _, m := range e.mixWeights {
		if r -= m.weight; r < 0 {
			return e.opFor(m.name)(ctx, w)
		}
	}
	return nil
}

// opFor returns the request function of a single scenario.
func (e *env) opFor(name string) func(ctx context.Context, w int) error {
	switch name {
	case "claim":
		return e.claimOp
	case "upload":
		return e.uploadOp
	case "token":
		return e.tokenOp
	case "redeem":
		return e.redeemOp
	case "idcert":
		return e.idcertOp
	case "read-cert":
		return e.readCertOp
	case "read-server-key":
		return e.readServerKeyOp
	case "mixed":
		return e.mixedOp
	}
	panic("unknown scenario " + name)
}
