package httpadapter

import (
	"fmt"
	"testing"

	"github.com/p2kit/p2kit/p2core"
)

// TestEveryTableRowKeepsTheBackendTextOut wraps each sentinel of the error
// table as a Store does (its own text around it) and checks that the
// caller's message is the sentinel's text alone (for ErrUnavailable, the
// table's own text), never the backend's.
func TestEveryTableRowKeepsTheBackendTextOut(t *testing.T) {
	for _, m := range errorTable {
		err := fmt.Errorf("pgstore: insert: constraint kp_pkey: %w", m.kind)
		want := m.kind.Error()
		if m.kind == p2core.ErrUnavailable {
			want = "the server's store is temporarily unavailable; retry later"
		}
		if _, code, msg := classify(err); code != m.code || msg != want {
			t.Errorf("%s: code %s message %q, want %q", m.code, code, msg, want)
		}
	}
}
