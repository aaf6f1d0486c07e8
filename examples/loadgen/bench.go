package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// spec is one thing to measure: an operation and, for operations that
// consume pre-seeded items, how to fill their pool.
type spec struct {
	name string
	// setup runs once before calibration (accounts, captured bodies).
	setup func(ctx context.Context) error
	// prepare makes sure at least need unused items are pooled; nil for
	// operations that consume nothing.
	prepare func(ctx context.Context, need int) error
	// calib is the pool size of the calibration run (default 2000).
	calib int
	op    func(ctx context.Context, w int) error
}

// measurer runs specs with the command line's timing.
type measurer struct {
	warmup, duration time.Duration
	progress         func(format string, args ...any)
}

// measure runs sp at the given concurrency. A spec with a pool first runs
// a calibration phase capped at its calibration pool, then fills the pool
// to twice what warm-up and window need at the calibrated rate, and
// caps the measured phase at that pool so it can never run dry.
func (m measurer) measure(ctx context.Context, sp spec, workers int, proc *procWatch, db *dbWatch) (stats, error) {
	if sp.setup != nil {
		if err := sp.setup(ctx); err != nil {
			return stats{}, fmt.Errorf("%s: set-up: %w", sp.name, err)
		}
	}
	var maxReq int64
	if sp.prepare != nil {
		calib := sp.calib
		if calib == 0 {
			calib = 2000
		}
		calib = max(calib, 4*workers)
		if err := sp.prepare(ctx, calib); err != nil {
			return stats{}, fmt.Errorf("%s: seeding: %w", sp.name, err)
		}
		cd := min(max(m.duration/5, 100*time.Millisecond), time.Second)
		st := phase{workers: workers, duration: cd, maxRequests: int64(calib), op: sp.op}.run(ctx)
		if st.requests > 0 && st.errors == st.requests {
			return stats{}, fmt.Errorf("%s: every calibration request failed: %v", sp.name, st.errMsgs)
		}
		rate := st.rps()
		if rate == 0 {
			rate = float64(calib) / cd.Seconds()
		}
		need := int(rate*(m.warmup+m.duration).Seconds()*2) + 4*workers + 100
		if err := sp.prepare(ctx, need); err != nil {
			return stats{}, fmt.Errorf("%s: seeding: %w", sp.name, err)
		}
		maxReq = int64(need)
	}
	if err := ctx.Err(); err != nil {
		return stats{}, err
	}
	m.progress("  measuring %s for %v after %v warm-up", sp.name, m.duration, m.warmup)
	st := phase{workers: workers, warmup: m.warmup, duration: m.duration, maxRequests: maxReq, op: sp.op, proc: proc, db: db}.run(ctx)
	if st.dry {
		m.progress("  note: %s at %d used up its pool after %v of %v; the window is shorter", sp.name, workers, st.elapsed.Round(time.Millisecond), m.duration)
	}
	return st, nil
}

// httpSpec is the HTTP side of a scenario at the given concurrency.
func (e *env) httpSpec(name string, workers int) spec {
	sp := spec{name: name, op: e.opFor(name)}
	setups := []func(ctx context.Context) error{func(ctx context.Context) error { return e.ensureActors(ctx, workers) }}
	switch name {
	case "claim":
		sp.prepare = e.prepareClaim
	case "upload":
		sp.prepare = e.prepareUpload
	case "token":
		setups = append(setups, func(context.Context) error { e.prepareTokens(workers); return nil })
	case "redeem":
		sp.prepare = e.prepareRedeem
	case "read-cert", "read-server-key":
		setups = append(setups, e.prepareReads)
	case "mixed":
		sp.prepare = func(ctx context.Context, need int) error { return e.prepareMixed(ctx, workers, need) }
	}
	sp.setup = func(ctx context.Context) error {
		for _, f := range setups {
			if err := f(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	return sp
}

// limitSpec is the in-process limit of a scenario; done releases it.
func (l *limits) limitSpec(name string, e *env, workers int, dups *dupCounter) (sp spec, done func(), err error) {
	none := func() {}
	switch name {
	case "claim":
		return l.storeClaim(dups)
	case "upload":
		return l.storeAdd()
	case "token":
		return l.storeCreate()
	case "redeem":
		return l.storeRedeem()
	case "idcert":
		return l.issue(e.actors[:workers])
	case "read-cert":
		sp, err = l.staticSpec(limitStaticCert, e.certBody)
		return sp, none, err
	case "read-server-key":
		sp, err = l.staticSpec(limitStaticKey, e.keyBody)
		return sp, none, err
	case "mixed":
		sp, err = l.staticSpec(limitNoop, nil)
		return sp, none, err
	}
	return spec{}, nil, fmt.Errorf("no limit for scenario %q", name)
}

// runScenarios measures every scenario at every concurrency, -runs times,
// and returns the medians.
func runScenarios(ctx context.Context, c config, bases []string, watch *procWatch, pg *pgRun, db *dbWatch, tmp string, progress func(string, ...any)) ([]Result, error) {
	hc := newHTTPClient(max(slices.Max(c.clients), 32))
	defer hc.close()
	var tag [3]byte
	_, _ = rand.Read(tag[:])
	e := &env{hc: hc, base: bases[0], bases: bases, claimed: newDupCounter(), prefix: "lg" + hex.EncodeToString(tag[:]), progress: progress,
		kpCap: c.kpCap, uploadBatch: c.uploadBatch, mixWeights: c.mix, certHistory: c.certHistory, claimUsers: c.claimUsers}
	if err := e.enableTokens(ctx); err != nil {
		return nil, fmt.Errorf("token generation: %w", err)
	}
	lim := newLimits(tmp, pg, hc, c.kpCap, c.uploadBatch, c.trivialInProcess)
	lim.claimUsers = c.claimUsers
	defer func() {
		if e.depth.s != nil {
			e.depth.s.Close()
		}
	}()
	defer lim.close()
	m := measurer{warmup: c.warmup, duration: c.duration, progress: progress}

	var all []Result
	for r := range c.runs {
		for _, name := range c.scenarios {
			for _, n := range c.clients {
				if c.runs > 1 {
					progress("run %d/%d: %s at %d clients", r+1, c.runs, name, n)
				} else {
					progress("%s at %d clients", name, n)
				}
				res, err := runOne(ctx, e, lim, m, name, n, watch, db)
				if err != nil {
					return nil, err
				}
				progress("  HTTP %.0f req/s (p50 %.2f ms, p99 %.2f ms, %d errors); %s %.0f/s (p50 %.3f ms); ratio %.2f; writes/op %.1f KiB in %.1f calls (server), %.1f KiB in %.1f calls (limit)",
					res.RPS, res.P50, res.P99, res.Errors, res.LimitName, res.LimitRPS, res.LimitP50, res.Ratio,
					res.ServerWriteKiB, res.ServerWriteCalls, res.LimitWriteKiB, res.LimitWriteCalls)
				if res.BareRPS > 0 {
					progress("  bare statement loop %.0f/s (p50 %.3f ms); HTTP/bare %.2f", res.BareRPS, res.BareP50, res.BareRatio)
				}
				if res.CPUPerReq > 0 {
					progress("  CPU per request: server+database %.3f ms (database %.2f cores); limit: loadgen+database %.3f ms per op",
						res.CPUPerReq, res.DBCPU, res.LimitCPUPerOp)
				}
				if res.Scenario == "claim" {
					progress("  duplicates: HTTP %d, store limit %d, bare %d", res.Duplicates, res.LimitDuplicates, res.BareDuplicates)
				}
				for _, msg := range res.ErrorSamples {
					progress("  error: %s", msg)
				}
				all = append(all, res)
			}
		}
		for _, n := range c.clients {
			for _, d := range c.depths {
				progress("run %d/%d: claims from sessions of %d KeyPackages at %d clients", r+1, c.runs, d, n)
				res, err := runDepth(ctx, e, pg, m, d, n, watch, db)
				if err != nil {
					return nil, err
				}
				progress("  HTTP %.0f req/s (p50 %.2f ms, p99 %.2f ms, %d errors); CPU per request server+database %.3f ms; duplicates so far %d",
					res.RPS, res.P50, res.P99, res.Errors, res.CPUPerReq, res.Duplicates)
				all = append(all, res)
			}
		}
	}
	return aggregate(all), nil
}

// runOne measures one scenario at one concurrency: HTTP first, then its
// limit (and, for claim, the bare statement loop with -store postgres and
// the do-nothing handler for the Dendrite comparison), with the server
// idle during the in-process phases.
func runOne(ctx context.Context, e *env, lim *limits, m measurer, name string, n int, watch *procWatch, db *dbWatch) (Result, error) {
	st, err := m.measure(ctx, e.httpSpec(name, n), n, watch, db)
	if err != nil {
		return Result{}, err
	}
	limitDups := newDupCounter()
	lsp, done, err := lim.limitSpec(name, e, n, limitDups)
	if err != nil {
		return Result{}, err
	}
	lst, err := m.measure(ctx, lsp, n, nil, db)
	done()
	if err != nil {
		return Result{}, fmt.Errorf("limit of %s: %w", name, err)
	}
	res := Result{
		Scenario: name, Clients: n, Runs: 1, Servers: len(e.bases),
		Requests: st.requests, RPS: st.rps(), P50: st.quantile(.50), P95: st.quantile(.95), P99: st.quantile(.99),
		Max: st.quantile(1), Errors: st.errors, ErrorSamples: st.errMsgs,
		LimitName: lsp.name, LimitRPS: lst.rps(), LimitP50: lst.quantile(.50), LimitP99: lst.quantile(.99),
		LimitErrors: lst.errors,
		LoadgenCPU:  st.selfCPU, LimitCPU: lst.selfCPU,
	}
	if st.procCPU >= 0 {
		res.ServerCPU = st.procCPU
	}
	res.ServerWriteKiB, res.ServerWriteCalls = st.writesPerOp(st.procIO)
	res.LimitWriteKiB, res.LimitWriteCalls = lst.writesPerOp(lst.selfIO)
	if res.LimitRPS > 0 {
		res.Ratio = res.RPS / res.LimitRPS
	}
	res.dbCosts(st, lst)
	for _, msg := range lst.errMsgs {
		res.ErrorSamples = append(res.ErrorSamples, "limit: "+msg)
	}
	if name == "claim" {
		res.Duplicates, res.LimitDuplicates = e.claimed.count(), limitDups.count()
		if lim.pg != nil {
			bareDups := newDupCounter()
			bsp, done, err := lim.bareClaim(ctx, bareDups)
			if err != nil {
				return Result{}, err
			}
			bst, err := m.measure(ctx, bsp, n, nil, db)
			done()
			if err != nil {
				return Result{}, fmt.Errorf("bare claim loop: %w", err)
			}
			res.BareRPS, res.BareP50, res.BareP99, res.BareErrors = bst.rps(), bst.quantile(.5), bst.quantile(.99), bst.errors
			res.BareDuplicates = bareDups.count()
			if res.BareRPS > 0 {
				res.BareRatio = res.RPS / res.BareRPS
			}
			if bst.dbCPU >= 0 && bst.requests > 0 {
				res.BareCPUPerOp = (bst.selfCPU + bst.dbCPU) * bst.elapsed.Seconds() * 1000 / float64(bst.requests)
			}
			for _, msg := range bst.errMsgs {
				res.ErrorSamples = append(res.ErrorSamples, "bare: "+msg)
			}
		}
		nsp, err := lim.staticSpec(limitNoop, nil)
		if err != nil {
			return Result{}, err
		}
		nst, err := m.measure(ctx, nsp, n, nil, nil)
		if err != nil {
			return Result{}, err
		}
		res.NoopRPS = nst.rps()
	}
	return res, nil
}

// dbCosts fills in what the database's processes and the disks did per
// request (HTTP window) and per operation (limit window), when known.
func (r *Result) dbCosts(st, lst stats) {
	perReq := func(s stats, cores float64) float64 {
		if s.requests == 0 {
			return 0
		}
		return cores * s.elapsed.Seconds() * 1000 / float64(s.requests)
	}
	kib := func(s stats, b int64) float64 {
		if s.requests == 0 || b < 0 {
			return 0
		}
		return float64(b) / 1024 / float64(s.requests)
	}
	if st.dbCPU >= 0 {
		r.DBCPU = st.dbCPU
		r.CPUPerReq = perReq(st, max(0, st.procCPU)+st.dbCPU)
		r.DBWriteKiB = kib(st, st.dbWrite)
	}
	if lst.dbCPU >= 0 {
		r.LimitDBCPU = lst.dbCPU
		r.LimitCPUPerOp = perReq(lst, lst.selfCPU+lst.dbCPU)
	}
	r.DiskWriteKiB = kib(st, st.disk)
}
