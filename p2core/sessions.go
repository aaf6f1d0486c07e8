package p2core

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// NewSessionPayload is the payload of NEW_SESSION, sent to the user's
// other sessions when a session is created.
type NewSessionPayload struct {
	SessionID SessionID `json:"session_id"`
	FID       FID       `json:"fid"`
	// Home is the home server of a foreign user's session, else empty.
	Home string `json:"home,omitempty"`
}

// CreateSession starts a new session for a local user and returns its
// bearer token (shown once; the Store keeps only its SHA-256) and the
// stored Session. The user's other sessions get a NEW_SESSION event.
// Errors: ErrInvalidUserID, ErrInvalidFID, ErrTooManySessions (the user
// has Config.MaxSessionsPerUser sessions).
func (s *Service) CreateSession(ctx context.Context, user UserID, fid FID) (string, Session, error) {
	if user == 0 {
		return "", Session{}, Errorf(ErrInvalidUserID, "user ID must be positive")
	}
	if _, err := ParseFID(string(fid)); err != nil {
		return "", Session{}, err
	}
	tok, sess, err := s.storeSession(ctx, NewSession{Session: Session{UserID: user, FID: fid}})
	if err != nil {
		return "", Session{}, s.storeErr(err)
	}
	return tok, sess, nil
}

// limits returns the per-user caps the Store enforces.
func (s *Service) limits() Limits {
	return Limits{MaxSessions: s.cfg.MaxSessionsPerUser, MaxKeyPackages: s.cfg.MaxKeyPackagesPerUser}
}

// storeSession gives n a fresh session ID and token, stores it with
// everything it carries in one Store operation and, once that committed,
// sends NEW_SESSION to the user's other sessions. A colliding session ID
// or token is drawn again.
func (s *Service) storeSession(ctx context.Context, n NewSession) (string, Session, error) {
	for attempt := 0; ; attempt++ {
		var idb [8]byte
		if _, err := io.ReadFull(s.cfg.Rand, idb[:]); err != nil {
			return "", Session{}, fmt.Errorf("random session ID: %w", err)
		}
		tok, hash, err := s.newToken()
		if err != nil {
			return "", Session{}, err
		}
		n.SessionID, n.TokenHash, n.CreatedAt = SessionID(hex.EncodeToString(idb[:])), hash, s.now()
		sess, err := s.store.CreateSession(ctx, n, s.limits(), n.CreatedAt)
		if errors.Is(err, ErrConflict) && attempt < 3 {
			continue
		}
		if err != nil {
			return "", Session{}, err
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "session created", slog.String("user_id", sess.UserID.String()), slog.String("session_id", string(sess.SessionID)))
		// To every other session of the user, named by Except rather than
		// listed, so the event stays the same size however many sessions
		// the user has. Sent only now that the session is stored.
		s.publish(ctx, Event{Type: EventNewSession, UserID: sess.UserID, Except: sess.SessionID, Time: sess.CreatedAt,
			Payload: NewSessionPayload{SessionID: sess.SessionID, FID: sess.FID, Home: sess.Home}})
		return tok, sess, nil
	}
}

// AuthenticateSession returns the session whose bearer token is token.
// Unknown, malformed or revoked tokens give ErrUnauthorized, and so does
// a session that has ended by itself (Config.SessionTTL,
// Config.SessionIdleTTL, or a foreign session's expired ID-Cert), which it
// ends as EndSession does. It records the session's use in the Store at
// most once a minute. The lookup is by SHA-256 of the token, so its
// timing says nothing about stored tokens.
func (s *Service) AuthenticateSession(ctx context.Context, token string) (Session, error) {
	if !wellFormedToken(token) {
		return Session{}, Errorf(ErrUnauthorized, "invalid session token")
	}
	sess, err := s.store.SessionByToken(ctx, HashToken(token))
	if errors.Is(err, ErrNotFound) {
		return Session{}, Errorf(ErrUnauthorized, "invalid session token")
	}
	if err != nil {
		return Session{}, fmt.Errorf("look up session: %w", err)
	}
	now := s.now()
	over, err := s.expire(ctx, sess, now)
	if err != nil {
		return Session{}, err
	}
	if over {
		return Session{}, Errorf(ErrUnauthorized, "this session has expired; log in again")
	}
	if now.Sub(lastUse(sess)) >= touchInterval {
		// A failure only makes the idle bound come a little earlier.
		if err := s.store.TouchSession(ctx, sess.UserID, sess.SessionID, now); err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "could not record a session's use", slog.String("user_id", sess.UserID.String()), slog.String("session_id", string(sess.SessionID)), slog.String("error", err.Error()))
		} else {
			sess.LastUsedAt = now
		}
	}
	return sess, nil
}

// touchInterval is how often, at most, a session's last use is written.
const touchInterval = time.Minute

// lastUse is when sess was last used, as far as the Store knows.
func lastUse(sess Session) time.Time {
	if sess.LastUsedAt.After(sess.CreatedAt) {
		return sess.LastUsedAt
	}
	return sess.CreatedAt
}

// SessionEnds says which sessions have ended by themselves at one
// instant: Config.SessionTTL after their creation, Config.SessionIdleTTL
// after their last use, or, for a foreign user's session, when its current
// ID-Cert expires. It is the one rule of those ends: the Service ends a
// session that Over says is over, and every Store's claim leaves such a
// session out in the same atomic step (see
// KeyPackageStore.ClaimKeyPackages). A zero bound ends nothing, so the
// zero SessionEnds ends only foreign sessions without a current ID-Cert.
type SessionEnds struct {
	// CreatedBy: a session whose CreatedAt is at or before it has ended
	// (its Config.SessionTTL is over). Zero: no such bound.
	CreatedBy time.Time
	// UsedBy: a session last used at or before it has ended (unused for
	// Config.SessionIdleTTL). Its last use is LastUsedAt, or CreatedAt
	// when that is later or LastUsedAt is zero. Zero: no such bound.
	UsedBy time.Time
	// CertExpiredBy: a foreign user's session (Home not empty) whose
	// current ID-Cert has an ExpiresAt at or before it has ended. Zero:
	// no such bound. A foreign session without a current ID-Cert has
	// ended whatever the bounds.
	CertExpiredBy time.Time
}

// Over says why sess has ended under e, or "" while it lasts. cert is
// sess's current ID-Cert, nil when it has none; it is looked at only for
// a foreign session (Home not empty), so a caller may leave it nil for a
// local one.
func (e SessionEnds) Over(sess Session, cert *IDCert) string {
	if !e.CreatedBy.IsZero() && !sess.CreatedAt.After(e.CreatedBy) {
		return "its lifetime (Config.SessionTTL) is over"
	}
	if !e.UsedBy.IsZero() && !lastUse(sess).After(e.UsedBy) {
		return "it was not used for Config.SessionIdleTTL"
	}
	if sess.Home != "" {
		if cert == nil {
			return "it has no current ID-Cert"
		}
		if !e.CertExpiredBy.IsZero() && !cert.ExpiresAt.After(e.CertExpiredBy) {
			return "the ID-Cert it presented has expired"
		}
	}
	return ""
}

// sessionEnds is the SessionEnds of s's Config at now: a session created
// Config.SessionTTL before now, unused for Config.SessionIdleTTL, or
// foreign with a cert expired at now has ended.
func (s *Service) sessionEnds(now time.Time) SessionEnds {
	e := SessionEnds{CertExpiredBy: now}
	if ttl := s.cfg.SessionTTL; ttl > 0 {
		e.CreatedBy = now.Add(-ttl)
	}
	if idle := s.cfg.SessionIdleTTL; idle > 0 {
		e.UsedBy = now.Add(-idle)
	}
	return e
}

// sessionOver says why sess has ended by itself at now ("" while it
// lasts), by s.sessionEnds(now).Over; it loads a foreign session's
// current ID-Cert for it.
func (s *Service) sessionOver(ctx context.Context, sess Session, now time.Time) (string, error) {
	var cert *IDCert
	if sess.Home != "" {
		c, err := s.store.CurrentIDCert(ctx, sess.UserID, sess.SessionID)
		switch {
		case err == nil:
			cert = &c
		case !errors.Is(err, ErrNotFound):
			return "", fmt.Errorf("load ID-Cert: %w", err)
		}
	}
	return s.sessionEnds(now).Over(sess, cert), nil
}

// expire ends sess when it is over at now and reports whether it was. A
// failure to end it is logged, not returned: the session is over either
// way, and the next look at it tries again.
func (s *Service) expire(ctx context.Context, sess Session, now time.Time) (bool, error) {
	why, err := s.sessionOver(ctx, sess, now)
	if err != nil || why == "" {
		return false, err
	}
	if err := s.EndSession(ctx, sess.UserID, sess.SessionID); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "could not end an expired session", slog.String("user_id", sess.UserID.String()), slog.String("session_id", string(sess.SessionID)), slog.String("error", err.Error()))
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "session expired", slog.String("user_id", sess.UserID.String()), slog.String("session_id", string(sess.SessionID)), slog.String("reason", why))
	return true, nil
}

// liveSessions returns user's sessions that have not ended by themselves,
// ending those that have.
func (s *Service) liveSessions(ctx context.Context, user UserID) ([]Session, error) {
	all, err := s.store.Sessions(ctx, user)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	now := s.now()
	live := all[:0]
	for _, x := range all {
		over, err := s.expire(ctx, x, now)
		if err != nil {
			return nil, err
		}
		if !over {
			live = append(live, x)
		}
	}
	return live, nil
}

// Sessions lists p's own sessions.
func (s *Service) Sessions(ctx context.Context, p Principal) ([]Session, error) {
	if err := requireUser(p); err != nil {
		return nil, err
	}
	return s.liveSessions(ctx, p.UserID)
}

// EndSession ends one session of user: its token stops working at once, its
// KeyPackages and last resort are dropped, its ID-Cert stops being current
// and, when Config.Events is a SessionForgetter, the sink forgets it (a
// broker.Broker disconnects its event streams). Embedders with their own
// session system call it when a session ends; nothing else needs calling.
// It is idempotent.
func (s *Service) EndSession(ctx context.Context, user UserID, session SessionID) error {
	if err := s.store.EndSession(ctx, user, session, s.now()); err != nil {
		return fmt.Errorf("end session: %w", err)
	}
	if f, ok := s.cfg.Events.(SessionForgetter); ok {
		f.Forget(user, session)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "session ended", slog.String("user_id", user.String()), slog.String("session_id", string(session)))
	return nil
}

// EndAllSessions ends every session of user stored in the Store and returns
// how many there were.
func (s *Service) EndAllSessions(ctx context.Context, user UserID) (int, error) {
	all, err := s.store.Sessions(ctx, user)
	if err != nil {
		return 0, fmt.Errorf("list sessions: %w", err)
	}
	for _, x := range all {
		if err := s.EndSession(ctx, user, x.SessionID); err != nil {
			return 0, err
		}
	}
	return len(all), nil
}
