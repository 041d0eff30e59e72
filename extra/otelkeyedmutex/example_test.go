package otelkeyedmutex_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/keyedmutex/keyedmutex/extra/otelkeyedmutex"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/keyedmutex/keyedmutex/mutex/hybrid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// The usual stack, hybrid over distributed, reporting to Prometheus
// through OpenTelemetry. One Observer serves both layers: the hybrid
// Lock and TryLock, and the distributed LockN that took the remote lease
// for the hybrid's cohort. The metrics are served in the Prometheus text
// format, as a scrape (or curl) sees them; a metric appears once it has
// a measurement (keyedmutex_lock_waiters once a Lock waits, and so on).
func Example_prometheus() {
	ctx := context.Background()

	// OpenTelemetry metrics, exported to a Prometheus registry. (Without
	// WithMeterProvider the Observer uses otel.GetMeterProvider().)
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		panic(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer mp.Shutdown(ctx)

	obs, err := otelkeyedmutex.NewObserver(otelkeyedmutex.WithMeterProvider(mp))
	if err != nil {
		panic(err)
	}

	s, err := miniredis.Run() // stands in for a real Redis server
	if err != nil {
		panic(err)
	}
	defer s.Close()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true})
	defer rdb.Close()
	d, err := distributed.New[string](rdb, distributed.WithObserver(obs))
	if err != nil {
		panic(err)
	}
	m, err := hybrid.New[string](d, hybrid.WithObserver(obs), hybrid.WithOwnedRemote())
	if err != nil {
		panic(err)
	}
	defer m.Close()

	lease, err := m.Lock(ctx, "user-42")
	if err != nil {
		panic(err)
	}
	if _, err := m.TryLock(ctx, "user-42"); !errors.Is(err, mutex.ErrLocked) {
		panic(err)
	}
	if err := lease.Unlock(); err != nil {
		panic(err)
	}

	// The metrics endpoint: mount promhttp.HandlerFor(reg, ...) at
	// /metrics in the service's HTTP server, then curl it.
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "# TYPE keyedmutex_") || strings.HasPrefix(line, "keyedmutex_lock_acquisitions_total") {
			fmt.Println(line)
		}
	}
	// Output:
	// # TYPE keyedmutex_handoffs_total counter
	// # TYPE keyedmutex_lock_acquisitions_total counter
	// keyedmutex_lock_acquisitions_total{keyedmutex_backend="distributed",keyedmutex_op="LockN",keyedmutex_outcome="acquired",otel_scope_name="github.com/keyedmutex/keyedmutex/extra/otelkeyedmutex",otel_scope_schema_url="",otel_scope_version=""} 1
	// keyedmutex_lock_acquisitions_total{keyedmutex_backend="hybrid",keyedmutex_op="Lock",keyedmutex_outcome="acquired",otel_scope_name="github.com/keyedmutex/keyedmutex/extra/otelkeyedmutex",otel_scope_schema_url="",otel_scope_version=""} 1
	// keyedmutex_lock_acquisitions_total{keyedmutex_backend="hybrid",keyedmutex_op="TryLock",keyedmutex_outcome="locked",otel_scope_name="github.com/keyedmutex/keyedmutex/extra/otelkeyedmutex",otel_scope_schema_url="",otel_scope_version=""} 1
	// # TYPE keyedmutex_lock_hold_duration_seconds histogram
	// # TYPE keyedmutex_lock_wait_duration_seconds histogram
}
