package otelkeyedmutex

import (
	"context"
	"errors"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the Meter and Tracer an
// Observer uses: this package's import path.
const ScopeName = "github.com/keyedmutex/keyedmutex/extra/otelkeyedmutex"

// SpanName is the name of the span of a Lock that waited.
const SpanName = "keyedmutex.Lock"

// waitBuckets are the bucket boundaries, in seconds, of the wait and hold
// histograms: 10µs to 10s, 1-2.5-5 per decade. An uncontended local Lock
// falls in the first bucket, a Redis round trip in the 100µs-1ms ones, a
// wait behind a critical section in the ms ones, and 10s is the
// distributed package's default lease TTL.
var waitBuckets = []float64{
	0.00001, 0.000025, 0.00005,
	0.0001, 0.00025, 0.0005,
	0.001, 0.0025, 0.005,
	0.01, 0.025, 0.05,
	0.1, 0.25, 0.5,
	1, 2.5, 5,
	10,
}

var _ mutex.Observer = (*Observer)(nil)

// Observer is a [mutex.Observer] that records the events of the mutexes
// it is given to as OpenTelemetry metrics and spans; see the package
// documentation for the instruments. Make one with [NewObserver]; the
// zero value is not usable. It is safe for concurrent use, and one
// Observer may serve any number of mutexes.
type Observer struct {
	tracer  trace.Tracer
	withKey bool
	attrs   *backends

	wait, hold                                                    metric.Float64Histogram
	acquisitions, lost, renewals, handoffs, polls, notices, recon metric.Int64Counter
	waiters                                                       metric.Int64UpDownCounter
}

// NewObserver returns an Observer whose instruments come from a Meter of
// the MeterProvider and whose spans come from a Tracer of the
// TracerProvider, both named [ScopeName]. It returns the error of an
// invalid option, or the errors of the instruments the Meter could not
// create.
func NewObserver(opts ...Option) (*Observer, error) {
	var c config
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	o := &Observer{
		tracer:  c.tp.Tracer(ScopeName),
		withKey: c.withKey,
		attrs:   newBackends(),
	}
	if err := o.instruments(c.mp.Meter(ScopeName)); err != nil {
		return nil, err
	}
	return o, nil
}

// instruments creates the Observer's instruments; it returns every error.
func (o *Observer) instruments(m metric.Meter) error {
	var errs []error
	hist := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(waitBuckets...))
		errs = append(errs, err)
		return h
	}
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	o.wait = hist("keyedmutex.lock.wait.duration",
		"Time from a Lock or TryLock call to its return.")
	o.hold = hist("keyedmutex.lock.hold.duration",
		"Time from a Lock's return to the Unlock of its lease.")
	o.acquisitions = counter("keyedmutex.lock.acquisitions", "{acquisition}",
		"Lock and TryLock calls, by outcome.")
	o.lost = counter("keyedmutex.lease.lost", "{lease}",
		"Leases found lost while held.")
	o.renewals = counter("keyedmutex.lease.renewals", "{renewal}",
		"Lease renewals, by outcome (ok, failed).")
	o.handoffs = counter("keyedmutex.handoffs", "{handoff}",
		"Locks passed to a holder: by a hybrid cohort (local), or by a remote acquisition or grant (remote).")
	o.polls = counter("keyedmutex.poll.wakeups", "{wakeup}",
		"Queued waiters woken by their poll bound, with no message.")
	o.notices = counter("keyedmutex.notices", "{notice}",
		"Grant messages that reached their waiter.")
	o.recon = counter("keyedmutex.reconnects", "{reconnect}",
		"Pub/Sub connections lost and rebuilt.")
	var err error
	o.waiters, err = m.Int64UpDownCounter("keyedmutex.lock.waiters", metric.WithUnit("{waiter}"),
		metric.WithDescription("Lock calls waiting for their lock now."))
	errs = append(errs, err)
	return errors.Join(errs...)
}

// adder is what counters and up-down counters share.
type adder interface {
	Add(ctx context.Context, incr int64, opts ...metric.AddOption)
}

// add adds n to c with the attributes a (and the key, if recorded).
func (o *Observer) add(ctx context.Context, c adder, n int64, a *attrs, key string) {
	if o.withKey && key != "" {
		c.Add(ctx, n, metric.WithAttributes(a.withKey(key)...))
		return
	}
	c.Add(ctx, n, a.add...)
}

// record records d, in seconds, in h with the attributes a (and the key,
// if recorded).
func (o *Observer) record(ctx context.Context, h metric.Float64Histogram, d time.Duration, a *attrs, key string) {
	if o.withKey && key != "" {
		h.Record(ctx, d.Seconds(), metric.WithAttributes(a.withKey(key)...))
		return
	}
	h.Record(ctx, d.Seconds(), a.rec...)
}

// Observe implements [mutex.Observer]: it records e in the instruments
// and, for a Lock that waited, makes its span.
func (o *Observer) Observe(ctx context.Context, e mutex.Event) {
	if ctx == nil {
		ctx = context.Background()
	}
	b := o.attrs.get(e.Backend)
	switch e.Kind {
	case mutex.LockDone:
		a := b.lockDoneAttrs(e.Op, e.Outcome)
		o.add(ctx, o.acquisitions, 1, a, e.Key)
		o.record(ctx, o.wait, e.Wait, a, e.Key)
		if e.Waited {
			o.add(ctx, o.waiters, -1, b.base, e.Key)
			o.span(ctx, e, a)
		}
	case mutex.Waiting:
		o.add(ctx, o.waiters, 1, b.base, e.Key)
	case mutex.Unlocked:
		out := e.Outcome
		if out == mutex.Released && e.Err != nil {
			out = mutex.Failed // the release failed: the key expires at its TTL
		}
		o.record(ctx, o.hold, e.Hold, b.hold[outcomeIndex(out)], e.Key)
	case mutex.Lost:
		o.add(ctx, o.lost, 1, b.base, e.Key)
	case mutex.Renewed:
		i := renewOK
		if e.Outcome != mutex.Acquired {
			i = renewFailed
		}
		o.add(ctx, o.renewals, 1, b.renewal[i], e.Key)
	case mutex.LocalHandoff:
		o.add(ctx, o.handoffs, 1, b.handoff[handoffLocal], e.Key)
	case mutex.RemoteAcquired, mutex.Granted:
		o.add(ctx, o.handoffs, 1, b.handoff[handoffRemote], e.Key)
	case mutex.Notice:
		o.add(ctx, o.notices, 1, b.base, e.Key)
	case mutex.PollWake:
		o.add(ctx, o.polls, 1, b.base, e.Key)
	case mutex.Reconnect:
		o.add(ctx, o.recon, 1, b.base, e.Key)
	}
}

// span makes the span of a Lock that waited, from its LockDone event: it
// started e.Wait ago and ends now.
func (o *Observer) span(ctx context.Context, e mutex.Event, a *attrs) {
	kvs := a.kvs
	if o.withKey && e.Key != "" {
		kvs = a.withKey(e.Key)
	}
	end := time.Now()
	_, s := o.tracer.Start(ctx, SpanName,
		trace.WithTimestamp(end.Add(-e.Wait)),
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(kvs...))
	if e.Outcome != mutex.Acquired {
		// The error's text names the key: only with the user's consent.
		desc := e.Outcome.String()
		if o.withKey && e.Err != nil {
			desc = e.Err.Error()
		}
		s.SetStatus(codes.Error, desc)
	}
	s.End(trace.WithTimestamp(end))
}
