// Command federation runs polyproto-core federation end to end on one
// machine: it starts two home servers, A (a.localhost) and B (b.localhost),
// on loopback ports with separate bbolt files, then plays a client script:
// alice registers on A, gets an ID-Cert and a federation token for B from
// A, logs in to B with them (route 16) and uploads KeyPackages there, and
// bob, a user of B, verifies her ID-Cert and claims one of her KeyPackages.
// It prints each step and exits non-zero if any step fails.
//
//	go run ./examples/federation
//
// Flags:
//
//	-data DIR   folder for the servers' data (a/p2kit.db, b/p2kit.db);
//	            default: a temporary folder, removed at the end
//	-v          print the servers' logs on stderr
//
// The servers resolve each other's domain through a static table
// (httpadapter.StaticResolver) instead of https://DOMAIN, and allow http://
// and loopback addresses: the settings of a loopback test, not of a real
// deployment.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/p2kit/p2kit/httpadapter"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "federation:", err)
		os.Exit(1)
	}
}

// run starts the two servers, plays the script and stops the servers.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("federation", flag.ContinueOnError)
	fs.SetOutput(stderr)
	data := fs.String("data", "", "folder for the servers' data (default: a temporary folder, removed at the end)")
	verbose := fs.Bool("v", false, "print the servers' logs on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	dir := *data
	if dir == "" {
		if dir, err = os.MkdirTemp("", "p2kit-federation-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	logger := slog.New(slog.DiscardHandler)
	if *verbose {
		logger = slog.New(slog.NewTextHandler(stderr, nil))
	}

	// Listen first: each server must know its own URL (the `server` of
	// federation tokens for it) and the other's (its resolver entry).
	lnA, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	lnB, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		lnA.Close()
		return err
	}
	urlA, urlB := "http://"+lnA.Addr().String(), "http://"+lnB.Addr().String()
	a, err := startServer(ctx, "A", "a.localhost", lnA, filepath.Join(dir, "a"), httpadapter.StaticResolver{"b.localhost": urlB}, logger)
	if err != nil {
		lnA.Close()
		lnB.Close()
		return err
	}
	defer func() { err = errors.Join(err, a.close()) }()
	b, err := startServer(ctx, "B", "b.localhost", lnB, filepath.Join(dir, "b"), httpadapter.StaticResolver{"a.localhost": urlA}, logger)
	if err != nil {
		lnB.Close()
		return err
	}
	defer func() { err = errors.Join(err, b.close()) }()

	return demo(ctx, stdout, a, b)
}
