package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// dbWatch reads, from /proc, the CPU time and storage writes of a local
// PostgreSQL server's processes that work for one database: the backends
// (and autovacuum workers) connected to it, plus the server's shared
// auxiliary processes (WAL writer, checkpointer, background writer,
// launchers), which also work for every other database of the server.
// Every reader fails soft: a remote or unreadable server reports unknown.
type dbWatch struct {
	postmaster int
	db         string
}

// watchDB finds the PostgreSQL server behind dsn: the parent process of
// the backend serving a connection, if that backend is a local process.
func watchDB(ctx context.Context, dsn string) (*dbWatch, error) {
	conn, err := connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	var pid int
	var db string
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid(), current_database()`).Scan(&pid, &db); err != nil {
		return nil, err
	}
	st, ok := readStat(pid)
	if !ok || !strings.HasPrefix(procTitle(pid), "postgres") {
		return nil, fmt.Errorf("backend %d is not a local process: the database server's CPU is unknown", pid)
	}
	return &dbWatch{postmaster: st.ppid, db: db}, nil
}

// procStat is what readStat takes from /proc/PID/stat.
type procStat struct {
	ppid int
	cpu  time.Duration // utime + stime
}

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return procStat{}, false
	}
	// f[0] is field 3 (state); ppid is field 4, utime and stime 14 and 15.
	ppid, err0 := strconv.Atoi(f[1])
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err0 != nil || err1 != nil || err2 != nil {
		return procStat{}, false
	}
	return procStat{ppid: ppid, cpu: time.Duration(ut+st) * time.Second / userHZ}, true
}

// procTitle is a process's command line as it shows it (PostgreSQL
// rewrites its processes' titles: "postgres: USER DB HOST(PORT) STATE").
func procTitle(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return strings.TrimSpace(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
}

// auxTitles are the title prefixes of PostgreSQL's shared processes.
var auxTitles = []string{"postgres: checkpointer", "postgres: background writer", "postgres: walwriter",
	"postgres: autovacuum launcher", "postgres: logical replication launcher", "postgres: archiver",
	"postgres: stats collector"}

// dbSample is the summed CPU time and write_bytes of the watched
// processes at one instant.
type dbSample struct {
	cpu   time.Duration
	write int64
	ok    bool
}

// sample sums over the postmaster's children that work for the database.
func (w *dbWatch) sample() dbSample {
	if w == nil {
		return dbSample{}
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return dbSample{}
	}
	var s dbSample
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, ok := readStat(pid)
		if !ok || st.ppid != w.postmaster {
			continue
		}
		title := procTitle(pid)
		f := strings.Fields(title)
		mine := len(f) >= 3 && (f[2] == w.db || len(f) >= 4 && f[1] == "autovacuum" && f[3] == w.db)
		for _, a := range auxTitles {
			mine = mine || strings.HasPrefix(title, a)
		}
		if !mine {
			continue
		}
		s.cpu += st.cpu
		if b, _, ok := ioCounters(pid); ok {
			s.write += b
		}
		s.ok = true
	}
	return s
}

// diskWritten returns the bytes written to the machine's disks so far
// (sectors written in /proc/diskstats, whole disks only: loop, RAM and
// zram devices and partitions are left out), which is what reached the
// device, whoever wrote it.
func diskWritten() (int64, bool) {
	b, err := os.ReadFile("/proc/diskstats")
	if err != nil {
		return 0, false
	}
	var total int64
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		name := f[2]
		if strings.HasPrefix(name, "loop") || strings.HasPrefix(name, "ram") || strings.HasPrefix(name, "zram") {
			continue
		}
		if _, err := os.Stat("/sys/block/" + name); err != nil {
			continue // a partition: its writes count in its disk's line
		}
		sectors, err := strconv.ParseInt(f[9], 10, 64)
		if err != nil {
			continue
		}
		total += sectors * 512
		found = true
	}
	return total, found
}
