package main

import (
	"hash/maphash"
	"sync"
)

// dupCounter counts items handed out more than once: every claimed
// KeyPackage (its bytes or init key) is added, and an item added again is
// a duplicate. One counter spans every phase of a run against one store,
// so a KeyPackage handed out in two phases, or by two servers, counts.
type dupCounter struct {
	seed maphash.Seed
	mu   sync.Mutex
	seen map[uint64]struct{}
	dups int
}

func newDupCounter() *dupCounter {
	return &dupCounter{seed: maphash.MakeSeed(), seen: map[uint64]struct{}{}}
}

// add records one handed-out item. A 64-bit hash stands for it: with a
// few million items the chance of any false duplicate is below 1e-6.
func (d *dupCounter) add(item string) {
	h := maphash.String(d.seed, item)
	d.mu.Lock()
	if _, ok := d.seen[h]; ok {
		d.dups++
	} else {
		d.seen[h] = struct{}{}
	}
	d.mu.Unlock()
}

// count returns the duplicates so far.
func (d *dupCounter) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dups
}
