package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
)

// BenchmarkRefusedRequestCPU measures the server CPU one refused request
// costs, from /proc/PID/stat of the example server's process (utime +
// stime before and after, divided by the requests), for the two attacks of
// issue 15 that cost the most:
//
//   - route 16 with a garbage federation token, a valid ID-Cert of a P-521
//     key and 100 valid P-521 KeyPackages (refused 404 P2CORE_TOKEN_INVALID);
//   - route 12 re-uploading 100 P-521 KeyPackages already stored (refused
//     409 P2CORE_DUPLICATE_KEYPACKAGE).
//
// It is a measurement, not a check, so it is a benchmark (go test runs it
// only when asked) and reports the two figures as metrics:
//
//	go test -run '^$' -bench RefusedRequestCPU -benchtime 1x ./examples/homeserver
//
// P2KIT_MEASURE_BIN names another build of the example server to measure
// (a build of an older commit, for a before figure); P2KIT_MEASURE_N is the
// number of requests of each kind (default 20). Rate limits are off in the
// servers, so that what is measured is the refusal itself.
func BenchmarkRefusedRequestCPU(bench *testing.B) {
	var t testing.TB = bench
	n := 20
	if v := os.Getenv("P2KIT_MEASURE_N"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("P2KIT_MEASURE_N=%q", v)
		}
	}
	bin := os.Getenv("P2KIT_MEASURE_BIN")
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "homeserver")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			t.Fatalf("go build: %v\n%s", err, out)
		}
	}
	portA, portB := freePort(t), freePort(t)
	a := startProcess(t, bin, "-addr", "127.0.0.1:"+portA, "-data", t.TempDir(), "-domain", "a.localhost",
		"-insecure-federation", "-no-rate-limits", "-pbkdf2-iterations", "1000")
	b := startProcess(t, bin, "-addr", "127.0.0.1:"+portB, "-data", t.TempDir(), "-domain", "b.localhost",
		"-insecure-federation", "-no-rate-limits", "-pbkdf2-iterations", "1000", "-home", "a.localhost="+a.url)

	// alice on A, with an ID-Cert for a P-521 key and 100 P-521
	// KeyPackages signed by it.
	alice := measureLogin(t, a.url, "alice")
	key, err := idcerttest.NewECDSAClientKey("alice@a.localhost", elliptic.P521())
	if err != nil {
		t.Fatal(err)
	}
	ac := &httpadapter.Client{BaseURL: a.url, Token: alice}
	cert, err := ac.IssueIDCert(context.Background(), key.Armored)
	if err != nil {
		t.Fatalf("route 8 with a P-521 key: %v", err)
	}
	builder := mlstest.NewECDSA(key.Signer)
	builder.Identity = []byte("alice@a.localhost")
	kps := make([][]byte, 100)
	for i := range kps {
		if kps[i], err = builder.Build(); err != nil {
			t.Fatal(err)
		}
	}

	// Route 16 at B: a garbage token with the cert and the 100 KeyPackages.
	body := httpadapter.SessionAuthRequest{FederationToken: strings.Repeat("A", 43), IDCert: base64.StdEncoding.EncodeToString(cert)}
	for _, kp := range kps {
		body.KeyPackages = append(body.KeyPackages, base64.StdEncoding.EncodeToString(kp))
	}
	route16, _ := json.Marshal(body)
	perLogin := b.cpuPer(t, n, func() {
		status, resp := post(t, b.url+"/p2core/session/auth", "", json.RawMessage(route16))
		if status != 404 || !bytes.Contains(resp, []byte("P2CORE_TOKEN_INVALID")) {
			t.Fatalf("route 16 with a garbage token: %d %s", status, resp)
		}
	})

	// Route 12 at A: the same 100 KeyPackages, stored once, then again.
	var encoded []string
	for _, kp := range kps {
		encoded = append(encoded, base64.StdEncoding.EncodeToString(kp))
	}
	upload, _ := json.Marshal(encoded)
	if status, resp := post(t, a.url+"/p2core/keypackage/@me", alice, json.RawMessage(upload)); status != 201 {
		t.Fatalf("first upload: %d %s", status, resp)
	}
	perReupload := a.cpuPer(t, n, func() {
		status, resp := post(t, a.url+"/p2core/keypackage/@me", alice, json.RawMessage(upload))
		if status != 409 || !bytes.Contains(resp, []byte("P2CORE_DUPLICATE_KEYPACKAGE")) {
			t.Fatalf("re-upload: %d %s", status, resp)
		}
	})
	report := fmt.Sprintf("server CPU per refused request (%d requests each): route 16, garbage token + 100 P-521 KeyPackages: %.1f ms; route 12, re-upload of 100 known P-521 KeyPackages: %.1f ms",
		n, perLogin.Seconds()*1000, perReupload.Seconds()*1000)
	t.Log(report)
	bench.ReportMetric(perLogin.Seconds()*1000, "route16-cpu-ms/refusal")
	bench.ReportMetric(perReupload.Seconds()*1000, "route12-cpu-ms/refusal")
}

// process is an example server started from a binary.
type process struct {
	cmd *exec.Cmd
	url string
}

func startProcess(t testing.TB, bin string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	url, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		t.Fatalf("server's first line %q, %v", line, err)
	}
	return &process{cmd: cmd, url: url}
}

// cpuTime is the process's utime + stime from /proc/PID/stat.
func (p *process) cpuTime(t testing.TB) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read /proc: %v (the measurement needs Linux)", err)
	}
	// Fields after the command name, which is in parentheses: f[0] is
	// field 3; utime and stime are fields 14 and 15, in USER_HZ (100/s).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("parse /proc/PID/stat: %q", b)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// cpuPer runs do n times and returns p's CPU time per run.
func (p *process) cpuPer(t testing.TB, n int, do func()) time.Duration {
	t.Helper()
	do() // warm up: caches, connections, the home key
	before := p.cpuTime(t)
	for range n {
		do()
	}
	return (p.cpuTime(t) - before) / time.Duration(n)
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// measureLogin registers name and logs in, returning the session token.
func measureLogin(t testing.TB, url, name string) string {
	t.Helper()
	creds, _ := json.Marshal(map[string]string{"username": name, "password": "correct horse"})
	if status, resp := post(t, url+"/register", "", json.RawMessage(creds)); status != 201 {
		t.Fatalf("register: %d %s", status, resp)
	}
	status, resp := post(t, url+"/login", "", json.RawMessage(creds))
	var out struct{ Token string }
	if status != 201 || json.Unmarshal(resp, &out) != nil {
		t.Fatalf("login: %d %s", status, resp)
	}
	return out.Token
}
