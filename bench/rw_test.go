package bench

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
)

// rwStrategies are the rows of the read-write scenarios: read-write
// mutexes (whose lockers are rwLockers: reads take RLock) next to the
// plain mutexes of the same implementation (reads take Lock). Adding a
// row is one line here.
var rwStrategies = []strategy{
	localStrategy,
	pubsubStrategy,
	distributedRWStrategy,
}

// rwLocker is a locker that also takes read locks.
type rwLocker interface {
	locker
	RLock(ctx context.Context, key string) (unlock func() error, err error)
}

// writer is what a write holding adds to its key's count of holders in
// drive, a reader 1: a writer must find the count at 0, a reader below
// writer.
const writer = 1 << 20

// excluded reports whether a holding of weight that found prev already
// there breaks mutual exclusion.
func excluded(prev, weight int32) bool {
	if weight == writer {
		return prev != 0
	}
	return prev >= writer
}

// rwKeyed adapts any mutex.RWKeyed[string] to the harness.
type rwKeyed struct{ m mutex.RWKeyed[string] }

func (k rwKeyed) Lock(ctx context.Context, key string) (func() error, error) {
	l, err := k.m.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	return l.Unlock, nil
}

func (k rwKeyed) RLock(ctx context.Context, key string) (func() error, error) {
	l, err := k.m.RLock(ctx, key)
	if err != nil {
		return nil, err
	}
	return l.Unlock, nil
}

// distributedRWStrategy is distributed.RWMutex: each process an RWMutex
// on its own client.
var distributedRWStrategy = strategy{name: "distributed-rw", redis: true, procs: func(t *target, prefix string, n int) ([]locker, func(), error) {
	return eachProc(t, n, func(c redis.UniversalClient) (locker, func(), error) {
		d, err := distributed.NewRW[string](c, distributed.WithTTL(ttl), distributed.WithPrefix(prefix))
		if err != nil {
			return nil, nil, err
		}
		return rwKeyed{d}, func() { d.Close() }, nil
	})
}}

// rwWork is the critical section of the read-write scenarios: about 1 ms
// of waiting (a read or write of a remote resource), so that readers
// holding together shows; spinning would measure the machine's cores.
const rwWork = time.Millisecond

// BenchmarkReadMostly is one hot key, 4 processes x 16 goroutines, 90%
// of the acquisitions reads, each holding the key about 1 ms: readers
// share it, so a read-write mutex admits many at once where a mutex
// serves one at a time.
func BenchmarkReadMostly(b *testing.B) {
	rwScenario(b, 0.9)
}

// BenchmarkWriteHeavy is ReadMostly with 10% reads: the read-write mutex
// must not tax writers.
func BenchmarkWriteHeavy(b *testing.B) {
	rwScenario(b, 0.1)
}

func rwScenario(b *testing.B, reads float64) {
	t := newTarget(b)
	for _, st := range rwStrategies {
		b.Run(st.name, func(b *testing.B) {
			runRow(b, t, st, scenario{procs: 4, goroutines: 16, keys: 1, work: rwWork, idle: true, reads: reads}, false)
		})
	}
}
