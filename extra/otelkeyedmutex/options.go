package otelkeyedmutex

import (
	"errors"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// An Option configures an [Observer] in [NewObserver], which returns the
// error of an invalid one.
type Option func(*config) error

type config struct {
	mp      metric.MeterProvider // nil: otel.GetMeterProvider()
	tp      trace.TracerProvider // nil: otel.GetTracerProvider()
	withKey bool
}

// WithMeterProvider sets the MeterProvider the instruments come from. mp
// must not be nil. The default is the global one,
// [go.opentelemetry.io/otel.GetMeterProvider], looked up by NewObserver.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) error {
		if mp == nil {
			return errors.New("otelkeyedmutex: WithMeterProvider(nil)")
		}
		c.mp = mp
		return nil
	}
}

// WithTracerProvider sets the TracerProvider the spans of waiting Locks
// come from. To make no spans, pass
// [go.opentelemetry.io/otel/trace/noop.NewTracerProvider](). tp must not
// be nil. The default is the global one,
// [go.opentelemetry.io/otel.GetTracerProvider], looked up by NewObserver.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) error {
		if tp == nil {
			return errors.New("otelkeyedmutex: WithTracerProvider(nil)")
		}
		c.tp = tp
		return nil
	}
}

// WithKeyAttribute records each event's key, as its backend names it,
// in the attribute keyedmutex.key of every measurement and span, and
// puts a failed Lock's error text (which names the key) in its span.
// Keys are often user IDs, and every distinct key makes new time series:
// use it on a small, fixed set of keys, or while debugging. Measurements
// with a key allocate. The default is never to record keys.
func WithKeyAttribute() Option {
	return func(c *config) error {
		c.withKey = true
		return nil
	}
}
