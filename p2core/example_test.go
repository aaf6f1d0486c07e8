package p2core_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"os"
	"sync"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/memstore"
)

// gatewaySink delivers p2kit's events through the chat server's own
// gateway (here: a writer). Event.Payload is a Go value (one of the
// *Payload types); json.Marshal gives the JSON the README's events table
// documents.
type gatewaySink struct {
	mu  sync.Mutex // Publish is called concurrently
	out io.Writer
}

// Publish is called after the change the event reports is stored, on the
// request path: hand the event over and return.
func (g *gatewaySink) Publish(ctx context.Context, e p2core.Event) {
	data, err := json.Marshal(e.Payload)
	if err != nil {
		return // the payload types always marshal
	}
	// Empty Sessions means every session of e.UserID but e.Except (the
	// session the event is about, if any): p2kit never lists a user's
	// sessions. A zero UserID means every user.
	to := "every session of user " + e.UserID.String()
	if e.UserID == 0 {
		to = "every session of every user"
	} else if len(e.Sessions) > 0 {
		to = fmt.Sprint("sessions ", e.Sessions, " of user ", e.UserID)
	}
	if e.Except != "" {
		to += " but " + string(e.Except)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	fmt.Fprintf(g.out, "%s to %s: %s\n", e.Type, to, data)
}

// An EventSink that forwards each event's payload as JSON. The clock is
// fixed so that the output is stable.
func ExampleEventSink() {
	ctx := context.Background()
	now := time.Date(2031, 1, 1, 12, 0, 0, 0, time.UTC)
	svc, err := p2core.NewService(memstore.New(), p2core.Config{
		Domain: "chat.example.com",
		Events: &gatewaySink{out: os.Stdout},
		Now:    func() time.Time { return now },
	})
	if err != nil {
		log.Fatal(err)
	}
	alice := p2core.Principal{UserID: 1001, FID: "alice@chat.example.com", SessionID: "laptop"}
	if _, _, err := svc.IssueFederationToken(ctx, alice, "https://foreign.example"); err != nil {
		log.Fatal(err)
	}
	// Output:
	// FEDERATION_TOKEN_ISSUED to every session of user 1001: {"server":"https://foreign.example","session_id":"laptop","expires_at":1925035500}
}
