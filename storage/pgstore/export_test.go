package pgstore

import "context"

// OpenWithSyntheticVersion2 opens the store with a made-up version 2 of
// the schema after version 1, whose statements are sql, so that tests can
// check the migration mechanism before a real version 2 exists.
func OpenWithSyntheticVersion2(ctx context.Context, dsn string, opts *Options, sql ...string) (*Store, error) {
	history := append(migrations[:len(migrations):len(migrations)], migration{version: 2, name: "synthetic test step", sql: sql})
	return open(ctx, dsn, opts, history)
}
