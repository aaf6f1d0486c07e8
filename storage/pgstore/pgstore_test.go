package pgstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/pgstore"
	"github.com/p2kit/p2kit/storage/storetest"
)

// envDSN names the variable that points the tests at a PostgreSQL database.
const envDSN = "P2KIT_POSTGRES_DSN"

// testDSN returns the database the tests use, or skips the test.
func testDSN(t testing.TB) string {
	t.Helper()
	dsn := os.Getenv(envDSN)
	if dsn == "" {
		t.Skipf("set %s to a PostgreSQL connection string to run the pgstore tests (CI: source .ci/postgres.sh && pg_start)", envDSN)
	}
	return dsn
}

// admin is one pool per test binary for setting up and dropping schemas.
var admin = sync.OnceValues(func() (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(os.Getenv(envDSN))
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 4
	return pgxpool.NewWithConfig(context.Background(), cfg)
})

func adminPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	p, err := admin()
	if err != nil {
		t.Fatalf("admin pool: %v", err)
	}
	return p
}

var schemaSeq atomic.Int64

// freshSchema names a schema no other test (in this or another process)
// uses, and drops it when the test ends, after the cleanups registered
// later (such as closing the store) have run.
func freshSchema(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("p2kit_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6, schemaSeq.Add(1))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := adminPool(t).Exec(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	return name
}

// openStore opens a store in schema and closes it when the test ends.
func openStore(t testing.TB, schema string, opts *pgstore.Options) *pgstore.Store {
	t.Helper()
	o := pgstore.Options{}
	if opts != nil {
		o = *opts
	}
	o.Schema = schema
	s, err := pgstore.Open(context.Background(), testDSN(t), &o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// emptyingFactory returns a conformance factory that gives every test the
// same migrated schema, emptied first: storetest runs its tests one at a
// time, and deleting a few rows is much faster than creating and dropping
// a schema per test. The schema is dropped when t ends.
func emptyingFactory(t *testing.T) func(t *testing.T) p2core.Store {
	schema := freshSchema(t)
	openStore(t, schema, nil).Close()
	rows, err := adminPool(t).Query(t.Context(), `SELECT tablename FROM pg_tables
		WHERE schemaname = $1 AND tablename <> 'p2kit_schema_migrations'`, schema)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(tables) == 0 {
		t.Fatalf("list tables of %s: %v %v", schema, tables, err)
	}
	var empty strings.Builder
	for _, tb := range tables {
		fmt.Fprintf(&empty, "DELETE FROM %s;", pgx.Identifier{schema, tb}.Sanitize())
	}
	return func(t *testing.T) p2core.Store {
		if _, err := adminPool(t).Exec(t.Context(), empty.String()); err != nil {
			t.Fatalf("empty schema %s: %v", schema, err)
		}
		return openStore(t, schema, nil)
	}
}

func TestConformance(t *testing.T) {
	testDSN(t)
	storetest.Run(t, emptyingFactory(t))
}

func TestPersistent(t *testing.T) {
	testDSN(t)
	var mu sync.Mutex
	schemas := map[string]string{} // test dir -> schema
	storetest.RunPersistent(t, func(t *testing.T, dir string) p2core.Store {
		mu.Lock()
		schema, ok := schemas[dir]
		if !ok {
			schema = freshSchema(t)
			schemas[dir] = schema
		}
		mu.Unlock()
		return openStore(t, schema, nil)
	})
}

func TestConcurrentOpensOfEmptySchemaAllSucceedAndMigrateOnce(t *testing.T) {
	testDSN(t)
	schema := freshSchema(t)
	const n = 8
	errs := make([]error, n)
	stores := make([]*pgstore.Store, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			stores[i], errs[i] = pgstore.Open(t.Context(), testDSN(t), &pgstore.Options{Schema: schema})
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	var rows, version int64
	err := adminPool(t).QueryRow(t.Context(), `SELECT count(*), max(version) FROM `+
		pgx.Identifier{schema, "p2kit_schema_migrations"}.Sanitize()).Scan(&rows, &version)
	if err != nil {
		t.Fatalf("read migrations: %v", err)
	}
	if rows != pgstore.SchemaVersion || version != pgstore.SchemaVersion {
		t.Fatalf("p2kit_schema_migrations has %d rows up to version %d, want %d up to %d", rows, version, pgstore.SchemaVersion, pgstore.SchemaVersion)
	}
	// Every store works on the shared schema.
	for i, s := range stores {
		key := fmt.Sprint("k", i)
		if err := s.PutSetting(t.Context(), key, []byte{byte(i)}); err != nil {
			t.Fatalf("store %d: PutSetting: %v", i, err)
		}
		if _, err := stores[(i+1)%n].Setting(t.Context(), key); err != nil {
			t.Fatalf("store %d: Setting written by store %d: %v", (i+1)%n, i, err)
		}
	}
}

func TestReopenOfMigratedSchemaKeepsDataAndVersion(t *testing.T) {
	testDSN(t)
	schema := freshSchema(t)
	s := openStore(t, schema, nil)
	if err := s.PutSetting(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, schema, nil)
	got, err := s.Setting(t.Context(), "k")
	if err != nil || string(got) != "v" {
		t.Fatalf("Setting after reopen: %q, %v", got, err)
	}
}

func TestOpenRefusesSchemaOfNewerVersion(t *testing.T) {
	testDSN(t)
	schema := freshSchema(t)
	openStore(t, schema, nil).Close()
	if _, err := adminPool(t).Exec(t.Context(), `INSERT INTO `+pgx.Identifier{schema, "p2kit_schema_migrations"}.Sanitize()+
		` (version, name) VALUES ($1, 'from the future')`, pgstore.SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	s, err := pgstore.Open(t.Context(), testDSN(t), &pgstore.Options{Schema: schema})
	if err == nil {
		s.Close()
		t.Fatal("Open of a schema migrated by a newer pgstore succeeded")
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("version %d, which this pgstore does not know", pgstore.SchemaVersion+1)) {
		t.Fatalf("Open: got %v, want an error naming the unknown version", err)
	}
}

func TestSchemaFromDSNSearchPathIsCreatedAndUsed(t *testing.T) {
	dsn := testDSN(t)
	schema := freshSchema(t)
	s, err := pgstore.Open(t.Context(), withParam(t, dsn, "search_path", schema), nil)
	if err != nil {
		t.Fatalf("Open with search_path in the DSN: %v", err)
	}
	defer s.Close()
	if err := s.PutSetting(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := adminPool(t).QueryRow(t.Context(), `SELECT count(*) FROM `+pgx.Identifier{schema, "p2kit_settings"}.Sanitize()).Scan(&n); err != nil {
		t.Fatalf("read the setting from the DSN's schema: %v", err)
	}
	if n != 1 {
		t.Fatalf("%d settings in schema %s, want 1", n, schema)
	}
}

func TestOpenWithCancelledContextFails(t *testing.T) {
	testDSN(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	s, err := pgstore.Open(ctx, testDSN(t), &pgstore.Options{Schema: freshSchema(t)})
	if err == nil {
		s.Close()
		t.Fatal("Open with a cancelled context succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Open: got %v, want an error matching context.Canceled", err)
	}
}

func TestOpenWithBadDSNFails(t *testing.T) {
	if _, err := pgstore.Open(t.Context(), "postgres://%zz", nil); err == nil {
		t.Fatal("Open with an unparsable DSN succeeded")
	}
}

// withParam adds a connection parameter to a URL or key=value DSN.
func withParam(t testing.TB, dsn, key, value string) string {
	t.Helper()
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("parse DSN: %v", err)
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " " + key + "='" + value + "'"
}

// The migration mechanism, on a synthetic version after SchemaVersion: a
// current schema is migrated on Open, keeps its data and records the
// version; the migration runs once; this pgstore then refuses the schema.
func TestOpenMigratesToSyntheticNextVersion(t *testing.T) {
	testDSN(t)
	ctx := t.Context()
	schema := freshSchema(t)
	s := openStore(t, schema, nil)
	c := p2core.IDCert{UserID: 7, SessionID: "laptop", FID: "alice@home.example", Serial: "s0",
		Cert: []byte{1}, IssuedAt: time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC), ExpiresAt: time.Date(2031, 1, 2, 0, 0, 0, 0, time.UTC)}
	if err := s.PutIDCert(ctx, c); err != nil {
		t.Fatal(err)
	}
	s.Close()
	step := `INSERT INTO p2kit_settings (key, value) VALUES ('synthetic', '\x01')`
	for range 2 {
		s2, err := pgstore.OpenWithSyntheticNextVersion(ctx, testDSN(t), &pgstore.Options{Schema: schema}, step)
		if err != nil {
			t.Fatalf("Open with the next version (a second run would fail on the duplicate key): %v", err)
		}
		got, err := s2.IDCertBySerial(ctx, "s0")
		if err != nil || got.Serial != "s0" {
			t.Fatalf("cert after the migration: %v, %v", got, err)
		}
		if v, err := s2.Setting(ctx, "synthetic"); err != nil || len(v) != 1 {
			t.Fatalf("the next version's step did not run: %v, %v", v, err)
		}
		s2.Close()
	}
	var version int64
	err := adminPool(t).QueryRow(ctx, `SELECT max(version) FROM `+pgx.Identifier{schema, "p2kit_schema_migrations"}.Sanitize()).Scan(&version)
	if err != nil || version != pgstore.SchemaVersion+1 {
		t.Fatalf("recorded version %d (%v), want %d", version, err, pgstore.SchemaVersion+1)
	}
	if s3, err := pgstore.Open(ctx, testDSN(t), &pgstore.Options{Schema: schema}); err == nil {
		s3.Close()
		t.Fatal("a pgstore opened a schema of a later version")
	}
}

// A server that refuses connections is a transient failure:
// ErrUnavailable, which the HTTP adapter answers with 503.
func TestOpenOfClosedPortIsUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = pgstore.Open(t.Context(), "postgres://p2kit@"+addr+"/p2kit?sslmode=disable&connect_timeout=5", nil)
	if !errors.Is(err, p2core.ErrUnavailable) {
		t.Fatalf("Open of a closed port: %v, want ErrUnavailable", err)
	}
}

// A claim is one prepared statement: pgx prepares it once per connection
// and later claims only bind and execute it, and PostgreSQL soon runs it
// with a generic plan, so a claim pays no parsing or planning.
func TestClaimIsOnePreparedStatementRunWithAGenericPlan(t *testing.T) {
	s := openStore(t, freshSchema(t), &pgstore.Options{MaxConns: 1})
	ctx := t.Context()
	const claims = 12
	kps := make([]p2core.KeyPackage, claims)
	for i := range kps {
		kps[i] = kp(7, "s", now.Add(time.Hour))
	}
	if err := s.AddKeyPackages(ctx, kps, 100, now); err != nil {
		t.Fatal(err)
	}
	for range claims {
		got, err := s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{})
		if err != nil || len(got) != 1 || got[0].LastResort {
			t.Fatalf("claim: %v, %+v", err, got)
		}
	}
	prepared, generic, custom, err := pgstore.PreparedClaims(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	if !prepared || generic+custom != claims {
		t.Fatalf("claim statement prepared %v, executed %d times with generic and %d with custom plans; want prepared, %d executions", prepared, generic, custom, claims)
	}
	if generic == 0 {
		t.Errorf("all %d claims were planned anew (custom plans); want PostgreSQL to settle on a generic plan", claims)
	}
}

// A claim writes the KeyPackage's and the session's rows only: the init
// key's row keeps its row version (its xmin), and the init key is still
// held as handed out until its NotAfter and free after it.
func TestClaimLeavesInitKeyRowAndHandsItOut(t *testing.T) {
	schema := freshSchema(t)
	s := openStore(t, schema, nil)
	ctx := t.Context()
	k := kp(7, "s", now.Add(time.Hour))
	must(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{k}, 10, now), "upload")
	xmin := func() string {
		var x string
		err := adminPool(t).QueryRow(ctx, `SELECT xmin::TEXT FROM `+pgx.Identifier{schema, "p2kit_init_keys"}.Sanitize()+
			` WHERE init_key = $1`, k.InitKey).Scan(&x)
		must(t, err, "read the init key's row")
		return x
	}
	before := xmin()
	got, err := s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{})
	if err != nil || len(got) != 1 || !bytes.Equal(got[0].InitKey, k.InitKey) {
		t.Fatalf("claim: %v, %+v", err, got)
	}
	if after := xmin(); after != before {
		t.Errorf("the claim rewrote the init key's row (xmin %s, was %s)", after, before)
	}
	again := kp(7, "s", now.Add(2*time.Hour))
	again.InitKey = k.InitKey
	if err := s.AddKeyPackages(ctx, []p2core.KeyPackage{again}, 10, now.Add(time.Minute)); !errors.Is(err, p2core.ErrDuplicateKeyPackage) {
		t.Fatalf("re-upload of a handed-out init key before its NotAfter: %v, want ErrDuplicateKeyPackage", err)
	}
	if i, err := s.InitKeyInUse(ctx, [][]byte{k.InitKey}, now.Add(time.Minute)); err != nil || i != 0 {
		t.Fatalf("InitKeyInUse before NotAfter: %d, %v; want 0", i, err)
	}
	if i, err := s.InitKeyInUse(ctx, [][]byte{k.InitKey}, now.Add(time.Hour)); err != nil || i != -1 {
		t.Fatalf("InitKeyInUse at NotAfter: %d, %v; want -1", i, err)
	}
	must(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{again}, 10, now.Add(time.Hour)), "re-upload at the NotAfter")
	if st, err := s.KeyPackageStatus(ctx, 7, "s", now.Add(time.Hour)); err != nil || st.Available != 1 {
		t.Fatalf("status after the re-upload: %+v, %v", st, err)
	}
}

// A regular KeyPackage's init key row recorded before schema version 2
// (no locator) counts as stored, so it stays held after its NotAfter until
// a purge, as it did then.
func TestInitKeyRowWithoutLocatorCountsAsStored(t *testing.T) {
	schema := freshSchema(t)
	s := openStore(t, schema, nil)
	ctx := t.Context()
	k := kp(7, "s", now.Add(time.Hour))
	_, err := adminPool(t).Exec(ctx, `INSERT INTO `+pgx.Identifier{schema, "p2kit_init_keys"}.Sanitize()+
		` (init_key, kind, not_after) VALUES ($1, 1, $2)`, k.InitKey, k.NotAfter)
	must(t, err, "insert a version-1 row")
	later := now.Add(2 * time.Hour)
	k.NotAfter = later.Add(time.Hour)
	if err := s.AddKeyPackages(ctx, []p2core.KeyPackage{k}, 10, later); !errors.Is(err, p2core.ErrDuplicateKeyPackage) {
		t.Fatalf("upload over a stored init key past its NotAfter: %v, want ErrDuplicateKeyPackage", err)
	}
	if _, err := s.PurgeExpiredKeyPackages(ctx, later); err != nil {
		t.Fatal(err)
	}
	must(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{k}, 10, later), "upload after the purge")
}

// Connections plan with random_page_cost 1.1 (by key, not by reading
// small tables whole) unless the DSN sets it.
func TestConnectionsPlanWithLowRandomPageCostUnlessTheDSNSetsIt(t *testing.T) {
	ctx := t.Context()
	s := openStore(t, freshSchema(t), nil)
	if v, err := pgstore.Setting(ctx, s, "random_page_cost"); err != nil || v != "1.1" {
		t.Fatalf("random_page_cost %q, %v; want 1.1", v, err)
	}
	own, err := pgstore.Open(ctx, withParam(t, testDSN(t), "random_page_cost", "3"), &pgstore.Options{Schema: freshSchema(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	if v, err := pgstore.Setting(ctx, own, "random_page_cost"); err != nil || v != "3" {
		t.Fatalf("random_page_cost with the DSN's 3: %q, %v", v, err)
	}
}

// A schema of version 1 holding a stored KeyPackage, a claimed one (its
// init key row kind 3, as version 1's claims left it) and a last resort
// is migrated by Open to version 2 with nothing lost: the stored one is
// claimed once and its init key then held until its NotAfter, the
// claimed one's init key is held until its NotAfter and free after it,
// and the last resort is handed out when nothing else remains.
func TestUpgradeFromVersion1KeepsKeyPackagesAndInitKeys(t *testing.T) {
	ctx := t.Context()
	schema := freshSchema(t)
	v1, err := pgstore.OpenAtVersion(ctx, testDSN(t), &pgstore.Options{Schema: schema}, 1)
	if err != nil {
		t.Fatal(err)
	}
	v1.Close()
	table := func(name string) string { return pgx.Identifier{schema, name}.Sanitize() }
	stored, claimed, lr := kp(7, "s", now.Add(time.Hour)), kp(7, "s", now.Add(time.Hour)), kp(7, "s", now.Add(time.Hour))
	db := adminPool(t)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO ` + table("p2kit_kp_sessions") + ` (user_id, session_id, next_seq, head, available, min_not_after,
			lr_cipher_suite, lr_ref, lr_init_key, lr_data, lr_not_after, lr_uploaded_at)
			VALUES (7, 's', 3, 2, 1, $1, 1, $2, $3, $4, $1, $5)`, []any{lr.NotAfter, lr.Ref, lr.InitKey, lr.Data, lr.UploadedAt}},
		{`INSERT INTO ` + table("p2kit_key_packages") + ` VALUES (7, 's', 2, 1, $1, $2, $3, $4, $5)`,
			[]any{stored.Ref, stored.InitKey, stored.Data, stored.NotAfter, stored.UploadedAt}},
		{`INSERT INTO ` + table("p2kit_init_keys") + ` VALUES ($1, 1, $2), ($3, 3, $4), ($5, 2, $6)`,
			[]any{stored.InitKey, stored.NotAfter, claimed.InitKey, claimed.NotAfter, lr.InitKey, lr.NotAfter}},
	} {
		if _, err := db.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatalf("version-1 rows: %v", err)
		}
	}
	s := openStore(t, schema, nil)
	var version int64
	if err := db.QueryRow(ctx, `SELECT max(version) FROM `+table("p2kit_schema_migrations")).Scan(&version); err != nil || version != pgstore.SchemaVersion {
		t.Fatalf("schema version after Open: %d, %v", version, err)
	}
	if i, err := s.InitKeyInUse(ctx, [][]byte{claimed.InitKey, stored.InitKey}, now); err != nil || i != 0 {
		t.Fatalf("InitKeyInUse of the claimed and the stored init key: %d, %v; want 0", i, err)
	}
	got, err := s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{})
	if err != nil || len(got) != 1 || got[0].LastResort || !bytes.Equal(got[0].Data, stored.Data) || got[0].Remaining != 0 {
		t.Fatalf("first claim after the upgrade: %v, %+v", err, got)
	}
	got, err = s.ClaimKeyPackages(ctx, 7, 0, now, p2core.SessionEnds{})
	if err != nil || len(got) != 1 || !got[0].LastResort || !bytes.Equal(got[0].Data, lr.Data) {
		t.Fatalf("second claim after the upgrade: %v, %+v", err, got)
	}
	for _, k := range []p2core.KeyPackage{stored, claimed} {
		again := kp(7, "s", now.Add(3*time.Hour))
		again.InitKey = k.InitKey
		if err := s.AddKeyPackages(ctx, []p2core.KeyPackage{again}, 10, now.Add(time.Minute)); !errors.Is(err, p2core.ErrDuplicateKeyPackage) {
			t.Fatalf("re-upload of a handed-out init key before its NotAfter: %v", err)
		}
	}
	if _, err := s.PurgeExpiredKeyPackages(ctx, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	again := kp(7, "s", now.Add(3*time.Hour))
	again.InitKey = claimed.InitKey
	must(t, s.AddKeyPackages(ctx, []p2core.KeyPackage{again}, 10, now.Add(time.Hour)), "re-upload of the claimed init key after its NotAfter")
}
