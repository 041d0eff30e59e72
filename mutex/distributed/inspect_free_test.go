package distributed

import (
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
)

// TestInspectReleased: a released key reads as free, with no TTL that
// suggests a holder; the free marker's own TTL is reported apart.
func TestInspectReleased(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := ctxT(t, time.Minute)
		m := e.newMutex(t)
		key := keyedtest.Key(t)
		l, err := m.Lock(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		info, err := m.Inspect(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if info.Held || info.TTL != 0 || info.Owner != "" || info.Foreign {
			t.Errorf("Inspect(released) = %+v; want not held, TTL 0, no owner", info)
		}
		if info.LastToken < l.Token() || info.MarkerTTL <= 0 || info.MarkerTTL > DefaultTTL {
			t.Errorf("Inspect(released) = %+v; want LastToken >= %d and MarkerTTL in (0, %v]", info, l.Token(), DefaultTTL)
		}
	})
}
