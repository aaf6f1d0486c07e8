package main

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"
)

// Log sampling: each kind of line (level and message) may be written
// logBurst times at once and logPerSecond times a second after that; the
// lines over that are dropped and counted, and the next line of the kind
// that is written carries the count as "suppressed". Kinds are counted
// apart, so a flood of one kind of line (failed anonymous requests) never
// pushes out another.
const (
	logPerSecond = 10.0
	logBurst     = 100
	// logMaxKinds bounds the kinds tracked; messages are constants in the
	// code, so this is far above what is ever reached.
	logMaxKinds = 1024
)

// sampler is a slog.Handler that samples each kind of line before next.
type sampler struct {
	next  slog.Handler
	state *sampleState
}

type sampleState struct {
	now   func() time.Time
	mu    sync.Mutex
	kinds map[string]*sampleBucket
}

type sampleBucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

// newSampler returns next behind a sampler reading time from now (nil:
// time.Now).
func newSampler(next slog.Handler, now func() time.Time) *sampler {
	if now == nil {
		now = time.Now
	}
	return &sampler{next: next, state: &sampleState{now: now, kinds: map[string]*sampleBucket{}}}
}

// allow reports whether a line of kind may be written now, and how many of
// its kind were dropped since the last one written.
func (st *sampleState) allow(kind string) (bool, int) {
	now := st.now()
	st.mu.Lock()
	defer st.mu.Unlock()
	b := st.kinds[kind]
	if b == nil {
		if len(st.kinds) >= logMaxKinds {
			return true, 0
		}
		b = &sampleBucket{tokens: logBurst, last: now}
		st.kinds[kind] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens = math.Min(logBurst, b.tokens+el*logPerSecond)
		b.last = now
	}
	if b.tokens < 1 {
		b.suppressed++
		return false, 0
	}
	b.tokens--
	n := b.suppressed
	b.suppressed = 0
	return true, n
}

func (s *sampler) Enabled(ctx context.Context, l slog.Level) bool { return s.next.Enabled(ctx, l) }

func (s *sampler) Handle(ctx context.Context, r slog.Record) error {
	ok, suppressed := s.state.allow(r.Level.String() + " " + r.Message)
	if !ok {
		return nil
	}
	if suppressed > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", suppressed))
	}
	return s.next.Handle(ctx, r)
}

func (s *sampler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &sampler{next: s.next.WithAttrs(attrs), state: s.state}
}

func (s *sampler) WithGroup(name string) slog.Handler {
	return &sampler{next: s.next.WithGroup(name), state: s.state}
}
