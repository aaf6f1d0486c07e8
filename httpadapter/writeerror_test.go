package httpadapter_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/p2kit/p2kit/httpadapter"
	"github.com/p2kit/p2kit/p2core"
)

// WriteError answers each kind of error with the status, code and headers
// the handler's own routes use, and keeps an internal error's text out of
// the answer: the client gets a request ID that the log line carries with
// the error.
func TestWriteErrorAnswersLikeTheHandler(t *testing.T) {
	for _, c := range []struct {
		err    error
		status int
		code   string
		header string
	}{
		{p2core.Errorf(p2core.ErrBadRequest, "bad"), 400, "P2CORE_BAD_REQUEST", ""},
		{p2core.Errorf(p2core.ErrUnauthorized, "log in"), 401, "P2CORE_UNAUTHORIZED", "WWW-Authenticate"},
		{p2core.Errorf(p2core.ErrNotFound, "no such route"), 404, "P2CORE_NOT_FOUND", ""},
		{p2core.Errorf(httpadapter.ErrMethodNotAllowed, "use POST"), 405, "P2CORE_METHOD_NOT_ALLOWED", ""},
		{p2core.Errorf(httpadapter.ErrBodyTooLarge, "too big"), 413, "P2CORE_BODY_TOO_LARGE", ""},
		{p2core.Errorf(p2core.ErrConflict, "taken"), 409, "P2CORE_CONFLICT", ""},
		{errors.New("disk on fire at /var/lib/secret"), 500, "P2CORE_INTERNAL", "X-Request-Id"},
	} {
		var log bytes.Buffer
		rec := httptest.NewRecorder()
		httpadapter.WriteError(rec, httptest.NewRequest("POST", "/login", nil), c.err, slog.New(slog.NewTextHandler(&log, nil)))
		var body struct {
			Errcode int    `json:"errcode"`
			Error   string `json:"error"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%v: body %q is not the JSON error body: %v", c.err, rec.Body, err)
		}
		if rec.Code != c.status || body.Errcode != c.status || body.Error != c.code {
			t.Errorf("%v: answered %d %+v, want %d %s", c.err, rec.Code, body, c.status, c.code)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%v: Content-Type %q", c.err, ct)
		}
		if c.header != "" && rec.Header().Get(c.header) == "" {
			t.Errorf("%v: no %s header", c.err, c.header)
		}
		if c.status < 500 {
			if body.Message != p2core.Message(c.err) || log.Len() != 0 {
				t.Errorf("%v: message %q, log %q; want the refusal's message and no log", c.err, body.Message, log.String())
			}
			continue
		}
		id := rec.Header().Get("X-Request-Id")
		if strings.Contains(body.Message, "disk") || !strings.Contains(body.Message, id) {
			t.Errorf("internal error answered %q, want a generic message with request ID %s", body.Message, id)
		}
		if !strings.Contains(log.String(), "disk on fire") || !strings.Contains(log.String(), id) {
			t.Errorf("log %q does not carry the error with request ID %s", log.String(), id)
		}
	}
	// A nil logger is allowed.
	rec := httptest.NewRecorder()
	httpadapter.WriteError(rec, httptest.NewRequest("GET", "/", nil), errors.New("x"), nil)
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("nil logger: status %d", rec.Code)
	}
}
