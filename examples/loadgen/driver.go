package main

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// phase is one timed run of an operation from a fixed number of
// concurrent workers.
type phase struct {
	// workers is the number of goroutines calling op in a loop.
	workers int
	// warmup runs op without recording it, so connections, caches and
	// the scheduler settle before measuring.
	warmup time.Duration
	// duration is the measured window after warmup.
	duration time.Duration
	// maxRequests, when positive, stops the phase once that many requests
	// (warm-up included) have started, so a pre-seeded pool cannot run
	// dry.
	maxRequests int64
	// op makes one request for worker w (0 <= w < workers). It must be
	// safe for concurrent calls with different w.
	op func(ctx context.Context, w int) error
	// proc, when not nil, is the server process whose CPU time is
	// measured over the window.
	proc *procWatch
	// db, when not nil, is the database whose processes' CPU time and
	// writes are measured over the window.
	db *dbWatch
}

// stats is what a phase measured over its window.
type stats struct {
	requests int           // completed requests started in the window
	errors   int           // of those, how many failed
	elapsed  time.Duration // from the window's start to the last completion
	lat      []time.Duration
	errMsgs  []string // a few distinct error messages
	selfCPU  float64  // CPU of this process over the window, in cores
	procCPU  float64  // CPU of proc over the window, in cores (-1: unknown)
	selfIO   ioDelta  // storage writes of this process over the window
	procIO   ioDelta  // storage writes of proc over the window (-1: unknown)
	dry      bool     // maxRequests was reached before the window ended
	dbCPU    float64  // CPU of the database's processes, in cores (-1: unknown)
	dbWrite  int64    // write_bytes of the database's processes (-1: unknown)
	disk     int64    // bytes written to the disks by anyone (-1: unknown)
}

// writesPerOp returns storage KiB written and write calls per request.
func (s stats) writesPerOp(d ioDelta) (kib, calls float64) {
	if s.requests == 0 || d.bytes < 0 {
		return 0, 0
	}
	return float64(d.bytes) / 1024 / float64(s.requests), float64(d.calls) / float64(s.requests)
}

func (s stats) rps() float64 {
	if s.elapsed <= 0 {
		return 0
	}
	return float64(s.requests) / s.elapsed.Seconds()
}

// quantile returns the q-quantile (0 < q <= 1) of the sorted latencies in
// milliseconds, by the nearest-rank method.
func (s stats) quantile(q float64) float64 {
	if len(s.lat) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(s.lat)))) - 1
	i = max(0, min(i, len(s.lat)-1))
	return float64(s.lat[i]) / float64(time.Millisecond)
}

// run executes the phase and returns its statistics. Each worker records
// the requests it started inside the measured window in a slice of its
// own; the slices are merged and sorted at the end, so recording costs
// one append per request.
func (p phase) run(ctx context.Context) stats {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	windowStart := start.Add(p.warmup)
	end := windowStart.Add(p.duration)

	type workerResult struct {
		lat    []time.Duration
		errs   int
		msgs   []string
		last   time.Time
		capped bool
	}
	results := make([]workerResult, p.workers)
	var started atomic.Int64
	var cpu0 cpuSample
	var cpuOnce sync.Once
	takeCPU := func() { cpuOnce.Do(func() { cpu0 = sampleCPU(p.proc, p.db) }) }
	var wg sync.WaitGroup
	for w := range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[w]
			r.lat = make([]time.Duration, 0, 1024)
			for {
				t0 := time.Now()
				if !t0.Before(end) || ctx.Err() != nil {
					return
				}
				if p.maxRequests > 0 && started.Add(1) > p.maxRequests {
					r.capped = true
					return
				}
				inWindow := !t0.Before(windowStart)
				if inWindow {
					takeCPU()
				}
				err := p.op(ctx, w)
				t1 := time.Now()
				if !inWindow {
					continue
				}
				r.lat = append(r.lat, t1.Sub(t0))
				r.last = t1
				if err != nil {
					r.errs++
					if len(r.msgs) < 3 && !slices.Contains(r.msgs, err.Error()) {
						r.msgs = append(r.msgs, err.Error())
					}
				}
			}
		}()
	}
	// The CPU sample is taken when the window opens even if no request
	// starts in it (a very slow operation).
	timer := time.AfterFunc(time.Until(windowStart), takeCPU)
	wg.Wait()
	timer.Stop()
	takeCPU()
	cpu1 := sampleCPU(p.proc, p.db)

	var st stats
	var last time.Time
	for _, r := range results {
		st.lat = append(st.lat, r.lat...)
		st.errors += r.errs
		for _, m := range r.msgs {
			if len(st.errMsgs) < 3 && !slices.Contains(st.errMsgs, m) {
				st.errMsgs = append(st.errMsgs, m)
			}
		}
		if r.last.After(last) {
			last = r.last
		}
		st.dry = st.dry || r.capped
	}
	st.requests = len(st.lat)
	if st.requests > 0 {
		st.elapsed = last.Sub(windowStart)
	}
	slices.Sort(st.lat)
	st.selfCPU, st.procCPU = cpu1.since(cpu0)
	st.selfIO, st.procIO = cpu1.ioSince(cpu0)
	st.dbCPU, st.dbWrite, st.disk = cpu1.dbSince(cpu0)
	return st
}
