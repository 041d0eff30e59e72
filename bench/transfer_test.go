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
// 1,000 accounts (little contention) and among 20 (much). Each row
// compares two ways on one implementation: "sorted", the two keys locked
// one after the other in sorted order with Lock (what a caller writes by
// hand), and "lockall", mutex.LockAll of both. The two run in alternating
// slices of the row (sorted, lockall, lockall, sorted, ...), so that the
// load of a shared machine weighs on both alike; the row reports each
// one's transfers/s and round trips per transfer, and lockall/sorted,
// the ratio of their rates (the target is at least 1.2).
func BenchmarkTransfer(b *testing.B) {
	t := newTarget(b)
	for _, accounts := range []int{1000, 20} {
		b.Run(fmt.Sprintf("accounts=%d", accounts), func(b *testing.B) {
			for _, st := range []strategy{pubsubStrategy, hybridStrategy} {
				b.Run(st.name, func(b *testing.B) {
					runTransfer(b, t, st, accounts)
				})
			}
		})
	}
}

// transferSlices is how many slices of each way a row runs.
const transferSlices = 4

// runTransfer runs b.N transfers, half of them each way, in alternating
// slices, and reports both ways' figures.
func runTransfer(b *testing.B, t *target, st strategy, accounts int) {
	const procs = 4
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
	var (
		elapsed [2]time.Duration // by way: 0 sorted, 1 lockall
		done    [2]int64
		trips   [2]int64
	)
	b.ResetTimer()
	for i := range 2 * transferSlices {
		all := i%4 == 1 || i%4 == 2 // sorted, lockall, lockall, sorted, ...
		way := 0
		if all {
			way = 1
		}
		n := int64(b.N) / (2 * transferSlices)
		if i < int(int64(b.N)%(2*transferSlices)) {
			n++
		}
		if n == 0 {
			continue
		}
		trips0 := roundTrips.Load()
		d, err := driveTransfers(ctx, ms, names, n, all)
		if err != nil {
			b.Fatalf("%s: %v", st.name, err)
		}
		elapsed[way] += d
		done[way] += n
		trips[way] += roundTrips.Load() - trips0
	}
	b.StopTimer()
	var rate [2]float64
	for way, name := range []string{"sorted", "lockall"} {
		if done[way] == 0 || elapsed[way] <= 0 {
			return
		}
		rate[way] = float64(done[way]) / elapsed[way].Seconds()
		b.ReportMetric(rate[way], name+"-transfers/s")
		b.ReportMetric(float64(trips[way])/float64(done[way]), name+"-round-trips/op")
	}
	b.ReportMetric(rate[1]/rate[0], "lockall/sorted")
}

// driveTransfers runs n transfers over the processes ms, 16 goroutines
// each, with LockAll (all) or two sorted Locks, checks that no account is
// held twice at once, and returns the time they took.
func driveTransfers(ctx context.Context, ms []mutex.Keyed[string], names []string, n int64, all bool) (time.Duration, error) {
	const goroutines = 16
	accounts := len(names)
	inUse := make([]atomic.Int32, accounts)
	var (
		remaining, violations atomic.Int64
		wg                    sync.WaitGroup
		mu                    sync.Mutex
		errs                  []error
	)
	remaining.Store(n)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	start := time.Now()
	for p, m := range ms {
		for g := range goroutines {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(p), uint64(g)+uint64(start.UnixNano())))
				for remaining.Add(-1) >= 0 {
					x, y := r.IntN(accounts), r.IntN(accounts-1)
					if y >= x {
						y++
					}
					unlock, err := lockPair(ctx, m, names[x], names[y], all)
					if err != nil {
						fail(err)
						return
					}
					if inUse[x].Add(1) != 1 || inUse[y].Add(1) != 1 {
						violations.Add(1)
					}
					inUse[x].Add(-1)
					inUse[y].Add(-1)
					if err := unlock(); err != nil {
						fail(err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	d := time.Since(start)
	if len(errs) > 0 {
		return d, fmt.Errorf("%d errors, the first: %w", len(errs), errs[0])
	}
	if v := violations.Load(); v != 0 {
		return d, fmt.Errorf("mutual exclusion violated %d times", v)
	}
	return d, nil
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
