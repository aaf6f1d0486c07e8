package pgstore_test

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/pgstore"
)

// Open the store (creating or migrating its tables) and serve p2kit from
// it. Every server instance opens the same database.
//
// The example runs under go test: with P2KIT_POSTGRES_DSN set it opens
// that database (in a schema of its own, p2kit_example, so that it never
// touches a deployment's tables), and any failure stops the test binary;
// without it there is nothing to open and it returns. It prints nothing
// either way, so that its output does not depend on the environment.
func ExampleOpen() {
	ctx := context.Background()
	dsn := os.Getenv("P2KIT_POSTGRES_DSN") // e.g. postgres://p2kit@db.internal/p2kit
	if dsn == "" {
		return
	}
	store, err := pgstore.Open(ctx, dsn, &pgstore.Options{
		MaxConns:         16,
		Schema:           "p2kit_example", // yours: "p2kit", say
		StatementTimeout: 5 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	svc, err := p2core.NewService(store, p2core.Config{Domain: "chat.example.com"})
	if err != nil {
		log.Fatal(err)
	}
	if err := svc.Init(ctx); err != nil { // the first instance creates the server key
		log.Fatal(err)
	}
	// Output:
}
