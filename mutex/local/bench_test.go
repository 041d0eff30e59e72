package local_test

import (
	"context"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

// The baselines below are the keyed mutexes a Go user finds or writes,
// written here for the comparison:
//
//   - naiveMap: one global sync.Mutex guarding a map of reference-counted
//     per-key sync.Mutexes, deleted when unused (the common design of
//     small keyed-mutex packages).
//   - shardedMap: the same in 64 shards chosen by a hash of the key, so
//     that different keys rarely share the map's lock.
//   - syncMap: a sync.Map of per-key sync.Mutexes that are never deleted:
//     fast, but its memory grows with every key ever locked.
//
// None of them is FIFO: their per-key sync.Mutex lets newcomers barge.

// naiveMap is the obvious keyed mutex.
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

// shardedMap is naiveMap in 64 shards, each padded to 64 bytes (a cache
// line's size; not aligned to one).
type shardedMap struct {
	shards [64]struct {
		naiveMap
		_ [64 - 16]byte
	}
}

var benchSeed = maphash.MakeSeed()

func (s *shardedMap) shard(key string) *naiveMap {
	return &s.shards[maphash.String(benchSeed, key)&63].naiveMap
}

func (s *shardedMap) Lock(key string)   { s.shard(key).Lock(key) }
func (s *shardedMap) Unlock(key string) { s.shard(key).Unlock(key) }

// syncMap never deletes its mutexes.
type syncMap struct{ m sync.Map }

func (s *syncMap) get(key string) *sync.Mutex {
	if mu, ok := s.m.Load(key); ok {
		return mu.(*sync.Mutex)
	}
	mu, _ := s.m.LoadOrStore(key, new(sync.Mutex))
	return mu.(*sync.Mutex)
}

func (s *syncMap) Lock(key string)   { s.get(key).Lock() }
func (s *syncMap) Unlock(key string) { s.get(key).Unlock() }

// keyed is the shape of the baselines. Rows call them through it, and
// local.Mutex directly, so local pays one interface call less per
// Lock+Unlock pair (about 2 ns).
type keyed interface {
	Lock(key string)
	Unlock(key string)
}

// noop is an observer that does nothing: the cost of observing itself.
type noop struct{}

func (noop) Observe(context.Context, mutex.Event) {}

// Each benchmark runs the same shape over these rows: local.Mutex through
// leases (Lock, then the lease's Unlock: one allocation), through a
// Locker (none), with a no-op observer (Uncontended only), the baselines,
// and a plain sync.Mutex (no keys: the floor, not a keyed mutex).
type shape struct {
	// lease runs local.Mutex's Lock and Unlock with keys from next.
	lease func(b *testing.B, m *local.Mutex[string])
	// locker runs lockers got from locker(key).
	locker func(b *testing.B, m *local.Mutex[string])
	// keyed runs a baseline.
	keyed func(b *testing.B, m keyed)
	// floor runs a sync.Mutex (one per goroutine for distinct keys).
	floor func(b *testing.B)
}

func runShape(b *testing.B, s shape, observed bool) {
	b.Run("impl=local.Mutex", func(b *testing.B) { s.lease(b, &local.Mutex[string]{}) })
	b.Run("impl=local.Mutex/Locker", func(b *testing.B) { s.locker(b, &local.Mutex[string]{}) })
	if observed {
		b.Run("impl=local.Mutex/observer=noop", func(b *testing.B) {
			m, err := local.New[string](local.WithObserver(noop{}))
			if err != nil {
				b.Fatal(err)
			}
			s.lease(b, m)
		})
	}
	b.Run("impl=sync.Mutex", s.floor)
	b.Run("impl=naive-map", func(b *testing.B) { s.keyed(b, &naiveMap{}) })
	b.Run("impl=sharded-map", func(b *testing.B) { s.keyed(b, &shardedMap{}) })
	b.Run("impl=sync.Map", func(b *testing.B) { s.keyed(b, &syncMap{}) })
}

// BenchmarkUncontended: Lock+Unlock of one key, one goroutine.
func BenchmarkUncontended(b *testing.B) {
	const key = "order-17"
	ctx := context.Background()
	runShape(b, shape{
		lease: func(b *testing.B, m *local.Mutex[string]) {
			b.ReportAllocs()
			for b.Loop() {
				l, err := m.Lock(ctx, key)
				if err != nil {
					b.Fatal(err)
				}
				l.Unlock()
			}
		},
		locker: func(b *testing.B, m *local.Mutex[string]) {
			l := m.Locker(key)
			b.ReportAllocs()
			for b.Loop() {
				l.Lock()
				l.Unlock()
			}
		},
		keyed: func(b *testing.B, m keyed) {
			b.ReportAllocs()
			for b.Loop() {
				m.Lock(key)
				m.Unlock(key)
			}
		},
		floor: func(b *testing.B) {
			var mu sync.Mutex
			b.ReportAllocs()
			for b.Loop() {
				mu.Lock()
				mu.Unlock()
			}
		},
	}, true)
}

// perGoroutineKeys gives each parallel goroutine its own 64 keys.
func perGoroutineKeys(next *atomic.Int64) []string {
	g := next.Add(1)
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = "g" + strconv.FormatInt(g, 10) + "-key-" + strconv.Itoa(i)
	}
	return keys
}

// BenchmarkDistinctKeysParallel: b.RunParallel, each goroutine cycling
// through 64 keys of its own.
func BenchmarkDistinctKeysParallel(b *testing.B) {
	ctx := context.Background()
	runShape(b, shape{
		lease: func(b *testing.B, m *local.Mutex[string]) {
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
		},
		locker: func(b *testing.B, m *local.Mutex[string]) {
			var next atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				keys := perGoroutineKeys(&next)
				lockers := make([]sync.Locker, len(keys))
				for i, k := range keys {
					lockers[i] = m.Locker(k)
				}
				for i := 0; pb.Next(); i++ {
					lockers[i&63].Lock()
					lockers[i&63].Unlock()
				}
			})
		},
		keyed: func(b *testing.B, m keyed) {
			var next atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				keys := perGoroutineKeys(&next)
				for i := 0; pb.Next(); i++ {
					m.Lock(keys[i&63])
					m.Unlock(keys[i&63])
				}
			})
		},
		floor: func(b *testing.B) {
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
		},
	}, false)
}

// sharedKeys are the 1,024 keys of BenchmarkSharedKeysParallel.
var sharedKeys = func() []string {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = "shared-key-" + strconv.Itoa(i)
	}
	return keys
}()

// sharedKeyIndexes gives each parallel goroutine its own pseudo-random
// walk over the 1,024 shared keys (xorshift, seeded per goroutine).
func sharedKeyIndexes(next *atomic.Int64) func() int {
	x := uint32(next.Add(1))*2654435761 | 1
	return func() int {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		return int(x & 1023)
	}
}

// BenchmarkSharedKeysParallel: b.RunParallel, every goroutine locking
// keys picked at random among 1,024 that all goroutines share (they
// meet on a key now and then).
func BenchmarkSharedKeysParallel(b *testing.B) {
	ctx := context.Background()
	runShape(b, shape{
		lease: func(b *testing.B, m *local.Mutex[string]) {
			var next atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				idx := sharedKeyIndexes(&next)
				for pb.Next() {
					l, err := m.Lock(ctx, sharedKeys[idx()])
					if err != nil {
						b.Error(err)
						return
					}
					l.Unlock()
				}
			})
		},
		locker: func(b *testing.B, m *local.Mutex[string]) {
			var next atomic.Int64
			lockers := make([]sync.Locker, len(sharedKeys))
			for i, k := range sharedKeys {
				lockers[i] = m.Locker(k)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				idx := sharedKeyIndexes(&next)
				for pb.Next() {
					l := lockers[idx()]
					l.Lock()
					l.Unlock()
				}
			})
		},
		keyed: func(b *testing.B, m keyed) {
			var next atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				idx := sharedKeyIndexes(&next)
				for pb.Next() {
					k := sharedKeys[idx()]
					m.Lock(k)
					m.Unlock(k)
				}
			})
		},
		floor: func(b *testing.B) {
			// One mutex per key, found by index: no lookup at all.
			var next atomic.Int64
			mus := make([]sync.Mutex, len(sharedKeys))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				idx := sharedKeyIndexes(&next)
				for pb.Next() {
					mu := &mus[idx()]
					mu.Lock()
					mu.Unlock()
				}
			})
		},
	}, false)
}

// BenchmarkHotKeyParallel: b.RunParallel, every goroutine on one key.
func BenchmarkHotKeyParallel(b *testing.B) {
	const key = "hot"
	ctx := context.Background()
	runShape(b, shape{
		lease: func(b *testing.B, m *local.Mutex[string]) {
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
		},
		locker: func(b *testing.B, m *local.Mutex[string]) {
			l := m.Locker(key)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					l.Lock()
					l.Unlock()
				}
			})
		},
		keyed: func(b *testing.B, m keyed) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					m.Lock(key)
					m.Unlock(key)
				}
			})
		},
		floor: func(b *testing.B) {
			var mu sync.Mutex
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					mu.Lock()
					mu.Unlock()
				}
			})
		},
	}, false)
}
