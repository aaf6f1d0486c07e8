package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/idcert"
	"github.com/p2kit/p2kit/p2core/idcert/idcerttest"
)

// TestInsecureFederationAloneDoesNotReachLoopback presents, with only
// -insecure-federation set, an ID-Cert of x@localhost: the server must not
// connect to loopback to fetch that home's key, must answer with the one
// "could not be reached" text, and must say why only in its log.
func TestInsecureFederationAloneDoesNotReachLoopback(t *testing.T) {
	w := &syncBuffer{}
	s := startServerLogging(t, t.TempDir(), w, "-insecure-federation")
	cert := certFromHome(t, "localhost", "x@localhost")
	_, err := client(s, session{}).ForeignLogin(context.Background(), p2core.ForeignLoginRequest{FederationToken: "t", IDCert: cert})
	if !errors.Is(err, p2core.ErrHomeUnreachable) {
		t.Fatalf("route 16 with a home at localhost: %v, want P2CORE_HOME_UNREACHABLE", err)
	}
	if !strings.Contains(err.Error(), "could not be reached") || strings.Contains(err.Error(), "127.0.0.") {
		t.Fatalf("the caller sees %q", err)
	}
	if got := w.String(); !strings.Contains(got, "not globally reachable") {
		t.Fatalf("the log does not say the address was refused:\n%s", got)
	}
}

// certFromHome returns an ID-Cert for fid, issued a minute ago by a fresh
// server key of domain (a home this test controls no server of).
func certFromHome(t *testing.T, domain, fid string) []byte {
	t.Helper()
	now := time.Now()
	home, err := idcert.GenerateServerKey(domain, idcert.ServerEd25519Legacy, now.Add(-time.Hour), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := idcerttest.NewClientKey(fid, nil, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	ck, err := idcert.ParseClientKey([]byte(key.Armored), fid, now, idcert.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := idcert.Issue(home, ck, idcert.IssueParams{SessionID: "s1", Now: now.Add(-time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	return cert.Raw
}
