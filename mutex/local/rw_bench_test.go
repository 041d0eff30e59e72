package local_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

// rwShape is a read-write workload on one hot key: reads in every ten
// operations are reads, each holding the key for hold.
type rwShape struct {
	reads int // of every 10 operations
	hold  time.Duration
}

// BenchmarkRWHotKey compares, on one hot key, the read-write mutex with
// the plain mutex (every operation a Lock) and sync.RWMutex. ReadMostly
// is 9 reads in 10, WriteHeavy 1 in 10; every holding sleeps 50µs, so
// that readers holding together shows. 16 goroutines per CPU.
func BenchmarkRWHotKey(b *testing.B) {
	for _, sc := range []struct {
		name string
		s    rwShape
	}{
		{"ReadMostly", rwShape{reads: 9, hold: 50 * time.Microsecond}},
		{"WriteHeavy", rwShape{reads: 1, hold: 50 * time.Microsecond}},
	} {
		b.Run(sc.name+"/impl=RWMutex", func(b *testing.B) {
			var m local.RWMutex[string]
			sc.s.run(b, m.RLock, m.Lock)
		})
		b.Run(sc.name+"/impl=Mutex", func(b *testing.B) {
			var m local.Mutex[string]
			sc.s.run(b, m.Lock, m.Lock)
		})
		b.Run(sc.name+"/impl=sync.RWMutex", func(b *testing.B) {
			var mu sync.RWMutex
			sc.s.runSync(b, &mu)
		})
	}
}

type lockFunc = func(context.Context, string) (mutex.Lease, error)

func (s rwShape) run(b *testing.B, rlock, lock lockFunc) {
	ctx := context.Background()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f := lock
			if rand.IntN(10) < s.reads {
				f = rlock
			}
			l, err := f(ctx, "hot")
			if err != nil {
				b.Error(err)
				return
			}
			time.Sleep(s.hold)
			l.Unlock()
		}
	})
}

func (s rwShape) runSync(b *testing.B, mu *sync.RWMutex) {
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if rand.IntN(10) < s.reads {
				mu.RLock()
				time.Sleep(s.hold)
				mu.RUnlock()
			} else {
				mu.Lock()
				time.Sleep(s.hold)
				mu.Unlock()
			}
		}
	})
}

// BenchmarkRWUncontended: RLock+Unlock and Lock+Unlock of one key, one
// goroutine, beside local.Mutex's Lock+Unlock.
func BenchmarkRWUncontended(b *testing.B) {
	ctx := context.Background()
	var rw local.RWMutex[string]
	var m local.Mutex[string]
	for _, bc := range []struct {
		name string
		f    lockFunc
	}{{"RWMutex.RLock", rw.RLock}, {"RWMutex.Lock", rw.Lock}, {"Mutex.Lock", m.Lock}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				l, err := bc.f(ctx, "order-17")
				if err != nil {
					b.Fatal(err)
				}
				l.Unlock()
			}
		})
	}
}
