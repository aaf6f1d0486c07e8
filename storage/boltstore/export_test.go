package boltstore

// WithoutGroupCommit returns opts with group commit off, every write its
// own commit, for the tests and benchmarks that compare the two; it is no
// option of the package's API.
func WithoutGroupCommit(opts Options) Options {
	opts.noGroupCommit = true
	return opts
}

// GroupCommit reports whether a Store opened with opts commits writes in
// groups.
func GroupCommit(opts Options) bool { return !opts.noGroupCommit }
