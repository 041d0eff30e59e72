package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
)

// BenchmarkTransfer is a transfer between two accounts chosen at random:
// 4 processes x 16 goroutines, each transfer locking both accounts, among
// 1,000 accounts (little contention) and among 20 (much). Each
// implementation runs two rows: "sorted", the two keys locked one after
// the other in sorted order with Lock (what a caller writes by hand), and
// "lockall", mutex.LockAll of both. The lockall row reports its rate
// over the sorted row's of the same run (lockall/sorted): the target is
// at least 1.2.
func BenchmarkTransfer(b *testing.B) {
	t := newTarget(b)
	for _, accounts := range []int{1000, 20} {
		b.Run(fmt.Sprintf("accounts=%d", accounts), func(b *testing.B) {
			for _, st := range []strategy{pubsubStrategy, hybridStrategy} {
				b.Run(st.name, func(b *testing.B) {
					var sorted float64
					b.Run("sorted", func(b *testing.B) {
						sorted = runTransfer(b, t, st, accounts, false)
					})
					b.Run("lockall", func(b *testing.B) {
						rate := runTransfer(b, t, st, accounts, true)
						if sorted > 0 && rate > 0 {
							b.ReportMetric(rate/sorted, "lockall/sorted")
						}
					})
				})
			}
		})
	}
}

// runTransfer runs b.N transfers and returns transfers per second.
func runTransfer(b *testing.B, t *target, st strategy, accounts int, all bool) float64 {
	const procs, goroutines = 4, 16
	ctx, cancel := context.WithTimeout(context.Background(), rowDeadline)
	defer cancel()
	prefix := rowPrefix()
	lockers, closeAll, err := st.procs(t, prefix, procs)
	if err != nil {
		b.Fatalf("%s: build %d processes: %v", st.name, procs, err)
	}
	admins := t.admins()
	defer func() {
		closeAll()
		if err := dropKeys(context.Background(), admins, prefix); err != nil {
			b.Errorf("drop keys %s*: %v", prefix, err)
		}
		for _, c := range admins {
			c.Close()
		}
	}()
	if err := warmUp(ctx, lockers); err != nil {
		b.Fatalf("%s: warm-up: %v", st.name, err)
	}
	ms := make([]mutex.Keyed[string], len(lockers))
	for i, l := range lockers {
		ms[i] = l.(keyed).m
	}
	names := make([]string, accounts)
	for i := range names {
		names[i] = "acct" + strconv.Itoa(i)
	}
	inUse := make([]atomic.Int32, accounts)
	var (
		remaining, violations atomic.Int64
		wg                    sync.WaitGroup
		mu                    sync.Mutex
		errs                  []error
	)
	remaining.Store(int64(b.N))
	trips0 := roundTrips.Load()
	b.ResetTimer()
	start := time.Now()
	for p, m := range ms {
		for g := range goroutines {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(p), uint64(g)))
				for remaining.Add(-1) >= 0 {
					x, y := r.IntN(accounts), r.IntN(accounts-1)
					if y >= x {
						y++
					}
					unlock, err := lockPair(ctx, m, names[x], names[y], all)
					if err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
						return
					}
					if inUse[x].Add(1) != 1 || inUse[y].Add(1) != 1 {
						violations.Add(1)
					}
					inUse[x].Add(-1)
					inUse[y].Add(-1)
					if err := unlock(); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
						return
					}
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if len(errs) > 0 {
		b.Fatalf("%s: %d errors, the first: %v", st.name, len(errs), errs[0])
	}
	if violations.Load() != 0 {
		b.Fatalf("%s: mutual exclusion violated %d times", st.name, violations.Load())
	}
	rate := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(rate, "transfers/s")
	b.ReportMetric(float64(roundTrips.Load()-trips0)/float64(b.N), "round-trips/op")
	return rate
}

// lockPair locks accounts x and y: with LockAll, or with two Locks in
// sorted order.
func lockPair(ctx context.Context, m mutex.Keyed[string], x, y string, all bool) (func() error, error) {
	if all {
		s, err := mutex.LockAll(ctx, m, x, y)
		if err != nil {
			return nil, err
		}
		return s.Unlock, nil
	}
	if y < x {
		x, y = y, x
	}
	lx, err := m.Lock(ctx, x)
	if err != nil {
		return nil, err
	}
	ly, err := m.Lock(ctx, y)
	if err != nil {
		lx.Unlock()
		return nil, err
	}
	return func() error {
		err := ly.Unlock()
		if err2 := lx.Unlock(); err == nil {
			err = err2
		}
		return err
	}, nil
}
