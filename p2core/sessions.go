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

// sessionOver says why sess has ended by itself at now ("" while it
// lasts): Config.SessionTTL after its creation; for a foreign user's
// session, when its current ID-Cert expires; or Config.SessionIdleTTL
// after its last recorded use.
func (s *Service) sessionOver(ctx context.Context, sess Session, now time.Time) (string, error) {
	if ttl := s.cfg.SessionTTL; ttl > 0 && !now.Before(sess.CreatedAt.Add(ttl)) {
		return "its lifetime (Config.SessionTTL) is over", nil
	}
	if idle := s.cfg.SessionIdleTTL; idle > 0 && !now.Before(lastUse(sess).Add(idle)) {
		return "it was not used for Config.SessionIdleTTL", nil
	}
	if sess.Home != "" {
		c, err := s.store.CurrentIDCert(ctx, sess.UserID, sess.SessionID)
		if errors.Is(err, ErrNotFound) {
			return "it has no current ID-Cert", nil
		}
		if err != nil {
			return "", fmt.Errorf("load ID-Cert: %w", err)
		}
		if !now.Before(c.ExpiresAt) {
			return "the ID-Cert it presented has expired", nil
		}
	}
	return "", nil
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
