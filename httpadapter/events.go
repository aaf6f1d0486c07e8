package httpadapter

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/p2kit/p2kit/p2core/broker"
)

// sseHeartbeat is how often an idle event stream sends a comment line, so
// proxies and clients see the connection alive.
const sseHeartbeat = 15 * time.Second

// EventStream returns a handler that streams the authenticated session's
// events from b as Server-Sent Events: "id:" is the Delivery ID, "event:"
// the event type and "data:" its JSON payload. A reconnecting client's
// Last-Event-ID header resumes after that event; without it, the session
// gets what it has not been sent yet.
func EventStream(b *broker.Broker, auth Authenticator) http.Handler {
	h := &Handler{auth: auth}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			writeErrorBody(w, http.StatusMethodNotAllowed, codeMethodNotAllowed, "use GET")
			return
		}
		p, err := h.authenticate(r)
		if err != nil {
			writeErrorBody(w, http.StatusUnauthorized, "P2CORE_UNAUTHORIZED", "a valid bearer token is required")
			return
		}
		var last uint64
		if v := r.Header.Get("Last-Event-ID"); v != "" {
			if last, err = strconv.ParseUint(v, 10, 64); err != nil {
				writeErrorBody(w, http.StatusBadRequest, "P2CORE_BAD_REQUEST", "Last-Event-ID must be a decimal event ID")
				return
			}
		}
		rc := http.NewResponseController(w)
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		if err := rc.Flush(); err != nil {
			return
		}
		events := b.Subscribe(r.Context(), p.UserID, p.SessionID, last)
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
