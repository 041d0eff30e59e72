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
		if info.LastToken != 0 || info.MarkerTTL != 0 {
			t.Errorf("Inspect(released) = %+v; want nothing left: no marker", info)
		}
		// A free marker (left for a few ms after a lease whose tokens ran
		// ahead of the clock) reads as free too, its TTL apart.
		admin := e.client(t)
		nm := m.names(t, key)
		if err := admin.Set(ctx, nm.lock, "~1796000000000000", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		info, err = m.Inspect(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if info.Held || info.TTL != 0 || info.LastToken != 1796000000000000 || info.MarkerTTL <= 0 || info.MarkerTTL > time.Minute {
			t.Errorf("Inspect(free marker) = %+v; want not held, TTL 0, LastToken 1796000000000000, MarkerTTL in (0, 1m]", info)
		}
	})
}
