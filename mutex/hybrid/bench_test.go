package hybrid_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/keyedmutex/keyedmutex/mutex/hybrid"
)

// BenchmarkHotKey: one key, 4 instances (each with its own client and
// distributed mutex, standing for processes) x 16 goroutines that lock and
// unlock it with an empty critical section, on a real redis-server
// (skipped without one). It reports:
//
//   - acq/s: acquisitions per second, all instances together;
//   - redis-cmds/op: commands the clients sent per acquisition (counted
//     with a go-redis hook on each client, plus the SUBSCRIBE family from
//     INFO commandstats, which Pub/Sub connections send past the hooks);
//   - redis-calls/op: every command the server ran per acquisition, those
//     run by Lua scripts included (INFO commandstats), as bench/ counts;
//   - p99-wait-ns and max-wait-ns: time spent in Lock;
//   - jain: Jain's fairness index over the per-instance acquisitions (1 is
//     perfectly even, 1/4 is one instance taking everything);
//   - max-run: the longest run of consecutive acquisitions by one
//     instance. With a bound it is bound+1 when the releasing instance
//     never wins the key straight back while others wait.
//
// Compare rows of one run only: the machine is shared.
// noop is an observer that does nothing: the cost of observing itself.
type noop struct{}

func (noop) Observe(context.Context, mutex.Event) {}

func BenchmarkHotKey(b *testing.B) {
	s := redistest.Start(b)
	rows := []struct {
		name   string
		hybrid bool
		opts   []hybrid.Option
	}{
		{"pubsub", false, nil},
		{"hybrid/bound=0", true, []hybrid.Option{hybrid.WithMaxLocalHandoffs(0)}},
		{"hybrid/bound=4", true, []hybrid.Option{hybrid.WithMaxLocalHandoffs(4)}},
		{"hybrid/bound=8", true, []hybrid.Option{hybrid.WithMaxLocalHandoffs(8)}},
		{"hybrid/bound=16", true, []hybrid.Option{hybrid.WithMaxLocalHandoffs(16)}},
		{"hybrid/bound=16/observer=noop", true, []hybrid.Option{hybrid.WithMaxLocalHandoffs(16), hybrid.WithObserver(noop{})}},
		{"hybrid/bound=16/noyield", true, []hybrid.Option{hybrid.WithMaxLocalHandoffs(16), hybrid.WithReleaseYield(0)}},
		{"hybrid/bound=64", true, []hybrid.Option{hybrid.WithMaxLocalHandoffs(64)}},
	}
	for _, row := range rows {
		b.Run(row.name, func(b *testing.B) {
			hotKey(b, s.Addr(), row.hybrid, row.opts)
		})
	}
}

const (
	benchInstances   = 4
	benchPerInstance = 16
)

var benchSeq atomic.Int64

func hotKey(b *testing.B, addr string, useHybrid bool, opts []hybrid.Option) {
	ctx := context.Background()
	prefix := fmt.Sprintf("hybridbench%d:", benchSeq.Add(1))
	var sent redistest.Counter
	ms := make([]mutex.Keyed[string], benchInstances)
	var closers []func() error
	for i := range ms {
		c := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 2 * benchPerInstance})
		c.AddHook(&sent)
		closers = append(closers, c.Close)
		d, err := distributed.New[string](c, distributed.WithPrefix(prefix))
		if err != nil {
			b.Fatal(err)
		}
		closers = append(closers, d.Close)
		ms[i] = d
		if useHybrid {
			h, err := hybrid.New[string](d, opts...)
			if err != nil {
				b.Fatal(err)
			}
			closers = append(closers, h.Close)
			ms[i] = h
		}
	}
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}()
	// Warm up: load the scripts, open connections.
	for _, m := range ms {
		l, err := m.Lock(ctx, "warmup")
		if err != nil {
			b.Fatal(err)
		}
		l.Unlock()
	}
	subs0, calls0 := commandStats(b, admin)
	sent0 := sent.All.Load()

	var (
		next   atomic.Int64
		perIns [benchInstances]atomic.Int64
		waits  = make([][]time.Duration, benchInstances*benchPerInstance)
		wg     sync.WaitGroup
		failed atomic.Pointer[error]
		order  = make([]uint8, 0, b.N) // instance of each acquisition, guarded by the key's lock
	)
	b.ResetTimer()
	start := time.Now()
	for g := range waits {
		m := ms[g%benchInstances]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				l, err := m.Lock(ctx, "hot")
				if err != nil {
					failed.Store(&err)
					return
				}
				waits[g] = append(waits[g], time.Since(t0))
				order = append(order, uint8(g%benchInstances))
				perIns[g%benchInstances].Add(1)
				if err := l.Unlock(); err != nil {
					failed.Store(&err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	subs1, calls1 := commandStats(b, admin)
	n := float64(b.N)
	all := slices.Concat(waits...)
	slices.Sort(all)
	var xs []float64
	for i := range perIns {
		xs = append(xs, float64(perIns[i].Load()))
	}
	b.ReportMetric(n/elapsed.Seconds(), "acq/s")
	b.ReportMetric(float64(sent.All.Load()-sent0+subs1-subs0)/n, "redis-cmds/op")
	b.ReportMetric(float64(calls1-calls0)/n, "redis-calls/op")
	b.ReportMetric(float64(all[int(math.Ceil(0.99*float64(len(all))))-1]), "p99-wait-ns")
	b.ReportMetric(float64(all[len(all)-1]), "max-wait-ns")
	b.ReportMetric(jain(xs), "jain")
	maxRun, run := 0, 0
	for i := range order {
		if i > 0 && order[i] == order[i-1] {
			run++
		} else {
			run = 1
		}
		maxRun = max(maxRun, run)
	}
	b.ReportMetric(float64(maxRun), "max-run")
}

// jain is Jain's fairness index, (Σx)² / (n·Σx²).
func jain(xs []float64) float64 {
	var sum, sq float64
	for _, x := range xs {
		sum += x
		sq += x * x
	}
	if sq == 0 {
		return 1
	}
	return sum * sum / (float64(len(xs)) * sq)
}

// commandStats returns, from INFO commandstats, the calls of the
// SUBSCRIBE family and of every command but INFO.
func commandStats(b *testing.B, c *redis.Client) (subs, calls int64) {
	stats, err := redistest.CommandStats(context.Background(), c)
	if err != nil {
		b.Fatal(err)
	}
	for cmd, n := range stats {
		switch cmd {
		case "info":
			continue
		case "subscribe", "unsubscribe", "ssubscribe", "sunsubscribe":
			subs += n
		}
		calls += n
	}
	return subs, calls
}
