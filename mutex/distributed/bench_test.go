package distributed

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// The benchmarks need a real redis-server (they skip without one): the
// point is to compare with a plain round trip to it. They report
// redis-cmds/op, counted by a go-redis hook on every client (commands on
// the shared Pub/Sub connection, SUBSCRIBE and UNSUBSCRIBE, are not
// counted: one of each per wait at most).

// benchSpin is the spin interval of the spin sub-benchmarks.
const benchSpin = 5 * time.Millisecond

var benchStrategies = []struct {
	name string
	opts []Option
}{
	{"pubsub", nil},
	{"spin", []Option{WithSpin(benchSpin)}},
}

func benchClient(b *testing.B, s *redistest.Server, cmds *counter) *redis.Client {
	b.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	c.AddHook(cmds)
	b.Cleanup(func() { c.Close() })
	return c
}

// BenchmarkUncontended: one goroutine locks and unlocks one key, next to
// a plain PING round trip. Target: LockUnlock within 2.5x of PING.
func BenchmarkUncontended(b *testing.B) {
	s := redistest.Start(b)
	ctx := context.Background()
	b.Run("PING", func(b *testing.B) {
		var cmds counter
		c := benchClient(b, s, &cmds)
		c.Ping(ctx) // dial outside the timing
		cmds.All.Store(0)
		b.ResetTimer()
		for b.Loop() {
			if err := c.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cmds.All.Load())/float64(b.N), "redis-cmds/op")
	})
	for _, st := range benchStrategies {
		b.Run("LockUnlock/"+st.name, func(b *testing.B) {
			var cmds counter
			m := newMutexOn(b, benchClient(b, s, &cmds), st.opts...)
			l, err := m.Lock(ctx, "warm-up") // dial, load scripts
			if err != nil {
				b.Fatal(err)
			}
			l.Unlock()
			cmds.All.Store(0)
			b.ResetTimer()
			for b.Loop() {
				l, err := m.Lock(ctx, "uncontended")
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Unlock(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(cmds.All.Load())/float64(b.N), "redis-cmds/op")
		})
	}
}

// BenchmarkUncontendedRatio interleaves one PING and one Lock+Unlock
// per iteration and reports their ratio, x-ping, which the load of a
// shared machine disturbs less than two separate benchmarks.
func BenchmarkUncontendedRatio(b *testing.B) {
	s := redistest.Start(b)
	ctx := context.Background()
	for _, st := range benchStrategies {
		b.Run(st.name, func(b *testing.B) {
			var cmds counter
			c := benchClient(b, s, &cmds)
			m := newMutexOn(b, c, st.opts...)
			l, err := m.Lock(ctx, "warm-up")
			if err != nil {
				b.Fatal(err)
			}
			l.Unlock()
			var ping, lock time.Duration
			for b.Loop() {
				t0 := time.Now()
				if err := c.Ping(ctx).Err(); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				l, err := m.Lock(ctx, "uncontended")
				if err != nil {
					b.Fatal(err)
				}
				if err := l.Unlock(); err != nil {
					b.Fatal(err)
				}
				ping += t1.Sub(t0)
				lock += time.Since(t1)
			}
			b.ReportMetric(float64(lock)/float64(ping), "x-ping")
			b.ReportMetric(float64(ping)/float64(b.N), "ping-ns")
			b.ReportMetric(float64(lock)/float64(b.N), "lockunlock-ns")
		})
	}
}

// BenchmarkHotKey: 4 instances (each its own client, standing for a
// process) x 4 goroutines lock one key. Reports redis-cmds/op over all
// clients and the 99th percentile of the time Lock waited.
func BenchmarkHotKey(b *testing.B) {
	s := redistest.Start(b)
	const instances, goroutines = 4, 4
	for _, st := range benchStrategies {
		b.Run(st.name+"/procs=4", func(b *testing.B) {
			var cmds counter
			ms := make([]*Mutex[string], instances)
			for i := range ms {
				ms[i] = newMutexOn(b, benchClient(b, s, &cmds), st.opts...)
			}
			ctx := context.Background()
			var (
				next  atomic.Int64
				mu    sync.Mutex
				waits []time.Duration
				wg    sync.WaitGroup
			)
			cmds.All.Store(0)
			b.ResetTimer()
			for g := 0; g < instances*goroutines; g++ {
				m := ms[g%instances]
				wg.Go(func() {
					var mine []time.Duration
					for next.Add(1) <= int64(b.N) {
						start := time.Now()
						l, err := m.Lock(ctx, "hot")
						if err != nil {
							b.Error(err)
							return
						}
						mine = append(mine, time.Since(start))
						if err := l.Unlock(); err != nil {
							b.Error(err)
							return
						}
					}
					mu.Lock()
					waits = append(waits, mine...)
					mu.Unlock()
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(cmds.All.Load())/float64(b.N), "redis-cmds/op")
			if len(waits) > 0 {
				slices.Sort(waits)
				b.ReportMetric(float64(waits[len(waits)*99/100]), "p99-wait-ns")
			}
		})
	}
}

// BenchmarkLongWait: a holder keeps the key for 1s while one contender
// waits. Reports the commands the contender sent per wait: O(1) with
// pub/sub, growing with the wait (about 1s/5ms) with spin.
func BenchmarkLongWait(b *testing.B) {
	s := redistest.Start(b)
	const hold = time.Second
	for _, st := range benchStrategies {
		b.Run(st.name, func(b *testing.B) {
			var holderCmds, contenderCmds counter
			holder := newMutexOn(b, benchClient(b, s, &holderCmds))
			contender := newMutexOn(b, benchClient(b, s, &contenderCmds), st.opts...)
			ctx := context.Background()
			l, _ := contender.Lock(ctx, "warm-up")
			l.Unlock()
			contenderCmds.All.Store(0)
			contenderCmds.Scripts.Store(0)
			b.ResetTimer()
			for b.Loop() {
				l, err := holder.Lock(ctx, "long")
				if err != nil {
					b.Fatal(err)
				}
				got := make(chan error, 1)
				go func() {
					l, err := contender.Lock(ctx, "long")
					if err == nil {
						err = l.Unlock()
					}
					got <- err
				}()
				time.Sleep(hold) // the wait being measured
				l.Unlock()
				if err := <-got; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(contenderCmds.All.Load())/float64(b.N), "contender-cmds/op")
			b.ReportMetric(float64(contenderCmds.Scripts.Load())/float64(b.N), "contender-scripts/op")
		})
	}
}

// BenchmarkRenewals holds 10,000 leases with a 3s TTL for 3s (b.N is
// ignored: run it with -benchtime 1x) and counts, while they are held,
// the renewal scripts sent and the round trips that carried them.
// Renewals due at about the same time leave together (TTL/12 apart at
// most): the target is at most one round trip per ten renewals.
func BenchmarkRenewals(b *testing.B) {
	s := redistest.Start(b)
	ctx := context.Background()
	const leases, ttl = 10_000, 3 * time.Second
	var cmds counter
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), PoolSize: 64})
	c.AddHook(&cmds)
	b.Cleanup(func() { c.Close() })
	m, err := New[int](c, WithTTL(ttl))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	held := make([]any, leases)
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for g := range 64 {
		wg.Go(func() {
			for i := g; i < leases; i += 64 {
				l, err := m.Lock(ctx, i)
				if err != nil {
					failed.Store(&err)
					return
				}
				held[i] = l
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	b.ResetTimer()
	scripts0, trips0 := cmds.Scripts.Load(), cmds.Trips.Load()
	start := time.Now()
	time.Sleep(ttl) // the span measured, not a synchronisation
	elapsed := time.Since(start)
	renewals, trips := cmds.Scripts.Load()-scripts0, cmds.Trips.Load()-trips0
	b.StopTimer()
	lost := 0
	for _, l := range held {
		if l.(interface{ Err() error }).Err() != nil {
			lost++
		}
	}
	if lost > 0 {
		b.Errorf("%d of %d leases lost while renewed", lost, leases)
	}
	b.ReportMetric(float64(renewals)/elapsed.Seconds(), "renewals/s")
	b.ReportMetric(float64(trips)/elapsed.Seconds(), "round-trips/s")
	if trips > 0 {
		b.ReportMetric(float64(renewals)/float64(trips), "renewals/trip")
	}
}
