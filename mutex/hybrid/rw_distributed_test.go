package hybrid

import (
	"log/slog"
	"testing"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
)

// newDistributedRW returns a distributed RWMutex on a fresh client of b
// (one per simulated process), closed at cleanup.
func newDistributedRW(t *testing.T, b backend, prefix string) *distributed.RWMutex[string] {
	t.Helper()
	d, err := distributed.NewRW[string](b.client(t),
		distributed.WithPrefix(prefix),
		distributed.WithLogger(slog.New(slog.NewTextHandler(tlog{t}, nil))))
	if err != nil {
		t.Fatalf("distributed.NewRW() = %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestRWDistributedConformance runs the read-write suite, and the mutex
// suite on the write lock, on hybrid RWMutexes over distributed ones, each
// with its own client: several processes sharing one Redis.
func TestRWDistributedConformance(t *testing.T) {
	leakcheck.Register(t)
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			prefix := uniquePrefix(t)
			newM := func(t *testing.T) *RWMutex[string] { return newRWT(t, newDistributedRW(t, b, prefix)) }
			keyedtest.RunRW(t, keyedtest.RWConfig{
				New:               func(t *testing.T) mutex.RWKeyed[string] { return newM(t) },
				Instances:         3,
				Queued:            rwQueued,
				ReadersPastWriter: -1,
			})
			keyedtest.Run(t, keyedtest.Config{
				New:       func(t *testing.T) mutex.Keyed[string] { return newM(t) },
				Instances: 3,
			})
			keyedtest.RunMulti(t, keyedtest.Config{
				New:       func(t *testing.T) mutex.Keyed[string] { return newM(t) },
				Instances: 3,
			})
			m := newM(t)
			got, err := m.LockOrder([]string{"b", "a", "b"})
			want, _ := newDistributedRW(t, b, prefix).LockOrder([]string{"b", "a", "b"})
			if err != nil || len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
				t.Errorf("LockOrder = %v, %v; want %v, the remote's", got, err, want)
			}
		})
	}
}
