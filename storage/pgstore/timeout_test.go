package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/pgstore"
)

// silentServer accepts TCP connections and reads whatever is sent, but
// never answers: a database host that is up while PostgreSQL is hung.
type silentServer struct {
	ln       net.Listener
	accepted atomic.Int64
	closed   atomic.Int64 // connections the client closed
}

func newSilentServer(t *testing.T) *silentServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &silentServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			go func() {
				_, _ = io.Copy(io.Discard, c) // until the client closes
				c.Close()
				s.closed.Add(1)
			}()
		}
	}()
	return s
}

// waitFor polls cond until it holds; the test's own deadline bounds it.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if t.Context().Err() != nil {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestOpenAgainstServerThatNeverAnswersFailsAfterConnectTimeoutAndLeavesNothingRunning(t *testing.T) {
	for _, tc := range []struct {
		name   string
		dsn    string // %s is the listener's address
		opts   *pgstore.Options
		report string // the timeout the error names
	}{
		{"DSN connect_timeout", "postgres://p2kit@%s/p2kit?sslmode=disable&connect_timeout=1", nil, "1s"},
		{"Options.ConnectTimeout", "postgres://p2kit@%s/p2kit?sslmode=disable", &pgstore.Options{ConnectTimeout: 300 * time.Millisecond}, "300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newSilentServer(t)
			before := runtime.NumGoroutine()
			s, err := pgstore.Open(context.Background(), fmt.Sprintf(tc.dsn, srv.ln.Addr()), tc.opts)
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded against a server that never answers")
			}
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not answer within "+tc.report) {
				t.Errorf("Open: %v; want an error matching context.DeadlineExceeded that names the %s timeout", err, tc.report)
			}
			if srv.accepted.Load() == 0 {
				t.Error("Open never connected to the listener")
			}
			// Every connection Open made is closed, and no goroutine of
			// its pool is left behind.
			waitFor(t, "every connection closed", func() bool { return srv.closed.Load() == srv.accepted.Load() })
			waitFor(t, "goroutines back to their number before Open", func() bool { return runtime.NumGoroutine() <= before })
		})
	}
}

// freezingProxy forwards TCP connections to a PostgreSQL server until
// freeze is called; after that it keeps reading from the client but
// forwards nothing: the database has stopped answering.
type freezingProxy struct {
	ln    net.Listener
	gate  sync.RWMutex // held for writing while frozen
	froze atomic.Bool
}

func newFreezingProxy(t *testing.T, upstream string) *freezingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &freezingProxy{ln: ln}
	t.Cleanup(func() {
		ln.Close()
		if p.froze.Load() {
			p.gate.Unlock()
		}
	})
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				p.gate.RLock()
				_, werr := dst.Write(buf[:n])
				p.gate.RUnlock()
				if werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
	return p
}

func (p *freezingProxy) freeze() {
	p.gate.Lock()
	p.froze.Store(true)
}

// thaw forwards again, starting with what was held back.
func (p *freezingProxy) thaw() {
	p.froze.Store(false)
	p.gate.Unlock()
}

// viaProxy returns the host:port dsn names and dsn pointed at addr
// instead.
func viaProxy(t *testing.T, dsn string) (upstream string, to func(addr string) string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	upstream = net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	return upstream, func(addr string) string {
		if strings.Contains(dsn, "://") {
			u, err := url.Parse(dsn)
			if err != nil {
				t.Fatal(err)
			}
			u.Host = addr
			return u.String()
		}
		host, port, _ := net.SplitHostPort(addr)
		return dsn + " host=" + host + " port=" + port
	}
}

func TestOperationDeadlineEndsCallsToADatabaseThatStopsAnswering(t *testing.T) {
	dsn := testDSN(t)
	schema := freshSchema(t)
	upstream, to := viaProxy(t, dsn)
	p := newFreezingProxy(t, upstream)
	proxied := to(p.ln.Addr().String())

	s, err := pgstore.Open(t.Context(), proxied, &pgstore.Options{Schema: schema, OperationTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open through the proxy: %v", err)
	}
	defer s.Close()
	now := time.Now()
	tok := p2core.FederationToken{Hash: [32]byte{1}, UserID: 1, FID: "a@home.example", Server: "https://s.example",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateToken(t.Context(), tok); err != nil {
		t.Fatalf("CreateToken before the freeze: %v", err)
	}

	p.freeze()
	// One single-statement and one transactional method: each ends with
	// the deadline, although the caller's ctx never ends.
	_, err = s.RedeemToken(t.Context(), tok.Hash, tok.Server, now)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, p2core.ErrUnavailable) || t.Context().Err() != nil {
		t.Errorf("RedeemToken on a frozen database: %v; want the operation deadline", err)
	}
	_, err = s.ClaimKeyPackages(t.Context(), 1, 0, now, p2core.SessionEnds{})
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, p2core.ErrUnavailable) {
		t.Errorf("ClaimKeyPackages on a frozen database: %v; want the operation deadline", err)
	}

	// When the database answers again, the pool replaces the connections
	// the deadline cut off. (Whether the cut-off redemption happened is
	// unknown to the caller, as after any lost answer.)
	p.thaw()
	tok2 := tok
	tok2.Hash = [32]byte{2}
	if err := s.CreateToken(t.Context(), tok2); err != nil {
		t.Fatalf("CreateToken after the thaw: %v", err)
	}
	if _, err := s.RedeemToken(t.Context(), tok2.Hash, tok2.Server, now); err != nil {
		t.Errorf("RedeemToken after the thaw: %v", err)
	}
}
