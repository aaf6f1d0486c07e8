package httpadapter_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/mls/mlstest"
	"github.com/p2kit/p2kit/storage/boltstore"
	"github.com/p2kit/p2kit/storage/memstore"
	"github.com/p2kit/p2kit/storage/pgstore"
)

// backendWords may appear in a Store's own error text (backend, file,
// bucket, table or constraint names) and so never in an answer.
var backendWords = []string{"memstore", "boltstore", "pgstore", "bbolt", "bucket", "constraint", ".db", "p2kit_", "sqlstate", "duplicate key value", "violates"}

// refusalBackends opens each real backend: memstore, boltstore in a
// temporary file, and pgstore in a schema of its own when
// P2KIT_POSTGRES_DSN is set.
func refusalBackends(t *testing.T) map[string]func(t *testing.T) p2core.Store {
	backends := map[string]func(t *testing.T) p2core.Store{
		"memstore": func(t *testing.T) p2core.Store { return memstore.New() },
		"boltstore": func(t *testing.T) p2core.Store {
			s, err := boltstore.Open(filepath.Join(t.TempDir(), "p2kit.db"), nil)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	dsn := os.Getenv("P2KIT_POSTGRES_DSN")
	if dsn == "" {
		t.Log("P2KIT_POSTGRES_DSN is not set: pgstore is not sampled")
		return backends
	}
	backends["pgstore"] = func(t *testing.T) p2core.Store {
		schema := fmt.Sprintf("p2kit_refusals_%d_%d", os.Getpid(), time.Now().UnixNano())
		t.Cleanup(func() {
			ctx := context.WithoutCancel(t.Context())
			conn, err := pgx.Connect(ctx, dsn)
			if err == nil {
				_, err = conn.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
				conn.Close(ctx)
			}
			if err != nil {
				t.Errorf("drop schema %s: %v", schema, err)
			}
		})
		s, err := pgstore.Open(t.Context(), dsn, &pgstore.Options{Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	return backends
}

// TestRefusalsNameNoBackend provokes a sample of refusals that the real
// backends decide (duplicate and over-cap KeyPackages, spent, unknown and
// misdirected tokens, a missing ID-Cert, a too-quick key rotation) and
// checks that each is refused with its P2CORE_* code and that no answer
// names a backend, file, bucket, table or constraint.
func TestRefusalsNameNoBackend(t *testing.T) {
	for name, open := range refusalBackends(t) {
		t.Run(name, func(t *testing.T) {
			e := newEnvOn(t, open(t), func(c *p2core.Config) { c.MaxKeyPackagesPerUser = 3 },
				httpadapter.Options{RateLimits: httpadapter.RateLimits{Disabled: true}})
			alice := e.login(101, "alice", false)
			root := e.login(1, "root", true)
			var seen []string
			refused := func(what string, err error, status int, code string) {
				t.Helper()
				var ae *httpadapter.APIError
				if !errors.As(err, &ae) || ae.Status != status || ae.Code != code {
					t.Errorf("%s: %v, want %d %s", what, err, status, code)
					return
				}
				seen = append(seen, what+": "+ae.Message)
			}

			kps := build(t, mlstest.NewEd25519(ed25519.NewKeyFromSeed(make([]byte, 32))), 1)
			refused("KeyPackage without an ID-Cert", alice.c.UploadKeyPackages(ctx, kps), 409, "P2CORE_NO_ID_CERT")
			b := certified(t, e, alice)
			kps = build(t, b, 4)
			if err := alice.c.UploadKeyPackages(ctx, kps[:1]); err != nil {
				t.Fatal(err)
			}
			refused("duplicate KeyPackage", alice.c.UploadKeyPackages(ctx, kps[:1]), 409, "P2CORE_DUPLICATE_KEYPACKAGE")
			refused("duplicate last resort", alice.c.SetLastResort(ctx, kps[0]), 409, "P2CORE_DUPLICATE_KEYPACKAGE")
			refused("KeyPackages over the cap", alice.c.UploadKeyPackages(ctx, kps[1:]), 409, "P2CORE_TOO_MANY_KEYPACKAGES")

			tok, err := alice.c.IssueToken(ctx, "https://b.example")
			if err != nil {
				t.Fatal(err)
			}
			_, err = e.anon().RedeemToken(ctx, tok, "https://c.example")
			refused("token for another server", err, 404, "P2CORE_TOKEN_INVALID")
			if _, err := e.anon().RedeemToken(ctx, tok, "https://b.example"); err != nil {
				t.Fatal(err)
			}
			_, err = e.anon().RedeemToken(ctx, tok, "https://b.example")
			refused("spent token", err, 404, "P2CORE_TOKEN_INVALID")
			_, err = e.anon().RedeemToken(ctx, strings.Repeat("A", len(tok)), "https://b.example")
			refused("unknown token", err, 404, "P2CORE_TOKEN_INVALID")

			e.clock.Add(time.Second)
			if _, err := root.c.RotateServerKey(ctx); err != nil {
				t.Fatal(err)
			}
			_, err = root.c.RotateServerKey(ctx)
			refused("rotation within a second", err, 409, "P2CORE_CONFLICT")

			if len(seen) != 8 {
				t.Fatalf("%d refusals seen, want 8", len(seen))
			}
			for _, msg := range seen {
				low := strings.ToLower(msg)
				for _, w := range backendWords {
					if strings.Contains(low, w) {
						t.Errorf("refusal names %q: %s", w, msg)
					}
				}
			}
		})
	}
}
