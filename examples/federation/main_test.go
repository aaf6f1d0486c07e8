package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func runFor(t *testing.T, args ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errs bytes.Buffer
	if err := run(ctx, args, &out, &errs); err != nil {
		t.Fatalf("run %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out.String(), errs.String())
	}
	return out.String(), errs.String()
}

func TestRunCompletesTheFederationFlow(t *testing.T) {
	out, _ := runFor(t)
	for _, want := range []string{
		"alice registered on A",
		"A certified alice's OpenPGP key (route 8)",
		"admitted alice@a.localhost as B's user",
		"B holds 5 for her session and a last resort",
		"verified it against A's server key",
		"bob claimed a KeyPackage of alice on B (route 14)",
		"replaying the federation token at B is refused: 404 P2CORE_TOKEN_INVALID",
		"12. done:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestRunKeepsDataAcrossRunsWithTheDataFlag(t *testing.T) {
	dir := t.TempDir()
	runFor(t, "-data", dir)
	for _, f := range []string{"a/p2kit.db", "b/p2kit.db"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	// Second run on the same data: new ports, the same stores. alice's FID
	// is already mapped to a user of B, and the flow still completes.
	out, logs := runFor(t, "-data", dir, "-v")
	if !strings.Contains(out, "done:") || !strings.Contains(logs, "foreign session created") {
		t.Fatalf("second run:\n%s\nlogs:\n%s", out, logs)
	}
}

func TestRunRefusesBadArguments(t *testing.T) {
	for _, args := range [][]string{{"-nope"}, {"extra"}} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("run %v: no error", args)
		}
	}
}
