package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
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
	// notice is the p50 of the Handoff notice yardstick, once its row has
	// run on this target: the denominator of handoff/notice.
	notice time.Duration
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
// Its round trips count in roundTrips.
func (t *target) client() redis.UniversalClient {
	var c redis.UniversalClient
	if len(t.nodes) > 0 {
		c = redis.NewClusterClient(&redis.ClusterOptions{Addrs: t.nodes})
	} else {
		c = redis.NewClient(&redis.Options{Addr: t.addr})
	}
	c.AddHook(tripCounter{})
	return c
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
// for reading its stats and dropping keys. The caller closes them.
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

// serverStats is what one server has done since it started, or, as a
// difference of two readings, during a row.
type serverStats struct {
	cmds int64 // commands executed, those run inside Lua scripts included, INFO excluded
	usec int64 // their execution time in µs (INFO commandstats usec=)
	cpu  int64 // redis-server user+sys CPU in µs (INFO cpu)
}

func (s serverStats) sub(o serverStats) serverStats {
	return serverStats{cmds: s.cmds - o.cmds, usec: s.usec - o.usec, cpu: s.cpu - o.cpu}
}

// stats reads serverStats from each server of admins. On miniredis only
// cmds is known: it has no INFO commandstats nor CPU of its own.
func (t *target) stats(ctx context.Context, admins []*redis.Client) ([]serverStats, error) {
	if t.mini != nil {
		return []serverStats{{cmds: int64(t.mini.CommandCount())}}, nil // counts redis.call inside Lua too
	}
	var all []serverStats
	for _, c := range admins {
		// Two INFO calls, not one with two sections: that needs Redis 7.
		s, err := c.Info(ctx, "commandstats").Result()
		if err != nil {
			return nil, fmt.Errorf("INFO commandstats on %s: %w", c.Options().Addr, err)
		}
		cmds, usec, err := sumCommandStats(s)
		if err != nil {
			return nil, err
		}
		s, err = c.Info(ctx, "cpu").Result()
		if err != nil {
			return nil, fmt.Errorf("INFO cpu on %s: %w", c.Options().Addr, err)
		}
		cpu, err := cpuMicros(s)
		if err != nil {
			return nil, err
		}
		all = append(all, serverStats{cmds: cmds, usec: usec, cpu: cpu})
	}
	return all, nil
}

// sumCommandStats sums calls= and usec= over the cmdstat_ lines of INFO
// commandstats, except cmdstat_info. A script's usec includes the time of
// the commands it runs, which have lines of their own too.
//
// The calls come from redistest.ParseCommandStats, which parses calls
// only; usec is read here from the same lines. It belongs in that parser,
// but internal/redistest is outside this module's part of the tree.
func sumCommandStats(info string) (calls, usec int64, err error) {
	stats, err := redistest.ParseCommandStats(info)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: %w", err)
	}
	for cmd, n := range stats {
		if cmd != "info" {
			calls += n
		}
	}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") || name == "cmdstat_info" {
			continue
		}
		for _, f := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(f, "usec="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return 0, 0, fmt.Errorf("bench: bad commandstats line %q: %w", line, err)
				}
				usec += n
			}
		}
	}
	return calls, usec, nil
}

// cpuMicros returns used_cpu_sys + used_cpu_user of an INFO cpu reply in
// µs: the CPU the redis-server process has used, all its threads, I/O
// included (children excluded: they are forks for persistence).
func cpuMicros(info string) (int64, error) {
	var total float64
	seen := 0
	for _, line := range strings.Split(info, "\n") {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || name != "used_cpu_sys" && name != "used_cpu_user" {
			continue
		}
		sec, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: bad INFO cpu line %q: %w", line, err)
		}
		total += sec
		seen++
	}
	if seen != 2 {
		return 0, fmt.Errorf("bench: INFO cpu without used_cpu_sys and used_cpu_user:\n%s", info)
	}
	return int64(math.Round(total * 1e6)), nil
}

var rowSeq atomic.Int64

// rowPrefix returns a key prefix unique to one run of one row, so rows
// never see each other's keys, even on a shared server.
func rowPrefix() string {
	return fmt.Sprintf("kmbench:%d:%d:", time.Now().UnixNano(), rowSeq.Add(1))
}

// countKeys returns the number of keys under prefix on every server of
// admins.
func countKeys(ctx context.Context, admins []*redis.Client, prefix string) (int64, error) {
	var n int64
	for _, c := range admins {
		seen := map[string]bool{} // SCAN may return a key twice
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			seen[iter.Val()] = true
		}
		if err := iter.Err(); err != nil {
			return 0, fmt.Errorf("SCAN %s* on %s: %w", prefix, c.Options().Addr, err)
		}
		n += int64(len(seen))
	}
	return n, nil
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
