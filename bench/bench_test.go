package bench

import (
	"testing"
	"time"
)

// strategies are the rows of every scenario, in table order. Ours are
// added in ours_test.go.
var strategies = []strategy{redsyncStrategy, redislockStrategy, rueidislockStrategy}

// BenchmarkUncontended is the cost of Lock+Unlock with one goroutine, on
// a key never locked before each time (as a lock per request or per
// record is), next to one PING round trip.
func BenchmarkUncontended(b *testing.B) {
	t := newTarget(b)
	for _, st := range append([]strategy{ping}, strategies...) {
		b.Run(st.name, func(b *testing.B) {
			runRow(b, t, st, scenario{procs: 1, goroutines: 1, fresh: true}, false)
		})
	}
}

// BenchmarkHotKey is one key fought over by 4 processes x 16 goroutines,
// with an empty critical section and with 50 µs of busy work.
func BenchmarkHotKey(b *testing.B) {
	t := newTarget(b)
	for _, cs := range []struct {
		name string
		work time.Duration
	}{{"empty", 0}, {"50us", 50 * time.Microsecond}} {
		b.Run(cs.name, func(b *testing.B) {
			for _, st := range strategies {
				b.Run(st.name, func(b *testing.B) {
					runRow(b, t, st, scenario{procs: 4, goroutines: 16, keys: 1, work: cs.work}, false)
				})
			}
		})
	}
}

// BenchmarkManyKeys is 4 processes x 16 goroutines locking keys chosen at
// random among 10,000: little contention, so the cost per acquisition.
func BenchmarkManyKeys(b *testing.B) {
	t := newTarget(b)
	for _, st := range strategies {
		b.Run(st.name, func(b *testing.B) {
			runRow(b, t, st, scenario{procs: 4, goroutines: 16, keys: 10000}, false)
		})
	}
}

// BenchmarkManyKeysCluster is ManyKeys on a Redis Cluster of 3 masters,
// to set next to BenchmarkManyKeys on one node: acquisitions/s, and Redis
// commands per acquisition in total and on each shard (shardN-cmds/op),
// which shows the load, release notices included, spread over the shards.
// It needs redis-server and redis-cli on PATH and skips otherwise; local
// has no Redis and no row here.
func BenchmarkManyKeysCluster(b *testing.B) {
	t := startCluster(b, clusterMasters)
	for _, st := range strategies {
		if !st.redis {
			continue
		}
		b.Run(st.name, func(b *testing.B) {
			runRow(b, t, st, scenario{procs: 4, goroutines: 16, keys: 10000}, false)
		})
	}
}

// BenchmarkHandoff is two processes passing one key back and forth; it
// reports the release-to-acquire latency (p50-handoff-ns) and its ratio to
// one PING round trip (handoff/rtt) and to the notice yardstick, which
// runs first: one PUBLISH reaching the other process's parked subscriber
// (handoff/notice). Its acq/s is bounded by the 1 ms hold and says nothing.
func BenchmarkHandoff(b *testing.B) {
	t := newTarget(b)
	b.Run(notice.name, func(b *testing.B) {
		res := runRow(b, t, notice, handoffScenario, true)
		t.notice = time.Duration(res.handoff.Quantile(0.5))
	})
	for _, st := range strategies {
		b.Run(st.name, func(b *testing.B) {
			runRow(b, t, st, handoffScenario, true)
		})
	}
}

// handoffScenario is the Handoff shape: two processes, one goroutine each.
var handoffScenario = scenario{procs: 2, goroutines: 1, keys: 1}
