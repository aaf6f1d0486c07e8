package main

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve trivial handlers when the load
// generator re-executes it as one.
func TestMain(m *testing.M) {
	if spec, ok := os.LookupEnv(trivialEnv); ok {
		if err := serveTrivial(spec); err != nil {
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// runJSON runs the load generator with args and -json -q and decodes its
// output.
func runJSON(t *testing.T, args ...string) []Result {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := run(ctx, append(args, "-json", "-q"), &out, &errOut); err != nil {
		t.Fatalf("loadgen %v: %v\n%s", args, err, errOut.String())
	}
	var results []Result
	dec := json.NewDecoder(&out)
	if err := dec.Decode(&results); err != nil {
		t.Fatalf("stdout is not one JSON array: %v\n%s", err, out.String())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		t.Fatalf("stdout holds more than one JSON value")
	}
	return results
}

// TestEveryScenarioRunsCleanAgainstTheSelfStartedServer is the smoke test
// of the whole program: every scenario at 1 and 4 clients for 300 ms
// against the example server it starts, with well-formed output.
func TestEveryScenarioRunsCleanAgainstTheSelfStartedServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the example server and runs every scenario")
	}
	svg := filepath.Join(t.TempDir(), "chart.svg")
	results := runJSON(t, "-clients", "1,4", "-duration", "300ms", "-svg", svg)

	var got []string
	for _, r := range results {
		got = append(got, r.Scenario+"/"+strconv.Itoa(r.Clients))
		if r.RPS <= 0 || r.LimitRPS <= 0 || r.Ratio <= 0 {
			t.Errorf("%s at %d: rps %v, limit_rps %v, ratio %v: want all > 0", r.Scenario, r.Clients, r.RPS, r.LimitRPS, r.Ratio)
		}
		if r.Errors != 0 || r.LimitErrors != 0 {
			t.Errorf("%s at %d: %d errors, %d limit errors: %v", r.Scenario, r.Clients, r.Errors, r.LimitErrors, r.ErrorSamples)
		}
		if r.LimitName == "" || r.P50 <= 0 || r.P50 > r.P95 || r.P95 > r.P99 {
			t.Errorf("%s at %d: limit %q, p50/p95/p99 %v/%v/%v", r.Scenario, r.Clients, r.LimitName, r.P50, r.P95, r.P99)
		}
		if r.Scenario == "claim" && r.NoopRPS <= 0 {
			t.Errorf("claim at %d has no do-nothing handler rate", r.Clients)
		}
	}
	var want []string
	for _, s := range scenarioNames {
		want = append(want, s+"/1", s+"/4")
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
	checkSVG(t, svg, []string{"claim", "idcert"})
}

// TestScaleModeReportsStartupMemoryAndP99Ratio runs the scale measurement
// with small numbers.
func TestScaleModeReportsStartupMemoryAndP99Ratio(t *testing.T) {
	if testing.Short() {
		t.Skip("seeds store files and starts the example server twice")
	}
	results := runJSON(t, "-scale", "-seed-keypackages", "2000", "-baseline-keypackages", "200",
		"-keypackages-per-user", "10", "-scale-clients", "4", "-duration", "300ms")
	var stored []int
	for _, r := range results {
		stored = append(stored, r.Stored)
		if r.Errors != 0 || r.RPS <= 0 || r.P99 <= 0 {
			t.Errorf("%s with %d stored: %d errors, rps %v, p99 %v: %v", r.Scenario, r.Stored, r.Errors, r.RPS, r.P99, r.ErrorSamples)
		}
		if r.StartupMS <= 0 || r.RSSMiB <= 0 || r.FileMiB <= 0 {
			t.Errorf("%s with %d stored: start %v ms, RSS %v MiB, file %v MiB: want all > 0", r.Scenario, r.Stored, r.StartupMS, r.RSSMiB, r.FileMiB)
		}
	}
	if !slices.Equal(stored, []int{200, 2000, 2000}) {
		t.Fatalf("rows for %v stored KeyPackages, want the baseline, the capped and the sustained phase", stored)
	}
	if big := results[1]; big.P99Ratio <= 0 || big.P99Baseline != results[0].P99 {
		t.Errorf("p99 ratio %v against baseline %v, want > 0 against %v", big.P99Ratio, big.P99Baseline, results[0].P99)
	}
}

// checkSVG checks that the chart is well-formed XML with one title per
// panel.
func checkSVG(t *testing.T, path string, panels []string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
	}
	for _, p := range panels {
		if !strings.Contains(string(b), ">"+p+": requests/s") {
			t.Errorf("chart has no %s panel", p)
		}
	}
}

func TestAggregateTakesMediansPerNumberAndSumsErrors(t *testing.T) {
	runs := []Result{
		{Scenario: "claim", Clients: 8, RPS: 100, P99: 9, Ratio: 0.5, Errors: 1},
		{Scenario: "claim", Clients: 64, RPS: 7},
		{Scenario: "claim", Clients: 8, RPS: 300, P99: 1, Ratio: 0.9, Errors: 2},
		{Scenario: "claim", Clients: 8, RPS: 200, P99: 5, Ratio: 0.1},
	}
	got := aggregate(runs)
	if len(got) != 2 || got[0].Clients != 8 || got[1].Clients != 64 {
		t.Fatalf("groups %+v, want clients 8 then 64", got)
	}
	if r := got[0]; r.RPS != 200 || r.P99 != 5 || r.Ratio != 0.5 || r.Errors != 3 || r.Runs != 3 {
		t.Errorf("aggregate %+v, want medians rps 200, p99 5, ratio 0.5, errors summed 3, runs 3", r)
	}
}

func TestQuantileIsNearestRank(t *testing.T) {
	st := stats{}
	for i := 1; i <= 100; i++ {
		st.lat = append(st.lat, time.Duration(i)*time.Millisecond)
	}
	for q, want := range map[float64]float64{0.5: 50, 0.95: 95, 0.99: 99, 1: 100} {
		if got := st.quantile(q); got != want {
			t.Errorf("quantile(%v) = %v ms, want %v", q, got, want)
		}
	}
	if got := (stats{}).quantile(0.5); got != 0 {
		t.Errorf("quantile of nothing = %v, want 0", got)
	}
}

func TestParseFlagsRefusesBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"-scenarios", "claim,nope"},
		{"-clients", "0"},
		{"-clients", "1,x"},
		{"-duration", "0s"},
		{"-upload-batch", "101"},
		{"-mix", "claim=1,mixed=2"},
		{"-mix", "claim=0"},
		{"-scale", "-server", "http://127.0.0.1:1"},
		{"extra"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted it", args)
		}
	}
	c, err := parseFlags([]string{"-scenarios", "idcert, claim", "-duration", "3s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.scenarios, []string{"claim", "idcert"}) || c.warmup != 300*time.Millisecond {
		t.Errorf("scenarios %v (want the documented order), warm-up %v (want duration/10)", c.scenarios, c.warmup)
	}
}

func TestSVGChartHasAPanelPerScenarioWithData(t *testing.T) {
	results := []Result{
		{Scenario: "claim", Clients: 1, RPS: 300, LimitRPS: 350, LimitName: limitStoreClaim},
		{Scenario: "claim", Clients: 64, RPS: 5000, LimitRPS: 9000, LimitName: limitStoreClaim},
		{Scenario: "idcert", Clients: 8, RPS: 2000, LimitRPS: 3000, LimitName: limitIssue},
	}
	path := filepath.Join(t.TempDir(), "c.svg")
	if err := os.WriteFile(path, []byte(svgChart(results, []string{"claim", "idcert", "token"})), 0o600); err != nil {
		t.Fatal(err)
	}
	checkSVG(t, path, []string{"claim", "idcert"})
	if b, _ := os.ReadFile(path); strings.Contains(string(b), "token:") {
		t.Error("chart has a panel for a scenario without results")
	}
}

func TestNiceCeilRoundsUpToTheNextRoundStep(t *testing.T) {
	for v, want := range map[float64]float64{0: 1, 7: 8, 1200: 1200, 2400: 2500, 4100: 5000, 5109: 6000, 10000: 10000} {
		if got := niceCeil(v); got != want {
			t.Errorf("niceCeil(%v) = %v, want %v", v, got, want)
		}
	}
}
