package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
)

// Result is one scenario at one concurrency: the HTTP measurement and the
// limit it is compared against, measured in the same run. With -runs > 1
// every number is the median over the runs (errors are summed).
type Result struct {
	Scenario string  `json:"scenario"`
	Clients  int     `json:"clients"`
	Runs     int     `json:"runs"`
	Requests int     `json:"requests"` // measured requests (per run, median)
	RPS      float64 `json:"rps"`
	P50      float64 `json:"p50_ms"`
	P95      float64 `json:"p95_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
	Errors   int     `json:"errors"`

	LimitName   string  `json:"limit_name"`
	LimitRPS    float64 `json:"limit_rps"`
	LimitP50    float64 `json:"limit_p50_ms"`
	LimitP99    float64 `json:"limit_p99_ms"`
	LimitErrors int     `json:"limit_errors"`
	// Ratio is RPS / LimitRPS, computed per run.
	Ratio float64 `json:"ratio"`

	// LoadgenCPU and ServerCPU are the cores the load generator and the
	// server used during the HTTP window (ServerCPU 0: unknown); LimitCPU
	// is what this process used during the limit's window.
	LoadgenCPU float64 `json:"loadgen_cpu"`
	ServerCPU  float64 `json:"server_cpu,omitempty"`
	LimitCPU   float64 `json:"limit_cpu"`
	// Storage writes per request of the server during the HTTP window
	// and of this process during the limit's window, from /proc/PID/io
	// (write_bytes, syscw): what each operation costs the disk.
	ServerWriteKiB   float64 `json:"server_write_kib_per_req,omitempty"`
	ServerWriteCalls float64 `json:"server_write_calls_per_req,omitempty"`
	LimitWriteKiB    float64 `json:"limit_write_kib_per_op,omitempty"`
	LimitWriteCalls  float64 `json:"limit_write_calls_per_op,omitempty"`
	// NoopRPS (claim only) is a do-nothing net/http handler's rate at the
	// same concurrency, for comparing with other servers measured that
	// way.
	NoopRPS float64 `json:"noop_rps,omitempty"`

	// Servers is how many example servers shared the load (requests of
	// client w went to server w mod Servers).
	Servers int `json:"servers,omitempty"`
	// Depth (claim-depth-N rows) is how many KeyPackages each claimed
	// session held at the start of the phase.
	Depth int `json:"keypackages_per_session,omitempty"`
	// Duplicates (claim) counts KeyPackages handed out more than once by
	// the HTTP claims of the whole run so far (every server, every
	// phase); LimitDuplicates and BareDuplicates the same for the store
	// limit and the bare loop of this row. Anything but 0 is a bug.
	Duplicates      int `json:"duplicates"`
	LimitDuplicates int `json:"limit_duplicates"`
	BareDuplicates  int `json:"bare_duplicates"`

	// -store postgres, claim: the bare statement loop (one DELETE ...
	// FOR UPDATE SKIP LOCKED LIMIT 1 RETURNING per claim, committed, on
	// a copy of pgstore's table), the physical limit of the database.
	BareRPS    float64 `json:"bare_rps,omitempty"`
	BareP50    float64 `json:"bare_p50_ms,omitempty"`
	BareP99    float64 `json:"bare_p99_ms,omitempty"`
	BareErrors int     `json:"bare_errors,omitempty"`
	// BareRatio is RPS / BareRPS, computed per run.
	BareRatio float64 `json:"bare_ratio,omitempty"`
	// BareCPUPerOp is the load generator's plus the database's CPU per
	// bare statement, in ms.
	BareCPUPerOp float64 `json:"bare_cpu_ms_per_op,omitempty"`

	// -store postgres: DBCPU is the cores the database's processes used
	// during the HTTP window (its backends for the run's database plus
	// the server's shared WAL writer, checkpointer and background
	// writer); CPUPerReq is server plus database CPU per request in ms;
	// LimitDBCPU and LimitCPUPerOp the same for the limit's window (load
	// generator plus database).
	DBCPU         float64 `json:"db_cpu,omitempty"`
	CPUPerReq     float64 `json:"cpu_ms_per_req,omitempty"`
	LimitDBCPU    float64 `json:"limit_db_cpu,omitempty"`
	LimitCPUPerOp float64 `json:"limit_cpu_ms_per_op,omitempty"`
	// DBWriteKiB is the database processes' write_bytes (/proc/PID/io)
	// per request; DiskWriteKiB the bytes the disks were sent
	// (/proc/diskstats, by every process of the machine) per request.
	DBWriteKiB   float64 `json:"db_write_kib_per_req,omitempty"`
	DiskWriteKiB float64 `json:"disk_write_kib_per_req,omitempty"`

	// Scale measurement only.
	Stored      int     `json:"stored_keypackages,omitempty"`
	StartupMS   float64 `json:"server_start_ms,omitempty"`
	RSSMiB      float64 `json:"server_rss_mib,omitempty"`
	RSSAnonMiB  float64 `json:"server_rss_anon_mib,omitempty"`
	RSSFileMiB  float64 `json:"server_rss_file_mib,omitempty"`
	FileMiB     float64 `json:"store_file_mib,omitempty"`
	P99Baseline float64 `json:"baseline_p99_ms,omitempty"`
	P99Ratio    float64 `json:"p99_ratio,omitempty"`

	ErrorSamples []string `json:"error_samples,omitempty"`
}

// aggregate merges the results of several runs of the same scenario and
// concurrency into medians, keeping the order of first appearance.
func aggregate(all []Result) []Result {
	type key struct {
		s         string
		c, stored int
	}
	var order []key
	groups := map[key][]Result{}
	for _, r := range all {
		k := key{r.Scenario, r.Clients, r.Stored}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	out := make([]Result, 0, len(order))
	for _, k := range order {
		g := groups[k]
		if len(g) == 1 {
			out = append(out, g[0])
			continue
		}
		med := func(f func(Result) float64) float64 {
			v := make([]float64, len(g))
			for i, r := range g {
				v[i] = f(r)
			}
			return median(v)
		}
		r := g[0]
		r.Runs = len(g)
		r.Requests = int(med(func(r Result) float64 { return float64(r.Requests) }))
		r.RPS = med(func(r Result) float64 { return r.RPS })
		r.P50 = med(func(r Result) float64 { return r.P50 })
		r.P95 = med(func(r Result) float64 { return r.P95 })
		r.P99 = med(func(r Result) float64 { return r.P99 })
		r.Max = med(func(r Result) float64 { return r.Max })
		r.LimitRPS = med(func(r Result) float64 { return r.LimitRPS })
		r.LimitP50 = med(func(r Result) float64 { return r.LimitP50 })
		r.LimitP99 = med(func(r Result) float64 { return r.LimitP99 })
		r.Ratio = med(func(r Result) float64 { return r.Ratio })
		r.LoadgenCPU = med(func(r Result) float64 { return r.LoadgenCPU })
		r.ServerCPU = med(func(r Result) float64 { return r.ServerCPU })
		r.LimitCPU = med(func(r Result) float64 { return r.LimitCPU })
		r.NoopRPS = med(func(r Result) float64 { return r.NoopRPS })
		r.BareRPS = med(func(r Result) float64 { return r.BareRPS })
		r.BareP50 = med(func(r Result) float64 { return r.BareP50 })
		r.BareP99 = med(func(r Result) float64 { return r.BareP99 })
		r.BareRatio = med(func(r Result) float64 { return r.BareRatio })
		r.BareCPUPerOp = med(func(r Result) float64 { return r.BareCPUPerOp })
		r.DBCPU = med(func(r Result) float64 { return r.DBCPU })
		r.CPUPerReq = med(func(r Result) float64 { return r.CPUPerReq })
		r.LimitDBCPU = med(func(r Result) float64 { return r.LimitDBCPU })
		r.LimitCPUPerOp = med(func(r Result) float64 { return r.LimitCPUPerOp })
		r.DBWriteKiB = med(func(r Result) float64 { return r.DBWriteKiB })
		r.DiskWriteKiB = med(func(r Result) float64 { return r.DiskWriteKiB })
		r.ServerWriteKiB = med(func(r Result) float64 { return r.ServerWriteKiB })
		r.ServerWriteCalls = med(func(r Result) float64 { return r.ServerWriteCalls })
		r.LimitWriteKiB = med(func(r Result) float64 { return r.LimitWriteKiB })
		r.LimitWriteCalls = med(func(r Result) float64 { return r.LimitWriteCalls })
		r.StartupMS = med(func(r Result) float64 { return r.StartupMS })
		r.RSSMiB = med(func(r Result) float64 { return r.RSSMiB })
		r.RSSAnonMiB = med(func(r Result) float64 { return r.RSSAnonMiB })
		r.RSSFileMiB = med(func(r Result) float64 { return r.RSSFileMiB })
		r.P99Baseline = med(func(r Result) float64 { return r.P99Baseline })
		r.P99Ratio = med(func(r Result) float64 { return r.P99Ratio })
		r.Errors, r.LimitErrors, r.BareErrors, r.ErrorSamples = 0, 0, 0, nil
		r.Duplicates, r.LimitDuplicates, r.BareDuplicates = 0, 0, 0
		for _, x := range g {
			r.Errors += x.Errors
			r.LimitErrors += x.LimitErrors
			r.BareErrors += x.BareErrors
			// The HTTP count is cumulative over the run: the last is the total.
			r.Duplicates = max(r.Duplicates, x.Duplicates)
			r.LimitDuplicates += x.LimitDuplicates
			r.BareDuplicates += x.BareDuplicates
			for _, m := range x.ErrorSamples {
				if len(r.ErrorSamples) < 3 && !slices.Contains(r.ErrorSamples, m) {
					r.ErrorSamples = append(r.ErrorSamples, m)
				}
			}
		}
		out = append(out, r)
	}
	return out
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// report prints the results (table and target checks, or JSON) and writes
// the SVG chart when asked.
func report(c config, results []Result, stdout io.Writer) error {
	if c.svg != "" && !c.scale {
		if err := os.WriteFile(c.svg, []byte(svgChart(results, c.svgScenarios)), 0o644); err != nil {
			return err
		}
	}
	if c.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	if c.scale {
		writeScaleTable(stdout, results)
	} else {
		writeTable(stdout, results)
	}
	fmt.Fprintln(stdout)
	for _, ch := range checkTargets(results) {
		fmt.Fprintln(stdout, ch)
	}
	if c.reportFrom == "" {
		fmt.Fprintf(stdout, "\n%s\n", machine())
	}
	return nil
}

// writeTable prints one row per scenario and concurrency.
func writeTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tclients\treq/s\tp50 ms\tp95 ms\tp99 ms\terrors\t\tlimit\tlimit/s\tlimit p50 ms\tratio\tCPU loadgen+server\twrite KiB/op server|limit\t")
	for _, r := range results {
		cpu := fmt.Sprintf("%.2f", r.LoadgenCPU)
		if r.ServerCPU > 0 {
			cpu += fmt.Sprintf("+%.2f", r.ServerCPU)
		}
		wr := "-"
		if r.ServerWriteKiB > 0 || r.LimitWriteKiB > 0 {
			wr = fmt.Sprintf("%.1f|%.1f", r.ServerWriteKiB, r.LimitWriteKiB)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t\t%s\t%.0f\t%.3f\t%.2f\t%s\t%s\t\n",
			r.Scenario, r.Clients, r.RPS, r.P50, r.P95, r.P99, r.Errors, r.LimitName, r.LimitRPS, r.LimitP50, r.Ratio, cpu, wr)
	}
	tw.Flush()
	pg := slices.ContainsFunc(results, func(r Result) bool { return r.BareRPS > 0 || r.CPUPerReq > 0 })
	if !pg {
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tclients\tservers\treq/s\tbare/s\tbare p50 ms\tHTTP/bare\tCPU ms/req srv+db\tdb cores\tlimit CPU ms/op lg+db\tbare CPU ms/op\tKiB/req db|disk\tduplicates HTTP|limit|bare\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%.0f\t%.3f\t%.2f\t%.3f\t%.2f\t%.3f\t%.3f\t%.1f|%.1f\t%d|%d|%d\t\n",
			r.Scenario, r.Clients, max(r.Servers, 1), r.RPS, r.BareRPS, r.BareP50, r.BareRatio, r.CPUPerReq, r.DBCPU,
			r.LimitCPUPerOp, r.BareCPUPerOp, r.DBWriteKiB, r.DiskWriteKiB, r.Duplicates, r.LimitDuplicates, r.BareDuplicates)
	}
	tw.Flush()
}

// writeScaleTable prints the scale measurement.
func writeScaleTable(w io.Writer, results []Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "stored KeyPackages\tclients\trequests\treq/s\tp50 ms\tp95 ms\tp99 ms\terrors\tserver start ms\tmax RSS MiB (anon+file)\tfile MiB\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%d\t%.0f\t%.1f (%.1f+%.1f)\t%.0f\t\n",
			r.Stored, r.Clients, r.Requests, r.RPS, r.P50, r.P95, r.P99, r.Errors, r.StartupMS, r.RSSMiB, r.RSSAnonMiB, r.RSSFileMiB, r.FileMiB)
	}
	tw.Flush()
}

// check is one target of issue 8, evaluated on a run's results.
type check struct {
	name   string
	met    bool
	detail string
}

func (c check) String() string {
	mark := "MET   "
	if !c.met {
		mark = "MISSED"
	}
	return fmt.Sprintf("%s %s: %s", mark, c.name, c.detail)
}

// checkTargets evaluates every target of issue 8 for which the results
// hold the numbers.
func checkTargets(results []Result) []check {
	find := func(s string, c int) *Result {
		for i := range results {
			if results[i].Scenario == s && results[i].Clients == c && results[i].Stored == 0 {
				return &results[i]
			}
		}
		return nil
	}
	var out []check
	for _, s := range []string{"claim", "token", "redeem"} {
		r64, r1 := find(s, 64), find(s, 1)
		if r64 != nil {
			out = append(out, check{s + " at 64 clients: HTTP >= 0.5x store", r64.Ratio >= 0.5,
				fmt.Sprintf("%.0f / %.0f req/s = %.2fx", r64.RPS, r64.LimitRPS, r64.Ratio)})
		}
		if r64 != nil && r1 != nil && r1.LimitRPS > 0 {
			x := r64.LimitRPS / r1.LimitRPS
			out = append(out, check{s + ": store at 64 goroutines >= 5x store at 1", x >= 5,
				fmt.Sprintf("%.0f / %.0f ops/s = %.1fx", r64.LimitRPS, r1.LimitRPS, x)})
		}
		if r1 != nil && r1.LimitP50 > 0 {
			x := r1.P50 / r1.LimitP50
			out = append(out, check{s + " at 1 client: HTTP p50 <= 1.5x store p50", x <= 1.5,
				fmt.Sprintf("%.3f / %.3f ms = %.2fx", r1.P50, r1.LimitP50, x)})
		}
	}
	// Issue 18 (-store postgres): claims against the bare statement loop.
	if r := find("claim", 64); r != nil && r.BareRPS > 0 {
		out = append(out,
			check{"postgres claim at 64 clients: HTTP >= 0.5x the bare statement loop", r.BareRatio >= 0.5,
				fmt.Sprintf("%.0f / %.0f req/s = %.2fx", r.RPS, r.BareRPS, r.BareRatio)},
			check{"postgres claim at 64 clients: >= 4x 1,280/s (before issue 18)", r.RPS >= 4*1280,
				fmt.Sprintf("%.0f req/s = %.2fx", r.RPS, r.RPS/1280)})
	}
	if r := find("claim", 1); r != nil && r.BareP50 > 0 {
		x := r.P50 / r.BareP50
		out = append(out, check{"postgres claim at 1 client: HTTP p50 <= 2x the bare statement's", x <= 2,
			fmt.Sprintf("%.3f / %.3f ms = %.2fx", r.P50, r.BareP50, x)})
	}
	// Claim cost must not grow with the pool: the claim-depth rows at one
	// concurrency differ by less than 20 %.
	depthRates := map[int][]Result{}
	for _, r := range results {
		if r.Depth > 0 {
			depthRates[r.Clients] = append(depthRates[r.Clients], r)
		}
	}
	for _, c := range slices.Sorted(maps.Keys(depthRates)) {
		rs := depthRates[c]
		if len(rs) < 2 {
			continue
		}
		lo, hi := rs[0], rs[0]
		for _, r := range rs {
			if r.RPS < lo.RPS {
				lo = r
			}
			if r.RPS > hi.RPS {
				hi = r
			}
		}
		x := hi.RPS / max(lo.RPS, 1e-9)
		out = append(out, check{fmt.Sprintf("postgres claim at %d clients: rate with %d vs %d KeyPackages per session differs < 20 %%", c, lo.Depth, hi.Depth),
			x < 1.2, fmt.Sprintf("%.0f (%d per session) / %.0f (%d per session) req/s = %.2fx", hi.RPS, hi.Depth, lo.RPS, lo.Depth, x)})
	}
	for _, r := range results {
		if r.Duplicates+r.LimitDuplicates+r.BareDuplicates > 0 {
			out = append(out, check{fmt.Sprintf("%s at %d clients: no KeyPackage handed out twice", r.Scenario, r.Clients), false,
				fmt.Sprintf("duplicates: HTTP %d, limit %d, bare %d", r.Duplicates, r.LimitDuplicates, r.BareDuplicates)})
		}
	}
	if r := find("claim", 64); r != nil && r.NoopRPS > 0 {
		// Dendrite v0.13.8 on SQLite: ~950 claims/s at 64 clients, 1/25 of
		// a do-nothing handler's rate under the same load generator.
		x := r.RPS / r.NoopRPS
		out = append(out, check{"claim at 64 clients: >= 10x Dendrite (0.4x a do-nothing handler)", x >= 0.4,
			fmt.Sprintf("%.0f / %.0f req/s = %.2fx of the do-nothing handler (Dendrite: 0.04x, ~950/s)", r.RPS, r.NoopRPS, x)})
	}
	if r := find("idcert", 8); r != nil {
		out = append(out, check{"idcert at 8 clients: HTTP >= 0.6x in-process issue", r.Ratio >= 0.6,
			fmt.Sprintf("%.0f / %.0f req/s = %.2fx", r.RPS, r.LimitRPS, r.Ratio)})
	}
	for _, s := range []string{"read-cert", "read-server-key"} {
		var worst *Result
		for i := range results {
			r := &results[i]
			if r.Scenario == s && (worst == nil || r.Ratio < worst.Ratio) {
				worst = r
			}
		}
		if worst != nil {
			out = append(out, check{s + ": HTTP >= 0.5x trivial handler", worst.Ratio >= 0.5,
				fmt.Sprintf("lowest at %d clients: %.0f / %.0f req/s = %.2fx", worst.Clients, worst.RPS, worst.LimitRPS, worst.Ratio)})
		}
	}
	for _, r := range results {
		if r.Stored == 0 || r.P99Ratio == 0 {
			continue
		}
		out = append(out,
			check{fmt.Sprintf("scale: claim p99 with %d stored <= 1.5x the p99 %s", r.Stored, r.LimitName), r.P99Ratio <= 1.5,
				fmt.Sprintf("%.2f / %.2f ms = %.2fx", r.P99, r.P99Baseline, r.P99Ratio)},
			check{"scale: server starts in < 2 s", r.StartupMS < 2000, fmt.Sprintf("%.0f ms", r.StartupMS)},
			check{"scale: server RSS under 64-client claim load < 150 MiB", r.RSSMiB < 150,
				fmt.Sprintf("max VmRSS %.1f MiB (anonymous %.1f, file-backed %.1f)", r.RSSMiB, r.RSSAnonMiB, r.RSSFileMiB)})
	}
	for _, r := range results {
		if r.Errors > 0 || r.LimitErrors > 0 || r.BareErrors > 0 {
			out = append(out, check{fmt.Sprintf("%s at %d clients: no errors", r.Scenario, r.Clients), false,
				fmt.Sprintf("%d HTTP errors, %d limit errors, %d bare errors: %s", r.Errors, r.LimitErrors, r.BareErrors, strings.Join(r.ErrorSamples, "; "))})
		}
	}
	return out
}

// machine describes where the numbers were measured.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if name, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			load = fmt.Sprintf(", load average %s %s %s at the end", f[0], f[1], f[2])
		}
	}
	return fmt.Sprintf("machine: %s, %d CPUs, GOMAXPROCS %d, %s %s/%s%s", model, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, load)
}
