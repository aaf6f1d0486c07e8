package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loginAs logs name in with password and returns the session, or fails.
func loginAs(t *testing.T, s *testServer, name, password string) (int, session) {
	t.Helper()
	status, body := post(t, s.url+"/login", "", map[string]string{"username": name, "password": password})
	var out session
	if status == 201 {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
	}
	return status, out
}

// adminLogin logs in the -admin account root with the password the server
// generated into its data folder.
func adminLogin(t *testing.T, s *testServer) session {
	t.Helper()
	pw, err := os.ReadFile(filepath.Join(s.data, "admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	status, sess := loginAs(t, s, "root", string(pw))
	if status != 201 {
		t.Fatalf("root cannot log in with the generated password: %d", status)
	}
	return sess
}

func TestAdminNameCannotBeClaimedByRegistering(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte("admin secret from a file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, filepath.Join(dir, "data"), "-admin", "ops", "-admin-password-file", pwFile)
	for _, name := range []string{"root", "ops", "OPS"} {
		if status, body := post(t, s.url+"/register", "", map[string]string{"username": name, "password": "correct horse"}); status != 403 {
			t.Fatalf("registering the admin name %s: %d %s, want 403", name, status, body)
		}
	}
	if status, _ := loginAs(t, s, "root", "correct horse"); status != 401 {
		t.Fatalf("root with a password of the caller's choice: %d, want 401", status)
	}
	// Every -admin account created at start has the file's whole content
	// (trailing newline included) as its password.
	for _, name := range []string{"root", "ops"} {
		status, sess := loginAs(t, s, name, "admin secret from a file\n")
		if status != 201 {
			t.Fatalf("%s with the file's password: %d", name, status)
		}
		if err := client(s, sess).SetTokenGeneration(context.Background(), true); err != nil {
			t.Fatalf("%s is no administrator: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "admin-password")); !os.IsNotExist(err) {
		t.Fatalf("a password was generated although -admin-password-file was given: %v", err)
	}
}

func TestAdminPasswordIsGeneratedOnceIntoTheDataFolder(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data) // -admin root, no password file
	path := filepath.Join(data, "admin-password")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	pw, _ := os.ReadFile(path)
	if len(pw) < 16 {
		t.Fatalf("generated password %d bytes long", len(pw))
	}
	root := adminLogin(t, s)
	if err := client(s, root).SetTokenGeneration(context.Background(), true); err != nil {
		t.Fatalf("root is no administrator: %v", err)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	// A restart with one more admin keeps the file, root's password, and
	// gives the new account the same one.
	s = startServer(t, data, "-admin", "ops")
	if again, _ := os.ReadFile(path); string(again) != string(pw) {
		t.Fatal("the password file was rewritten on restart")
	}
	adminLogin(t, s)
	if status, _ := loginAs(t, s, "ops", string(pw)); status != 201 {
		t.Fatalf("the admin added on restart cannot log in with the password file: %d", status)
	}
}

func TestAdminNamesAreCheckedAtStart(t *testing.T) {
	for _, args := range [][]string{{"-admin", "not a name"}, {"-admin-password-file", "/nonexistent/pw"}} {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // a server that starts anyway stops at once
		err := run(ctx, append([]string{"-addr", "127.0.0.1:0", "-data", t.TempDir(), "-pbkdf2-iterations", "1000", "-admin", "root"}, args...), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Fatalf("%v: start gave %v, want an error naming %s", args, err, args[0])
		}
		t.Log(err)
	}
}
