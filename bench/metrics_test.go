package bench

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
)

func TestSumCommandStats(t *testing.T) {
	info := "# Commandstats\r\n" +
		"cmdstat_set:calls=10,usec=20,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_evalsha:calls=5,usec=50,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_info:calls=7,usec=70,usec_per_call=10.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_client|setinfo:calls=2,usec=4,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_publish:calls=3,usec=3,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n"
	calls, usec, err := sumCommandStats(info)
	if err != nil || calls != 20 || usec != 77 {
		t.Errorf("sumCommandStats() = %d calls, %d usec, %v; want 20, 77, nil", calls, usec, err)
	}
	for _, bad := range []string{
		"cmdstat_get:calls=x,usec=1\r\n",
		"cmdstat_get:calls=1,usec=1.5\r\n",
	} {
		if _, _, err := sumCommandStats(bad); err == nil {
			t.Errorf("sumCommandStats(%q) = nil error; want an error", bad)
		}
	}
}

func TestCPUMicros(t *testing.T) {
	info := "# CPU\r\n" +
		"used_cpu_sys:1.250000\r\n" +
		"used_cpu_user:0.000125\r\n" +
		"used_cpu_sys_children:7.000000\r\n" +
		"used_cpu_user_children:7.000000\r\n" +
		"used_cpu_sys_main_thread:1.000000\r\n" +
		"used_cpu_user_main_thread:0.000100\r\n"
	if got, err := cpuMicros(info); err != nil || got != 1250125 {
		t.Errorf("cpuMicros() = %d, %v; want 1250125, nil", got, err)
	}
	for _, bad := range []string{
		"# CPU\r\nused_cpu_sys:1.0\r\n",                           // no used_cpu_user
		"# CPU\r\nused_cpu_sys:x\r\nused_cpu_user:1.0\r\n",        // not a number
		"# CPU\r\nused_cpu_sys_children:1\r\nused_cpu_user:1\r\n", // children only
	} {
		if got, err := cpuMicros(bad); err == nil {
			t.Errorf("cpuMicros(%q) = %d, nil; want an error", bad, got)
		}
	}
}

// TestRowMetrics checks the figures a row reports from what it measured:
// the Redis load per acquisition summed over shards, the handoff ratios,
// and what is left out on miniredis and for yardsticks.
func TestRowMetrics(t *testing.T) {
	res := &result{total: 100, elapsed: 2 * time.Second, perProc: []float64{50, 50},
		clientCPU: 300 * time.Microsecond, trips: 250, keys: 4, keysLeft: 1}
	for range 99 {
		res.handoff.Record(60) // values below 128 ns are exact
	}
	res.wait.Record(100)
	load := []serverStats{{cmds: 300, usec: 400, cpu: 1000}, {cmds: 100, usec: 100, cpu: 1500}}
	tg := &target{kind: "cluster", rtt: 30, notice: 40}

	got := metricMap(rowMetrics(tg, pubsubStrategy, res, load, true))
	want := map[string]float64{
		"acq/s":            50,
		"redis-cmds/op":    4,
		"redis-us/op":      5,
		"redis-cpu-us/op":  25,
		"client-cpu-us/op": 3,
		"round-trips/op":   2.5,
		"keys-left/op":     0.25,
		"shard1-cmds/op":   3,
		"shard2-cmds/op":   1,
		"p50-wait-ns":      100,
		"p99-wait-ns":      100,
		"jain":             1,
		"bound-acq/s":      tg.bound(),
		"bound-ratio":      50 / tg.bound(),
		"p50-handoff-ns":   60,
		"p99-handoff-ns":   60,
		"handoff/rtt":      2,
		"handoff/notice":   1.5,
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(1e-12, 0)); diff != "" {
		t.Errorf("rowMetrics(cluster, pubsub, handoff) mismatch (-want +got):\n%s", diff)
	}

	// The notice row itself, and rows run before it: no handoff/notice.
	for name, tc := range map[string]struct {
		st     strategy
		notice time.Duration
	}{"yardstick": {notice, 40}, "no notice run": {pubsubStrategy, 0}} {
		tg := &target{kind: "redis-server", rtt: 30, notice: tc.notice}
		m := metricMap(rowMetrics(tg, tc.st, res, load[:1], true))
		if v, ok := m["handoff/notice"]; ok {
			t.Errorf("%s: rowMetrics() reports handoff/notice = %v; want none", name, v)
		}
		if _, ok := m["handoff/rtt"]; !ok {
			t.Errorf("%s: rowMetrics() reports no handoff/rtt; want it", name)
		}
		if _, ok := m["shard1-cmds/op"]; ok {
			t.Errorf("%s: rowMetrics() on one server reports shard1-cmds/op; want none", name)
		}
		if v, ok := m["keys-left/op"]; ok == tc.st.yardstick {
			t.Errorf("%s: rowMetrics() keys-left/op = %v, reported %v; want it for a lock only", name, v, ok)
		}
	}

	// A row whose CPU could not be read reports no client CPU.
	noCPU := *res
	noCPU.clientCPU = -1
	if v, ok := metricMap(rowMetrics(tg, pubsubStrategy, &noCPU, load, false))["client-cpu-us/op"]; ok {
		t.Errorf("rowMetrics(CPU unknown) reports client-cpu-us/op = %v; want none", v)
	}

	// miniredis keeps no time or CPU figures, and a row without handoffs
	// reports no handoff figures.
	mini := miniTarget(t)
	mini.rtt, mini.notice = 30, 40
	m := metricMap(rowMetrics(mini, pubsubStrategy, res, load[:1], false))
	for _, unit := range []string{"redis-us/op", "redis-cpu-us/op", "client-cpu-us/op", "p50-handoff-ns", "handoff/notice"} {
		if v, ok := m[unit]; ok {
			t.Errorf("rowMetrics(miniredis, no handoff) reports %s = %v; want none", unit, v)
		}
	}
	if m["redis-cmds/op"] != 3 || m["round-trips/op"] != 2.5 || m["keys-left/op"] != 0.25 {
		t.Errorf("rowMetrics(miniredis) redis-cmds/op, round-trips/op, keys-left/op = %v, %v, %v; want 3, 2.5, 0.25",
			m["redis-cmds/op"], m["round-trips/op"], m["keys-left/op"])
	}
	if ms := rowMetrics(tg, pubsubStrategy, &result{}, load, true); ms != nil {
		t.Errorf("rowMetrics(no acquisition) = %v; want none", ms)
	}
}

func metricMap(ms []metric) map[string]float64 {
	m := map[string]float64{}
	for _, x := range ms {
		if _, dup := m[x.unit]; dup {
			m[x.unit] = math.NaN() // reported twice: fails any comparison
			continue
		}
		m[x.unit] = x.value
	}
	return m
}

// TestNoticeRedis passes the notice token back and forth on a real
// redis-server: strict alternation, one PUBLISH per release, and each
// process's subscription live during the run and gone after.
func TestNoticeRedis(t *testing.T) {
	leakcheck.Register(t)
	tg := redisTarget(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin := redis.NewClient(&redis.Options{Addr: tg.addr})
	defer admin.Close()

	prefix := rowPrefix()
	lockers, closeAll, err := notice.procs(tg, prefix, 2)
	if err != nil {
		t.Fatalf("notice.procs() = %v", err)
	}
	channels := []string{prefix + "notice:0", prefix + "notice:1"}
	subs, err := admin.PubSubNumSub(ctx, channels...).Result()
	if err != nil || subs[channels[0]] != 1 || subs[channels[1]] != 1 {
		t.Errorf("PUBSUB NUMSUB before the run = %v, %v; want 1 subscriber on each channel", subs, err)
	}
	before, err := redistest.CommandStats(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}

	const n = 20
	res, err := driveHandoff(ctx, lockers, n)
	if err != nil {
		t.Fatalf("driveHandoff() = %v", err)
	}
	if res.total != n || res.perProc[0] != n/2 || res.perProc[1] != n/2 || res.handoff.Count() != n-1 {
		t.Errorf("driveHandoff(%d): total %d, per process %v, %d handoffs; want %d, [%d %d], %d",
			n, res.total, res.perProc, res.handoff.Count(), n, n/2, n/2, n-1)
	}
	if p50 := res.handoff.Quantile(0.5); p50 <= 0 {
		t.Errorf("notice p50 = %d ns; want > 0", p50)
	}
	after, err := redistest.CommandStats(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	// Every release publishes once, the last one too (to a process that
	// is done); nothing else is sent during the run.
	if got := after["publish"] - before["publish"]; got != n {
		t.Errorf("PUBLISH commands during the run = %d; want %d", got, n)
	}

	// The server drops a subscription when it sees its connection
	// closed, which it may do after answering another client: poll.
	closeAll()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		subs, err = admin.PubSubNumSub(ctx, channels...).Result()
		if err == nil && subs[channels[0]] == 0 && subs[channels[1]] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PUBSUB NUMSUB 5s after closing = %v, %v; want 0 on each channel", subs, err)
		}
	}
}
