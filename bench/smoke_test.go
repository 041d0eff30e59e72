package bench

import (
	"bytes"
	"context"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/keyedmutex/keyedmutex/bench/report"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
)

// miniTarget is a miniredis target for tests: hermetic and fast.
func miniTarget(t *testing.T) *target {
	t.Helper()
	m := miniredis.RunT(t)
	return &target{kind: "miniredis", addr: m.Addr(), mini: m, rtt: 100 * time.Microsecond}
}

// redisTarget is a redis-server started for the test; it skips without
// one unless KEYEDMUTEX_REQUIRE_REDIS is set.
func redisTarget(t *testing.T) *target {
	t.Helper()
	return &target{kind: "redis-server", addr: redistest.Start(t).Addr(), rtt: 100 * time.Microsecond}
}

// TestStrategiesSmoke drives every strategy for a few acquisitions on
// miniredis; see smoke.
func TestStrategiesSmoke(t *testing.T) {
	leakcheck.Register(t)
	smoke(t, miniTarget(t))
}

// TestStrategiesSmokeRedis is TestStrategiesSmoke on a real redis-server,
// where every strategy runs (rueidislock too) and the servers' time and
// CPU are read as well.
func TestStrategiesSmokeRedis(t *testing.T) {
	leakcheck.Register(t)
	smoke(t, redisTarget(t))
}

// smoke drives every strategy, the yardsticks included, for a few
// acquisitions, on several keys and on one key passed back and forth, and
// checks what the harness measured: every acquisition counted once, per
// process, with a wait time; no two holders at once; Redis commands seen
// for the Redis strategies and none for local (and, on a real server,
// their execution time); and no key left behind.
func smoke(t *testing.T, tg *target) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admins := tg.admins()
	defer admins[0].Close()
	for _, st := range append([]strategy{ping, notice}, strategies...) {
		t.Run(st.name, func(t *testing.T) {
			if tg.mini != nil && st.needsRealRedis != "" {
				t.Skip(st.needsRealRedis)
			}
			prefix := rowPrefix()
			lockers, closeAll, err := st.procs(tg, prefix, 2)
			if err != nil {
				t.Fatalf("procs() = %v", err)
			}
			if len(lockers) != 2 {
				t.Fatalf("procs(2) built %d processes; want 2", len(lockers))
			}
			before, err := tg.stats(ctx, admins)
			if err != nil {
				t.Fatalf("stats() = %v", err)
			}
			var acquisitions int64
			if !st.handoffOnly {
				const n = 40
				res, err := drive(ctx, lockers, scenario{procs: 2, goroutines: 3, keys: 3}, n)
				if err != nil {
					t.Fatalf("drive() = %v", err)
				}
				if res.total != n || res.wait.Count() != n {
					t.Errorf("drive(%d): total %d, %d waits recorded; want %d", n, res.total, res.wait.Count(), n)
				}
				if res.perProc[0]+res.perProc[1] != n {
					t.Errorf("drive(%d): per process %v; want a sum of %d", n, res.perProc, n)
				}
				// A yardstick is not a lock: two goroutines "hold" a key at
				// once whenever the scheduler interleaves them.
				if !st.yardstick && res.violations != 0 {
					t.Errorf("drive(): %d mutual exclusion violations; want 0", res.violations)
				}
				acquisitions += res.total
			}
			if !st.yardstick || st.handoffOnly {
				res, err := driveHandoff(ctx, lockers, 6)
				if err != nil {
					t.Fatalf("driveHandoff() = %v", err)
				}
				// Strict alternation: 3 each, and every acquisition but
				// the first is a handoff.
				if res.total != 6 || res.perProc[0] != 3 || res.perProc[1] != 3 || res.handoff.Count() != 5 {
					t.Errorf("driveHandoff(6): total %d, per process %v, %d handoffs; want 6, [3 3], 5",
						res.total, res.perProc, res.handoff.Count())
				}
				if res.violations != 0 {
					t.Errorf("driveHandoff(): %d mutual exclusion violations; want 0", res.violations)
				}
				acquisitions += res.total
			}
			after, err := tg.stats(ctx, admins)
			if err != nil {
				t.Fatalf("stats() = %v", err)
			}
			load := after[0].sub(before[0])
			if st.redis && load.cmds < acquisitions || !st.redis && load.cmds != 0 {
				t.Errorf("%s sent %d Redis commands for %d acquisitions", st.name, load.cmds, acquisitions)
			}
			// Every lock runs a script per acquisition, which takes
			// microseconds; a real server's CPU clock always advances.
			if tg.mini == nil && !st.yardstick && st.redis && (load.usec <= 0 || load.cpu <= 0) {
				t.Errorf("%s: server time %d µs, CPU %d µs for %d acquisitions; want both > 0", st.name, load.usec, load.cpu, acquisitions)
			}
			closeAll()
			if err := dropKeys(ctx, admins, prefix); err != nil {
				t.Fatal(err)
			}
			if keys, err := admins[0].Keys(ctx, prefix+"*").Result(); err != nil || len(keys) != 0 {
				t.Errorf("keys left after the row: %q, %v; want none", keys, err)
			}
		})
	}
}

// TestTargetFallsBackToMiniredis: with neither REDIS_ADDR nor redis-server
// on PATH, the benchmarks run on miniredis and measure a round trip.
func TestTargetFallsBackToMiniredis(t *testing.T) {
	t.Setenv("REDIS_ADDR", "")
	t.Setenv(redistest.RequireEnv, "")
	t.Setenv("PATH", t.TempDir())
	tg := newTarget(t)
	if tg.kind != "miniredis" || tg.mini == nil {
		t.Fatalf("newTarget() kind = %q; want miniredis", tg.kind)
	}
	if tg.rtt <= 0 || tg.bound() <= 0 {
		t.Errorf("newTarget() rtt = %v, bound %v; want > 0", tg.rtt, tg.bound())
	}
}

// TestComparisonSmoke runs the comparison itself, as the README's command
// does, on two rows with -benchtime 1x against a redis-server it starts:
// the raw result lines carry the new metrics with sane values, and the
// output ends with the table (after the last result line), the chart's
// file and the targets.
func TestComparisonSmoke(t *testing.T) {
	redistest.Need(t)
	chart := filepath.Join(t.TempDir(), "comparison.png")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0],
		"-test.run=^$", "-test.bench=^Benchmark(Uncontended|ManyKeys)$/^pubsub$", "-test.benchtime=1x")
	cmd.Env = append(os.Environ(), chartEnv+"="+chart, "REDIS_ADDR=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the comparison failed: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.Bytes())
	}
	rows, meta, err := report.Parse(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("report.Parse(output) = %v", err)
	}
	var names []string
	for _, r := range rows {
		names = append(names, r.Name())
		m := r.Metrics
		if v, ok := m["client-cpu-us/op"]; !ok || !(v > 0) {
			t.Errorf("%s: client-cpu-us/op = %v (reported %v); want > 0", r.Name(), v, ok)
		}
		if v, ok := m["keys-left/op"]; !ok || !(v >= 0) || math.IsInf(v, 0) {
			t.Errorf("%s: keys-left/op = %v (reported %v); want a number >= 0", r.Name(), v, ok)
		}
		if v, ok := m["round-trips/op"]; !ok || !(v >= 1) {
			t.Errorf("%s: round-trips/op = %v (reported %v); want >= 1: a lock takes at least one", r.Name(), v, ok)
		}
		for _, unit := range []string{"acq/s", "redis-cmds/op", "redis-cpu-us/op", "p99-wait-ns", "jain"} {
			if _, ok := m[unit]; !ok {
				t.Errorf("%s: no %s", r.Name(), unit)
			}
		}
	}
	if want := []string{"Uncontended/pubsub", "ManyKeys/pubsub"}; !slices.Equal(names, want) {
		t.Errorf("result rows = %q; want %q", names, want)
	}
	if meta.Date == "" || !strings.Contains(meta.Redis, "redis-server") || meta.Go == "" {
		t.Errorf("configuration lines = %+v; want the date, go and redis-server", meta)
	}
	text := string(out)
	lastResult := strings.LastIndex(text, "\nBenchmarkManyKeys/pubsub")
	table := strings.Index(text, "\nMachine: ")
	if lastResult < 0 || table < lastResult {
		t.Errorf("the table (at %d) does not follow the last result line (at %d):\n%s", table, lastResult, text)
	}
	for _, s := range []string{"\nRedis:   redis-server ", "\nUncontended\n  pubsub ", "\nChart: " + chart + "\n", "Targets, Uncontended:", "Targets, ManyKeys:"} {
		if !strings.Contains(text, s) {
			t.Errorf("the output has no %q:\n%s", s, text)
		}
	}
	if f, err := os.Open(chart); err != nil {
		t.Errorf("chart: %v", err)
	} else {
		if _, err := png.Decode(f); err != nil {
			t.Errorf("chart %s is no PNG: %v", chart, err)
		}
		f.Close()
	}
}
