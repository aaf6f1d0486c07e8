package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert"
)

// runHint tells a developer how to run the tests that were skipped.
const runHint = "bash interop/setup.sh && P2KIT_INTEROP=1 go test ./interop"

// jsDir holds the pinned JavaScript implementations and their scripts.
const jsDir = "js"

// Timeouts for external processes. They bound a hung tool; none is used
// to wait for something to happen.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
	toolTimeout  = 60 * time.Second
)

// httpClient bounds every request the harness itself sends.
var httpClient = &http.Client{Timeout: 30 * time.Second}

// strict reports whether a missing tool is a failure (CI) rather than a
// reason to skip.
func strict() bool { return os.Getenv("P2KIT_INTEROP") == "1" }

// need skips the test (or fails it when strict) if err says that a tool the
// test needs is missing.
func need(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if strict() {
		t.Fatalf("%s: %v (with P2KIT_INTEROP=1 a missing tool is a failure; see interop/README.md)", what, err)
	}
	t.Skipf("%s: %v; to run these tests: %s", what, err, runHint)
}

// requireGPG makes sure GnuPG 2.2 or later is on PATH.
func requireGPG(t *testing.T) {
	t.Helper()
	out, err := exec.Command("gpg", "--version").Output()
	if err == nil && !bytes.HasPrefix(out, []byte("gpg (GnuPG) 2.")) {
		err = fmt.Errorf("not GnuPG 2.x: %q", firstLine(out))
	}
	need(t, "gpg", err)
	_, err = exec.LookPath("gpgconf")
	need(t, "gpgconf", err)
}

// requireNode makes sure node is on PATH and that the npm packages the
// scripts import are installed at the versions package.json pins.
func requireNode(t *testing.T) {
	t.Helper()
	_, err := exec.LookPath("node")
	need(t, "node", err)
	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	b, err := os.ReadFile(filepath.Join(jsDir, "package.json"))
	if err == nil {
		err = json.Unmarshal(b, &pkg)
	}
	if err != nil {
		t.Fatalf("read %s/package.json: %v", jsDir, err)
	}
	for _, name := range slices.Sorted(maps.Keys(pkg.Dependencies)) {
		want := pkg.Dependencies[name]
		var got struct {
			Version string `json:"version"`
		}
		b, err := os.ReadFile(filepath.Join(jsDir, "node_modules", name, "package.json"))
		if err == nil {
			err = json.Unmarshal(b, &got)
		}
		if err == nil && got.Version != want {
			err = fmt.Errorf("version %s installed, package.json pins %s", got.Version, want)
		}
		need(t, "npm package "+name, err)
	}
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return s
}

// binDir is where TestMain lets the tests build the server binary.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "p2kit-interop-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var serverBuild struct {
	once sync.Once
	path string
	err  error
}

// serverBinary builds examples/homeserver once per test binary and returns
// its path. Only tests that are not skipped pay for the build.
func serverBinary(t *testing.T) string {
	t.Helper()
	serverBuild.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			serverBuild.err = err
			return
		}
		path := filepath.Join(binDir, "homeserver")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, goTool, "build", "-o", path, "github.com/p2kit/p2kit/examples/homeserver").CombinedOutput()
		if err != nil {
			serverBuild.err = fmt.Errorf("go build ./examples/homeserver: %v\n%s", err, out)
			return
		}
		serverBuild.path = path
	})
	if serverBuild.err != nil {
		t.Fatal(serverBuild.err)
	}
	return serverBuild.path
}

// lockedBuffer collects a process's stderr for failure reports.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// homeServer is a running examples/homeserver process.
type homeServer struct {
	URL    string
	stderr *lockedBuffer
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's result, valid after done
}

// startServer runs the example home server on a free loopback port with a
// fresh data folder, waits for its "listening on" line and stops it
// (SIGTERM, then SIGKILL) when the test ends.
func startServer(t *testing.T) *homeServer {
	t.Helper()
	bin := serverBinary(t)
	s := &homeServer{stderr: &lockedBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(bin,
		"-addr", "127.0.0.1:0",
		"-data", t.TempDir(),
		"-pbkdf2-iterations", "1000",
	)
	s.cmd.Stderr = s.stderr
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "listening on "); ok {
				select {
				case urls <- strings.TrimSpace(u):
				default:
				}
			}
		}
		io.Copy(io.Discard, stdout)
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() { s.stop(t) })

	select {
	case s.URL = <-urls:
	case <-s.done:
		t.Fatalf("home server exited before listening (%v); stderr:\n%s", s.err, s.stderr)
	case <-time.After(startTimeout):
		t.Fatalf("home server printed no \"listening on\" line within %v; stderr:\n%s", startTimeout, s.stderr)
	}
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Fatalf("home server listens on %q, want http://127.0.0.1:PORT", s.URL)
	}
	return s
}

// stop shuts the server down gracefully and reports a server that does not
// exit, or exits with an error, after SIGTERM.
func (s *homeServer) stop(t *testing.T) {
	select {
	case <-s.done:
		t.Errorf("home server exited during the test (%v); stderr:\n%s", s.err, s.stderr)
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		if s.err != nil {
			t.Errorf("home server exited with %v after SIGTERM; stderr:\n%s", s.err, s.stderr)
		}
	case <-time.After(stopTimeout):
		_ = s.cmd.Process.Kill()
		<-s.done
		t.Errorf("home server did not stop within %v of SIGTERM", stopTimeout)
	}
	if t.Failed() {
		t.Logf("home server stderr:\n%s", s.stderr)
	}
}

// session is a logged-in account on the home server.
type session struct {
	UserID    p2core.UserID    `json:"user_id"`
	SessionID p2core.SessionID `json:"session_id"`
	FID       p2core.FID       `json:"fid"`
	Token     string           `json:"token"`
	// Client calls the p2kit routes as this session.
	Client *httpadapter.Client `json:"-"`
}

const testPassword = "correct horse battery"

// register creates an account.
func (s *homeServer) register(t *testing.T, username string) {
	t.Helper()
	s.postJSON(t, "/register", map[string]string{"username": username, "password": testPassword}, http.StatusCreated, nil)
}

// login opens a new session of an account.
func (s *homeServer) login(t *testing.T, username string) *session {
	t.Helper()
	var out session
	s.postJSON(t, "/login", map[string]string{"username": username, "password": testPassword}, http.StatusCreated, &out)
	if out.Token == "" || out.UserID == 0 || out.SessionID == "" {
		t.Fatalf("login answer lacks token, user_id or session_id: %+v", out)
	}
	if want := p2core.FID(username + "@home.localhost"); out.FID != want {
		t.Fatalf("login FID = %q, want %q", out.FID, want)
	}
	out.Client = &httpadapter.Client{BaseURL: s.URL, Token: out.Token}
	return &out
}

func (s *homeServer) postJSON(t *testing.T, path string, body any, wantStatus int, out any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := httpClient.Post(s.URL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	if resp.StatusCode != wantStatus {
		t.Fatalf("POST %s: status %d, want %d: %s", path, resp.StatusCode, wantStatus, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("POST %s: decode %s: %v", path, data, err)
		}
	}
}

// serverKey fetches the server's current public key through route 10, in
// binary (JSON Base64) and armored (Accept: application/pgp-keys) form,
// checks that both are the same key and returns them with the parsed key.
func (s *homeServer) serverKey(t *testing.T) (binary, armored []byte, key *idcert.ServerKey) {
	t.Helper()
	ctx := context.Background()
	binary, err := (&httpadapter.Client{BaseURL: s.URL}).ServerKey(ctx, time.Time{})
	if err != nil {
		t.Fatalf("route 10: %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/p2core/key/server", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/pgp-keys")
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("route 10 armored: %v", err)
	}
	defer resp.Body.Close()
	armored, err = io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(armored, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		t.Fatalf("route 10 with Accept: application/pgp-keys: status %d, body %.80q", resp.StatusCode, armored)
	}
	key, err = idcert.ParsePublicServerKey(binary)
	if err != nil {
		t.Fatalf("binary server key: %v", err)
	}
	keyA, err := idcert.ParsePublicServerKey(armored)
	if err != nil {
		t.Fatalf("armored server key: %v", err)
	}
	if !bytes.Equal(key.Fingerprint(), keyA.Fingerprint()) {
		t.Fatalf("binary and armored server keys differ: %X vs %X", key.Fingerprint(), keyA.Fingerprint())
	}
	return binary, armored, key
}

// runNode runs one of the scripts in js/ and returns its stdout. A non-zero
// exit is returned as an error carrying stderr.
func runNode(t *testing.T, script string, args ...string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Dir = jsDir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("node %s: %w: %s", script, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// mustNode is runNode for runs that must succeed.
func mustNode(t *testing.T, script string, args ...string) []byte {
	t.Helper()
	out, err := runNode(t, script, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// writeFile writes data into a new file in the test's temp dir and
// returns its absolute path.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// gpgHome is a throw-away GnuPG home directory.
type gpgHome struct{ dir string }

// newGPGHome makes an empty GnuPG home. It lives in the system temp dir,
// not t.TempDir, to keep gpg-agent's socket path short; its agent is
// stopped and the directory removed when the test ends.
func newGPGHome(t *testing.T) gpgHome {
	t.Helper()
	dir, err := os.MkdirTemp("", "p2kit-gpg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = exec.Command("gpgconf", "--homedir", dir, "--kill", "all").Run()
		os.RemoveAll(dir)
	})
	return gpgHome{dir: dir}
}

// run runs gpg in this home with stdin and returns stdout and stderr.
// Output is forced to English and UTC so that tests can read it.
func (h gpgHome) run(t *testing.T, stdin []byte, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), toolTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "gpg", append([]string{"--homedir", h.dir, "--batch", "--no-tty"}, args...)...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+h.dir, "LC_ALL=C", "LANGUAGE=C", "LANG=C", "TZ=UTC")
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("gpg %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), err
}

// must is run for commands that must succeed.
func (h gpgHome) must(t *testing.T, stdin []byte, args ...string) string {
	t.Helper()
	out, errOut, err := h.run(t, stdin, args...)
	if err != nil {
		t.Fatalf("gpg %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}
