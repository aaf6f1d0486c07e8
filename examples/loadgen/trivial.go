package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// trivialEnv, when set in the environment, makes the load generator's
// binary serve a trivial handler instead of running: its value is the
// file holding the body, or "-" for the do-nothing handler.
const trivialEnv = "P2KIT_LOADGEN_TRIVIAL"

// trivialHandler answers every request with body and the headers the p2kit
// handler sets; a nil body makes the do-nothing handler (200, no body).
func trivialHandler(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if body == nil {
			return
		}
		h := w.Header()
		h["Content-Type"] = []string{"application/json"}
		h["Cache-Control"] = []string{"no-store"}
		h["X-Content-Type-Options"] = []string{"nosniff"}
		_, _ = w.Write(body)
	})
}

// serveTrivial is the child process's main: it serves the body named by
// trivialEnv on a free loopback port, prints "listening on http://ADDR"
// and serves until killed.
func serveTrivial(spec string) error {
	var body []byte
	if spec != "-" {
		b, err := os.ReadFile(spec)
		if err != nil {
			return err
		}
		body = b
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("listening on http://%s\n", ln.Addr())
	srv := &http.Server{Handler: trivialHandler(body), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second}
	return srv.Serve(ln)
}

// trivialServers starts the trivial handlers the read and mixed scenarios
// are compared against, once per limit name. By default each runs in a
// child process (this binary re-executed), because the example server is
// a process of its own too: on two cores a handler in the load
// generator's own process answers one client about 1.7 times faster than
// the same handler in another process, since no request crosses a process
// boundary. With inProcess they are httptest servers in this process.
type trivialServers struct {
	dir       string
	inProcess bool
	urls      map[string]string
	stops     []func()
}

func newTrivialServers(dir string, inProcess bool) *trivialServers {
	return &trivialServers{dir: dir, inProcess: inProcess, urls: map[string]string{}}
}

// url returns the URL of the trivial server for name, starting it serving
// body on first use.
func (t *trivialServers) url(name string, body []byte) (string, error) {
	if u, ok := t.urls[name]; ok {
		return u, nil
	}
	var u string
	if t.inProcess {
		s := httptest.NewServer(trivialHandler(body))
		t.stops = append(t.stops, s.Close)
		u = s.URL + "/"
	} else {
		var err error
		if u, err = t.startChild(name, body); err != nil {
			return "", fmt.Errorf("trivial handler %s: %w", name, err)
		}
	}
	t.urls[name] = u
	return u, nil
}

// startChild re-executes this binary as a trivial server.
func (t *trivialServers) startChild(name string, body []byte) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	spec := "-"
	if body != nil {
		spec = filepath.Join(t.dir, fmt.Sprintf("trivial-%d.body", len(t.urls)))
		if err := os.WriteFile(spec, body, 0o600); err != nil {
			return "", err
		}
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), trivialEnv+"="+spec)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	t.stops = append(t.stops, func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case l := <-line:
		u, ok := strings.CutPrefix(l, "listening on ")
		if !ok {
			return "", fmt.Errorf("child printed %q", l)
		}
		return u + "/", nil
	case <-time.After(30 * time.Second):
		return "", fmt.Errorf("child did not start within 30s")
	}
}

// close stops every trivial server.
func (t *trivialServers) close() {
	for _, stop := range t.stops {
		stop()
	}
}
