package otelkeyedmutex_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/extra/otelkeyedmutex"
	"github.com/keyedmutex/keyedmutex/mutex"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// TestEvents sends the Observer the events the integration tests cannot
// provoke on cue (reconnects, poll wake-ups, failed renewals and
// releases) and those of a backend and an op it has no table for.
func TestEvents(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	boom := errors.New("boom")
	for _, e := range []mutex.Event{
		{Kind: mutex.Reconnect, Backend: "distributed", Err: boom},
		{Kind: mutex.PollWake, Backend: "distributed", Key: "k"},
		{Kind: mutex.PollWake, Backend: "distributed", Key: "k"},
		{Kind: mutex.Notice, Backend: "distributed", Key: "k"},
		{Kind: mutex.Queued, Backend: "distributed", Key: "k"}, // not counted
		{Kind: mutex.Renewed, Backend: "distributed", Key: "k", Outcome: mutex.Acquired},
		{Kind: mutex.Renewed, Backend: "distributed", Key: "k", Outcome: mutex.Failed, Err: boom},
		{Kind: mutex.Unlocked, Backend: "distributed", Key: "k", Outcome: mutex.Released, Hold: time.Second, Err: boom},
		{Kind: mutex.Unlocked, Backend: "hybrid", Key: "k", Outcome: mutex.LostLease, Hold: time.Second, Err: mutex.ErrLost},
		{Kind: mutex.LocalHandoff, Backend: "hybrid", Key: "k"},
		{Kind: mutex.RemoteAcquired, Backend: "hybrid", Key: "k"},
		{Kind: mutex.Granted, Backend: "distributed", Key: "k"},
		{Kind: mutex.Lost, Backend: "distributed", Key: "k", Err: mutex.ErrLost},
		// Another implementation of mutex.Keyed, with its own names.
		{Kind: mutex.Waiting, Backend: "etcd", Key: "k", Op: "Acquire"},
		{Kind: mutex.LockDone, Backend: "etcd", Key: "k", Op: "Acquire", Outcome: mutex.Failed, Waited: true, Wait: time.Millisecond, Err: boom},
		{Kind: mutex.LockDone, Backend: "etcd", Key: "k", Op: "Lock", Outcome: 200},
	} {
		h.obs.Observe(ctx, e)
	}
	h.obs.Observe(nil, mutex.Event{Kind: mutex.LockDone, Backend: "local", Op: "Lock", Outcome: mutex.Acquired}) //nolint:staticcheck // a nil ctx must not panic

	s := h.collect(t)
	for _, c := range []struct {
		name string
		kv   []attribute.KeyValue
		want int64
	}{
		{reconnName, []attribute.KeyValue{backend("distributed")}, 1},
		{pollsName, []attribute.KeyValue{backend("distributed")}, 2},
		{noticesName, []attribute.KeyValue{backend("distributed")}, 1},
		{renewalsName, []attribute.KeyValue{outcome("ok")}, 1},
		{renewalsName, []attribute.KeyValue{outcome("failed")}, 1},
		{handoffsName, []attribute.KeyValue{backend("hybrid"), kind("local")}, 1},
		{handoffsName, []attribute.KeyValue{backend("hybrid"), kind("remote")}, 1},
		{handoffsName, []attribute.KeyValue{backend("distributed"), kind("remote")}, 1},
		{lostName, []attribute.KeyValue{backend("distributed")}, 1},
		{acqName, []attribute.KeyValue{backend("etcd"), op("Acquire"), outcome("failed")}, 1},
		{acqName, []attribute.KeyValue{backend("etcd"), op("Lock"), outcome("unknown")}, 1},
		{acqName, []attribute.KeyValue{backend("local"), op("Lock"), outcome("acquired")}, 1},
		{waitersName, []attribute.KeyValue{backend("etcd")}, 0},
	} {
		if n := s.sum(t, c.name, c.kv...); n != c.want {
			t.Errorf("%s%v = %d; want %d", c.name, c.kv, n, c.want)
		}
	}
	// A release that failed is no plain release; a lost hybrid lease is
	// lost.
	if n, _ := s.hist(t, holdName, backend("distributed"), outcome("failed")); n != 1 {
		t.Errorf("%s{distributed, failed} count = %d; want 1", holdName, n)
	}
	if n, sum := s.hist(t, holdName, backend("hybrid"), outcome("lost")); n != 1 || sum != 1 {
		t.Errorf("%s{hybrid, lost} = count %d, sum %v; want 1, 1s", holdName, n, sum)
	}
	if spans := h.spans.GetSpans(); len(spans) != 1 || spans[0].Status.Description != "failed" {
		t.Errorf("spans = %+v; want one, of the etcd Lock that waited, with status failed", spans)
	}
}

// TestObserveAllocs: the events of an uncontended Lock+Unlock allocate
// nothing on the SDK (attribute sets and options are made once).
func TestObserveAllocs(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	done := mutex.Event{Kind: mutex.LockDone, Backend: "local", Key: "k", Op: "Lock", Outcome: mutex.Acquired, Wait: time.Microsecond}
	unl := mutex.Event{Kind: mutex.Unlocked, Backend: "local", Key: "k", Outcome: mutex.Released, Hold: time.Microsecond}
	h.obs.Observe(ctx, done) // the SDK makes each series once
	h.obs.Observe(ctx, unl)
	if n := testing.AllocsPerRun(1000, func() {
		h.obs.Observe(ctx, done)
		h.obs.Observe(ctx, unl)
	}); n != 0 {
		t.Errorf("Observe(LockDone) + Observe(Unlocked) = %v allocs; want 0", n)
	}
}

func TestNewObserverOptions(t *testing.T) {
	for _, c := range []struct {
		name string
		opt  otelkeyedmutex.Option
		want string // "" for success
	}{
		{"WithMeterProvider(nil)", otelkeyedmutex.WithMeterProvider(nil), "WithMeterProvider(nil)"},
		{"WithTracerProvider(nil)", otelkeyedmutex.WithTracerProvider(nil), "WithTracerProvider(nil)"},
		{"nil option", nil, ""},
		{"globals", otelkeyedmutex.WithKeyAttribute(), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			o, err := otelkeyedmutex.NewObserver(c.opt)
			switch {
			case c.want == "" && (err != nil || o == nil):
				t.Errorf("NewObserver() = %v, %v; want an Observer", o, err)
			case c.want != "" && (err == nil || o != nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("NewObserver() = %v, %v; want an error naming %s", o, err, c.want)
			}
		})
	}
}

// failingMeter fails to create the instruments named in fail.
type failingMeter struct {
	noop.Meter
	fail map[string]error
}

func (m failingMeter) Int64Counter(name string, opts ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	c, _ := m.Meter.Int64Counter(name, opts...)
	return c, m.fail[name]
}

func (m failingMeter) Float64Histogram(name string, opts ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	h, _ := m.Meter.Float64Histogram(name, opts...)
	return h, m.fail[name]
}

type failingProvider struct {
	noop.MeterProvider
	m failingMeter
}

func (p failingProvider) Meter(string, ...metric.MeterOption) metric.Meter { return p.m }

// TestInstrumentErrors: NewObserver returns every instrument the Meter
// could not create.
func TestInstrumentErrors(t *testing.T) {
	errA, errB := errors.New("no counter"), errors.New("no histogram")
	mp := failingProvider{m: failingMeter{fail: map[string]error{lostName: errA, waitName: errB}}}
	o, err := otelkeyedmutex.NewObserver(otelkeyedmutex.WithMeterProvider(mp))
	if o != nil || !errors.Is(err, errA) || !errors.Is(err, errB) {
		t.Errorf("NewObserver(failing meter) = %v, %v; want nil and both errors", o, err)
	}
}
