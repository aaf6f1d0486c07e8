// Command loadgen drives a p2kit home server with concurrent clients and
// compares what it measures with the in-process limit of the same work,
// measured in the same run at the same concurrency.
//
//	go run ./examples/loadgen                       # every scenario at 1, 8, 64 clients
//	go run ./examples/loadgen -scenarios claim,idcert -clients 1,8,64,256 -svg throughput.svg
//	go run ./examples/loadgen -scale                # 1,000,000 stored KeyPackages
//	go run ./examples/loadgen -server http://127.0.0.1:8080 -server-pid 1234
//	go run ./examples/loadgen -store postgres -scenarios claim -claim-depths 10,5000
//	go run ./examples/loadgen -store postgres -servers 2 -scenarios claim
//
// With -store postgres (-dsn, default $P2KIT_POSTGRES_DSN) the servers,
// the pgstore limits and the bare statement loop each get a schema of
// their own in that database, dropped at the end; the claim rows add the
// bare loop (bare_rps), the database's CPU from /proc, disk writes from
// /proc/diskstats and the count of KeyPackages handed out twice.
//
// By default it builds examples/homeserver into a temporary folder and
// starts it on a new bbolt file there (flags -no-rate-limits,
// -pbkdf2-iterations 1000, -admin loadgen-admin with -admin-password-file,
// -addr 127.0.0.1:0); with
// -server it drives a running example server instead (it needs the
// example's /register and /login, and rate limits off).
//
// Scenarios (each runs at every -clients concurrency for -duration after a
// warm-up):
//
//	claim            GET /p2core/keypackage/{user_id} (route 14) of pre-seeded KeyPackages
//	upload           POST /p2core/keypackage/@me (route 12), -upload-batch KeyPackages per request
//	token            POST /p2core/token (route 1)
//	redeem           POST /p2core/token/redeem (route 7) of pre-issued tokens
//	idcert           POST /p2core/key/user/@me (route 8) of pre-generated keys
//	read-cert        GET /p2core/key/user/{user_id} (route 9)
//	read-server-key  GET /p2core/key/server (route 10)
//	mixed            a weighted mix of the above (-mix)
//
// Limits, measured in this process right after each HTTP phase with as
// many goroutines as clients:
//
//	claim, upload, token, redeem  the raw boltstore.Store call on a file opened as the
//	                              example server opens it (fsync on, group commit on)
//	idcert                        p2core.Service.IssueIDCert over memstore
//	read-cert, read-server-key    a trivial net/http handler serving the same bytes
//	mixed                         a do-nothing net/http handler
//
// The trivial handlers run in a child process (this binary re-executed),
// as the server does; -trivial-in-process serves them from httptest
// servers in the load generator's own process instead, which on two cores
// answers a single client about 1.7 times faster.
//
// Pools are never allowed to run dry: before each phase a short
// calibration run measures the rate, and the pool is topped up to twice
// what the phase needs at that rate; the phase also stops when its
// pool is used up, so it measures a shorter window rather than errors.
//
// Output is a table with the targets of issue 8 checked, or with -json one
// JSON array; progress goes to stderr. See README.md for the flags, the
// method and results.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if spec, ok := os.LookupEnv(trivialEnv); ok {
		if err := serveTrivial(spec); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen trivial server:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
		}
		os.Exit(1)
	}
}

// config is the parsed command line.
type config struct {
	scenarios    []string
	clients      []int
	duration     time.Duration
	warmup       time.Duration
	runs         int
	server       string
	serverPID    int
	serverBin    string
	serverProcs  int
	procs        int
	json         bool
	svg          string
	svgScenarios []string
	uploadBatch  int
	mix          []mixWeight
	kpCap        int
	certHistory  int
	quiet        bool

	// store is the example server's backend: "bolt" (a file in the
	// temporary folder) or "postgres" (-dsn); servers how many example
	// servers share it.
	store   string
	dsn     string
	servers int
	// claimUsers is the least number of users claims are spread over
	// (-1: the default of the store).
	claimUsers int
	// depths are the KeyPackages per session of the claim-depth phases
	// (-store postgres).
	depths []int

	trivialInProcess bool
	// reportFrom, when set, renders results saved with -json instead of
	// measuring.
	reportFrom string

	scale        bool
	seedKP       int
	baselineKP   int
	perUser      int
	scaleClients int
	scaleCache   string
	scaleCold    bool
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scenarios := fs.String("scenarios", strings.Join(scenarioNames, ","), "comma-separated scenarios to run: "+strings.Join(scenarioNames, ", "))
	clients := fs.String("clients", "1,8,64", "comma-separated concurrencies; each scenario runs at each")
	fs.DurationVar(&c.duration, "duration", 5*time.Second, "measured time per scenario and concurrency (HTTP and limit each)")
	c.warmup = -1
	fs.Var((*autoDuration)(&c.warmup), "warmup", "unmeasured time before each phase; auto is duration/10, at most 1s")
	fs.IntVar(&c.runs, "runs", 1, "repeat everything this many times and report the median of each number (errors are summed)")
	fs.StringVar(&c.server, "server", "", "URL of a running example server to drive instead of starting one")
	fs.IntVar(&c.serverPID, "server-pid", 0, "process ID of the -server, to report its CPU and memory")
	fs.StringVar(&c.serverBin, "server-bin", "", "example server binary to start (default: go build ./examples/homeserver)")
	fs.IntVar(&c.serverProcs, "server-procs", 0, "GOMAXPROCS of the self-started server (0: all cores)")
	fs.IntVar(&c.procs, "procs", 0, "GOMAXPROCS of the load generator (0: all cores)")
	fs.BoolVar(&c.json, "json", false, "print one JSON array of results on stdout instead of the table")
	fs.StringVar(&c.svg, "svg", "", "write an SVG chart of throughput against concurrency to this file")
	svgScenarios := fs.String("svg-scenarios", "claim,idcert", "scenarios the -svg chart shows, one panel each")
	fs.IntVar(&c.uploadBatch, "upload-batch", 1, "KeyPackages per upload request (1-100)")
	mix := fs.String("mix", defaultMix, "weights of the mixed scenario, name=weight,...")
	fs.IntVar(&c.kpCap, "keypackage-cap", 1000, "the server's per-user KeyPackage cap (Config.MaxKeyPackagesPerUser)")
	fs.IntVar(&c.certHistory, "cert-history", 0, "read-cert: renew the read user's ID-Cert this many times first (route 9 keeps every superseded cert)")
	fs.BoolVar(&c.trivialInProcess, "trivial-in-process", false, "serve the trivial handlers from httptest servers in this process instead of a child process")
	fs.StringVar(&c.reportFrom, "report", "", "print the table, targets and -svg chart of results saved with -json in this file, without measuring")
	fs.BoolVar(&c.quiet, "q", false, "no progress on stderr")
	fs.StringVar(&c.store, "store", "bolt", `the self-started server's storage: "bolt" (a new file) or "postgres" (a new schema in -dsn; limits on pgstore, plus the bare statement loop for claim)`)
	fs.StringVar(&c.dsn, "dsn", "", "PostgreSQL connection string for -store postgres (default $P2KIT_POSTGRES_DSN)")
	fs.IntVar(&c.claimUsers, "claim-users", -1, "claim: spread claims over at least this many users (default: 200 with -store postgres, as a session's claims take turns there; else as few as the per-user cap allows)")
	depths := fs.String("claim-depths", "", "-store postgres: also measure claims from sessions holding each of these many KeyPackages (e.g. 10,5000), seeded directly into the server's database")
	fs.IntVar(&c.servers, "servers", 1, "-store postgres: start this many example servers on the one database; client w talks to server w mod N")
	fs.BoolVar(&c.scale, "scale", false, "run the scale measurement instead of the scenarios (see -seed-keypackages)")
	fs.IntVar(&c.seedKP, "seed-keypackages", 1_000_000, "-scale: KeyPackages stored for the large measurement")
	fs.IntVar(&c.baselineKP, "baseline-keypackages", 10_000, "-scale: KeyPackages stored for the baseline measurement")
	fs.IntVar(&c.perUser, "keypackages-per-user", 100, "-scale: KeyPackages per seeded user (one session each)")
	fs.IntVar(&c.scaleClients, "scale-clients", 64, "-scale: concurrent clients of the claim load")
	fs.BoolVar(&c.scaleCold, "scale-cold", false, "-scale: evict the server's fresh copy of each seeded file from the page cache before it starts (a cold start, as after a reboot) instead of leaving it cached by the copy")
	fs.StringVar(&c.scaleCache, "scale-cache", "", "-scale: folder keeping the seeded store files between runs (default: a temporary folder)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	var err error
	if c.scenarios, err = parseScenarios(*scenarios, "-scenarios"); err != nil {
		return c, err
	}
	if c.svgScenarios, err = parseScenarios(*svgScenarios, "-svg-scenarios"); err != nil {
		return c, err
	}
	if c.clients, err = parseInts(*clients); err != nil {
		return c, fmt.Errorf("-clients: %w", err)
	}
	if c.mix, err = parseMix(*mix); err != nil {
		return c, err
	}
	switch {
	case c.duration <= 0:
		return c, errors.New("-duration must be positive")
	case c.runs < 1:
		return c, errors.New("-runs must be at least 1")
	case c.uploadBatch < 1 || c.uploadBatch > 100:
		return c, errors.New("-upload-batch must be 1 to 100")
	case c.kpCap < c.uploadBatch:
		return c, errors.New("-keypackage-cap must be at least -upload-batch")
	case c.perUser < 1 || c.perUser > c.kpCap:
		return c, errors.New("-keypackages-per-user must be 1 to -keypackage-cap")
	case c.seedKP < c.perUser || c.baselineKP < c.perUser:
		return c, errors.New("-seed-keypackages and -baseline-keypackages must be at least -keypackages-per-user")
	case c.certHistory < 0:
		return c, errors.New("-cert-history must not be negative")
	case c.scaleClients < 1:
		return c, errors.New("-scale-clients must be positive")
	case c.scale && c.server != "":
		return c, errors.New("-scale seeds its own store files and starts the server itself; it cannot use -server")
	case c.store != "bolt" && c.store != "postgres":
		return c, fmt.Errorf(`-store must be "bolt" or "postgres", not %q`, c.store)
	case c.servers < 1 || c.servers > 1 && c.store != "postgres":
		return c, errors.New("-servers must be 1, or more with -store postgres (the servers share one database)")
	case c.store == "postgres" && (c.scale || c.server != ""):
		return c, errors.New("-store postgres starts its own servers; it cannot be combined with -scale or -server")
	}
	if *depths != "" {
		if c.store != "postgres" {
			return c, errors.New("-claim-depths needs -store postgres")
		}
		if c.depths, err = parseInts(*depths); err != nil {
			return c, fmt.Errorf("-claim-depths: %w", err)
		}
	}
	if c.claimUsers < 0 {
		c.claimUsers = 0
		if c.store == "postgres" {
			c.claimUsers = 200
		}
	}
	if c.store == "postgres" {
		if c.dsn == "" {
			c.dsn = os.Getenv("P2KIT_POSTGRES_DSN")
		}
		if c.dsn == "" {
			return c, errors.New("-store postgres needs -dsn or $P2KIT_POSTGRES_DSN")
		}
	}
	if c.warmup < 0 {
		c.warmup = min(c.duration/10, time.Second)
	}
	c.server = strings.TrimRight(c.server, "/")
	return c, nil
}

// autoDuration is a duration flag whose unset value (negative) prints as
// "auto".
type autoDuration time.Duration

func (d *autoDuration) String() string {
	if d == nil || *d < 0 {
		return "auto"
	}
	return time.Duration(*d).String()
}

func (d *autoDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return errors.New("not a non-negative duration")
	}
	*d = autoDuration(v)
	return nil
}

func parseScenarios(s, flagName string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(scenarioNames, name) {
			return nil, fmt.Errorf("%s: unknown scenario %q (have %s)", flagName, name, strings.Join(scenarioNames, ", "))
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	if len(out) == 0 && flagName == "-scenarios" {
		return nil, errors.New("-scenarios: none given")
	}
	// Run in the documented order whatever the order given.
	slices.SortFunc(out, func(a, b string) int { return slices.Index(scenarioNames, a) - slices.Index(scenarioNames, b) })
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 10000 {
			return nil, fmt.Errorf("%q is not a count from 1 to 10000", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// run is the whole program; main only wires it to the process.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if c.procs > 0 {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(c.procs))
	}
	progress := func(format string, args ...any) {
		if !c.quiet {
			fmt.Fprintf(stderr, format+"\n", args...)
		}
	}
	if c.reportFrom != "" {
		b, err := os.ReadFile(c.reportFrom)
		if err != nil {
			return err
		}
		var results []Result
		if err := json.Unmarshal(b, &results); err != nil {
			return fmt.Errorf("%s: %w", c.reportFrom, err)
		}
		c.scale = len(results) > 0 && results[0].Stored > 0
		return report(c, results, stdout)
	}
	tmp, err := os.MkdirTemp("", "p2kit-loadgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	if c.scale {
		results, err := runScale(ctx, c, tmp, progress)
		if err != nil {
			return err
		}
		return report(c, results, stdout)
	}

	var (
		srvs  []*serverProc
		pg    *pgRun
		db    *dbWatch
		bases = []string{c.server}
		watch *procWatch
	)
	if c.serverPID > 0 {
		watch = &procWatch{pid: c.serverPID}
	}
	if c.server == "" {
		bin := c.serverBin
		if bin == "" {
			progress("building examples/homeserver")
			if bin, err = buildServer(ctx, tmp); err != nil {
				return err
			}
		}
		var args []string
		where := "bbolt file in " + tmp + "/server-data"
		if c.store == "postgres" {
			pg = newPGRun(c.dsn)
			defer pg.close()
			schema, dsn, err := pg.schemaDSN("server")
			if err != nil {
				return err
			}
			args = []string{"-store", "postgres", "-dsn", dsn}
			pg.serverDSN = dsn
			where = "PostgreSQL schema " + schema
			if db, err = watchDB(ctx, c.dsn); err != nil {
				progress("note: %v", err)
			}
		}
		bases, watch = nil, &procWatch{}
		for i := range c.servers {
			data := fmt.Sprintf("%s/server-data-%d", tmp, i)
			srv, err := startServer(ctx, bin, data, fmt.Sprintf("%s/server-%d.log", tmp, i), c.serverProcs, args...)
			if err != nil {
				return err
			}
			defer srv.stop()
			srvs = append(srvs, srv)
			bases = append(bases, srv.url)
			if i == 0 {
				watch.pid = srv.watch.pid
			} else {
				watch.more = append(watch.more, srv.watch.pid)
			}
			progress("example server at %s (pid %d, %s, started in %v)", srv.url, srv.watch.pid, where, srv.startup.Round(time.Millisecond))
		}
	}
	results, err := runScenarios(ctx, c, bases, watch, pg, db, tmp, progress)
	if err != nil {
		for _, srv := range srvs {
			err = fmt.Errorf("%w\nserver log: %s", err, tail(srv.logPath))
		}
		return err
	}
	return report(c, results, stdout)
}
