package p2core

import (
	"sync"
	"time"
)

// snowflakeEpoch is the epoch of p2kit Snowflakes: 2024-01-01T00:00:00Z.
var snowflakeEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// Snowflakes generates unique user IDs: 41 bits of milliseconds since
// 2024-01-01, 10 bits of worker number and 12 bits of sequence. IDs from
// one generator are strictly increasing; generators with different worker
// numbers never collide. It is safe for concurrent use.
type Snowflakes struct {
	mu     sync.Mutex
	worker uint64
	now    func() time.Time
	last   uint64
}

// NewSnowflakes returns a generator for worker (only the low 10 bits are
// used) reading the clock from now (nil: time.Now).
func NewSnowflakes(worker uint16, now func() time.Time) *Snowflakes {
	if now == nil {
		now = time.Now
	}
	return &Snowflakes{worker: uint64(worker) & 0x3ff, now: now}
}

// Next returns a new ID, greater than every ID this generator returned.
func (g *Snowflakes) Next() UserID {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := uint64(g.now().Sub(snowflakeEpoch).Milliseconds())
	id := ms<<22 | g.worker<<12
	if id <= g.last {
		// Same millisecond, or the clock went back: count on from the last
		// ID, into the next millisecond when the sequence wraps.
		base, seq := g.last>>22, g.last&0xfff+1
		if seq > 0xfff {
			base, seq = base+1, 0
		}
		id = base<<22 | g.worker<<12 | seq
	}
	if id == 0 {
		id = 1
	}
	g.last = id
	return UserID(id)
}
