package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/p2core/mls"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
	"github.com/p2kit/p2kit/storage/boltstore"
)

// scaleDomain is the example server's default -domain, which the seeded
// server key and FIDs use.
const scaleDomain = "home.localhost"

// seedMaxAge is how old a cached seeded file may be: its KeyPackages and
// ID-Certs live 30 days.
const seedMaxAge = 20 * 24 * time.Hour

// runScale measures claims against a store holding c.seedKP KeyPackages
// and against one holding c.baselineKP, each in a fresh copy of a seeded
// file: the example server's start time on the file, claim latency at
// c.scaleClients clients, and the server's memory under that load.
//
// Seeding (method): with no server running, the load generator opens the
// bbolt file itself (fsync off while seeding), creates through
// p2core.Service one session and one ID-Cert per user (so the server's
// state is what it would be had the users logged in and uploaded), and
// stores c.perUser real KeyPackages per session, built by mlstest with the
// key the ID-Cert certifies, through boltstore.Store.AddKeyPackages in
// batches (the Service's validation is skipped; the Store's bookkeeping
// of init keys, expiry index and counts is the same). The seeded file is
// kept in -scale-cache and copied for every run.
func runScale(ctx context.Context, c config, tmp string, progress func(string, ...any)) ([]Result, error) {
	cache := c.scaleCache
	if cache == "" {
		cache = filepath.Join(tmp, "scale-cache")
	}
	if err := os.MkdirAll(cache, 0o700); err != nil {
		return nil, err
	}
	bin := c.serverBin
	if bin == "" {
		progress("building examples/homeserver")
		var err error
		if bin, err = buildServer(ctx, tmp); err != nil {
			return nil, err
		}
	}
	sizes := []int{c.baselineKP, c.seedKP}
	seeded := map[int]*seededFile{}
	for _, n := range sizes {
		f, err := ensureSeeded(ctx, cache, n, c.perUser, progress)
		if err != nil {
			return nil, err
		}
		seeded[n] = f
	}
	// Both capped phases make the same number of claims, half the
	// baseline's pool, so their p99s rest on equal samples.
	capN := int64(c.baselineKP / 2)
	var all []Result
	for r := range c.runs {
		var base Result
		for _, n := range sizes {
			progress("scale run %d/%d: %d stored KeyPackages", r+1, c.runs, n)
			rows, err := scaleOnce(ctx, c, bin, tmp, seeded[n], capN, progress)
			if err != nil {
				return nil, err
			}
			if n == c.baselineKP {
				base = rows[0]
			} else {
				rows[0].LimitName = fmt.Sprintf("claim with %d stored", c.baselineKP)
				rows[0].LimitRPS, rows[0].LimitP50, rows[0].LimitP99 = base.RPS, base.P50, base.P99
				rows[0].P99Baseline = base.P99
				if base.RPS > 0 {
					rows[0].Ratio = rows[0].RPS / base.RPS
				}
				if base.P99 > 0 {
					rows[0].P99Ratio = rows[0].P99 / base.P99
				}
			}
			all = append(all, rows...)
		}
	}
	return aggregate(all), nil
}

// seededFile is a bbolt file holding users × perUser KeyPackages.
type seededFile struct {
	path   string
	stored int
	users  []p2core.UserID
}

// ensureSeeded returns the cached seeded file for n KeyPackages, seeding
// it first when it is missing or too old.
func ensureSeeded(ctx context.Context, cache string, n, perUser int, progress func(string, ...any)) (*seededFile, error) {
	name := fmt.Sprintf("seed-%d-%d", n, perUser)
	path := filepath.Join(cache, name+".db")
	idsPath := filepath.Join(cache, name+".users.json")
	if fi, err := os.Stat(path); err == nil && time.Since(fi.ModTime()) < seedMaxAge {
		b, err := os.ReadFile(idsPath)
		var users []p2core.UserID
		if err == nil && json.Unmarshal(b, &users) == nil && len(users) == n/perUser {
			progress("using seeded file %s", path)
			return &seededFile{path: path, stored: len(users) * perUser, users: users}, nil
		}
	}
	progress("seeding %d KeyPackages (%d users × %d) into %s", n, n/perUser, perUser, path)
	t0 := time.Now()
	tmpPath := path + ".tmp"
	os.Remove(tmpPath)
	users, err := seedStore(ctx, tmpPath, n/perUser, perUser, progress)
	if err != nil {
		os.Remove(tmpPath)
		return nil, err
	}
	if err := os.WriteFile(idsPath, mustJSON(users), 0o600); err != nil {
		return nil, err
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return nil, err
	}
	progress("seeded in %v", time.Since(t0).Round(time.Second))
	return &seededFile{path: path, stored: len(users) * perUser, users: users}, nil
}

// seedStore fills a new bbolt file at path with users, each with one
// session, one ID-Cert and perUser KeyPackages, on all cores.
func seedStore(ctx context.Context, path string, users, perUser int, progress func(string, ...any)) ([]p2core.UserID, error) {
	s, err := boltstore.Open(path, &boltstore.Options{NoSync: true})
	if err != nil {
		return nil, err
	}
	defer s.Close()
	svc, err := p2core.NewService(s, p2core.Config{Domain: scaleDomain})
	if err != nil {
		return nil, err
	}
	// The server key is generated as the example server would on its
	// first start, so the ID-Certs verify against it.
	if err := svc.Init(ctx); err != nil {
		return nil, err
	}
	w, _ := rand.Int(rand.Reader, big.NewInt(1024))
	ids := p2core.NewSnowflakes(uint16(w.Int64()), nil)
	out := make([]p2core.UserID, users)
	var done atomic.Int64
	var tag [3]byte
	_, _ = rand.Read(tag[:])
	err = parallel(ctx, users, runtime.GOMAXPROCS(0), func(i int) error {
		uid := ids.Next()
		out[i] = uid
		fid := p2core.FID(fmt.Sprintf("seed%s-%d@%s", hex.EncodeToString(tag[:]), i, scaleDomain))
		_, sess, err := svc.CreateSession(ctx, uid, fid)
		if err != nil {
			return err
		}
		key, err := idcerttest.NewClientKey(string(fid), nil, time.Time{})
		if err != nil {
			return err
		}
		p := p2core.Principal{UserID: uid, FID: fid, SessionID: sess.SessionID}
		if _, err := svc.IssueIDCert(ctx, p, []byte(key.Armored)); err != nil {
			return err
		}
		b := mlstest.NewEd25519(key.Signer)
		b.Identity = []byte(fid)
		now := time.Now().UTC()
		kps := make([]p2core.KeyPackage, perUser)
		for j := range kps {
			raw, err := b.Build()
			if err != nil {
				return err
			}
			kp, err := mls.Decode(raw)
			if err != nil {
				return err
			}
			ref, err := kp.Ref()
			if err != nil {
				return err
			}
			kps[j] = p2core.KeyPackage{UserID: uid, SessionID: sess.SessionID, Ref: ref, CipherSuite: kp.CipherSuite,
				InitKey: kp.InitKey, Data: kp.Raw, NotAfter: kp.NotAfterTime(), UploadedAt: now}
		}
		if err := s.AddKeyPackages(ctx, kps, p2core.DefaultMaxKeyPackagesPerUser, now); err != nil {
			return err
		}
		if d := done.Add(1); d%max(1, int64(users)/10) == 0 {
			progress("  %d/%d users seeded", d, users)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, s.Close()
}

// scaleOnce copies a seeded file into a new data folder, starts the
// example server on it and measures claims at c.scaleClients clients:
// after a warm-up that claims nothing, first capN claims (the comparable
// measurement), then, for the large
// file, a sustained phase of -duration. The server's memory is sampled
// every 50 ms throughout.
func scaleOnce(ctx context.Context, c config, bin, tmp string, f *seededFile, capN int64, progress func(string, ...any)) ([]Result, error) {
	data, err := os.MkdirTemp(tmp, "scale-data-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(data)
	dbPath := filepath.Join(data, "p2kit.db")
	if err := copyFile(f.path, dbPath, c.scaleCold); err != nil {
		return nil, err
	}
	fi, err := os.Stat(dbPath)
	if err != nil {
		return nil, err
	}
	// The previous measurement's server wrote, and its 1 GiB copy was
	// deleted: let the disk settle so that does not stall this one.
	syncAll()
	time.Sleep(time.Second)
	srv, err := startServer(ctx, bin, data, filepath.Join(tmp, "scale-server.log"), c.serverProcs)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	progress("  server started in %v on a %.0f MiB file", srv.startup.Round(time.Millisecond), float64(fi.Size())/(1<<20))

	hc := newHTTPClient(c.scaleClients + 32)
	defer hc.close()
	var tag [3]byte
	_, _ = rand.Read(tag[:])
	e := &env{hc: hc, base: srv.url, prefix: "lg" + hex.EncodeToString(tag[:]), progress: progress, kpCap: c.kpCap}
	if err := e.ensureActors(ctx, c.scaleClients); err != nil {
		return nil, err
	}
	urls := make([]string, len(f.users))
	for i, u := range f.users {
		urls[i] = srv.url + "/p2core/keypackage/" + u.String()
	}
	mrand.Shuffle(len(urls), func(i, j int) { urls[i], urls[j] = urls[j], urls[i] })
	var next atomic.Uint64
	op := func(ctx context.Context, w int) error {
		url := urls[(next.Add(1)-1)%uint64(len(urls))]
		b, err := hc.expect(ctx, 200, "GET", url, e.actors[w].auth, nil)
		if err == nil && (len(b) < 4 || b[1] != '"') {
			err = errPoolDry
		}
		return err
	}
	rss := sampleRSS(srv.watch, 50*time.Millisecond)
	row := func(name string, st stats) Result {
		return Result{Scenario: name, Clients: c.scaleClients, Runs: 1, Stored: f.stored,
			Requests: st.requests, RPS: st.rps(), P50: st.quantile(.5), P95: st.quantile(.95), P99: st.quantile(.99),
			Max: st.quantile(1), Errors: st.errors, ErrorSamples: st.errMsgs, LoadgenCPU: st.selfCPU, ServerCPU: max(0, st.procCPU),
			StartupMS: float64(srv.startup) / float64(time.Millisecond), FileMiB: float64(fi.Size()) / (1 << 20)}
	}
	// Warm up connections and the server with a request that consumes
	// nothing (route 10), so the capped phase measures claims, not 64 new
	// connections.
	keyURL := srv.url + "/p2core/key/server"
	phase{workers: c.scaleClients, duration: max(c.warmup, 300*time.Millisecond), op: func(ctx context.Context, _ int) error {
		_, err := hc.expect(ctx, 200, "GET", keyURL, "", nil)
		return err
	}}.run(ctx)
	capped := phase{workers: c.scaleClients, duration: c.duration + c.warmup, maxRequests: capN, op: op, proc: srv.watch}.run(ctx)
	rows := []Result{row("claim-scale", capped)}
	progress("  %d claims: %.0f/s, p50 %.2f ms, p99 %.2f ms, %d errors", capped.requests, capped.rps(), capped.quantile(.5), capped.quantile(.99), capped.errors)
	if f.stored > c.baselineKP {
		// Sustained load: at most a quarter of what is left, so it never
		// runs dry.
		left := int64(f.stored)/4 - capN
		st := phase{workers: c.scaleClients, warmup: c.warmup, duration: c.duration, maxRequests: left, op: op, proc: srv.watch}.run(ctx)
		rows = append(rows, row("claim-scale-sustained", st))
		progress("  sustained %v: %.0f/s, p50 %.2f ms, p99 %.2f ms, %d errors", c.duration, st.rps(), st.quantile(.5), st.quantile(.99), st.errors)
	}
	m := rss.finish()
	for i := range rows {
		rows[i].RSSMiB, rows[i].RSSAnonMiB, rows[i].RSSFileMiB = float64(m.rss)/1024, float64(m.anon)/1024, float64(m.file)/1024
	}
	progress("  server max VmRSS %.1f MiB (anonymous %.1f, file %.1f)", float64(m.rss)/1024, float64(m.anon)/1024, float64(m.file)/1024)
	return rows, nil
}

// copyFile copies src to a new file dst and syncs it, so the server's
// first commit does not pay for flushing the copy; with cold it then
// evicts the copy from the page cache.
func copyFile(src, dst string, cold bool) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if cold {
		if err := dropCache(out); err != nil {
			out.Close()
			return err
		}
	}
	return out.Close()
}
