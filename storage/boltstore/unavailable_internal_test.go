package boltstore

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/p2kit/p2kit/p2core"
)

// A full disk is a transient failure: ErrUnavailable, which the HTTP
// adapter answers with 503; other file errors stay internal.
func TestFullDiskIsUnavailable(t *testing.T) {
	full := fmt.Errorf("commit: %w", &os.PathError{Op: "write", Path: "p2kit.db", Err: syscall.ENOSPC})
	if err := dbErr(full); !errors.Is(err, p2core.ErrUnavailable) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("dbErr(ENOSPC) = %v, want ErrUnavailable wrapping ENOSPC", err)
	}
	other := &os.PathError{Op: "write", Path: "p2kit.db", Err: syscall.EIO}
	if err := dbErr(other); errors.Is(err, p2core.ErrUnavailable) {
		t.Fatalf("dbErr(EIO) = %v, want an internal error", err)
	}
}
