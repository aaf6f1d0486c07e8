package customstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/p2kit/p2kit/examples/customstore"
	"github.com/p2kit/p2kit/p2core"
	"github.com/p2kit/p2kit/storage/memstore"
)

// Wrap any Store, use it as the Store of a p2core.Service, and read the
// counters (for example from a metrics endpoint).
func Example() {
	store := customstore.NewMetricsStore(memstore.New(), customstore.Options{})
	defer store.Close()
	ctx := context.Background()

	_ = store.PutSetting(ctx, "token_generation", []byte("enabled"))
	_, err := store.Setting(ctx, "no_such_setting")
	fmt.Println("missing setting is ErrNotFound:", errors.Is(err, p2core.ErrNotFound))

	for _, st := range store.Stats() {
		if st.Calls > 0 {
			fmt.Printf("%s: %d calls, %d refused, %d failed\n", st.Method, st.Calls, st.Refusals, st.Failures)
		}
	}
	// Output:
	// missing setting is ErrNotFound: true
	// Setting: 1 calls, 1 refused, 0 failed
	// PutSetting: 1 calls, 0 refused, 0 failed
}

// Calls that take SlowThreshold or longer are logged at Warn level with
// the method, its duration and the user and session IDs involved, never
// with token hashes, keys or KeyPackage bytes. The clock is injected here
// so that every call takes exactly 150ms.
func ExampleOptions_slowCalls() {
	t := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	tick := func() time.Time { t = t.Add(150 * time.Millisecond); return t }
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	store := customstore.NewMetricsStore(memstore.New(), customstore.Options{
		SlowThreshold: 100 * time.Millisecond,
		Logger:        slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: noTime})),
		Now:           tick,
	})
	_, _ = store.ClaimKeyPackages(context.Background(), 7, 0, t, p2core.SessionEnds{})
	// Output:
	// level=WARN msg="slow store call" method=ClaimKeyPackages duration=150ms user_id=7 claimed=0
}
