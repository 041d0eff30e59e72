package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scenario is the shape of one row: procs simulated processes with
// goroutines goroutines each, locking one of keys keys chosen at random
// and holding it for work (busy, not sleeping); or, with fresh, a key
// never locked before at each acquisition (keys is then ignored).
type scenario struct {
	procs, goroutines, keys int
	work                    time.Duration
	fresh                   bool
	// reads is the fraction of acquisitions that are reads: RLock of a
	// row whose lockers are rwLockers, Lock of the others (see rw_test.go).
	reads float64
	// idle makes the critical section wait for work (time.Sleep, as I/O
	// under a lock does) instead of spinning.
	idle bool
}

// result is what one run of a row measured.
type result struct {
	total      int64
	elapsed    time.Duration
	perProc    []float64 // acquisitions per process
	wait       Histogram // Lock call to acquisition
	handoff    Histogram // Handoff rows: the other's Unlock call to acquisition
	violations int64     // two holders of one key at once: must stay 0
	keys       int64     // distinct keys locked

	// Set by runRow around the drive:
	clientCPU time.Duration // the bench process's own CPU (getrusage RUSAGE_SELF), -1 if unknown
	trips     int64         // client round trips (tripCounter)
	keysLeft  int64         // keys under the row's prefix right after the drive
}

// drive runs n acquisitions in total, shared by every goroutine of every
// process, and measures them. Lock errors end the goroutine that got them
// and are returned joined.
func drive(ctx context.Context, lockers []locker, sc scenario, n int64) (*result, error) {
	keys := make([]string, sc.keys)
	for i := range keys {
		keys[i] = "k" + strconv.Itoa(i)
	}
	inUse := make([]atomic.Int32, sc.keys)
	touched := make([]atomic.Bool, sc.keys)
	perProc := make([]atomic.Int64, len(lockers))
	var remaining, violations, fresh atomic.Int64
	remaining.Store(n)

	var (
		mu    sync.Mutex // guards wait, errs
		wait  Histogram
		errs  []error
		wg    sync.WaitGroup
		start = time.Now()
	)
	for p, l := range lockers {
		for g := range sc.goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := new(Histogram)
				r := rand.New(rand.NewPCG(uint64(p), uint64(g)))
				var err error
				for remaining.Add(-1) >= 0 {
					var key string
					var held *atomic.Int32 // nil for a fresh key: nobody else locks it
					if sc.fresh {
						key = "f" + strconv.FormatInt(fresh.Add(1), 10)
					} else {
						k := 0
						if sc.keys > 1 {
							k = r.IntN(sc.keys)
						}
						key, held = keys[k], &inUse[k]
						touched[k].Store(true)
					}
					t0 := time.Now()
					var unlock func() error
					weight, lock := int32(writer), l.Lock // what the holding adds to held
					if rl, ok := l.(rwLocker); ok && sc.reads > 0 && r.Float64() < sc.reads {
						weight, lock = 1, rl.RLock
					}
					unlock, err = lock(ctx, key)
					if err != nil {
						err = fmt.Errorf("Lock(%q): %w", key, err)
						break
					}
					h.Record(int64(time.Since(t0)))
					if held != nil && excluded(held.Add(weight)-weight, weight) {
						violations.Add(1)
					}
					if sc.idle {
						time.Sleep(sc.work)
					} else {
						busy(sc.work)
					}
					if held != nil {
						held.Add(-weight)
					}
					perProc[p].Add(1)
					if err = unlock(); err != nil {
						err = fmt.Errorf("Unlock(%q): %w", key, err)
						break
					}
				}
				mu.Lock()
				wait.Merge(h)
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	res := &result{elapsed: time.Since(start), wait: wait, violations: violations.Load(), keys: fresh.Load()}
	for i := range touched {
		if touched[i].Load() {
			res.keys++
		}
	}
	for i := range perProc {
		c := perProc[i].Load()
		res.total += c
		res.perProc = append(res.perProc, float64(c))
	}
	return res, errors.Join(errs...)
}

// busy spins for d: a critical section that uses the CPU, as real work
// under a lock does, rather than parking the goroutine.
func busy(d time.Duration) {
	if d <= 0 {
		return
	}
	for t0 := time.Now(); time.Since(t0) < d; {
	}
}

// handoffHold is the least time a Handoff holder keeps the key after the
// other process has called Lock, so that the waiter is surely parked
// (subscribed, or between spin retries) when the release comes. A random
// extra of up to handoffHold more keeps a waiter that retries at a fixed
// period from falling into step with the release.
const handoffHold = time.Millisecond

// driveHandoff has two processes, one goroutine each, pass one key back and
// forth n times in total, strictly alternating: process 0 takes the key
// first; a holder keeps it until the other process has called Lock, waits
// one to two handoffHold more, and releases; the releaser calls Lock again
// only once the other has acquired. The time from the Unlock call to the other's Lock
// returning is the handoff latency.
func driveHandoff(ctx context.Context, lockers []locker, n int64) (*result, error) {
	if len(lockers) != 2 {
		return nil, fmt.Errorf("driveHandoff: %d processes; want 2", len(lockers))
	}
	var (
		remaining, released, holders atomic.Int64 // released: UnixNano of the last Unlock call, 0 = taken
		calling                      = [2]chan struct{}{make(chan struct{}, 1), make(chan struct{}, 1)}
		acquired                     = [2]chan struct{}{make(chan struct{}, 1), make(chan struct{}, 1)}
		exited                       = [2]chan struct{}{make(chan struct{}), make(chan struct{})}
		started                      = make(chan struct{})
		res                          = &result{perProc: make([]float64, 2)}
		mu                           sync.Mutex // guards res, errs
		errs                         []error
		wg                           sync.WaitGroup
	)
	signal := func(c chan struct{}) {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	remaining.Store(n)
	start := time.Now()
	for p := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(exited[p])
			var wait, handoff Histogram
			var count int64
			var err error
			first := p == 0
			if p == 1 {
				select {
				case <-started:
				case <-exited[0]:
				case <-ctx.Done():
				}
			}
			for remaining.Add(-1) >= 0 {
				if !first {
					signal(calling[p])
				}
				t0 := time.Now()
				var unlock func() error
				unlock, err = lockers[p].Lock(ctx, "k")
				if err != nil {
					err = fmt.Errorf("Lock: %w", err)
					break
				}
				now := time.Now()
				wait.Record(int64(now.Sub(t0)))
				if first {
					close(started)
					first = false
				}
				if r := released.Swap(0); r != 0 {
					handoff.Record(now.UnixNano() - r)
					signal(acquired[p])
				}
				if holders.Add(1) != 1 {
					mu.Lock()
					res.violations++
					mu.Unlock()
				}
				count++
				select { // hold until the other process is in Lock, or gone
				case <-calling[1-p]:
					time.Sleep(handoffHold + rand.N(handoffHold))
				case <-exited[1-p]:
				case <-ctx.Done():
				}
				holders.Add(-1)
				released.Store(time.Now().UnixNano())
				if err = unlock(); err != nil {
					err = fmt.Errorf("Unlock: %w", err)
					break
				}
				select { // lock again only after the other took the key
				case <-acquired[1-p]:
				case <-exited[1-p]:
				case <-ctx.Done():
				}
			}
			mu.Lock()
			res.wait.Merge(&wait)
			res.handoff.Merge(&handoff)
			res.perProc[p] = float64(count)
			res.total += count
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	res.keys = 1
	return res, errors.Join(errs...)
}

// warmUp has each process lock and unlock a key of its own, one process
// after the other, so that what a first use costs once (a connection
// dialled, a script loaded into Redis) is not in the row's figures.
func warmUp(ctx context.Context, lockers []locker) error {
	for i, l := range lockers {
		key := "warmup" + strconv.Itoa(i)
		unlock, err := l.Lock(ctx, key)
		if err != nil {
			return fmt.Errorf("Lock(%q): %w", key, err)
		}
		if err := unlock(); err != nil {
			return fmt.Errorf("Unlock(%q): %w", key, err)
		}
	}
	return nil
}

// rowDeadline bounds one run of one row: a strategy that starves a waiter
// fails the row instead of hanging the whole benchmark.
const rowDeadline = 5 * time.Minute

// runRow runs one sub-benchmark: b.N acquisitions shared by all goroutines
// of all processes, timed from the first Lock call to the last Unlock,
// then reports the row's metrics and returns what it measured. Setup and
// teardown are not timed.
func runRow(b *testing.B, t *target, st strategy, sc scenario, handoff bool) *result {
	if t.mini != nil && st.needsRealRedis != "" {
		b.Skip(st.needsRealRedis)
	}
	ctx, cancel := context.WithTimeout(context.Background(), rowDeadline)
	defer cancel()
	prefix := rowPrefix()
	lockers, closeAll, err := st.procs(t, prefix, sc.procs)
	if err != nil {
		b.Fatalf("%s: build %d processes: %v", st.name, sc.procs, err)
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
	if !st.handoffOnly { // the notice pair's Lock waits for the other's notice
		if err := warmUp(ctx, lockers); err != nil {
			b.Fatalf("%s: warm-up: %v", st.name, err)
		}
	}
	keys0, err := countKeys(ctx, admins, prefix)
	if err != nil {
		b.Fatalf("count keys %s*: %v", prefix, err)
	}
	before, err := t.stats(ctx, admins)
	if err != nil {
		b.Fatalf("server stats: %v", err)
	}

	forget(b.Name()) // a row that fails now must not keep an earlier run's figures
	trips0 := roundTrips.Load()
	cpu0 := processCPU()
	b.ResetTimer()
	var res *result
	if handoff {
		res, err = driveHandoff(ctx, lockers, int64(b.N))
	} else {
		res, err = drive(ctx, lockers, sc, int64(b.N))
	}
	b.StopTimer()
	cpu1 := processCPU()
	trips1 := roundTrips.Load()
	if err != nil {
		b.Fatalf("%s: %v", st.name, err)
	}
	if !st.yardstick && res.violations != 0 {
		b.Fatalf("%s: mutual exclusion violated %d times", st.name, res.violations)
	}
	if r, ok := lockers[0].(rearmer); ok && r.rearms() > 0 {
		b.Logf("%s: %d of %d Lock calls restarted a wait after %v (a lost wake-up: see rueidisRearm)", st.name, r.rearms(), res.total, rueidisRearm)
	}
	after, err := t.stats(ctx, admins)
	if err != nil {
		b.Fatalf("server stats: %v", err)
	}
	load := make([]serverStats, len(after))
	for i := range after {
		load[i] = after[i].sub(before[i])
	}
	// Every lock is released (each goroutine unlocked before it ended):
	// what is under the prefix now, before any TTL could expire, and was
	// not there before the drive, is what the releases left behind.
	// Counted after the stats, so the SCAN is not in them.
	keys1, err := countKeys(ctx, admins, prefix)
	if err != nil {
		b.Fatalf("count keys %s*: %v", prefix, err)
	}
	res.keysLeft = keys1 - keys0
	res.clientCPU, res.trips = -1, trips1-trips0
	if cpu0 >= 0 && cpu1 >= 0 {
		res.clientCPU = cpu1 - cpu0
	}
	ms := rowMetrics(t, st, res, load, handoff)
	for _, m := range ms {
		b.ReportMetric(m.value, m.unit)
	}
	record(b.Name(), ms)
	return res
}

// metric is one value a row reports, as b.ReportMetric takes it.
type metric struct {
	value float64
	unit  string
}

// rowMetrics returns one row's metrics; load is what each server did
// during the row (one entry, or one per cluster master). On miniredis the
// Redis time and CPU metrics are left out: miniredis runs inside the
// benchmark's own process and keeps no such figures.
func rowMetrics(t *target, st strategy, res *result, load []serverStats, handoff bool) []metric {
	if res.total == 0 {
		return nil
	}
	n := float64(res.total)
	acqs := n / res.elapsed.Seconds()
	var sum serverStats
	for _, l := range load {
		sum.cmds += l.cmds
		sum.usec += l.usec
		sum.cpu += l.cpu
	}
	ms := []metric{
		{acqs, "acq/s"},
		{float64(sum.cmds) / n, "redis-cmds/op"},
	}
	if t.mini == nil {
		ms = append(ms,
			metric{float64(sum.usec) / n, "redis-us/op"},
			metric{float64(sum.cpu) / n, "redis-cpu-us/op"})
		// On miniredis the server runs in this process: its CPU would
		// count as the client's.
		if res.clientCPU >= 0 {
			ms = append(ms, metric{res.clientCPU.Seconds() * 1e6 / n, "client-cpu-us/op"})
		}
	}
	ms = append(ms, metric{float64(res.trips) / n, "round-trips/op"})
	if !st.yardstick && res.keys > 0 {
		ms = append(ms, metric{float64(res.keysLeft) / float64(res.keys), "keys-left/op"})
	}
	if len(load) > 1 {
		for i, l := range load {
			ms = append(ms, metric{float64(l.cmds) / n, fmt.Sprintf("shard%d-cmds/op", i+1)})
		}
	}
	ms = append(ms,
		metric{float64(res.wait.Quantile(0.5)), "p50-wait-ns"},
		metric{float64(res.wait.Quantile(0.99)), "p99-wait-ns"},
		metric{Jain(res.perProc), "jain"},
		metric{t.bound(), "bound-acq/s"},
		metric{acqs / t.bound(), "bound-ratio"})
	if handoff && res.handoff.Count() > 0 {
		p50 := float64(res.handoff.Quantile(0.5))
		ms = append(ms,
			metric{p50, "p50-handoff-ns"},
			metric{float64(res.handoff.Quantile(0.99)), "p99-handoff-ns"},
			metric{p50 / float64(t.rtt), "handoff/rtt"})
		if !st.yardstick && t.notice > 0 {
			ms = append(ms, metric{p50 / float64(t.notice), "handoff/notice"})
		}
	}
	return ms
}
