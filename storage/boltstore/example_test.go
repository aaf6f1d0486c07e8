package boltstore_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/boltstore"
)

// Open the store file (creating it on first start) and serve p2kit from
// it. Everything the Service keeps, here the server identity key it
// generates on first start, is still there after a restart.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "p2kit-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "p2kit.db")
	ctx := context.Background()

	serverKey := func() []byte {
		// A second process opening the same file waits Timeout for the
		// lock, then fails: one process owns the file.
		store, err := boltstore.Open(path, &boltstore.Options{Timeout: 5 * time.Second})
		if err != nil {
			log.Fatal(err)
		}
		defer store.Close()
		svc, err := p2core.NewService(store, p2core.Config{Domain: "chat.example.com"})
		if err != nil {
			log.Fatal(err)
		}
		if err := svc.Init(ctx); err != nil { // the first start generates the server key
			log.Fatal(err)
		}
		k, err := svc.ServerPublicKey(ctx, time.Time{})
		if err != nil {
			log.Fatal(err)
		}
		return k.Fingerprint
	}
	first := serverKey()
	fmt.Println("same server key after a restart:", bytes.Equal(first, serverKey()))
	// Output:
	// same server key after a restart: true
}
