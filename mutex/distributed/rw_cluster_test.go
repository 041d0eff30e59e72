package distributed

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// On a Redis Cluster, every name of an RWMutex's key lives in one slot:
// readers share, writers exclude, and grants (to a writer, and to a run
// of readers) reach their waiters through the owning shard, on keys of
// every master.
func TestRWCluster(t *testing.T) {
	leakcheck.Register(t)
	c := redistest.StartCluster(t, 3, 0)
	a, b := newRWOn(t, c.Client(t)), newRWOn(t, c.Client(t))
	ctx := ctxT(t, 30*time.Second)
	masters := map[string]bool{}
	for i := 0; len(masters) < 3 || i < 6; i++ {
		key := fmt.Sprintf("key-%d", i)
		nm := rwNamesFor(defaultPrefix(), key)
		masters[c.MasterOf(nm.lock)] = true
		for _, n := range []string{nm.queue, nm.readers, nm.grants + a.id} {
			if c.MasterOf(n) != c.MasterOf(nm.lock) {
				t.Fatalf("%s and %s live on different masters", n, nm.lock)
			}
		}
		r1, err := a.RLock(ctx, key)
		r1 = mustLease(t, "RLock", r1, err)
		r2, err := b.TryRLock(ctx, key)
		r2 = mustLease(t, "TryRLock beside a reader", r2, err)
		if _, err := b.TryLock(ctx, key); !errors.Is(err, mutex.ErrLocked) {
			t.Fatalf("TryLock while readers hold = %v; want ErrLocked", err)
		}
		w := acquireAsync(func() (mutex.Lease, error) { return b.Lock(ctx, key) })
		eventually(t, "writer queued", func() bool { return c.Client(t).ZCard(context.Background(), nm.queue).Val() == 1 })
		r3 := acquireAsync(func() (mutex.Lease, error) { return a.RLock(ctx, key) })
		r4 := acquireAsync(func() (mutex.Lease, error) { return a.RLock(ctx, key) })
		eventually(t, "readers queued", func() bool { return c.Client(t).ZCard(context.Background(), nm.queue).Val() == 3 })
		mustUnlock(t, "r1", r1)
		notYet(t, w, "writer while a reader holds")
		mustUnlock(t, "r2", r2)
		wl := await(t, w, "writer")
		mustUnlock(t, "writer", wl)
		l3, l4 := await(t, r3, "reader 3"), await(t, r4, "reader 4")
		if l3.Token() <= wl.Token() || l4.Token() <= wl.Token() {
			t.Errorf("reader tokens %d, %d not above the writer's %d", l3.Token(), l4.Token(), wl.Token())
		}
		mustUnlock(t, "r3", l3)
		mustUnlock(t, "r4", l4)
	}
	if len(masters) < 2 {
		t.Errorf("keys covered %d masters; want several", len(masters))
	}
}
