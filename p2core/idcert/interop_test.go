package idcert

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGnuPGAcceptsIDCert imports ID-Certs into GnuPG and checks that it
// reports the certification as good, shows both notations, and reports it
// expired once the clock passes its expiry. GnuPG 2.2 reads v4 keys only,
// so the v4 server algorithms and v4 client keys are used.
func TestGnuPGAcceptsIDCert(t *testing.T) {
	requireGPG(t)
	clients := []clientCase{}
	for _, cc := range clientCases() {
		if cc.name == "gpg-ed25519" || cc.name == "openpgpjs-legacy" || cc.name == "openpgpjs-p256" || cc.name == "gocrypto-ed25519" {
			clients = append(clients, cc)
		}
	}
	for _, alg := range []ServerKeyAlgorithm{ServerEd25519Legacy, ServerRSA3072} {
		server := testServerKey(t, alg)
		keyID := fmt.Sprintf("%X", server.Fingerprint()[len(server.Fingerprint())-8:])
		for _, cc := range clients {
			t.Run(string(alg)+"/"+cc.name, func(t *testing.T) {
				now := time.Now()
				client, err := ParseClientKey(cc.armored(t), cc.fid, now, Policy{})
				if err != nil {
					t.Fatal(err)
				}
				c, err := Issue(server, client, IssueParams{SessionID: "gpg session", Now: now, Lifetime: 48 * time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				home := gnupgHome(t)
				if _, stderr, err := runGPG(t, home, server.PublicArmored(), "--import"); err != nil {
					t.Fatalf("import server key: %v\n%s", err, stderr)
				}
				if _, stderr, err := runGPG(t, home, c.Raw, "--import"); err != nil {
					t.Fatalf("import ID-Cert: %v\n%s", err, stderr)
				}
				fpr := fmt.Sprintf("%X", c.ClientFingerprint)

				out, stderr, err := runGPG(t, home, nil, "--with-colons", "--check-sigs", fpr)
				if err != nil {
					t.Fatalf("check-sigs: %v\n%s", err, stderr)
				}
				if !hasColonSig(out, "!", keyID, "10x") {
					t.Fatalf("no good (sig:!) generic certification by %s:\n%s", keyID, out)
				}

				out, stderr, err = runGPG(t, home, nil, "--check-sigs", "--list-options", "show-notations,show-sig-expire", fpr)
				if err != nil {
					t.Fatalf("check-sigs: %v\n%s", err, stderr)
				}
				for _, want := range []string{
					"Signature notation: session-id@polyproto.org=gpg session",
					"Signature notation: serial@polyproto.org=" + c.Serial.String(),
				} {
					if !strings.Contains(out, want) {
						t.Fatalf("missing %q in:\n%s", want, out)
					}
				}
				if flags, ok := humanSigFlags(out, keyID); !ok || !strings.HasPrefix(flags, "sig!") || strings.Contains(flags, "X") {
					t.Fatalf("certification flags %q (found %v) before expiry:\n%s", flags, ok, out)
				}

				later := fmt.Sprint(c.Expires.Add(time.Hour).Unix())
				out, stderr, err = runGPG(t, home, nil, "--faked-system-time", later, "--check-sigs", "--list-options", "show-sig-expire", fpr)
				if err != nil {
					t.Fatalf("check-sigs with faked time: %v\n%s", err, stderr)
				}
				if flags, ok := humanSigFlags(out, keyID); !ok || !strings.Contains(flags, "X") {
					t.Fatalf("GnuPG does not report the certification expired (flags %q):\n%s", flags, out)
				}
			})
		}
	}
}

// hasColonSig reports whether gpg's colon listing has a sig record with the
// given validity, issuer key ID and signature class.
func hasColonSig(listing, validity, keyID, class string) bool {
	for _, line := range strings.Split(listing, "\n") {
		f := strings.Split(line, ":")
		if len(f) > 10 && f[0] == "sig" && f[1] == validity && f[4] == keyID && f[10] == class {
			return true
		}
	}
	return false
}

// humanSigFlags returns the status columns ("sig!     NX") of the
// human-readable sig line issued by keyID.
func humanSigFlags(listing, keyID string) (string, bool) {
	for _, line := range strings.Split(listing, "\n") {
		if i := strings.Index(line, keyID); strings.HasPrefix(line, "sig") && i > 0 {
			return strings.TrimSpace(line[:i]), true
		}
	}
	return "", false
}

// TestOpenPGPJSVerifiesIDCert checks ID-Certs of every server algorithm
// with OpenPGP.js (testdata/openpgpjs/verify.mjs). It needs node and an
// installed openpgp package, so it runs only when P2KIT_OPENPGPJS_DIR names
// a directory holding node_modules/openpgp (see testdata/openpgpjs/README.md).
func TestOpenPGPJSVerifiesIDCert(t *testing.T) {
	dir := os.Getenv("P2KIT_OPENPGPJS_DIR")
	module := filepath.Join(dir, "node_modules", "openpgp", "dist", "node", "openpgp.mjs")
	node, err := exec.LookPath("node")
	if dir == "" || err != nil {
		t.Skip("set P2KIT_OPENPGPJS_DIR to a directory with node_modules/openpgp (and put node on PATH) to run the OpenPGP.js check")
	}
	if _, err := os.Stat(module); err != nil {
		t.Fatalf("P2KIT_OPENPGPJS_DIR: %v", err)
	}
	script, err := filepath.Abs(filepath.Join("testdata", "openpgpjs", "verify.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	run := func(serverFile, certFile, date string) (string, error) {
		args := []string{script, serverFile, certFile}
		if date != "" {
			args = append(args, date)
		}
		cmd := exec.Command(node, args...)
		cmd.Env = append(os.Environ(), "OPENPGPJS_MODULE="+module)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, alg := range allServerAlgorithms {
		server := testServerKey(t, alg)
		for _, cc := range clientCases() {
			if !strings.HasPrefix(cc.name, "openpgpjs") && cc.name != "gpg-ed25519" {
				continue
			}
			t.Run(string(alg)+"/"+cc.name, func(t *testing.T) {
				now := time.Now()
				client, err := ParseClientKey(cc.armored(t), cc.fid, now, Policy{})
				if err != nil {
					t.Fatal(err)
				}
				c, err := Issue(server, client, IssueParams{SessionID: "js", Now: now, Lifetime: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				tmp := t.TempDir()
				serverFile, certFile := filepath.Join(tmp, "server.asc"), filepath.Join(tmp, "cert.bin")
				if err := os.WriteFile(serverFile, server.PublicArmored(), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(certFile, c.Raw, 0o600); err != nil {
					t.Fatal(err)
				}
				out, err := run(serverFile, certFile, "")
				if err != nil || !strings.Contains(out, "valid "+client.UserID()+" session-id@polyproto.org=js serial@polyproto.org="+c.Serial.String()) {
					t.Fatalf("OpenPGP.js: %v\n%s", err, out)
				}
				out, err = run(serverFile, certFile, c.Expires.Add(time.Minute).Format(time.RFC3339))
				if err == nil || !strings.Contains(out, "expired") {
					t.Fatalf("OpenPGP.js after expiry: %v\n%s", err, out)
				}
			})
		}
	}
}
