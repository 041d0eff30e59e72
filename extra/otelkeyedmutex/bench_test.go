package otelkeyedmutex_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/extra/otelkeyedmutex"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/local"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// newBenchObserver returns an Observer on SDK providers: metrics to a
// ManualReader nobody collects from (recording costs the same), spans to
// a TracerProvider with no exporter.
func newBenchObserver(tb testing.TB) *otelkeyedmutex.Observer {
	tb.Helper()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tp := sdktrace.NewTracerProvider()
	tb.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = tp.Shutdown(context.Background())
	})
	obs, err := otelkeyedmutex.NewObserver(otelkeyedmutex.WithMeterProvider(mp), otelkeyedmutex.WithTracerProvider(tp))
	if err != nil {
		tb.Fatal(err)
	}
	return obs
}

// nopObserver splits the cost of observing at all (the core's events)
// from the cost of recording them.
type nopObserver struct{}

func (nopObserver) Observe(context.Context, mutex.Event) {}

// observers are the rows of every benchmark: no observer (the
// baseline), one that ignores events, and ours.
func observers(b *testing.B) []struct {
	name string
	opts []local.Option
} {
	return []struct {
		name string
		opts []local.Option
	}{
		{"observer=none", nil},
		{"observer=nop", []local.Option{local.WithObserver(nopObserver{})}},
		{"observer=otel", []local.Option{local.WithObserver(newBenchObserver(b))}},
	}
}

// BenchmarkUncontended is one goroutine's Lock+Unlock of one key of a
// local.Mutex: the overhead of the observer per critical section.
func BenchmarkUncontended(b *testing.B) {
	ctx := context.Background()
	for _, o := range observers(b) {
		b.Run(o.name, func(b *testing.B) {
			m, err := local.New[string](o.opts...)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				l, err := m.Lock(ctx, "order-17")
				if err != nil {
					b.Fatal(err)
				}
				l.Unlock()
			}
		})
	}
}

// BenchmarkDistinctKeys is GOMAXPROCS goroutines, each locking its own
// key: no lock contention, but every Lock records into the same series,
// so this shows what the SDK's shared counters cost under parallelism.
func BenchmarkDistinctKeys(b *testing.B) {
	ctx := context.Background()
	for _, o := range observers(b) {
		b.Run(o.name, func(b *testing.B) {
			m, err := local.New[string](o.opts...)
			if err != nil {
				b.Fatal(err)
			}
			var seq atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				key := "order-" + strconv.FormatInt(seq.Add(1), 10)
				for pb.Next() {
					l, err := m.Lock(ctx, key)
					if err != nil {
						b.Error(err)
						return
					}
					l.Unlock()
				}
			})
		})
	}
}

// BenchmarkObserve is the cost of the events of one uncontended
// Lock+Unlock, without the mutex.
func BenchmarkObserve(b *testing.B) {
	obs := newBenchObserver(b)
	ctx := context.Background()
	done := mutex.Event{Kind: mutex.LockDone, Backend: "local", Key: "k", Op: "Lock", Outcome: mutex.Acquired, Wait: time.Microsecond}
	unl := mutex.Event{Kind: mutex.Unlocked, Backend: "local", Key: "k", Outcome: mutex.Released, Hold: time.Microsecond}
	b.ReportAllocs()
	for b.Loop() {
		obs.Observe(ctx, done)
		obs.Observe(ctx, unl)
	}
}
