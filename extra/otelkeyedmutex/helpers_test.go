package otelkeyedmutex_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/keyedmutex/keyedmutex/extra/otelkeyedmutex"
	"github.com/keyedmutex/keyedmutex/mutex"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// harness is an Observer on in-memory SDK providers: a ManualReader for
// the metrics and an in-memory exporter, fed synchronously, for spans.
type harness struct {
	reader *sdkmetric.ManualReader
	spans  *tracetest.InMemoryExporter
	tp     *sdktrace.TracerProvider
	obs    *otelkeyedmutex.Observer
	tee    *tee
}

func newHarness(t *testing.T, opts ...otelkeyedmutex.Option) *harness {
	t.Helper()
	h := &harness{reader: sdkmetric.NewManualReader(), spans: tracetest.NewInMemoryExporter()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(h.spans))
	t.Cleanup(func() {
		_ = mp.Shutdown(context.Background())
		_ = h.tp.Shutdown(context.Background())
	})
	obs, err := otelkeyedmutex.NewObserver(append([]otelkeyedmutex.Option{
		otelkeyedmutex.WithMeterProvider(mp),
		otelkeyedmutex.WithTracerProvider(h.tp),
	}, opts...)...)
	if err != nil {
		t.Fatalf("NewObserver() = %v", err)
	}
	h.obs = obs
	h.tee = newTee(obs)
	return h
}

// tee passes every event to the Observer under test, then tells the test
// about the ones it synchronizes on: a Lock that waits, a renewal, a
// loss.
type tee struct {
	next    mutex.Observer
	waiting chan string // backend of each Waiting event
	renewed atomic.Int64
	renew   chan struct{} // one per successful renewal, if room
	lost    chan struct{} // one per Lost event, if room
}

func newTee(next mutex.Observer) *tee {
	return &tee{next: next, waiting: make(chan string, 16), renew: make(chan struct{}, 1), lost: make(chan struct{}, 1)}
}

func (t *tee) Observe(ctx context.Context, e mutex.Event) {
	t.next.Observe(ctx, e)
	switch {
	case e.Kind == mutex.Waiting:
		t.waiting <- e.Backend
	case e.Kind == mutex.Renewed && e.Outcome == mutex.Acquired:
		t.renewed.Add(1)
		select {
		case t.renew <- struct{}{}:
		default:
		}
	case e.Kind == mutex.Lost:
		select {
		case t.lost <- struct{}{}:
		default:
		}
	}
}

// awaitWaiting returns once a Lock of backend has started to wait.
func (t *tee) awaitWaiting(tb testing.TB, ctx context.Context, backend string) {
	tb.Helper()
	for {
		select {
		case b := <-t.waiting:
			if b == backend {
				return
			}
		case <-ctx.Done():
			tb.Fatalf("no Lock of %s started to wait: %v", backend, ctx.Err())
		}
	}
}

// snapshot is one collection of the harness's metrics.
type snapshot struct {
	metrics map[string]metricdata.Aggregation
}

func (h *harness) collect(t *testing.T) snapshot {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect() = %v", err)
	}
	s := snapshot{metrics: map[string]metricdata.Aggregation{}}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != otelkeyedmutex.ScopeName {
			t.Errorf("scope %q; want %q", sm.Scope.Name, otelkeyedmutex.ScopeName)
		}
		for _, m := range sm.Metrics {
			s.metrics[m.Name] = m.Data
		}
	}
	return s
}

// matches reports whether set has every attribute of want.
func matches(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// sum is the total of the int64 sum (counter, up-down counter) name over
// the data points with the attributes want.
func (s snapshot) sum(t *testing.T, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	d, ok := s.metrics[name]
	if !ok {
		return 0
	}
	sum, ok := d.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is a %T; want metricdata.Sum[int64]", name, d)
	}
	var n int64
	for _, p := range sum.DataPoints {
		if matches(p.Attributes, want) {
			n += p.Value
		}
	}
	return n
}

// hist is the count and sum of the histogram name over the data points
// with the attributes want.
func (s snapshot) hist(t *testing.T, name string, want ...attribute.KeyValue) (uint64, float64) {
	t.Helper()
	d, ok := s.metrics[name]
	if !ok {
		return 0, 0
	}
	h, ok := d.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s is a %T; want metricdata.Histogram[float64]", name, d)
	}
	var (
		n   uint64
		sum float64
	)
	for _, p := range h.DataPoints {
		if matches(p.Attributes, want) {
			n += p.Count
			sum += p.Sum
		}
	}
	return n, sum
}

// attrs returns every attribute of every data point, as "name: k=v".
func (s snapshot) attrs() []string {
	var out []string
	add := func(name string, set attribute.Set) {
		for _, kv := range set.ToSlice() {
			out = append(out, fmt.Sprintf("%s: %s=%s", name, kv.Key, kv.Value.Emit()))
		}
	}
	for name, d := range s.metrics {
		switch d := d.(type) {
		case metricdata.Sum[int64]:
			for _, p := range d.DataPoints {
				add(name, p.Attributes)
			}
		case metricdata.Histogram[float64]:
			for _, p := range d.DataPoints {
				add(name, p.Attributes)
			}
		}
	}
	return out
}

// spanTexts returns every attribute and the status of every span.
func spanTexts(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		for _, kv := range s.Attributes {
			out = append(out, fmt.Sprintf("span %s: %s=%s", s.Name, kv.Key, kv.Value.Emit()))
		}
		out = append(out, fmt.Sprintf("span %s: status %s", s.Name, s.Status.Description))
		for _, ev := range s.Events {
			for _, kv := range ev.Attributes {
				out = append(out, fmt.Sprintf("span %s event %s: %s=%s", s.Name, ev.Name, kv.Key, kv.Value.Emit()))
			}
		}
	}
	return out
}

// containing returns the texts that contain s.
func containing(texts []string, s string) []string {
	var out []string
	for _, x := range texts {
		if strings.Contains(x, s) {
			out = append(out, x)
		}
	}
	return out
}

var keySeq atomic.Int64

// testKey returns a key unique to this run, long and odd enough that no
// attribute contains it by chance.
func testKey(t *testing.T) string {
	return fmt.Sprintf("user-%s-%d", strings.ReplaceAll(t.Name(), "/", "-"), keySeq.Add(1))
}
