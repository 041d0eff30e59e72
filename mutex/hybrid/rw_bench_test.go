package hybrid

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

// BenchmarkRWHotKey compares, on one hot key, hybrid.RWMutex with
// hybrid.Mutex (every operation a Lock) over in-process remotes, so that
// only the hybrid layer's behaviour shows: ReadMostly is 9 reads in 10,
// WriteHeavy 1 in 10, every holding sleeps 50µs, 16 goroutines per CPU.
// remote-acq/op is the remote acquisitions per operation.
func BenchmarkRWHotKey(b *testing.B) {
	for _, sc := range []struct {
		name  string
		reads int
	}{{"ReadMostly", 9}, {"WriteHeavy", 1}} {
		b.Run(sc.name+"/impl=RWMutex", func(b *testing.B) {
			f := newRWFake()
			m, err := NewRW[string](f)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			runRWShape(b, sc.reads, m.RLock, m.Lock)
			b.ReportMetric(float64(f.count("RLock")+f.count("LockN"))/float64(b.N), "remote-acq/op")
		})
		b.Run(sc.name+"/impl=Mutex", func(b *testing.B) {
			var remote local.Mutex[string]
			m, err := New[string](&remote)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			runRWShape(b, sc.reads, m.Lock, m.Lock)
		})
	}
}

func runRWShape(b *testing.B, reads int, rlock, lock func(context.Context, string) (mutex.Lease, error)) {
	ctx := context.Background()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f := lock
			if rand.IntN(10) < reads {
				f = rlock
			}
			l, err := f(ctx, "hot")
			if err != nil {
				b.Error(err)
				return
			}
			time.Sleep(50 * time.Microsecond)
			l.Unlock()
		}
	})
}
