package pgstore

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
)

// coalescer gathers concurrent calls of one kind into batches, so that
// the calls of many callers share one database round trip (and, for
// writes, one commit). At most inFlight batches run at once. A call that
// finds a free slot and nobody waiting runs at once, alone, on its own
// goroutine: a lone caller pays nothing for the coalescing. A call that
// arrives while every slot is busy waits; when a batch ends, the calls
// that waited meanwhile (up to max of them, oldest first) become the next
// batch, run on the goroutine of the first of them. So no goroutine is
// started and no caller waits for more than the batch in flight and its
// own.
type coalescer[T any] struct {
	max, inFlight int

	mu      sync.Mutex
	running int
	queue   []*queued[T]

	// gathered counts the calls that ran in batches of more than one.
	gathered atomic.Int64
}

// queued is one call waiting in, or taken into, a batch.
type queued[T any] struct {
	call T
	// lead receives the batch this caller is to run.
	lead chan []*queued[T]
	// done is closed when the batch holding the call has run.
	done chan struct{}
	// taken is set, under the coalescer's lock, when the call leaves the
	// queue for a batch.
	taken bool
}

// join adds call to a batch (do is how callers use it). When the batch is
// to be run by this caller, join returns it (with call first in it) and
// lead; the caller runs it, then calls finish, then release. Else
// join returns when another caller has run the batch holding call (its
// results are in call), or returns ctx's error when ctx ends before call
// was taken into a batch; once taken, a call's batch runs whatever its
// ctx says, and join waits for it when wait is true, or returns ctx's
// error at once when wait is false (a read whose result nobody needs).
func (c *coalescer[T]) join(ctx context.Context, call T, wait bool) (batch []*queued[T], lead bool, err error) {
	q := &queued[T]{call: call}
	c.mu.Lock()
	if c.running < c.inFlight && len(c.queue) == 0 {
		c.running++
		c.mu.Unlock()
		q.taken = true
		return []*queued[T]{q}, true, nil
	}
	q.lead = make(chan []*queued[T], 1)
	q.done = make(chan struct{})
	c.queue = append(c.queue, q)
	c.mu.Unlock()
	select {
	case b := <-q.lead:
		return b, true, nil
	case <-q.done:
		return nil, false, nil
	case <-ctx.Done():
	}
	c.mu.Lock()
	if !q.taken {
		c.queue = slices.DeleteFunc(c.queue, func(x *queued[T]) bool { return x == q })
		c.mu.Unlock()
		return nil, false, ctx.Err()
	}
	c.mu.Unlock()
	select {
	case b := <-q.lead:
		// Chosen to run the next batch: others wait for it.
		return b, true, nil
	default:
	}
	if !wait {
		return nil, false, ctx.Err()
	}
	select {
	case b := <-q.lead:
		return b, true, nil
	case <-q.done:
		return nil, false, nil
	}
}

// do runs call in a batch: it joins one (join) and, when chosen to run
// it, runs the batch's calls with run, ends it (finish) and tells the
// other members (release). Its error is join's: ctx's, for a call that
// was never run or, without wait, whose result nobody waits for.
func (c *coalescer[T]) do(ctx context.Context, call T, wait bool, run func([]T)) error {
	batch, lead, err := c.join(ctx, call, wait)
	if err != nil {
		return err
	}
	if lead {
		calls := make([]T, len(batch))
		for i, q := range batch {
			calls[i] = q.call
		}
		run(calls)
		c.finish()
		release(batch)
	}
	return nil
}

// finish ends the batch the caller ran: the calls that waited meanwhile
// become the next batch, handed to the first of them to run, or, when
// none waited, the batch's slot is freed.
func (c *coalescer[T]) finish() {
	c.mu.Lock()
	if len(c.queue) == 0 {
		c.running--
		c.mu.Unlock()
		return
	}
	n := min(c.max, len(c.queue))
	next := slices.Clone(c.queue[:n])
	clear(c.queue[:n])
	c.queue = c.queue[n:]
	for _, q := range next {
		q.taken = true
	}
	if n > 1 {
		c.gathered.Add(int64(n))
	}
	// Sent under the lock (lead has room for it): a caller that finds
	// its call taken finds its lead too, if it is to run the batch.
	next[0].lead <- next
	c.mu.Unlock()
}

// queued is how many calls wait for the next batch.
func (c *coalescer[T]) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// release tells the members of a batch that was run, other than its
// runner (the first), that their results are in.
func release[T any](batch []*queued[T]) {
	for _, q := range batch[1:] {
		close(q.done)
	}
}
