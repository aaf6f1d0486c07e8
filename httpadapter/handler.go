// Package httpadapter serves the polyproto-core HTTP API of a p2core.Service
// as an http.Handler, and provides a Go Client for the same routes.
//
// Mount the handler at the root of the server's URL space (its routes are
// absolute, all below /p2core/), give it an Authenticator that turns a
// request into a p2core.Principal, and every route of the README's route
// table (routes 1-17, "route N" in doc comments) is served with JSON bodies,
// P2CORE_* error codes and body limits.
package httpadapter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/p2kit/p2kit/p2core"
)

// DefaultMaxBodyBytes is the request body limit when Options.MaxBodyBytes
// is zero.
const DefaultMaxBodyBytes = 1 << 20

// Authenticator turns a request into the Principal making it. It returns an
// error matching p2core.ErrUnauthorized when credentials are missing or
// bad (401 with its message); any other error is an internal failure,
// answered with no detail (500, or 503 when the request was cancelled),
// and so is a Principal that fails Principal.Validate. Implementations
// must be safe for concurrent use.
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request) (p2core.Principal, error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(ctx context.Context, r *http.Request) (p2core.Principal, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(ctx context.Context, r *http.Request) (p2core.Principal, error) {
	return f(ctx, r)
}

// BearerToken returns the token of an "Authorization: Bearer <token>"
// header, or "" when there is none.
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return ""
	}
	return strings.TrimSpace(h[len(prefix):])
}

// Options configures a Handler. Zero values are documented defaults.
type Options struct {
	// Authenticator identifies callers of authenticated routes. Required
	// unless only public routes are used; nil refuses every authenticated
	// call with 401.
	Authenticator Authenticator
	// MaxBodyBytes caps request bodies; larger ones get 413. Default 1 MiB.
	MaxBodyBytes int64
	// Logger receives internal errors (never tokens, keys or bodies).
	// Default: discard.
	Logger *slog.Logger
	// RateLimits are the limits applied; zero fields take
	// DefaultRateLimits(). Set RateLimits.Disabled to turn limiting off.
	RateLimits RateLimits
	// Limiter keeps the rate-limit state. Default: an in-memory
	// TokenBuckets per Handler.
	Limiter Limiter
	// ClientAddress returns the key of per-address limits (the anonymous
	// routes). Default: the host of r.RemoteAddr, an IPv6 address
	// shortened to its /64. Behind a reverse proxy, return the address the
	// proxy vouches for; any string works (a network prefix, an API key).
	ClientAddress func(r *http.Request) string
	// MaxStreamsPerSession caps the concurrent event streams (EventStream)
	// of one session; one more is refused 429 with Retry-After. Default 4.
	MaxStreamsPerSession int
	// MaxStreamsPerUser caps the concurrent event streams of one user,
	// all sessions together. Default 16.
	MaxStreamsPerUser int
}

// Defaults of the Options stream caps.
const (
	DefaultMaxStreamsPerSession = 4
	DefaultMaxStreamsPerUser    = 16
)

// access says who may call a route: whether the Handler authenticates the
// caller, and what the API description lists. Whether a principal may do
// what it asks (administrator, foreign session) is the Service's rule,
// never checked here.
type access int

const (
	accessAnyone access = iota // no credentials needed
	accessUser                 // any authenticated principal
	accessAdmin                // an administrator, as the Service decides
)

// route is one row of the API table: every route is declared once here,
// so the mux, the authorization checks and the API description agree.
type route struct {
	method string
	path   string
	access access
	// maxBody caps the request body; 0 means Options.MaxBodyBytes.
	maxBody int64
	// head is headRead for a GET route that only reads, so HEAD is served
	// as GET; noHead otherwise (HEAD answers 405).
	head   bool
	handle func(h *Handler, w http.ResponseWriter, r *http.Request, p p2core.Principal) error
}

// Handler serves the polyproto-core routes. Create it with New; it is safe
// for concurrent use.
type Handler struct {
	svc     *p2core.Service
	auth    Authenticator
	maxBody int64
	log     *slog.Logger
	mux     *http.ServeMux
	routes  []route
	// headOK holds the mux patterns of the GET routes that answer HEAD.
	headOK map[string]bool

	limits     RateLimits
	limiter    Limiter
	clientAddr func(r *http.Request) string
	streams    *streamCounter
}

// New returns a Handler serving every route of the README's route table for svc.
func New(svc *p2core.Service, opts Options) *Handler {
	h := &Handler{svc: svc, auth: opts.Authenticator, maxBody: opts.MaxBodyBytes, log: opts.Logger, mux: http.NewServeMux()}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.limits = opts.RateLimits.withDefaults()
	h.limiter = opts.Limiter
	if h.limiter == nil {
		h.limiter = NewTokenBuckets(nil)
	}
	h.streams = newStreamCounter(opts.MaxStreamsPerSession, opts.MaxStreamsPerUser)
	h.clientAddr = opts.ClientAddress
	if h.clientAddr == nil {
		h.clientAddr = DefaultClientAddress
	}
	h.routes = apiRoutes()
	h.headOK = map[string]bool{}
	for _, rt := range h.routes {
		pattern := rt.method + " " + rt.path
		h.mux.Handle(pattern, h.wrap(rt))
		if rt.method == http.MethodGet && rt.head {
			h.headOK[pattern] = true
		}
	}
	return h
}

// ServeHTTP routes the request. Unknown paths get a JSON 404 and known
// paths with the wrong method a JSON 405 with an Allow header. HEAD is
// answered only on routes that only read; on every other route it is 405,
// so a HEAD request never changes anything.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if _, pattern := h.mux.Handler(r); pattern != "" && (r.Method != http.MethodHead || h.headOK[pattern]) {
		h.mux.ServeHTTP(w, r)
		return
	}
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete} {
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := h.mux.Handler(probe); pattern != "" {
			allow = append(allow, m)
			if m == http.MethodGet && h.headOK[pattern] {
				allow = append(allow, http.MethodHead)
			}
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		h.writeError(w, r, p2core.Errorf(ErrMethodNotAllowed, "method %s is not allowed here; allowed: %s", r.Method, strings.Join(allow, ", ")))
		return
	}
	h.writeError(w, r, p2core.Errorf(p2core.ErrNotFound, "no such route"))
}

func (h *Handler) wrap(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		limit := h.maxBody
		if rt.maxBody > 0 && rt.maxBody < limit {
			limit = rt.maxBody
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		var p p2core.Principal
		var err error
		if rt.access == accessAnyone {
			err = h.limit("a:"+h.clientAddr(r), h.limits.Address)
		} else {
			p, err = h.authenticate(r)
			if err == nil {
				err = h.limit("p:"+p.UserID.String(), h.limits.Principal)
			}
		}
		if err != nil {
			h.writeError(w, r, err)
			return
		}
		if err := rt.handle(h, w, r, p); err != nil {
			h.writeError(w, r, err)
		}
	})
}

func (h *Handler) authenticate(r *http.Request) (p2core.Principal, error) {
	if h.auth == nil {
		return p2core.Principal{}, p2core.Errorf(p2core.ErrUnauthorized, "authentication required")
	}
	p, err := h.auth.Authenticate(r.Context(), r)
	if err != nil {
		if errors.Is(err, p2core.ErrUnauthorized) {
			return p2core.Principal{}, err
		}
		if status, _, _ := classify(err); status >= 500 {
			return p2core.Principal{}, fmt.Errorf("authenticator: %w", err) // 500, or 503 when cancelled or unavailable
		}
		// Any other refusal (say a Store conflict behind the
		// Authenticator) answers nothing the caller asked: internal.
		return p2core.Principal{}, fmt.Errorf("authenticator: %v", err)
	}
	if err := p.Validate(); err != nil {
		if errors.Is(err, p2core.ErrUnauthorized) {
			return p2core.Principal{}, err
		}
		// A malformed principal is the Authenticator's bug, not the
		// caller's: internal, whatever sentinel Validate matched.
		return p2core.Principal{}, fmt.Errorf("authenticator returned an invalid principal: %v", err)
	}
	return p, nil
}

// writeError writes err as a JSON error body through the one error table
// (classify). An internal error is logged with a new request ID, and the
// caller gets only a generic message naming that ID (also in the
// X-Request-Id header), so an operator can find the log line without the
// error's own text, which may name files, tables or constraints, ever
// reaching the caller.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	WriteError(w, r, err, h.log)
}

// WriteError writes err as the error answer every p2kit route gives, a
// JSON body {"errcode": status, "error": "P2CORE_...", "message": "..."},
// so that an embedder's own routes (registration, login, unknown paths)
// answer in the same format. Status and code come from the one table
// that maps errors (the README's error table): build a refusal with
// p2core.Errorf and a sentinel, for example
// p2core.Errorf(p2core.ErrBadRequest, "username is required") for a 400
// P2CORE_BAD_REQUEST with that message, p2core.ErrUnauthorized for a 401
// (sent with WWW-Authenticate), p2core.ErrNotFound for an unknown path,
// ErrMethodNotAllowed (after setting Allow) or ErrBodyTooLarge. An error
// that matches no sentinel is an internal failure: the client gets 500
// P2CORE_INTERNAL with a request ID (also in X-Request-Id) and never the
// error's text, which goes to logger (nil: not logged) with that ID. A
// cancelled or timed-out request context gives 503 P2CORE_UNAVAILABLE.
func WriteError(w http.ResponseWriter, r *http.Request, err error, logger *slog.Logger) {
	status, code, msg := classify(err)
	if status >= 500 {
		id := newRequestID()
		w.Header().Set("X-Request-Id", id)
		msg += " (request ID " + id + ")"
		// A 502 is a foreign home server failing a request an anonymous
		// caller may make at will (route 16): one line at Info, not an
		// error of this server. Everything else 5xx is this server's.
		level := slog.LevelError
		if status == http.StatusBadGateway {
			level = slog.LevelInfo
		}
		if logger != nil {
			logger.LogAttrs(r.Context(), level, "request failed", slog.String("request_id", id), slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("error", err.Error()))
		}
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="p2core"`)
	}
	var rl *rateLimited
	if errors.As(err, &rl) {
		w.Header().Set("Retry-After", strconv.Itoa(rl.seconds()))
	}
	if errors.Is(err, p2core.ErrUnavailable) {
		w.Header().Set("Retry-After", strconv.Itoa(unavailableRetryAfter))
	}
	writeErrorBody(w, status, code, msg)
}

// newRequestID returns 16 random hex digits naming one failed request in
// the log and in its answer.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func writeErrorBody(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, errorBody{Errcode: status, Error: code, Message: msg})
}

// writeJSON writes v as the JSON body with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"errcode":500,"error":"` + codeInternal + `","message":"` + p2core.InternalMessage + `"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// decodeJSON reads exactly one JSON value from the body into v, refusing
// unknown fields, trailing data and bodies over the limit.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return jsonError(err)
		}
		return p2core.Errorf(p2core.ErrBadRequest, "request body must hold exactly one JSON value")
	}
	return nil
}

func jsonError(err error) error {
	var mbe *http.MaxBytesError
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &mbe):
		return fmt.Errorf("%w: limit is %d bytes", ErrBodyTooLarge, mbe.Limit)
	case errors.Is(err, io.EOF):
		return p2core.Errorf(p2core.ErrBadRequest, "request body is empty; a JSON value is required")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return p2core.Errorf(p2core.ErrBadRequest, "malformed JSON: unexpected end of input")
	case errors.As(err, &syn):
		return p2core.Errorf(p2core.ErrBadRequest, "malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return p2core.Errorf(p2core.ErrBadRequest, "field %q must be a JSON %s", typ.Field, jsonKind(typ.Type.Kind().String()))
		}
		return p2core.Errorf(p2core.ErrBadRequest, "request body must be a JSON %s", jsonKind(typ.Type.Kind().String()))
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return p2core.Errorf(p2core.ErrBadRequest, "%s", strings.TrimPrefix(err.Error(), "json: "))
	case errors.Is(err, p2core.ErrBadRequest), errors.Is(err, p2core.ErrInvalidUserID):
		return err
	default:
		return p2core.Errorf(p2core.ErrBadRequest, "malformed JSON body")
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	case "struct", "map", "ptr":
		return "object"
	default:
		return "number"
	}
}

// pathUserID parses the {user_id} path value.
func pathUserID(r *http.Request) (p2core.UserID, error) {
	return p2core.ParseUserID(r.PathValue("user_id"))
}
