package local_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

// naiveMap is the obvious keyed mutex, as a baseline: one global
// sync.Mutex guarding a map of reference-counted per-key sync.Mutexes.
type naiveMap struct {
	mu sync.Mutex // guards m and every entry's ref
	m  map[string]*naiveEntry
}

type naiveEntry struct {
	mu  sync.Mutex
	ref int
}

func (n *naiveMap) Lock(key string) {
	n.mu.Lock()
	if n.m == nil {
		n.m = make(map[string]*naiveEntry)
	}
	e := n.m[key]
	if e == nil {
		e = new(naiveEntry)
		n.m[key] = e
	}
	e.ref++
	n.mu.Unlock()
	e.mu.Lock()
}

func (n *naiveMap) Unlock(key string) {
	n.mu.Lock()
	e := n.m[key]
	e.ref--
	if e.ref == 0 {
		delete(n.m, key)
	}
	n.mu.Unlock()
	e.mu.Unlock()
}

// Rows of every benchmark: our local.Mutex, a plain sync.Mutex (one lock
// for all keys: the floor, not a keyed mutex) and naiveMap.

func BenchmarkUncontended(b *testing.B) {
	const key = "order-17"
	ctx := context.Background()
	b.Run("impl=local.Mutex", func(b *testing.B) {
		var m local.Mutex[string]
		b.ReportAllocs()
		for b.Loop() {
			l, err := m.Lock(ctx, key)
			if err != nil {
				b.Fatal(err)
			}
			l.Unlock()
		}
	})
	b.Run("impl=local.Mutex/observer=noop", func(b *testing.B) {
		m, err := local.New[string](local.WithObserver(noop{}))
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			l, err := m.Lock(ctx, key)
			if err != nil {
				b.Fatal(err)
			}
			l.Unlock()
		}
	})
	b.Run("impl=sync.Mutex", func(b *testing.B) {
		var mu sync.Mutex
		b.ReportAllocs()
		for b.Loop() {
			mu.Lock()
			mu.Unlock()
		}
	})
	b.Run("impl=naive-map", func(b *testing.B) {
		var m naiveMap
		b.ReportAllocs()
		for b.Loop() {
			m.Lock(key)
			m.Unlock(key)
		}
	})
}

// noop is an observer that does nothing: the cost of observing itself.
type noop struct{}

func (noop) Observe(context.Context, mutex.Event) {}

// perGoroutineKeys gives each parallel goroutine its own 64 keys.
func perGoroutineKeys(next *atomic.Int64) []string {
	g := next.Add(1)
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = "g" + strconv.FormatInt(g, 10) + "-key-" + strconv.Itoa(i)
	}
	return keys
}

func BenchmarkDistinctKeysParallel(b *testing.B) {
	ctx := context.Background()
	b.Run("impl=local.Mutex", func(b *testing.B) {
		var m local.Mutex[string]
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			keys := perGoroutineKeys(&next)
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
	b.Run("impl=sync.Mutex", func(b *testing.B) {
		// One mutex per goroutine: no sharing at all, the ceiling.
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			_ = perGoroutineKeys(&next)
			var mu sync.Mutex
			for pb.Next() {
				mu.Lock()
				mu.Unlock()
			}
		})
	})
	b.Run("impl=naive-map", func(b *testing.B) {
		var m naiveMap
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			keys := perGoroutineKeys(&next)
			for i := 0; pb.Next(); i++ {
				m.Lock(keys[i&63])
				m.Unlock(keys[i&63])
			}
		})
	})
}

func BenchmarkHotKeyParallel(b *testing.B) {
	const key = "hot"
	ctx := context.Background()
	b.Run("impl=local.Mutex", func(b *testing.B) {
		var m local.Mutex[string]
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l, err := m.Lock(ctx, key)
				if err != nil {
					b.Error(err)
					return
				}
				l.Unlock()
			}
		})
	})
	b.Run("impl=sync.Mutex", func(b *testing.B) {
		var mu sync.Mutex
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				mu.Lock()
				mu.Unlock()
			}
		})
	})
	b.Run("impl=naive-map", func(b *testing.B) {
		var m naiveMap
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				m.Lock(key)
				m.Unlock(key)
			}
		})
	})
}
