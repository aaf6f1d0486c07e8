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
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/p2kit/p2kit/httpadapter"
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

	// admins are the -admin usernames and adminIDs their user IDs, both
	// fixed by ensureAdmins at start.
	admins   map[string]bool
	adminIDs map[p2core.UserID]bool
}

func newAccounts(store p2core.Store, domain string, iterations int) *accounts {
	var worker [2]byte
	_, _ = rand.Read(worker[:])
	return &accounts{store: store, domain: domain,
		ids:    p2core.NewSnowflakes(uint16(worker[0])<<8|uint16(worker[1]), nil),
		iters:  iterations,
		admins: map[string]bool{}, adminIDs: map[p2core.UserID]bool{}}
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

// newAccount makes the record of a new account with password.
func (s *accounts) newAccount(password string) (account, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	hash, err := pbkdf2.Key(sha256.New, password, salt, s.iters, pbkdf2KeyLen)
	if err != nil {
		return account{}, err
	}
	return account{UserID: s.ids.Next(), Salt: salt, Hash: hash, Iterations: s.iters}, nil
}

// create stores acc under name. CreateSetting is atomic in every backend,
// so two creations of one name (even on two instances sharing a database)
// cannot both win: the loser gets p2core.ErrConflict.
func (s *accounts) create(ctx context.Context, name string, acc account) error {
	b, err := json.Marshal(acc)
	if err != nil {
		return err
	}
	return s.store.CreateSetting(ctx, accountKey(name), b)
}

// ensureAdmins creates every -admin account that does not exist yet, with
// the password password returns (asked at most once, and only when an
// account is created), so that no one can claim an administrator's name by
// registering it first. It records the administrators' user IDs and
// returns the names it created.
func (s *accounts) ensureAdmins(ctx context.Context, names []string, password func() (string, error)) ([]string, error) {
	var created []string
	pw, asked := "", false
	for _, name := range names {
		name = strings.ToLower(name)
		if !usernamePattern.MatchString(name) {
			return nil, fmt.Errorf("-admin %q: a username is 1-64 of a-z, 0-9, '.', '_', '-'", name)
		}
		s.admins[name] = true
		acc, err := s.get(ctx, name)
		if errors.Is(err, p2core.ErrNotFound) {
			if !asked {
				if pw, err = password(); err != nil {
					return nil, err
				}
				asked = true
			}
			if acc, err = s.newAccount(pw); err != nil {
				return nil, err
			}
			switch err = s.create(ctx, name, acc); {
			case err == nil:
				created = append(created, name)
			case errors.Is(err, p2core.ErrConflict): // another instance was first
				acc, err = s.get(ctx, name)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("-admin %s: %w", name, err)
		}
		s.adminIDs[acc.UserID] = true
	}
	return created, nil
}

// isAdmin reports whether user is one of the -admin accounts. It runs on
// every authenticated request and answers from memory.
func (s *accounts) isAdmin(_ context.Context, user p2core.UserID) bool {
	return s.adminIDs[user]
}

// checkPassword refuses passwords outside 8-1024 bytes.
func checkPassword(pw string) error {
	if len(pw) < 8 || len(pw) > 1024 {
		return errors.New("password must be 8-1024 bytes")
	}
	return nil
}

// adminPasswordFile is the name, in the data folder, of the generated
// administrator password.
const adminPasswordFile = "admin-password"

// readPasswordFile returns the whole content of path, as
// -admin-password-file prescribes.
func readPasswordFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("-admin-password-file: %w", err)
	}
	if err := checkPassword(string(b)); err != nil {
		return "", fmt.Errorf("-admin-password-file %s: %w", path, err)
	}
	return string(b), nil
}

// generatedPassword returns the administrator password kept in
// dir/admin-password, writing a random one there (mode 0600) the first
// time; the file is never rewritten.
func generatedPassword(dir string) (string, error) {
	path := filepath.Join(dir, adminPasswordFile)
	if b, err := os.ReadFile(path); err == nil {
		return string(b), checkPassword(string(b))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	pw := rand.Text() // 26 characters, 128 random bits
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.WriteString(pw); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	return pw, f.Close()
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
			httpadapter.WriteError(w, r, p2core.Errorf(httpadapter.ErrBodyTooLarge, "request body too large: limit is %d bytes", mbe.Limit), a.log)
			return c, false
		}
		a.refuse(w, r, p2core.ErrBadRequest, "body must be {\"username\": \"...\", \"password\": \"...\"}")
		return c, false
	}
	c.Username = strings.ToLower(c.Username)
	if !usernamePattern.MatchString(c.Username) {
		a.refuse(w, r, p2core.ErrBadRequest, "username must be 1-64 of a-z, 0-9, '.', '_', '-'")
		return c, false
	}
	if err := checkPassword(c.Password); err != nil {
		a.refuse(w, r, p2core.ErrBadRequest, err.Error())
		return c, false
	}
	return c, true
}

func (a *app) register(w http.ResponseWriter, r *http.Request) {
	c, ok := a.readCredentials(w, r)
	if !ok || !a.accountLimits.allow(w, r, "register", c.Username, a.accountLimits.registerPerAddress, a.accountLimits.registerPerUsername) {
		return
	}
	if a.accounts.admins[c.Username] {
		a.refuse(w, r, p2core.ErrForbidden, "this username is reserved for an administrator")
		return
	}
	acc, err := a.accounts.newAccount(c.Password)
	if err != nil {
		a.internal(w, r, err)
		return
	}
	err = a.accounts.create(r.Context(), c.Username, acc)
	if errors.Is(err, p2core.ErrConflict) {
		a.refuse(w, r, p2core.ErrConflict, "username is taken")
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
	if !ok || !a.accountLimits.allow(w, r, "login", c.Username, a.accountLimits.loginPerAddress, a.accountLimits.loginPerUsername) {
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
		a.refuse(w, r, p2core.ErrUnauthorized, "wrong username or password")
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

// internal answers an unexpected failure: 500 with a request ID, the
// error itself only in the log.
func (a *app) internal(w http.ResponseWriter, r *http.Request, err error) {
	httpadapter.WriteError(w, r, err, a.log)
}

// refuse answers a refusal of kind (a p2core sentinel) with msg, in the
// JSON error format of the p2kit routes.
func (a *app) refuse(w http.ResponseWriter, r *http.Request, kind error, msg string) {
	httpadapter.WriteError(w, r, p2core.Errorf(kind, "%s", msg), a.log)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
