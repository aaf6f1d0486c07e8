package pgstore

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// call is a test call: the batches that ran it.
type call struct {
	id   int
	runs atomic.Int32
}

// Every call is run exactly once, by a batch of at most max calls, with
// at most inFlight batches running at once, and calls are gathered when
// batches are busy.
func TestCoalescerRunsEveryCallOnceWithinItsBounds(t *testing.T) {
	const (
		callers  = 64
		rounds   = 200
		max      = 8
		inFlight = 2
	)
	co := &coalescer[*call]{max: max, inFlight: inFlight}
	var (
		running, peak, gathered atomic.Int32
		mu                      sync.Mutex
		oversize                []int
	)
	fn := func(b []*call) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		if len(b) > max {
			mu.Lock()
			oversize = append(oversize, len(b))
			mu.Unlock()
		}
		if len(b) > 1 {
			gathered.Add(int32(len(b)))
		}
		for _, q := range b {
			q.runs.Add(1)
		}
		// Let the other callers run (on one P too): they find the
		// slots busy and queue, as callers do while a batch waits for
		// the database.
		runtime.Gosched()
		running.Add(-1)
	}
	calls := make([]*call, callers*rounds)
	var wg sync.WaitGroup
	for w := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				c := &call{id: w*rounds + r}
				calls[c.id] = c
				if err := co.do(t.Context(), c, true, fn); err != nil {
					t.Errorf("call %d: %v", c.id, err)
					return
				}
				if got := c.runs.Load(); got != 1 {
					t.Errorf("call %d returned after %d runs, want 1", c.id, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, c := range calls {
		if c != nil && c.runs.Load() != 1 {
			t.Fatalf("call %d ran %d times", c.id, c.runs.Load())
		}
	}
	if len(oversize) > 0 {
		t.Fatalf("batches of %v calls, max %d", oversize, max)
	}
	if p := peak.Load(); p > inFlight {
		t.Fatalf("%d batches ran at once, want at most %d", p, inFlight)
	}
	if gathered.Load() == 0 {
		t.Fatalf("no call of %d was gathered with others", callers*rounds)
	}
	if co.running != 0 || len(co.queue) != 0 {
		t.Fatalf("after the calls: %d batches running, %d calls queued", co.running, len(co.queue))
	}
}

// A call whose ctx ends while it waits for a batch leaves the queue and is
// never run; the calls behind it still run.
func TestCoalescerCallCancelledBeforeItsBatchIsNeverRun(t *testing.T) {
	co := &coalescer[*call]{max: 8, inFlight: 1}
	// The first call holds the only slot until unblock is closed.
	unblock, inside := make(chan struct{}), make(chan struct{})
	first := &call{id: 0}
	firstDone := make(chan error, 1)
	go func() {
		firstDone <- co.do(t.Context(), first, true, func(b []*call) {
			close(inside)
			<-unblock
			for _, q := range b {
				q.runs.Add(1)
			}
		})
	}()
	<-inside
	cancelled := &call{id: 1}
	ctx, cancel := context.WithCancel(t.Context())
	cancelledDone := make(chan error, 1)
	go func() {
		cancelledDone <- co.do(ctx, cancelled, true, func(b []*call) {
			for _, q := range b {
				q.runs.Add(1)
			}
		})
	}()
	waitQueued(t, co, 1)
	later := &call{id: 2}
	laterDone := make(chan error, 1)
	go func() {
		laterDone <- co.do(t.Context(), later, true, func(b []*call) {
			for _, q := range b {
				q.runs.Add(1)
			}
		})
	}()
	waitQueued(t, co, 2)
	cancel()
	if err := <-cancelledDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v, want context.Canceled", err)
	}
	close(unblock)
	for _, ch := range []chan error{firstDone, laterDone} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if first.runs.Load() != 1 || later.runs.Load() != 1 || cancelled.runs.Load() != 0 {
		t.Fatalf("runs: first %d, cancelled %d, later %d; want 1, 0, 1", first.runs.Load(), cancelled.runs.Load(), later.runs.Load())
	}
}

// A call taken into a batch that its ctx ends in: with wait it returns
// once the batch has run it; without, at once.
func TestCoalescerTakenCallWaitsForItsBatchOnlyWhenAsked(t *testing.T) {
	for _, wait := range []bool{true, false} {
		co := &coalescer[*call]{max: 8, inFlight: 1}
		unblock, inside := make(chan struct{}), make(chan struct{})
		leader := &call{id: 0}
		go func() {
			_ = co.do(t.Context(), leader, true, func([]*call) { close(inside); <-unblock })
		}()
		<-inside
		// Two calls queue behind the leader; the first of them will run
		// the second's batch.
		runner, member := &call{id: 1}, &call{id: 2}
		batchInside, batchUnblock := make(chan struct{}), make(chan struct{})
		fn := func(b []*call) {
			close(batchInside)
			<-batchUnblock
			for _, q := range b {
				q.runs.Add(1)
			}
		}
		runnerDone := make(chan error, 1)
		go func() { runnerDone <- co.do(t.Context(), runner, true, fn) }()
		waitQueued(t, co, 1)
		ctx, cancel := context.WithCancel(t.Context())
		memberDone := make(chan error, 1)
		go func() { memberDone <- co.do(ctx, member, wait, fn) }()
		waitQueued(t, co, 2)
		close(unblock) // the leader's batch ends; runner takes both
		<-batchInside
		cancel()
		if !wait {
			if err := <-memberDone; !errors.Is(err, context.Canceled) {
				t.Fatalf("wait=false: member taken into a running batch returned %v, want context.Canceled at once", err)
			}
		}
		close(batchUnblock)
		if err := <-runnerDone; err != nil {
			t.Fatal(err)
		}
		if wait {
			if err := <-memberDone; err != nil {
				t.Fatalf("wait=true: member returned %v, want its batch's result", err)
			}
		}
		if member.runs.Load() != 1 || runner.runs.Load() != 1 {
			t.Fatalf("wait=%v: runner ran %d times, member %d; want 1 each", wait, runner.runs.Load(), member.runs.Load())
		}
	}
}

// waitQueued waits until n calls are queued.
func waitQueued(t *testing.T, co *coalescer[*call], n int) {
	t.Helper()
	for {
		got := co.queued()
		if got >= n {
			return
		}
		select {
		case <-t.Context().Done():
			t.Fatalf("%d calls queued, want %d", got, n)
		default:
		}
		runtime.Gosched()
	}
}
