package main

import (
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/p2kit/p2kit/p2core"
)

// PBKDF2 parameters for stored passwords (OWASP 2023 guidance for
// PBKDF2-HMAC-SHA256).
const (
	defaultPBKDF2Iterations = 600_000
	pbkdf2KeyLen            = 32
	maxAccountBody          = 4 << 10
)

var usernamePattern = regexp.MustCompile(`^[a-z0-9._-]{1,64}$`)

// account is what the example keeps per user, in the Store's settings.
type account struct {
	UserID     p2core.UserID `json:"user_id"`
	Salt       []byte        `json:"salt"`
	Hash       []byte        `json:"hash"`
	Iterations int           `json:"iterations"`
}

// accounts keeps usernames and password hashes in the p2kit Store, so they
// live in the same data folder (or database) as everything else.
type accounts struct {
	store  p2core.Store
	domain string
	ids    *p2core.Snowflakes
	iters  int

	adminMu  sync.Mutex
	adminIDs map[p2core.UserID]bool
	pending  []string // admin names not registered yet
}

func newAccounts(store p2core.Store, domain string, admins []string, iterations int) *accounts {
	var worker [2]byte
	_, _ = rand.Read(worker[:])
	return &accounts{store: store, domain: domain,
		ids:      p2core.NewSnowflakes(uint16(worker[0])<<8|uint16(worker[1]), nil),
		iters:    iterations,
		adminIDs: map[p2core.UserID]bool{}, pending: append([]string(nil), admins...)}
}

func accountKey(name string) string { return "example.account." + name }

func (s *accounts) get(ctx context.Context, name string) (account, error) {
	b, err := s.store.Setting(ctx, accountKey(name))
	if err != nil {
		return account{}, err
	}
	var a account
	if err := json.Unmarshal(b, &a); err != nil {
		return account{}, fmt.Errorf("account record: %w", err)
	}
	return a, nil
}

// isAdmin reports whether user is one of the -admin usernames. It runs on
// every authenticated request, so each admin name is looked up in the Store
// only until it is found; after that the answer comes from memory.
func (s *accounts) isAdmin(ctx context.Context, user p2core.UserID) bool {
	s.adminMu.Lock()
	defer s.adminMu.Unlock()
	if len(s.pending) > 0 {
		left := s.pending[:0]
		for _, name := range s.pending {
			if a, err := s.get(ctx, name); err == nil {
				s.adminIDs[a.UserID] = true
			} else {
				left = append(left, name) // not registered yet
			}
		}
		s.pending = left
	}
	return s.adminIDs[user]
}

type credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

type registerResponse struct {
	UserID p2core.UserID `json:"user_id"`
	FID    p2core.FID    `json:"fid"`
}

type loginResponse struct {
	Token     string           `json:"token"`
	UserID    p2core.UserID    `json:"user_id"`
	SessionID p2core.SessionID `json:"session_id"`
	FID       p2core.FID       `json:"fid"`
}

func (a *app) readCredentials(w http.ResponseWriter, r *http.Request) (credentials, bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxAccountBody)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	var c credentials
	if err := dec.Decode(&c); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			jsonError(w, http.StatusRequestEntityTooLarge, "P2CORE_BODY_TOO_LARGE", "request body too large")
			return c, false
		}
		jsonError(w, http.StatusBadRequest, "P2CORE_BAD_REQUEST", "body must be {\"username\": \"...\", \"password\": \"...\"}")
		return c, false
	}
	c.Username = strings.ToLower(c.Username)
	if !usernamePattern.MatchString(c.Username) {
		jsonError(w, http.StatusBadRequest, "P2CORE_BAD_REQUEST", "username must be 1-64 of a-z, 0-9, '.', '_', '-'")
		return c, false
	}
	if len(c.Password) < 8 || len(c.Password) > 1024 {
		jsonError(w, http.StatusBadRequest, "P2CORE_BAD_REQUEST", "password must be 8-1024 bytes")
		return c, false
	}
	return c, true
}

func (a *app) register(w http.ResponseWriter, r *http.Request) {
	c, ok := a.readCredentials(w, r)
	if !ok {
		return
	}
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	hash, err := pbkdf2.Key(sha256.New, c.Password, salt, a.accounts.iters, pbkdf2KeyLen)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	acc := account{UserID: a.accounts.ids.Next(), Salt: salt, Hash: hash, Iterations: a.accounts.iters}
	b, _ := json.Marshal(acc)
	// CreateSetting is atomic in every backend, so two registrations of one
	// name (even on two instances sharing a database) cannot both win.
	err = a.accounts.store.CreateSetting(r.Context(), accountKey(c.Username), b)
	if errors.Is(err, p2core.ErrConflict) {
		jsonError(w, http.StatusConflict, "P2CORE_CONFLICT", "username is taken")
		return
	}
	if err != nil {
		a.internal(w, r, err)
		return
	}
	a.log.Info("account registered", "username", c.Username, "user_id", acc.UserID.String())
	writeJSON(w, http.StatusCreated, registerResponse{UserID: acc.UserID, FID: p2core.FID(c.Username + "@" + a.svc.Config().Domain)})
}

// dummySalt makes a login for an unknown username cost as much as one for
// a known username.
var dummySalt = []byte("p2kit-example-dummy-salt")

func (a *app) login(w http.ResponseWriter, r *http.Request) {
	c, ok := a.readCredentials(w, r)
	if !ok {
		return
	}
	acc, err := a.accounts.get(r.Context(), c.Username)
	if err != nil && !errors.Is(err, p2core.ErrNotFound) {
		a.internal(w, r, err)
		return
	}
	salt, iters, want := dummySalt, a.accounts.iters, make([]byte, pbkdf2KeyLen)
	if err == nil {
		salt, iters, want = acc.Salt, acc.Iterations, acc.Hash
	}
	got, herr := pbkdf2.Key(sha256.New, c.Password, salt, iters, pbkdf2KeyLen)
	if herr != nil {
		a.internal(w, r, herr)
		return
	}
	if err != nil || subtle.ConstantTimeCompare(got, want) != 1 {
		jsonError(w, http.StatusUnauthorized, "P2CORE_UNAUTHORIZED", "wrong username or password")
		return
	}
	fid := p2core.FID(c.Username + "@" + a.svc.Config().Domain)
	tok, sess, err := a.svc.CreateSession(r.Context(), acc.UserID, fid)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, loginResponse{Token: tok, UserID: acc.UserID, SessionID: sess.SessionID, FID: fid})
}

func (a *app) internal(w http.ResponseWriter, r *http.Request, err error) {
	a.log.Error("request failed", "path", r.URL.Path, "error", err)
	jsonError(w, http.StatusInternalServerError, "P2CORE_INTERNAL", "internal server error")
}

func jsonError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"errcode": status, "error": code, "message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
