package httpadapter

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/p2core/broker"
)

// sseHeartbeat is how often an idle event stream sends a comment line, so
// proxies and clients see the connection alive.
const sseHeartbeat = 15 * time.Second

// EventSource is what EventStream needs of an event hub: a subscription
// to one session's events, closed when ctx ends or the session is
// forgotten. *broker.Broker implements it.
type EventSource interface {
	Subscribe(ctx context.Context, user p2core.UserID, session p2core.SessionID, lastID uint64) <-chan broker.Delivery
}

// streamRetryAfter is the Retry-After of a stream refused for the
// caps: streams end when their clients go, so soon is reasonable.
const streamRetryAfter = 5 * time.Second

// streamCounter counts the open event streams per session and per user.
type streamCounter struct {
	perSession, perUser int

	mu       sync.Mutex
	sessions map[streamKey]int
	users    map[p2core.UserID]int
}

type streamKey struct {
	user    p2core.UserID
	session p2core.SessionID
}

func newStreamCounter(perSession, perUser int) *streamCounter {
	if perSession <= 0 {
		perSession = DefaultMaxStreamsPerSession
	}
	if perUser <= 0 {
		perUser = DefaultMaxStreamsPerUser
	}
	return &streamCounter{perSession: perSession, perUser: perUser, sessions: map[streamKey]int{}, users: map[p2core.UserID]int{}}
}

// open counts one more stream of p, unless a cap is reached.
func (c *streamCounter) open(p p2core.Principal) bool {
	k := streamKey{p.UserID, p.SessionID}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions[k] >= c.perSession || c.users[p.UserID] >= c.perUser {
		return false
	}
	c.sessions[k]++
	c.users[p.UserID]++
	return true
}

// close counts one stream of p fewer; counts that reach zero are dropped.
func (c *streamCounter) close(p p2core.Principal) {
	k := streamKey{p.UserID, p.SessionID}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessions[k]--; c.sessions[k] <= 0 {
		delete(c.sessions, k)
	}
	if c.users[p.UserID]--; c.users[p.UserID] <= 0 {
		delete(c.users, p.UserID)
	}
}

// EventStream returns a handler that streams the authenticated session's
// events from src as Server-Sent Events: "id:" is the Delivery ID, "event:"
// the event type and "data:" its JSON payload. A reconnecting client's
// Last-Event-ID header resumes after that event; without it, the session
// gets what it has not been sent yet. Callers are identified by h's
// Authenticator, and refusals are written like those of h's routes (an
// Authenticator's internal failure is a 500 with a request ID, not a 401).
// Opening a stream counts against the user's Principal rate limit, and at
// most Options.MaxStreamsPerSession streams per session and
// Options.MaxStreamsPerUser per user are open at once: one more is refused
// 429 with Retry-After.
func (h *Handler) EventStream(src EventSource) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			h.writeError(w, r, p2core.Errorf(ErrMethodNotAllowed, "use GET"))
			return
		}
		p, err := h.authenticate(r)
		if err == nil {
			err = h.limit("p:"+p.UserID.String(), h.limits.Principal)
		}
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		if !h.streams.open(p) {
			h.writeError(w, r, &rateLimited{retryAfter: streamRetryAfter})
			return
		}
		defer h.streams.close(p)
		var last uint64
		if v := r.Header.Get("Last-Event-ID"); v != "" {
			if last, err = strconv.ParseUint(v, 10, 64); err != nil {
				h.writeError(w, r, p2core.Errorf(p2core.ErrBadRequest, "Last-Event-ID must be a decimal event ID"))
				return
			}
		}
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			return
		}
		events := src.Subscribe(r.Context(), p.UserID, p.SessionID, last)
		tick := time.NewTicker(sseHeartbeat)
		defer tick.Stop()
		for {
			select {
			case d, ok := <-events:
				if !ok {
					return
				}
				if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", d.ID, d.Type, d.Data); err != nil {
					return
				}
			case <-tick.C:
				if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
					return
				}
			case <-r.Context().Done():
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	})
}
