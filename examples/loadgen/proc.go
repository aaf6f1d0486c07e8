package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// procWatch reads the CPU time and memory of another process from
// /proc (Linux). Every reader fails soft: on other systems, or when the
// process is unknown, the numbers are reported as unknown.
type procWatch struct {
	pid int
	// more are further processes whose CPU and writes are added to pid's
	// (the other example servers of a multi-instance run).
	more []int
}

// pids returns every watched process.
func (p *procWatch) pids() []int {
	if p == nil || p.pid <= 0 {
		return nil
	}
	return append([]int{p.pid}, p.more...)
}

// userHZ is the unit of utime and stime in /proc/PID/stat. It is 100 on
// every Linux architecture Go supports (sysconf(_SC_CLK_TCK)).
const userHZ = 100

// cpuTime returns the user+system CPU time the processes have used.
func (p *procWatch) cpuTime() (time.Duration, bool) {
	pids := p.pids()
	var total time.Duration
	for _, pid := range pids {
		st, ok := readStat(pid)
		if !ok {
			return 0, false
		}
		total += st.cpu
	}
	return total, len(pids) > 0
}

// ioCounters returns the bytes the process caused to be written to
// storage (write_bytes) and its write system calls (syscw), from
// /proc/PID/io; pid 0 means this process.
func ioCounters(pid int) (bytes, calls int64, ok bool) {
	path := "/proc/self/io"
	if pid > 0 {
		path = fmt.Sprintf("/proc/%d/io", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "write_bytes":
			bytes, found = n, found+1
		case "syscw":
			calls, found = n, found+1
		}
	}
	return bytes, calls, found == 2
}

// memory is a snapshot of /proc/PID/status, in KiB.
type memory struct {
	rss, hwm, anon, file int64
}

// memory reads VmRSS (resident set), VmHWM (its peak), RssAnon and
// RssFile (bbolt's memory-mapped file pages count in the latter).
func (p *procWatch) memory() (memory, bool) {
	if p == nil || p.pid <= 0 {
		return memory{}, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return memory{}, false
	}
	var m memory
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "VmRSS":
			m.rss, found = v, true
		case "VmHWM":
			m.hwm = v
		case "RssAnon":
			m.anon = v
		case "RssFile":
			m.file = v
		}
	}
	return m, found
}

// rssSampler polls a process's memory until stopped and keeps the largest
// VmRSS seen (with the split of that sample).
type rssSampler struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	max  memory
}

func sampleRSS(p *procWatch, every time.Duration) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if m, ok := p.memory(); ok {
				s.mu.Lock()
				if m.rss > s.max.rss {
					s.max = m
				}
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// finish stops sampling and returns the largest sample.
func (s *rssSampler) finish() memory {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max
}

// cpuSample is the CPU time and storage writes of this process and of a
// watched process at one instant.
type cpuSample struct {
	at     time.Time
	self   time.Duration
	proc   time.Duration
	procOK bool

	selfIO, procIO ioSample

	db     dbSample // the database's processes (-store postgres)
	disk   int64    // bytes written to the disks (/proc/diskstats)
	diskOK bool
}

// ioSample is a reading of /proc/PID/io.
type ioSample struct {
	bytes, calls int64
	ok           bool
}

func sampleCPU(p *procWatch, db *dbWatch) cpuSample {
	s := cpuSample{at: time.Now(), self: selfCPU()}
	s.proc, s.procOK = p.cpuTime()
	s.selfIO.bytes, s.selfIO.calls, s.selfIO.ok = ioCounters(0)
	if pids := p.pids(); len(pids) > 0 {
		s.procIO.ok = true
		for _, pid := range pids {
			b, c, ok := ioCounters(pid)
			s.procIO.bytes, s.procIO.calls, s.procIO.ok = s.procIO.bytes+b, s.procIO.calls+c, s.procIO.ok && ok
		}
	}
	if db != nil {
		s.db = db.sample()
	}
	s.disk, s.diskOK = diskWritten()
	return s
}

// dbSince returns the database processes' CPU in cores and their
// write_bytes between s0 and s (-1 when unknown), and the bytes written
// to the disks (-1 when unknown).
func (s cpuSample) dbSince(s0 cpuSample) (cpu float64, write, disk int64) {
	cpu, write, disk = -1, -1, -1
	if wall := s.at.Sub(s0.at).Seconds(); wall > 0 && s.db.ok && s0.db.ok {
		cpu = (s.db.cpu - s0.db.cpu).Seconds() / wall
		write = s.db.write - s0.db.write
	}
	if s.diskOK && s0.diskOK {
		disk = s.disk - s0.disk
	}
	return cpu, write, disk
}

// ioSince returns the bytes written and write calls made between s0 and
// s by this process and by the watched one (-1 when unknown).
func (s cpuSample) ioSince(s0 cpuSample) (self, proc ioDelta) {
	d := func(a, b ioSample) ioDelta {
		if !a.ok || !b.ok {
			return ioDelta{-1, -1}
		}
		return ioDelta{b.bytes - a.bytes, b.calls - a.calls}
	}
	return d(s0.selfIO, s.selfIO), d(s0.procIO, s.procIO)
}

// ioDelta is storage writes over a window.
type ioDelta struct {
	bytes, calls int64
}

// since returns the CPU used between s0 and s, in cores (CPU seconds per
// second); the watched process's is -1 when unknown.
func (s cpuSample) since(s0 cpuSample) (self, proc float64) {
	wall := s.at.Sub(s0.at).Seconds()
	if wall <= 0 {
		return 0, -1
	}
	self = (s.self - s0.self).Seconds() / wall
	proc = -1
	if s.procOK && s0.procOK {
		proc = (s.proc - s0.proc).Seconds() / wall
	}
	return self, proc
}
