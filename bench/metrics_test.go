package bench

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
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
// the Redis load per acquisition summed over shards, the handoff ratio,
// and what is left out on miniredis.
func TestRowMetrics(t *testing.T) {
	res := &result{total: 100, elapsed: 2 * time.Second, perProc: []float64{50, 50}}
	for range 99 {
		res.handoff.Record(60) // values below 128 ns are exact
	}
	res.wait.Record(100)
	load := []serverStats{{cmds: 300, usec: 400, cpu: 1000}, {cmds: 100, usec: 100, cpu: 1500}}
	tg := &target{kind: "cluster", rtt: 30}

	got := metricMap(rowMetrics(tg, res, load, true))
	want := map[string]float64{
		"acq/s":           50,
		"redis-cmds/op":   4,
		"redis-us/op":     5,
		"redis-cpu-us/op": 25,
		"shard1-cmds/op":  3,
		"shard2-cmds/op":  1,
		"p50-wait-ns":     100,
		"p99-wait-ns":     100,
		"jain":            1,
		"bound-acq/s":     tg.bound(),
		"bound-ratio":     50 / tg.bound(),
		"p50-handoff-ns":  60,
		"p99-handoff-ns":  60,
		"handoff/rtt":     2,
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateApprox(1e-12, 0)); diff != "" {
		t.Errorf("rowMetrics(cluster, handoff) mismatch (-want +got):\n%s", diff)
	}

	one := metricMap(rowMetrics(&target{kind: "redis-server", rtt: 30}, res, load[:1], true))
	if v, ok := one["shard1-cmds/op"]; ok {
		t.Errorf("rowMetrics() on one server reports shard1-cmds/op = %v; want none", v)
	}

	// miniredis keeps no time or CPU figures, and a row without handoffs
	// reports no handoff figures.
	mini := miniTarget(t)
	mini.rtt = 30
	m := metricMap(rowMetrics(mini, res, load[:1], false))
	for _, unit := range []string{"redis-us/op", "redis-cpu-us/op", "p50-handoff-ns"} {
		if v, ok := m[unit]; ok {
			t.Errorf("rowMetrics(miniredis, no handoff) reports %s = %v; want none", unit, v)
		}
	}
	if m["redis-cmds/op"] != 3 {
		t.Errorf("rowMetrics(miniredis) redis-cmds/op = %v; want 3", m["redis-cmds/op"])
	}
	if ms := rowMetrics(tg, &result{}, load, true); ms != nil {
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
