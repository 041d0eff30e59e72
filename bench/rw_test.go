package bench

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/keyedmutex/keyedmutex/mutex/hybrid"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

// rwStrategies are the rows of the read-write scenarios: read-write
// mutexes (whose lockers are rwLockers: reads take RLock) next to the
// plain mutexes of the same implementation (reads take Lock). Adding a
// row is one line here.
var rwStrategies = []strategy{
	localStrategy,
	localRWStrategy,
	pubsubStrategy,
	distributedRWStrategy,
	hybridStrategy,
	hybridRWStrategy,
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

// localRWStrategy is local.RWMutex, one instance shared by the simulated
// processes of a row, as localStrategy.
var localRWStrategy = strategy{name: "local-rw", procs: func(_ *target, _ string, n int) ([]locker, func(), error) {
	m := new(local.RWMutex[string])
	ls := make([]locker, n)
	for i := range ls {
		ls[i] = rwKeyed{m}
	}
	return ls, func() {}, nil
}}

// hybridRWStrategy is hybrid.RWMutex over distributed.RWMutex: each
// process one of each on its own client, the default handoff bound.
var hybridRWStrategy = strategy{name: "hybrid-rw", redis: true, procs: func(t *target, prefix string, n int) ([]locker, func(), error) {
	return eachProc(t, n, func(c redis.UniversalClient) (locker, func(), error) {
		d, err := distributed.NewRW[string](c, distributed.WithTTL(ttl), distributed.WithPrefix(prefix))
		if err != nil {
			return nil, nil, err
		}
		h, err := hybrid.NewRW[string](d)
		if err != nil {
			d.Close()
			return nil, nil, err
		}
		return rwKeyed{h}, func() { h.Close(); d.Close() }, nil
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

// TestRWStrategiesSmoke drives every row of the read-write scenarios for
// a few acquisitions, half of them reads, on miniredis: every
// acquisition counted once, and no holder beside a writer.
func TestRWStrategiesSmoke(t *testing.T) {
	tg := miniTarget(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, st := range rwStrategies {
		t.Run(st.name, func(t *testing.T) {
			lockers, closeAll, err := st.procs(tg, rowPrefix(), 2)
			if err != nil {
				t.Fatalf("procs() = %v", err)
			}
			defer closeAll()
			const n = 60
			res, err := drive(ctx, lockers, scenario{procs: 2, goroutines: 3, keys: 2, reads: 0.5, work: 100 * time.Microsecond, idle: true}, n)
			if err != nil {
				t.Fatalf("drive() = %v", err)
			}
			if res.total != n || res.violations != 0 {
				t.Errorf("drive(%d): total %d, %d violations; want %d, 0", n, res.total, res.violations, n)
			}
		})
	}
	// The check itself: a reader beside a writer, or a writer beside
	// anyone, is a violation; readers together are not.
	for _, c := range []struct {
		prev, weight int32
		want         bool
	}{{0, 1, false}, {3, 1, false}, {writer, 1, true}, {0, writer, false}, {2, writer, true}, {writer, writer, true}} {
		if got := excluded(c.prev, c.weight); got != c.want {
			t.Errorf("excluded(%d, %d) = %v; want %v", c.prev, c.weight, got, c.want)
		}
	}
}
