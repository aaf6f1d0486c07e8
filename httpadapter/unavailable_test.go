package httpadapter_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/memstore"
)

// downStore is a Store whose database is restarting: every user-ID-Cert
// lookup fails with a transient error, translated as a backend does.
type downStore struct{ p2core.Store }

func (downStore) IDCertsAt(context.Context, p2core.UserID, time.Time) ([]p2core.IDCert, error) {
	return nil, fmt.Errorf("pgstore: IDCertsAt: %w: FATAL: the database system is starting up (SQLSTATE 57P03)", p2core.ErrUnavailable)
}

func TestTransientStoreFailureAnswers503WithRetryAfter(t *testing.T) {
	store := memstore.New()
	t.Cleanup(func() { store.Close() })
	svc, err := p2core.NewService(downStore{store}, p2core.Config{Domain: "home.test"})
	if err != nil {
		t.Fatal(err)
	}
	h := httpadapter.New(svc, httpadapter.Options{RateLimits: httpadapter.RateLimits{Disabled: true}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/p2core/key/user/7", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503; body %s", rec.Code, rec.Body)
	}
	if ra := rec.Header().Get("Retry-After"); ra == "" || ra == "0" {
		t.Fatalf("Retry-After = %q, want a positive number of seconds", ra)
	}
	var body struct {
		Error, Message string
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Error != "P2CORE_UNAVAILABLE" {
		t.Fatalf("code %q, want P2CORE_UNAVAILABLE", body.Error)
	}
	if strings.Contains(body.Message, "pgstore") || strings.Contains(body.Message, "SQLSTATE") {
		t.Fatalf("message %q shows the backend's error", body.Message)
	}
}
