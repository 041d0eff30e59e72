package hybrid_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/hybrid"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

// The shapes of mutex/local's DistinctKeysParallel and HotKeyParallel,
// for hybrid over a local.Mutex remote next to local.Mutex alone: the
// cost of hybrid's own per-key state, with no network under it.

func newLocalHybrid(b *testing.B) mutex.Keyed[string] {
	h, err := hybrid.New[string](&local.Mutex[string]{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	return h
}

func localRows(b *testing.B, run func(b *testing.B, m mutex.Keyed[string])) {
	b.Run("impl=local.Mutex", func(b *testing.B) { run(b, &local.Mutex[string]{}) })
	b.Run("impl=hybrid(local)", func(b *testing.B) { run(b, newLocalHybrid(b)) })
}

func BenchmarkDistinctKeysParallel(b *testing.B) {
	ctx := context.Background()
	localRows(b, func(b *testing.B, m mutex.Keyed[string]) {
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			g := next.Add(1)
			keys := make([]string, 64)
			for i := range keys {
				keys[i] = "g" + strconv.FormatInt(g, 10) + "-key-" + strconv.Itoa(i)
			}
			for i := 0; pb.Next(); i++ {
				l, err := m.Lock(ctx, keys[i&63])
				if err != nil {
					b.Error(err)
					return
				}
				l.Unlock()
			}
		})
	})
}

func BenchmarkHotKeyParallel(b *testing.B) {
	ctx := context.Background()
	localRows(b, func(b *testing.B, m mutex.Keyed[string]) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l, err := m.Lock(ctx, "hot")
				if err != nil {
					b.Error(err)
					return
				}
				l.Unlock()
			}
		})
	})
}
