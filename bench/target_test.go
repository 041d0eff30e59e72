package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/keyedmutex/keyedmutex/internal/redistest"
)

// target is the Redis server one top-level benchmark runs against, with
// the PING round trip measured on it at the start.
type target struct {
	kind  string // "REDIS_ADDR", "redis-server", "miniredis" or "cluster"
	addr  string
	nodes []string             // cluster: the masters' addresses, addr is nodes[0]
	mini  *miniredis.Miniredis // nil unless kind is "miniredis"
	rtt   time.Duration        // median PING round trip (to one node)
}

var announced sync.Map // kind -> struct{}: the target is described once per run

// newTarget picks the server: $REDIS_ADDR, else a redis-server on PATH
// started for tb (stopped at its cleanup), else miniredis, unless
// KEYEDMUTEX_REQUIRE_REDIS is set (as in CI), when it fails instead.
func newTarget(tb testing.TB) *target {
	tb.Helper()
	t := &target{}
	switch addr := os.Getenv("REDIS_ADDR"); {
	case addr != "":
		t.kind, t.addr = "REDIS_ADDR", addr
	case redistest.Binary() != "":
		t.kind, t.addr = "redis-server", redistest.Start(tb).Addr()
	case os.Getenv(redistest.RequireEnv) != "":
		tb.Fatalf("bench: neither REDIS_ADDR nor redis-server on PATH, and %s is set: refusing to fall back to miniredis", redistest.RequireEnv)
	default:
		t.kind = "miniredis"
		t.mini = miniredis.RunT(tb)
		t.addr = t.mini.Addr()
	}
	t.measure(tb)
	return t
}

// measure checks the target answers, measures the PING round trip and
// says what the target is: once per kind on stderr, and the round trip
// once per top-level benchmark.
func (t *target) measure(tb testing.TB) {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: t.addr})
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		tb.Fatalf("bench: %s target %s: PING: %v", t.kind, t.addr, err)
	}
	t.rtt = pingRTT(ctx, c, 1000)
	if _, dup := announced.LoadOrStore(t.kind, struct{}{}); !dup {
		fmt.Fprintf(os.Stderr, "bench: target: %s\n", t.describe(ctx, c))
		if t.kind == "miniredis" {
			fmt.Fprintln(os.Stderr, "bench: WARNING: timings on miniredis say nothing about Redis; install redis-server or set REDIS_ADDR for real figures")
		}
	}
	fmt.Fprintf(os.Stderr, "bench: %s: PING RTT p50 %v, physical bound 1/(2·RTT) = %.0f acq/s\n", tb.Name(), t.rtt, t.bound())
}

func (t *target) describe(ctx context.Context, c *redis.Client) string {
	switch t.kind {
	case "REDIS_ADDR":
		return fmt.Sprintf("the Redis at $REDIS_ADDR=%s (version %s; it must be dedicated to this run)", t.addr, serverVersion(ctx, c))
	case "redis-server":
		return fmt.Sprintf("redis-server %s started on %s for this run", serverVersion(ctx, c), t.addr)
	case "cluster":
		return fmt.Sprintf("Redis Cluster of %d masters (redis-server %s) on %s, started for this run", len(t.nodes), serverVersion(ctx, c), strings.Join(t.nodes, " "))
	}
	return "miniredis (in-process fake; neither REDIS_ADDR nor redis-server on PATH)"
}

func serverVersion(ctx context.Context, c *redis.Client) string {
	s, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "unknown"
	}
	for _, l := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
			return v
		}
	}
	return "unknown"
}

// client returns a new client: one per simulated process, so that no two
// processes share a connection pool. On a cluster it is a ClusterClient.
func (t *target) client() redis.UniversalClient {
	if len(t.nodes) > 0 {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: t.nodes})
	}
	return redis.NewClient(&redis.Options{Addr: t.addr})
}

// addrs returns the address of every server: the masters of a cluster,
// or the one server.
func (t *target) addrs() []string {
	if len(t.nodes) > 0 {
		return t.nodes
	}
	return []string{t.addr}
}

// admins returns one plain client per server (per master on a cluster),
// for counting commands and dropping keys. The caller closes them.
func (t *target) admins() []*redis.Client {
	var cs []*redis.Client
	for _, a := range t.addrs() {
		cs = append(cs, redis.NewClient(&redis.Options{Addr: a}))
	}
	return cs
}

// bound is the physical bound on cross-process handoffs per second: a
// handoff needs about two round trips (the release notice out, SET NX
// back), so 1/(2·RTT).
func (t *target) bound() float64 { return 1 / (2 * t.rtt.Seconds()) }

// pingRTT returns the median of n sequential PING round trips, after a
// short warm-up.
func pingRTT(ctx context.Context, c *redis.Client, n int) time.Duration {
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n+n/10; i++ {
		t0 := time.Now()
		if c.Ping(ctx).Err() != nil {
			continue
		}
		if i >= n/10 {
			ds = append(ds, time.Since(t0))
		}
	}
	if len(ds) == 0 {
		return time.Millisecond
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// commands returns the number of commands each server of admins has
// executed, commands run inside Lua scripts included, INFO itself
// excluded.
func (t *target) commands(ctx context.Context, admins []*redis.Client) ([]int64, error) {
	if t.mini != nil {
		return []int64{int64(t.mini.CommandCount())}, nil // counts redis.call inside Lua too
	}
	var n []int64
	for _, c := range admins {
		s, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			return nil, fmt.Errorf("INFO commandstats on %s: %w", c.Options().Addr, err)
		}
		k, err := sumCommandStats(s)
		if err != nil {
			return nil, err
		}
		n = append(n, k)
	}
	return n, nil
}

// sumCommandStats sums calls= over the cmdstat_ lines of INFO
// commandstats, except cmdstat_info.
func sumCommandStats(info string) (int64, error) {
	stats, err := redistest.ParseCommandStats(info)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	var total int64
	for cmd, n := range stats {
		if cmd != "info" {
			total += n
		}
	}
	return total, nil
}

var rowSeq atomic.Int64

// rowPrefix returns a key prefix unique to one run of one row, so rows
// never see each other's keys, even on a shared server.
func rowPrefix() string {
	return fmt.Sprintf("kmbench:%d:%d:", time.Now().UnixNano(), rowSeq.Add(1))
}

// dropKeys deletes every key under prefix on every server of admins.
func dropKeys(ctx context.Context, admins []*redis.Client, prefix string) error {
	for _, c := range admins {
		if err := dropKeysOn(ctx, c, prefix); err != nil {
			return err
		}
	}
	return nil
}

func dropKeysOn(ctx context.Context, c *redis.Client, prefix string) error {
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			if err := del(ctx, c, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	return del(ctx, c, batch)
}

// del deletes keys one command each, pipelined: on a cluster node a
// multi-key DEL of keys in different slots is refused (CROSSSLOT).
func del(ctx context.Context, c *redis.Client, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Del(ctx, k)
		}
		return nil
	})
	return err
}
