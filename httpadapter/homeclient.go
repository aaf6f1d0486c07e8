package httpadapter

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/p2kit/p2kit/p2core"
)

// Defaults for HomeClientOptions fields left zero.
const (
	// DefaultHomeTimeout bounds each request to a home server, from
	// dialling to the last byte of the answer.
	DefaultHomeTimeout = 10 * time.Second
	// DefaultMaxHomeKeyBytes caps the answer of route 10 (a Base64 server
	// key in JSON); an RSA-3072 key takes about 2 KiB.
	DefaultMaxHomeKeyBytes = 64 << 10
	// DefaultMaxRedeemBytes caps the answer of route 7.
	DefaultMaxRedeemBytes = 4 << 10
)

// Resolver finds the home server of a domain. Implementations must be safe
// for concurrent use.
type Resolver interface {
	// Resolve returns the base URL (scheme://host[:port]) of the home
	// server of domain (the part of a FID after '@', lower case). An error
	// means the domain has no known home server (ErrUnknownHome), unless
	// it matches p2core.ErrHomeUnreachable.
	Resolve(ctx context.Context, domain string) (string, error)
}

// DefaultResolver is the resolver polyproto-core prescribes: the home
// server of DOMAIN is at https://DOMAIN.
type DefaultResolver struct{}

// Resolve returns "https://" + domain, or ErrUnknownHome for a string that
// is not a FID's domain.
func (DefaultResolver) Resolve(_ context.Context, domain string) (string, error) {
	if _, err := p2core.ParseFID("x@" + domain); err != nil {
		return "", p2core.Errorf(p2core.ErrUnknownHome, "%q is not a domain", domain)
	}
	return "https://" + strings.ToLower(domain), nil
}

// StaticResolver maps domains (lower case) to home server base URLs, for
// tests and loopback deployments. Domains not in the map have no home
// server.
type StaticResolver map[string]string

// Resolve looks domain up, case-insensitively.
func (r StaticResolver) Resolve(_ context.Context, domain string) (string, error) {
	u, ok := r[strings.ToLower(domain)]
	if !ok {
		return "", p2core.Errorf(p2core.ErrUnknownHome, "no home server is known for %s", domain)
	}
	return u, nil
}

// HomeClientOptions configures a HomeClient. Zero values are documented
// defaults.
type HomeClientOptions struct {
	// Resolver finds home servers. Default DefaultResolver (https://DOMAIN).
	Resolver Resolver
	// Timeout bounds each request, dial to last byte. Default 10 s.
	Timeout time.Duration
	// MaxKeyBytes caps route 10 answers. Default 64 KiB.
	MaxKeyBytes int64
	// MaxRedeemBytes caps route 7 answers. Default 4 KiB.
	MaxRedeemBytes int64
	// AllowInsecure accepts http:// base URLs from the Resolver (loopback
	// tests). Default false: https only.
	AllowInsecure bool
	// AllowPrivateAddresses lets the client connect to loopback, private,
	// link-local and every other address that is not globally reachable:
	// set it only when the Resolver maps domains explicitly to such
	// addresses (loopback tests, a private federation). Default false: a
	// FID's domain is chosen by whoever calls route 16, so each connection
	// is checked at dial time, on the address actually dialled (after DNS,
	// so rebinding does not get around it), against the IANA IPv4 and IPv6
	// Special-Purpose Address Registries; NAT64 and IPv4-mapped addresses
	// are judged by the IPv4 address they carry, and 6to4, Teredo and
	// IPv4-compatible addresses are refused. Applies only when HTTPClient
	// is nil: a client of your own brings its own guard.
	AllowPrivateAddresses bool
	// HTTPClient sends the requests. Default: a client with dial and TLS
	// handshake timeouts, no proxy, TLS 1.2 or later. A given client is
	// copied; its CheckRedirect is replaced (redirects are never
	// followed) and a zero Timeout is set to Timeout.
	HTTPClient *http.Client
}

// HomeClient implements p2core.HomeServers over HTTP: route 10 for home
// server keys and route 7 to redeem federation tokens. It never follows
// redirects, bounds the time and size of every answer, and maps failures
// to p2core.ErrUnknownHome, p2core.ErrHomeUnreachable and
// p2core.ErrTokenInvalid, with caller-safe messages (the wrapped cause, for
// logs, names no token). It is safe for concurrent use.
type HomeClient struct {
	resolver  Resolver
	hc        *http.Client
	timeout   time.Duration
	maxKey    int64
	maxRedeem int64
	insecure  bool
}

var _ p2core.HomeServers = (*HomeClient)(nil)

// errRedirect is returned by CheckRedirect: a home server's answer is
// never taken from another URL.
var errRedirect = errors.New("redirects are not followed")

// NewHomeClient returns a HomeClient with opts.
func NewHomeClient(opts HomeClientOptions) *HomeClient {
	c := &HomeClient{resolver: opts.Resolver, timeout: opts.Timeout, maxKey: opts.MaxKeyBytes, maxRedeem: opts.MaxRedeemBytes, insecure: opts.AllowInsecure}
	if c.resolver == nil {
		c.resolver = DefaultResolver{}
	}
	if c.timeout <= 0 {
		c.timeout = DefaultHomeTimeout
	}
	if c.maxKey <= 0 {
		c.maxKey = DefaultMaxHomeKeyBytes
	}
	if c.maxRedeem <= 0 {
		c.maxRedeem = DefaultMaxRedeemBytes
	}
	noRedirects := func(*http.Request, []*http.Request) error { return errRedirect }
	if opts.HTTPClient != nil {
		hc := *opts.HTTPClient
		hc.CheckRedirect = noRedirects
		if hc.Timeout == 0 {
			hc.Timeout = c.timeout
		}
		c.hc = &hc
		return c
	}
	step := min(5*time.Second, c.timeout)
	dialer := &net.Dialer{Timeout: step, KeepAlive: 30 * time.Second}
	if !opts.AllowPrivateAddresses {
		dialer.Control = refuseNonPublic
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		TLSHandshakeTimeout:    step,
		TLSClientConfig:        &tls.Config{MinVersion: tls.VersionTLS12},
		ResponseHeaderTimeout:  c.timeout,
		MaxResponseHeaderBytes: 16 << 10,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
	}
	c.hc = &http.Client{Transport: tr, Timeout: c.timeout, CheckRedirect: noRedirects}
	return c
}

// homeErr is a failure with a caller-safe message (the *p2core.Error) and
// the cause, for logs.
func homeErr(kind error, cause error, format string, args ...any) error {
	e := p2core.Errorf(kind, format, args...)
	if cause == nil {
		return e
	}
	return fmt.Errorf("%w: %w", e, cause)
}

// base resolves domain to a validated base URL.
func (c *HomeClient) base(ctx context.Context, domain string) (string, error) {
	u, err := c.resolver.Resolve(ctx, domain)
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if errors.Is(err, p2core.ErrUnknownHome) || errors.Is(err, p2core.ErrHomeUnreachable) {
			return "", err
		}
		return "", homeErr(p2core.ErrUnknownHome, err, "no home server found for %s", domain)
	}
	norm, err := p2core.NormalizeServerURL(u, c.insecure)
	if err != nil {
		return "", homeErr(p2core.ErrUnknownHome, err, "the home server of %s has an unusable URL", domain)
	}
	return norm, nil
}

// transportErr maps a failed exchange with the home server of domain to
// ErrHomeUnreachable with one message for every cause (an address that is
// not globally reachable, no such host, a refused connection, a timeout, a
// redirect), so that route 16 is no oracle for internal names; the cause
// stays wrapped for the log.
func transportErr(ctx context.Context, domain string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return homeErr(p2core.ErrHomeUnreachable, err, "the home server of %s could not be reached", domain)
}

// exchange sends one request to the home server of domain and returns the
// status and at most limit bytes of the body (more is an error).
func (c *HomeClient) exchange(ctx context.Context, domain, method, path string, query url.Values, body any, limit int64) (int, []byte, error) {
	base, err := c.base(ctx, domain)
	if err != nil {
		return 0, nil, err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	u := base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, u, rd)
	if err != nil {
		return 0, nil, homeErr(p2core.ErrUnknownHome, err, "the home server of %s has an unusable URL", domain)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, transportErr(ctx, domain, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return 0, nil, transportErr(ctx, domain, err)
	}
	if int64(len(data)) > limit {
		return 0, nil, homeErr(p2core.ErrHomeUnreachable, nil, "the home server of %s answered with more than %d bytes", domain, limit)
	}
	return resp.StatusCode, data, nil
}

// codePattern is what a P2CORE_* code from a home server must look like to
// be repeated in a message.
var codePattern = regexp.MustCompile(`^P2CORE_[A-Z0-9_]{1,48}$`)

// errorCode returns the P2CORE_* code of an error body, or "".
func errorCode(data []byte) string {
	var eb errorBody
	if json.Unmarshal(data, &eb) != nil || !codePattern.MatchString(eb.Error) {
		return ""
	}
	return eb.Error
}

func statusErr(domain string, status int, data []byte) error {
	code := errorCode(data)
	if code == "" {
		return homeErr(p2core.ErrHomeUnreachable, nil, "the home server of %s answered %d", domain, status)
	}
	return homeErr(p2core.ErrHomeUnreachable, nil, "the home server of %s answered %d %s", domain, status, code)
}

// ServerKey fetches the key the home server of domain says was current at
// at (zero: now) from route 10 and returns it, binary. A 404 matches
// p2core.ErrUnknownHome: the server has no key then, or is no
// polyproto-core server.
func (c *HomeClient) ServerKey(ctx context.Context, domain string, at time.Time) ([]byte, error) {
	status, data, err := c.exchange(ctx, domain, http.MethodGet, "/p2core/key/server", timestampQuery(at), nil, c.maxKey)
	if err != nil {
		return nil, err
	}
	switch status {
	case http.StatusOK:
	case http.StatusNotFound:
		return nil, homeErr(p2core.ErrUnknownHome, nil, "the home server of %s has no polyproto-core server key there", domain)
	default:
		return nil, statusErr(domain, status, data)
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, homeErr(p2core.ErrHomeUnreachable, err, "the home server of %s sent a malformed server key answer", domain)
	}
	key, err := b64.DecodeString(s)
	if err != nil || len(key) == 0 {
		return nil, homeErr(p2core.ErrHomeUnreachable, err, "the home server of %s sent a server key that is not Base64", domain)
	}
	return key, nil
}

// RedeemToken consumes token at the home server of domain (route 7) for
// the foreign server self. The token travels only in the request body and
// appears in no error.
func (c *HomeClient) RedeemToken(ctx context.Context, domain, token, self string) (p2core.FederationToken, error) {
	status, data, err := c.exchange(ctx, domain, http.MethodPost, "/p2core/token/redeem", nil, RedeemRequest{Token: token, Server: self}, c.maxRedeem)
	if err != nil {
		return p2core.FederationToken{}, err
	}
	if status != http.StatusOK {
		if errorCode(data) == "P2CORE_TOKEN_INVALID" {
			return p2core.FederationToken{}, p2core.Errorf(p2core.ErrTokenInvalid, "the home server refused the federation token: it is unknown, expired, already used, revoked or for another server")
		}
		return p2core.FederationToken{}, statusErr(domain, status, data)
	}
	var rr RedeemResponse
	if err := json.Unmarshal(data, &rr); err != nil {
		return p2core.FederationToken{}, homeErr(p2core.ErrHomeUnreachable, err, "the home server of %s sent a malformed redemption answer", domain)
	}
	fid, err := p2core.ParseFID(string(rr.FID))
	if err != nil || rr.UserID == 0 {
		return p2core.FederationToken{}, homeErr(p2core.ErrHomeUnreachable, err, "the home server of %s sent a redemption answer without a valid user", domain)
	}
	server, err := p2core.NormalizeServerURL(rr.Server, true)
	if err != nil {
		return p2core.FederationToken{}, homeErr(p2core.ErrHomeUnreachable, err, "the home server of %s sent a redemption answer without a valid server", domain)
	}
	return p2core.FederationToken{UserID: rr.UserID, FID: fid, Server: server,
		IssuedAt: time.Unix(rr.IssuedAt, 0).UTC(), ExpiresAt: time.Unix(rr.ExpiresAt, 0).UTC()}, nil
}
