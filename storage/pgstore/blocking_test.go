package pgstore_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/pgstore"
)

// These tests hold a row lock from another connection so that a Store
// call blocks at a known statement inside its transaction, then check what
// the call does when the lock holder commits, rolls back, or the caller
// cancels.

// blocker is a store whose connections carry a unique application_name,
// so the test can see when one of them waits for a lock.
type blocker struct {
	s      *pgstore.Store
	schema string
	app    string
}

func newBlocker(t *testing.T, opts *pgstore.Options) *blocker {
	t.Helper()
	schema := freshSchema(t)
	app := "p2kit-" + schema
	o := pgstore.Options{}
	if opts != nil {
		o = *opts
	}
	o.Schema = schema
	s, err := pgstore.Open(t.Context(), withParam(t, testDSN(t), "application_name", app), &o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return &blocker{s: s, schema: schema, app: app}
}

// table returns the schema-qualified name of a table.
func (b *blocker) table(name string) string { return pgx.Identifier{b.schema, name}.Sanitize() }

// lock begins a transaction on another connection and runs sql in it
// (typically SELECT ... FOR UPDATE). The caller must end the transaction.
func (b *blocker) lock(t *testing.T, sql string, args ...any) pgx.Tx {
	t.Helper()
	tx, err := adminPool(t).Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	tag, err := tx.Exec(t.Context(), sql, args...)
	if err != nil {
		t.Fatalf("lock: %v", err)
	}
	if tag.RowsAffected() == 0 {
		t.Fatalf("lock: %q touched no row", sql)
	}
	return tx
}

// waitBlocked waits until one of the store's connections waits for a lock.
func (b *blocker) waitBlocked(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		err := adminPool(t).QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND wait_event_type = 'Lock'`, b.app).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the store call never waited for the lock")
}

// async runs fn in a goroutine and returns a channel with its error.
func async(fn func() error) <-chan error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	return done
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func kp(user p2core.UserID, sid p2core.SessionID, notAfter time.Time) p2core.KeyPackage {
	return p2core.KeyPackage{
		UserID: user, SessionID: sid, CipherSuite: 1,
		Ref: randomBytes(32), InitKey: randomBytes(32), Data: randomBytes(200),
		NotAfter: notAfter, UploadedAt: notAfter.Add(-time.Hour),
	}
}

var now = time.Date(2031, 3, 4, 5, 6, 7, 0, time.UTC)

func must(t *testing.T, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestEndSessionCancelledMidTransactionChangesNothing(t *testing.T) {
	testDSN(t)
	b := newBlocker(t, nil)
	s, ctx := b.s, t.Context()
	sess := p2core.Session{UserID: 7, SessionID: "laptop", FID: "alice@home.example", CreatedAt: now}
	copy(sess.TokenHash[:], randomBytes(32))
	_, err := s.CreateSession(ctx, p2core.NewSession{Session: sess}, p2core.Limits{MaxSessions: 1}, now)
	must(t, err, "CreateSession")
	kps := []p2core.KeyPackage{kp(7, "laptop", now.Add(time.Hour)), kp(7, "laptop", now.Add(time.Hour))}
	must(t, s.AddKeyPackages(ctx, kps, 100, now), "AddKeyPackages")
	must(t, s.SetLastResort(ctx, kp(7, "laptop", now.Add(time.Hour)), now), "SetLastResort")
	cert := p2core.IDCert{UserID: 7, SessionID: "laptop", FID: sess.FID, Serial: "s1", Cert: []byte("cert"),
		IssuedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour)}
	must(t, s.PutIDCert(ctx, cert), "PutIDCert")

	// EndSession deletes the session, its KeyPackages and last resort, and
	// only then touches the cert head, where it waits.
	tx := b.lock(t, `SELECT 1 FROM `+b.table("p2kit_cert_heads")+` WHERE user_id = 7 FOR UPDATE`)
	cctx, cancel := context.WithCancel(ctx)
	done := async(func() error { return s.EndSession(cctx, 7, "laptop", now) })
	b.waitBlocked(t)
	cancel()
	err = <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("EndSession cancelled while blocked: got %v, want context.Canceled", err)
	}
	tx.Rollback(ctx)

	if _, err := s.SessionByToken(ctx, sess.TokenHash); err != nil {
		t.Fatalf("session gone after a cancelled EndSession: %v", err)
	}
	st, err := s.KeyPackageStatus(ctx, 7, "laptop", now)
	must(t, err, "KeyPackageStatus")
	if st != (p2core.KeyPackageStatus{Available: 2, LastResort: true}) {
		t.Fatalf("KeyPackage supply after a cancelled EndSession: %+v", st)
	}
	reuse := kp(8, "x", now.Add(time.Hour))
	reuse.InitKey = kps[0].InitKey
	if err := s.AddKeyPackages(ctx, []p2core.KeyPackage{reuse}, 100, now); !errors.Is(err, p2core.ErrDuplicateKeyPackage) {
		t.Fatalf("init key of a KeyPackage kept by a cancelled EndSession: got %v, want ErrDuplicateKeyPackage", err)
	}
	if _, err := s.CurrentIDCert(ctx, 7, "laptop"); err != nil {
		t.Fatalf("cert superseded by a cancelled EndSession: %v", err)
	}
	// The same call without the lock goes through.
	must(t, s.EndSession(ctx, 7, "laptop", now), "EndSession")
	if _, err := s.CurrentIDCert(ctx, 7, "laptop"); !errors.Is(err, p2core.ErrNotFound) {
		t.Fatalf("CurrentIDCert after EndSession: %v", err)
	}
}

func TestClaimCancelledMidTransactionLosesNoKeyPackage(t *testing.T) {
	testDSN(t)
	b := newBlocker(t, nil)
	s, ctx := b.s, t.Context()
	regular := kp(7, "a", now.Add(time.Hour))
	lr := kp(7, "b", now.Add(time.Hour))
	must(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{regular}, 100, now), "AddKeyPackages")
	must(t, s.SetLastResort(ctx, lr, now), "SetLastResort")

	// The claim takes session a's KeyPackage, then waits for session b's
	// row to hand out its last resort.
	tx := b.lock(t, `SELECT 1 FROM `+b.table("p2kit_kp_sessions")+` WHERE user_id = 7 AND session_id = 'b' FOR UPDATE`)
	cctx, cancel := context.WithCancel(ctx)
	done := async(func() error { _, err := s.ClaimKeyPackages(cctx, 7, 0, now, p2core.SessionEnds{}); return err })
	b.waitBlocked(t)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("ClaimKeyPackages cancelled while blocked: got %v, want context.Canceled", err)
	}
	tx.Rollback(ctx)

	got, err := s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{})
	must(t, err, "ClaimKeyPackages")
	if len(got) != 2 || got[0].LastResort || !bytes.Equal(got[0].Data, regular.Data) || !got[1].LastResort || !bytes.Equal(got[1].Data, lr.Data) {
		t.Fatalf("claim after a cancelled claim: got %d results %+v, want a's KeyPackage and b's last resort", len(got), got)
	}
	st, err := s.KeyPackageStatus(ctx, 7, "b", now)
	must(t, err, "KeyPackageStatus")
	if !st.LastResortUsed {
		t.Fatal("last resort not marked used by the completed claim")
	}
}

// A claim whose only candidate is locked by another transaction waits for
// it: when that transaction rolls back the claim gets the KeyPackage, not
// the last resort; when it deletes the KeyPackage (a concurrent claim
// committing), the claim gets the last resort.
func TestClaimWaitsForLockedKeyPackageBeforeFallingBackToLastResort(t *testing.T) {
	testDSN(t)
	for _, end := range []string{"rollback", "commit"} {
		t.Run(end, func(t *testing.T) {
			b := newBlocker(t, nil)
			s, ctx := b.s, t.Context()
			regular := kp(7, "a", now.Add(time.Hour))
			lr := kp(7, "a", now.Add(time.Hour))
			must(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{regular}, 100, now), "AddKeyPackages")
			must(t, s.SetLastResort(ctx, lr, now), "SetLastResort")

			tx := b.lock(t, `DELETE FROM `+b.table("p2kit_key_packages")+` WHERE user_id = 7`)
			type result struct {
				got []p2core.ClaimedKeyPackage
				err error
			}
			done := make(chan result, 1)
			go func() {
				got, err := s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{})
				done <- result{got, err}
			}()
			b.waitBlocked(t)
			want := regular
			if end == "rollback" {
				must(t, tx.Rollback(ctx), "Rollback")
			} else {
				must(t, tx.Commit(ctx), "Commit")
				want = lr
			}
			r := <-done
			must(t, r.err, "ClaimKeyPackages")
			if len(r.got) != 1 || !bytes.Equal(r.got[0].Data, want.Data) || r.got[0].LastResort != (end == "commit") {
				t.Fatalf("after the lock holder's %s: got %+v, want the %s", end, r.got,
					map[string]string{"rollback": "regular KeyPackage", "commit": "last resort"}[end])
			}
		})
	}
}

func TestStatementTimeoutAbortsABlockedCall(t *testing.T) {
	testDSN(t)
	b := newBlocker(t, &pgstore.Options{StatementTimeout: 100 * time.Millisecond})
	s, ctx := b.s, t.Context()
	c := p2core.IDCert{UserID: 7, SessionID: "laptop", FID: "alice@home.example", Serial: "s1", Cert: []byte("c"),
		IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
	must(t, s.PutIDCert(ctx, c), "PutIDCert")
	b.lock(t, `SELECT 1 FROM `+b.table("p2kit_cert_heads")+` FOR UPDATE`)
	c2 := c
	c2.Serial, c2.IssuedAt = "s2", now.Add(time.Minute)
	start := time.Now()
	err := s.PutIDCert(ctx, c2)
	if err == nil {
		t.Fatal("PutIDCert blocked past the statement timeout succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("PutIDCert returned after %v, want about the 100ms statement timeout", d)
	}
	if errors.Is(err, p2core.ErrConflict) || errors.Is(err, context.Canceled) {
		t.Fatalf("statement timeout reported as %v", err)
	}
}
