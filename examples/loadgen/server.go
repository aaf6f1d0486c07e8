package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// adminName is the username the self-started server makes an
// administrator (-admin, created at its start with the load generator's
// password through -admin-password-file): the load generator logs in as it
// to make sure federation token generation is switched on.
const adminName = "loadgen-admin"

// buildServer compiles examples/homeserver into dir and returns the path
// of the binary. It runs the go command in the module that contains the
// current directory, so `go run ./examples/loadgen` works from anywhere in
// the repository.
func buildServer(ctx context.Context, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is needed to build the example server (or pass -server or -server-bin): %w", err)
	}
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run the load generator inside the p2kit module (or pass -server or -server-bin)")
	}
	bin := filepath.Join(dir, "homeserver")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "./examples/homeserver")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./examples/homeserver: %w\n%s", err, out)
	}
	return bin, nil
}

// serverProc is an example server started by the load generator.
type serverProc struct {
	url string
	// startup is the time from starting the process to its "listening
	// on" line: opening the store, loading the server key, listening.
	startup time.Duration
	watch   *procWatch
	cmd     *exec.Cmd
	done    chan error
	logPath string
}

// startServer runs the example server binary on dataDir with the options a
// load test needs: a free loopback port, no rate limits, cheap password
// hashing and an administrator account, plus extra flags (the store).
// procs, when positive, sets the server's GOMAXPROCS. Its log goes to
// logPath.
func startServer(ctx context.Context, bin, dataDir, logPath string, procs int, extra ...string) (*serverProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	pwFile := logPath + ".admin-password"
	if err := os.WriteFile(pwFile, []byte(password), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, append([]string{"-addr", "127.0.0.1:0", "-data", dataDir, "-no-rate-limits",
		"-pbkdf2-iterations", "1000", "-admin", adminName, "-admin-password-file", pwFile}, extra...)...)
	cmd.Env = os.Environ()
	if procs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(procs))
	}
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	s := &serverProc{cmd: cmd, watch: &procWatch{pid: cmd.Process.Pid}, done: make(chan error, 1), logPath: logPath}
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(stdout)
		line, err := r.ReadString('\n')
		if err == nil {
			lines <- strings.TrimSpace(line)
		}
		_, _ = io.Copy(io.Discard, r)
		s.done <- cmd.Wait()
	}()
	select {
	case line := <-lines:
		s.startup = time.Since(t0)
		url, ok := strings.CutPrefix(line, "listening on ")
		if !ok {
			s.stop()
			return nil, fmt.Errorf("server printed %q, want \"listening on URL\"", line)
		}
		s.url = url
		return s, nil
	case err := <-s.done:
		return nil, fmt.Errorf("server exited before listening (%v); log: %s", err, tail(logPath))
	case <-time.After(60 * time.Second):
		s.stop()
		return nil, fmt.Errorf("server did not print its address within 60s; log: %s", tail(logPath))
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

// stop asks the server to shut down gracefully (SIGTERM) and kills it if
// it has not exited after 15 s.
func (s *serverProc) stop() error {
	if s == nil || s.cmd.Process == nil {
		return nil
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		_ = s.cmd.Process.Kill()
	}
	select {
	case err := <-s.done:
		s.done <- err // stop may be called again
		return err
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		return errors.New("server did not stop within 15s; killed")
	}
}

// tail returns the last lines of a log file, for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log)"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "\n")
}
