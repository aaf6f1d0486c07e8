package p2core

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Service performs every polyproto-core home-server operation on a Store.
// It is safe for concurrent use. Methods that act for a caller take the
// caller's Principal and check what it may do; they return errors matching
// the sentinels in errors.go for refused requests, and other errors only
// for internal failures.
type Service struct {
	store Store
	cfg   Config
	log   *slog.Logger

	keyCache keyCache
	homeKeys homeKeyCache
}

// NewService returns a Service over store with cfg (copied, zero fields
// replaced by their defaults).
func NewService(store Store, cfg Config) (*Service, error) {
	if store == nil {
		return nil, errors.New("p2core: nil Store")
	}
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	self, err := NormalizeServerURL(cfg.SelfURL, cfg.AllowInsecureFederation)
	if err != nil {
		return nil, fmt.Errorf("p2core: invalid Config.SelfURL: %s", Message(err))
	}
	cfg.SelfURL = self
	s := &Service{store: store, cfg: cfg, log: cfg.Logger}
	return s, nil
}

// Config returns the effective configuration (defaults filled in).
func (s *Service) Config() Config { return s.cfg }

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

func (s *Service) publish(ctx context.Context, e Event) {
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	s.cfg.Events.Publish(context.WithoutCancel(ctx), e)
}

// requireUser checks that p is an authenticated principal.
func requireUser(p Principal) error {
	if p.Anonymous() {
		return Errorf(ErrUnauthorized, "authentication required")
	}
	return nil
}

// requireAdmin checks that p is an authenticated administrator.
func requireAdmin(p Principal) error {
	if err := requireUser(p); err != nil {
		return err
	}
	if !p.Admin || p.Home != "" {
		return Errorf(ErrNotAdministrator, "this operation needs an administrator")
	}
	return nil
}

// PurgeExpired deletes expired federation tokens and KeyPackages. Call it
// periodically (the example server does every minute); the Service never
// hands out expired items whether or not they were purged.
func (s *Service) PurgeExpired(ctx context.Context) error {
	now := s.now()
	nt, err := s.store.PurgeExpiredTokens(ctx, now)
	if err != nil {
		return fmt.Errorf("purge tokens: %w", err)
	}
	nk, err := s.store.PurgeExpiredKeyPackages(ctx, now)
	if err != nil {
		return fmt.Errorf("purge KeyPackages: %w", err)
	}
	if nt > 0 || nk > 0 {
		s.log.LogAttrs(ctx, slog.LevelDebug, "purged expired items", slog.Int("tokens", nt), slog.Int("keypackages", nk))
	}
	return nil
}
