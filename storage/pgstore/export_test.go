package pgstore

import "context"

// OpenWithSyntheticNextVersion opens the store with a made-up version
// after SchemaVersion, whose statements are sql, so that tests can check
// the migration mechanism before a real next version exists.
func OpenWithSyntheticNextVersion(ctx context.Context, dsn string, opts *Options, sql ...string) (*Store, error) {
	history := append(migrations[:len(migrations):len(migrations)], migration{version: SchemaVersion + 1, name: "synthetic test step", sql: sql})
	return open(ctx, dsn, opts, history)
}

// PreparedClaims returns how often the claim statement has been executed
// with a generic and with a custom plan on one of the store's pooled
// connections, and whether it is prepared there at all (pg_prepared_statements
// is per connection: open the store with MaxConns 1 to see the one all
// calls used).
func PreparedClaims(ctx context.Context, s *Store) (prepared bool, generic, custom int64, err error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return false, 0, 0, err
	}
	defer conn.Release()
	err = conn.QueryRow(ctx, `SELECT count(*) > 0, coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0)
		FROM pg_prepared_statements WHERE statement = $1`, claimSQL).Scan(&prepared, &generic, &custom)
	return prepared, generic, custom, err
}

// Setting reads a setting of one of the store's pooled connections.
func Setting(ctx context.Context, s *Store, name string) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, `SELECT current_setting($1)`, name).Scan(&v)
	return v, err
}

// OpenAtVersion opens the store with the schema history up to version
// only, as a pgstore of that version would, for upgrade tests.
func OpenAtVersion(ctx context.Context, dsn string, opts *Options, version int) (*Store, error) {
	return open(ctx, dsn, opts, migrations[:version:version])
}

// QueuedClaims is how many claims wait for the next batch.
func QueuedClaims(s *Store) int { return s.claims.queued() }

// QueuedLookups is how many session-token lookups wait for the next batch.
func QueuedLookups(s *Store) int { return s.lookups.queued() }

// GatheredLookups is how many session-token lookups have run in batches
// of more than one.
func GatheredLookups(s *Store) int64 { return s.lookups.gathered.Load() }
