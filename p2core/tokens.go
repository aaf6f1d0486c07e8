package p2core

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
)

const settingTokenGeneration = "federation_token_generation"

// tokenEncoding writes 256-bit tokens as 43 URL-safe characters.
var tokenEncoding = base64.RawURLEncoding

// NormalizeServerURL validates a foreign server URL and returns it as
// scheme://host[:port] in lower case. It must be absolute, https (http too
// when insecure is true), with a host and no userinfo, path other than "/",
// query or fragment. Errors match ErrInvalidServer.
func NormalizeServerURL(raw string, insecure bool) (string, error) {
	bad := func(why string) (string, error) {
		return "", Errorf(ErrInvalidServer, "server %q: %s", truncate(raw, 64), why)
	}
	if raw == "" {
		return bad("must not be empty")
	}
	if len(raw) > 512 {
		return bad("longer than 512 bytes")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("not a URL")
	}
	scheme := strings.ToLower(u.Scheme)
	switch {
	case scheme == "https":
	case scheme == "http" && insecure:
	case scheme == "http":
		return bad("must use https")
	case scheme == "":
		return bad("must be an absolute URL such as https://example.com")
	default:
		return bad("scheme must be https")
	}
	if u.Opaque != "" || u.Host == "" {
		return bad("must name a host")
	}
	if u.User != nil {
		return bad("must not contain user info")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(raw, "#?") {
		return bad("must not have a query or fragment")
	}
	if u.Path != "" && u.Path != "/" {
		return bad("must not have a path")
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if host == "" {
		return bad("must name a host")
	}
	if strings.HasSuffix(u.Host, ":") {
		return bad("empty port")
	}
	if port != "" {
		for _, c := range port {
			if c < '0' || c > '9' {
				return bad("invalid port")
			}
		}
		if len(port) > 5 {
			return bad("invalid port")
		}
	}
	if ip := net.ParseIP(host); ip == nil {
		for _, c := range host {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
				return bad("invalid host name")
			}
		}
	}
	out := scheme + "://"
	if strings.Contains(host, ":") {
		out += "[" + host + "]"
	} else {
		out += host
	}
	if port != "" {
		out += ":" + port
	}
	return out, nil
}

// HashToken returns the SHA-256 of a token's text, the only form stored.
func HashToken(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// newToken returns 256 random bits, URL-safe, and their hash.
func (s *Service) newToken() (string, [32]byte, error) {
	var raw [32]byte
	if _, err := io.ReadFull(s.cfg.Rand, raw[:]); err != nil {
		return "", [32]byte{}, fmt.Errorf("random token: %w", err)
	}
	tok := tokenEncoding.EncodeToString(raw[:])
	return tok, HashToken(tok), nil
}

// IssueFederationToken creates a one-time federation token for p to log in
// to server (route 1). It returns the token text (shown once, stored only
// as its SHA-256) and the stored record. Errors: ErrUnauthorized,
// ErrForbidden (a foreign principal: Principal.Home set, or a FID of another domain), ErrInvalidServer,
// ErrNotFederated, ErrTokenGenerationDisabled.
func (s *Service) IssueFederationToken(ctx context.Context, p Principal, server string) (string, FederationToken, error) {
	if err := requireUser(p); err != nil {
		return "", FederationToken{}, err
	}
	if s.isForeign(p) {
		return "", FederationToken{}, Errorf(ErrForbidden, "federation tokens for %s are issued by its home server", p.FID)
	}
	norm, err := NormalizeServerURL(server, s.cfg.AllowInsecureFederation)
	if err != nil {
		return "", FederationToken{}, err
	}
	if pol := s.cfg.FederationPolicy; pol != nil {
		if err := pol.AllowFederation(ctx, norm); err != nil {
			return "", FederationToken{}, Errorf(ErrNotFederated, "this server does not federate with %s", norm)
		}
	}
	enabled, err := s.TokenGenerationEnabled(ctx)
	if err != nil {
		return "", FederationToken{}, err
	}
	if !enabled {
		return "", FederationToken{}, Errorf(ErrTokenGenerationDisabled, "an administrator has disabled federation token generation")
	}
	now := s.now()
	for attempt := 0; ; attempt++ {
		tok, hash, err := s.newToken()
		if err != nil {
			return "", FederationToken{}, err
		}
		t := FederationToken{Hash: hash, UserID: p.UserID, FID: p.FID, Server: norm, IssuedAt: now, ExpiresAt: now.Add(s.cfg.TokenTTL)}
		err = s.store.CreateToken(ctx, t)
		if errors.Is(err, ErrConflict) && attempt < 3 {
			continue // a 256-bit collision: only a broken Rand gets here
		}
		if err != nil {
			return "", FederationToken{}, fmt.Errorf("store token: %w", err)
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "federation token issued", slog.String("user_id", p.UserID.String()), slog.String("server", norm))
		s.publish(ctx, Event{Type: EventFederationTokenIssued, UserID: p.UserID, Time: now,
			Payload: FederationTokenIssuedPayload{Server: norm, SessionID: p.SessionID, ExpiresAt: t.ExpiresAt.Unix()}})
		return tok, t, nil
	}
}

// TokenGenerationEnabled reports whether federation tokens may be issued
// (route 2). It is true until an administrator switches it off.
func (s *Service) TokenGenerationEnabled(ctx context.Context) (bool, error) {
	v, err := s.store.Setting(ctx, settingTokenGeneration)
	if errors.Is(err, ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("read setting: %w", err)
	}
	return string(v) != "off", nil
}

// SetTokenGeneration switches federation token generation on or off
// (route 3, administrators only), persistently.
func (s *Service) SetTokenGeneration(ctx context.Context, p Principal, enabled bool) error {
	if err := requireAdmin(p); err != nil {
		return err
	}
	v := "on"
	if !enabled {
		v = "off"
	}
	if err := s.store.PutSetting(ctx, settingTokenGeneration, []byte(v)); err != nil {
		return fmt.Errorf("write setting: %w", err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "federation token generation switched", slog.Bool("enabled", enabled), slog.String("by", p.UserID.String()))
	return nil
}

// DeleteOwnFederationTokens revokes all of p's federation tokens (route 4)
// and returns how many were deleted.
func (s *Service) DeleteOwnFederationTokens(ctx context.Context, p Principal) (int, error) {
	if err := requireUser(p); err != nil {
		return 0, err
	}
	n, err := s.store.DeleteUserTokens(ctx, p.UserID)
	if err != nil {
		return 0, fmt.Errorf("delete tokens: %w", err)
	}
	return n, nil
}

// DeleteUserFederationTokens revokes all federation tokens of user (route
// 5, administrators only) and returns how many were deleted.
func (s *Service) DeleteUserFederationTokens(ctx context.Context, p Principal, user UserID) (int, error) {
	if err := requireAdmin(p); err != nil {
		return 0, err
	}
	if user == 0 {
		return 0, Errorf(ErrInvalidUserID, "user ID must be positive")
	}
	n, err := s.store.DeleteUserTokens(ctx, user)
	if err != nil {
		return 0, fmt.Errorf("delete tokens: %w", err)
	}
	return n, nil
}

// DeleteAllFederationTokens revokes every federation token (route 6,
// administrators only) and returns how many were deleted.
func (s *Service) DeleteAllFederationTokens(ctx context.Context, p Principal) (int, error) {
	if err := requireAdmin(p); err != nil {
		return 0, err
	}
	n, err := s.store.DeleteAllTokens(ctx)
	if err != nil {
		return 0, fmt.Errorf("delete tokens: %w", err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "all federation tokens revoked", slog.Int("count", n), slog.String("by", p.UserID.String()))
	return n, nil
}

// RedeemFederationToken consumes token for server (route 7), exactly once
// even under concurrent calls. It fails with ErrTokenInvalid when the token
// is malformed, unknown, expired, already redeemed, revoked or was issued
// for another server, and with ErrInvalidServer for a bad server URL.
func (s *Service) RedeemFederationToken(ctx context.Context, token, server string) (FederationToken, error) {
	norm, err := NormalizeServerURL(server, s.cfg.AllowInsecureFederation)
	if err != nil {
		return FederationToken{}, err
	}
	if !wellFormedToken(token) {
		return FederationToken{}, Errorf(ErrTokenInvalid, "federation token is invalid")
	}
	t, err := s.store.RedeemToken(ctx, HashToken(token), norm, s.now())
	if errors.Is(err, ErrTokenInvalid) || errors.Is(err, ErrNotFound) {
		return FederationToken{}, Errorf(ErrTokenInvalid, "federation token is unknown, expired, already used, revoked or for another server")
	}
	if err != nil {
		return FederationToken{}, fmt.Errorf("redeem token: %w", err)
	}
	return t, nil
}

// wellFormedToken reports whether tok looks like a token we issue (43
// URL-safe Base64 characters), so junk never reaches the Store.
func wellFormedToken(tok string) bool {
	if len(tok) != 43 {
		return false
	}
	_, err := tokenEncoding.DecodeString(tok)
	return err == nil
}
