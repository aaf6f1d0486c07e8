// Package boltstore is the embedded p2core.Store: one bbolt file, no
// server to run.
//
// Every domain operation is one bbolt transaction, and byte slices are
// copied out before it ends. Times are kept to the microsecond.
//
// Writes are group-committed: while one commit is in flight, further
// writes queue up and then share the next commit (one fsync for up to 1,000
// operations); a lone writer commits at once, with no timer. A refusal
// (ErrConflict, ErrTokenInvalid, ...) goes to its caller alone while the
// other operations of the batch commit; any other failure rolls the batch
// back and runs each of its operations again in a transaction of its own.
//
// Keys are laid out so that the hot paths touch a handful of pages however
// much is stored: a claim reads the head of the session's queue and
// rewrites only the session's small header (the handed-out record stays,
// spent, until the session's next upload deletes it with the others), so
// the claims of one commit share a few header pages; a redemption is one
// key lookup and two deletes. The layout is described in codec.go.
//
// The list of free pages is not written at each commit (bbolt's
// NoFreelistSync): sorting and writing it was the largest part of the CPU
// cost of a small commit. Close writes it once; after a crash, Open
// rebuilds it by walking the file instead, which takes about a second for
// a file holding a million KeyPackages and maps the whole file into
// memory.
//
// A Store holds an exclusive lock on its file: a second Open of the same
// file, in this process or another, fails after Options.Timeout.
package boltstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/p2kit/p2kit/p2core"
)

// Options configures Open. The zero value (or a nil *Options) gives the
// documented defaults.
type Options struct {
	// Timeout is how long Open waits for another holder of the file lock.
	// Zero means 1s; a negative value means do not wait.
	Timeout time.Duration
	// NoSync skips fsync after each commit. Faster, but a machine crash
	// can lose the last commits or corrupt the file. For tests and
	// benchmarks.
	NoSync bool
	// FileMode is the permission of a newly created file. Zero means 0600.
	FileMode os.FileMode

	// noGroupCommit makes every write its own commit, for the tests and
	// benchmarks that compare it with group commit (export_test.go).
	noGroupCommit bool
}

// maxBatch bounds how many queued writes share one commit.
const maxBatch = 1000

// A migration converts a file from the format before version to
// version, in one transaction that also records the new version. Open
// runs, in order, every migration a file needs and refuses a file of a
// version it does not know.
type migration struct {
	version uint64
	name    string
	step    func(tx *bolt.Tx) error
}

// migrations lists the conversions after format 1, the layout of the
// first release (codec.go). There are none yet; a later layout adds one
// (tested in migrate_internal_test.go on a synthetic version 2), never
// edits the layout of a released version.
var migrations []migration

// Store is a p2core.Store kept in one bbolt file. It is safe for concurrent
// use; every method is atomic.
type Store struct {
	db     *bolt.DB
	opts   Options
	closed atomic.Bool

	mu      sync.Mutex
	leading bool  // a goroutine is running a commit
	queue   []*op // writes waiting for the next commit
}

// Open opens (creating it if needed) the store in the file at path.
func Open(path string, opts *Options) (*Store, error) {
	return open(path, opts, migrations)
}

// open is Open with the migrations to apply.
func open(path string, opts *Options, history []migration) (*Store, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Timeout == 0 {
		o.Timeout = time.Second
	}
	if o.FileMode == 0 {
		o.FileMode = 0o600
	}
	db, err := bolt.Open(path, o.FileMode, &bolt.Options{
		Timeout: o.Timeout,
		NoSync:  o.NoSync,
		// The free-page list is rebuilt on Open instead of written at
		// every commit, where sorting it cost more than the claim itself.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("boltstore: open %s: file is locked by another Store: %w", path, err)
		}
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	if err := migrate(db, history); err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	return &Store{db: db, opts: o}, nil
}

// Close releases the file. It waits for running transactions; afterwards
// every method returns p2core.ErrClosed. It is safe to call twice.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	// Write the free-page list once, so that the next Open reads it
	// instead of walking every page of the file, which takes seconds and
	// brings the whole file into memory. The field is set under the
	// writer lock that commits read it under; a failure only means the
	// next Open walks the file.
	_ = s.db.Update(func(tx *bolt.Tx) error {
		tx.DB().NoFreelistSync = false
		return nil
	})
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("boltstore: close: %w", err)
	}
	return nil
}

// ready checks that the store is open and ctx is live.
func (s *Store) ready(ctx context.Context) error {
	if s.closed.Load() {
		return p2core.ErrClosed
	}
	return ctx.Err()
}

// dbErr translates bbolt's errors at the boundary.
func dbErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return fmt.Errorf("boltstore: %w", p2core.ErrClosed)
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		// A full disk (or quota) passes once space is freed; the commit
		// was rolled back.
		return fmt.Errorf("boltstore: %w: %w", p2core.ErrUnavailable, err)
	}
	return err
}

// view runs fn in a read-only transaction.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	return dbErr(s.db.View(fn))
}

// errNoChange is returned by an update function that succeeded without
// writing anything; the caller sees nil, and a batch made only of such
// operations is rolled back instead of committed (no fsync).
var errNoChange = errors.New("boltstore: no change")

// isDomain reports whether err is a refusal an update function returns
// before its first write, so its transaction may still commit the work of
// other operations.
func isDomain(err error) bool {
	return errors.Is(err, p2core.ErrNotFound) ||
		errors.Is(err, p2core.ErrConflict) ||
		errors.Is(err, p2core.ErrTokenInvalid) ||
		errors.Is(err, p2core.ErrDuplicateKeyPackage) ||
		errors.Is(err, p2core.ErrTooManyKeyPackages)
}

// op is one queued write.
type op struct {
	ctx  context.Context
	fn   func(tx *bolt.Tx) error
	wake chan wakeup // buffered: the sender never blocks
}

// wakeup tells a queued op what happened to it.
type wakeup struct {
	err   error
	lead  []*op // run this batch (it starts with the receiving op)
	alone bool  // the shared transaction failed: run in a transaction of its own
}

// update runs fn in a write transaction that commits only if ctx is still
// live. fn must make every check before its first write and return domain
// errors (see isDomain) only before writing, so that it can share a
// transaction with other operations; it may run more than once, so it must
// touch only the transaction and its own locals, and reset its results at
// the start.
//
// Group commit: if no commit is in flight, fn runs at once in its own
// transaction. Otherwise it queues (a caller whose ctx ends while its op
// still waits in the queue gets ctx.Err() at once, and the op never
// runs); when the commit in flight ends, the
// first queued op becomes the leader and runs up to maxBatch queued ops in
// one transaction, then hands over to the next queued op. There is no
// timer. If any fn fails with a non-domain error or panics, or the commit
// fails, the shared transaction is rolled back and every op of the batch
// runs again alone.
func (s *Store) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	if s.opts.noGroupCommit {
		return s.updateAlone(ctx, fn)
	}
	o := &op{ctx: ctx, fn: fn, wake: make(chan wakeup, 1)}
	s.mu.Lock()
	if s.leading {
		s.queue = append(s.queue, o)
		s.mu.Unlock()
		var w wakeup
		select {
		case w = <-o.wake:
		case <-ctx.Done():
			if s.dequeue(o) {
				return ctx.Err() // never handed to a leader: nothing ran
			}
			// A leader has it (or it leads next): it must learn the
			// outcome, which a cancelled ctx keeps from committing.
			w = <-o.wake
		}
		switch {
		case w.lead != nil:
			return s.lead(w.lead)
		case w.alone:
			return s.updateAlone(ctx, fn)
		}
		return w.err
	}
	s.leading = true
	s.mu.Unlock()
	return s.lead([]*op{o})
}

// dequeue removes o from the queue if no leader has taken it yet, and
// reports whether it did.
func (s *Store) dequeue(o *op) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, q := range s.queue {
		if q == o {
			s.queue = append(s.queue[:i:i], s.queue[i+1:]...)
			return true
		}
	}
	return false
}

// lead runs batch (whose first op belongs to the calling goroutine) in one
// transaction, hands the lead on, tells the other ops their results and
// returns the result of its own op.
func (s *Store) lead(batch []*op) error {
	errs, failed := s.runBatch(batch)
	s.handOff()
	if failed {
		for _, o := range batch[1:] {
			o.wake <- wakeup{alone: true}
		}
		return s.updateAlone(batch[0].ctx, batch[0].fn)
	}
	for i, o := range batch[1:] {
		o.wake <- wakeup{err: errs[i+1]}
	}
	return errs[0]
}

// handOff gives the next queued ops to the first of them to run, or marks
// that no commit is in flight.
func (s *Store) handOff() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		s.leading = false
		return
	}
	n := min(len(s.queue), maxBatch)
	next := s.queue[:n:n]
	if n == len(s.queue) {
		s.queue = nil
	} else {
		s.queue = append([]*op(nil), s.queue[n:]...)
	}
	next[0].wake <- wakeup{lead: next}
}

// runBatch runs the ops of batch in one transaction. On success it returns
// each op's result (nil or a domain error). failed means the transaction
// was rolled back and no op's writes were kept.
func (s *Store) runBatch(batch []*op) (errs []error, failed bool) {
	errs = make([]error, len(batch))
	tx, err := s.db.Begin(true)
	if err != nil {
		err = dbErr(err)
		for i := range errs {
			errs[i] = err
		}
		return errs, false
	}
	committed := false
	defer func() {
		if r := recover(); r != nil {
			failed = true
		}
		if !committed {
			_ = tx.Rollback()
		}
	}()
	changed := false
	for i, o := range batch {
		if err := o.ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		switch err := o.fn(tx); {
		case err == nil:
			changed = true
		case errors.Is(err, errNoChange):
		case isDomain(err):
			errs[i] = err
		default:
			return errs, true
		}
	}
	// A cancelled context never commits: if one ended while the batch
	// ran, every op runs again alone and checks its own.
	for i, o := range batch {
		if errs[i] == nil && o.ctx.Err() != nil {
			return errs, true
		}
	}
	if !changed {
		return errs, false
	}
	committed = true // Commit rolls back itself on failure
	if err := tx.Commit(); err != nil {
		return errs, true
	}
	return errs, false
}

// updateAlone runs fn in a transaction of its own, committed only if ctx
// is still live.
func (s *Store) updateAlone(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := s.ready(ctx); err != nil {
		return err
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		return dbErr(err)
	}
	defer func() { _ = tx.Rollback() }() // a no-op after Commit
	switch err := fn(tx); {
	case errors.Is(err, errNoChange):
		return nil
	case err != nil:
		return dbErr(err) // growing the file can hit a full disk
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return dbErr(tx.Commit())
}
