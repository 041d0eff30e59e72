package reliability

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
)

// TestScriptFlushStorm: SCRIPT FLUSH every 2-12 ms while 48 goroutines
// over 4 Mutexes (a client each) lock 8 keys with 300 ms TTLs. Every
// call that finds its script gone falls back to EVAL; no Lock fails, no
// lease is lost, no two holders of a key overlap. The README's figure
// (20 s) is KEYEDMUTEX_SOAK scaled; the short form runs 3 s.
func TestScriptFlushStorm(t *testing.T) {
	leakcheck.Register(t)
	const instances, goroutines, keys = 4, 48, 8
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(context.Background(), runFor(3*time.Second))
	defer cancel()
	ms := make([]*distributed.Mutex[string], instances)
	for i := range ms {
		ms[i] = f.dist(t, f.client(t, nil), distributed.WithTTL(300*time.Millisecond))
	}
	before, err := redistest.CommandStats(context.Background(), f.admin)
	if err != nil {
		t.Fatal(err)
	}
	var (
		holders                     [keys]atomic.Int32
		overlaps, errs, lost, locks atomic.Int64
		flushes                     int
		wg                          sync.WaitGroup
		firstErr                    atomic.Value
	)
	for g := range goroutines {
		m := ms[g%instances]
		wg.Go(func() {
			for ctx.Err() == nil {
				k := rand.IntN(keys)
				lctx, lcancel := context.WithTimeout(context.Background(), 10*time.Second)
				l, err := m.Lock(lctx, "flush-"+strconv.Itoa(k))
				lcancel()
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				if holders[k].Add(1) != 1 {
					overlaps.Add(1)
				}
				locks.Add(1)
				holders[k].Add(-1)
				if err := l.Unlock(); errors.Is(err, mutex.ErrLost) {
					lost.Add(1)
				} else if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		})
	}
	for ctx.Err() == nil {
		if err := f.admin.ScriptFlush(context.Background()).Err(); err != nil {
			t.Errorf("SCRIPT FLUSH = %v", err)
			break
		}
		flushes++
		timer := time.NewTimer(2*time.Millisecond + rand.N(10*time.Millisecond+1))
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
		}
	}
	wg.Wait()
	after, err := redistest.CommandStats(context.Background(), f.admin)
	if err != nil {
		t.Fatal(err)
	}
	evals := after["eval"] - before["eval"]
	t.Logf("%v: %d flushes, %d locks, %d fallbacks to EVAL, %d errors, %d lost leases, %d overlaps",
		runFor(3*time.Second), flushes, locks.Load(), evals, errs.Load(), lost.Load(), overlaps.Load())
	if errs.Load() != 0 || lost.Load() != 0 || overlaps.Load() != 0 {
		t.Errorf("%d errors (first: %v), %d lost leases, %d overlaps; want none", errs.Load(), firstErr.Load(), lost.Load(), overlaps.Load())
	}
	if locks.Load() == 0 || evals == 0 {
		t.Errorf("%d locks, %d fallbacks to EVAL; want some of each (the storm did not bite)", locks.Load(), evals)
	}
	f.checkReports(t)
}
