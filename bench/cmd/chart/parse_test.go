package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sample = `bench: target: redis-server 7.0.15 started on 127.0.0.1:1 for this run
goos: linux
cpu: AMD EPYC
BenchmarkHotKey/empty/local-2    	  461050	       744.0 ns/op	   1344057 acq/s	         0 redis-cmds/op
BenchmarkHotKey/empty/pubsub-2   	     100	  10357951 ns/op	        96.55 acq/s	       164.2 redis-cmds/op
BenchmarkHotKey/50us/pubsub-2    	     100	   8136556 ns/op	       122.9 acq/s	       103.4 redis-cmds/op
BenchmarkHandoff/pubsub-2        	     100	  12437941 ns/op	        80.40 acq/s
BenchmarkHotKey/empty/hybrid-nohandoff-16 	     100	  11383976 ns/op	        87.84 acq/s	        25.76 redis-cmds/op
--- BENCH: BenchmarkHotKey
PASS
`

func TestParseAndCollect(t *testing.T) {
	rows, cpu, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if cpu != "AMD EPYC" || len(rows) != 5 {
		t.Fatalf("parse() = %d rows, cpu %q; want 5, %q", len(rows), cpu, "AMD EPYC")
	}
	if got := rows[4].path; !cmp.Equal(got, []string{"HotKey", "empty", "hybrid-nohandoff"}) {
		t.Errorf("path = %q; want the -16 suffix stripped", got)
	}
	s := collect(rows, "acq/s", hotKey, false)
	want := series{
		groups:     []string{"empty", "50us"},
		strategies: []string{"local", "pubsub", "hybrid-nohandoff"},
		values: map[string]map[string]float64{
			"empty": {"local": 1344057, "pubsub": 96.55, "hybrid-nohandoff": 87.84},
			"50us":  {"pubsub": 122.9},
		},
	}
	if diff := cmp.Diff(want, s, cmp.AllowUnexported(series{})); diff != "" {
		t.Errorf("collect() mismatch (-want +got):\n%s", diff)
	}
}

// TestCollectManyKeys: ManyKeys and ManyKeysCluster rows are grouped by
// server, and redisOnly leaves out a row that sent no Redis command.
func TestCollectManyKeys(t *testing.T) {
	rows, _, err := parse(strings.NewReader(
		"BenchmarkManyKeys/local-2 100 1 ns/op 9000000 acq/s 0 redis-cmds/op 0.001 redis-cpu-us/op\n" +
			"BenchmarkManyKeys/pubsub-2 100 1 ns/op 30000 acq/s 9 redis-cmds/op 25 redis-cpu-us/op\n" +
			"BenchmarkManyKeysCluster/pubsub-2 100 1 ns/op 35000 acq/s 9 redis-cmds/op 40 redis-cpu-us/op\n" +
			"BenchmarkManyKeysCluster/rueidislock-2 100 1 ns/op 50000 acq/s 6 redis-cmds/op 14 redis-cpu-us/op\n" +
			"BenchmarkHotKey/empty/pubsub-2 100 1 ns/op 7000 acq/s 21 redis-cmds/op 100 redis-cpu-us/op\n"))
	if err != nil {
		t.Fatal(err)
	}
	got := collect(rows, "redis-cpu-us/op", manyKeys, true)
	want := series{
		groups:     []string{"one server", "Redis Cluster"},
		strategies: []string{"pubsub", "rueidislock"},
		values: map[string]map[string]float64{
			"one server":    {"pubsub": 25},
			"Redis Cluster": {"pubsub": 40, "rueidislock": 14},
		},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(series{})); diff != "" {
		t.Errorf("collect(redis-cpu-us/op, manyKeys, redisOnly) mismatch (-want +got):\n%s", diff)
	}
	if got := collect(rows, "acq/s", manyKeys, false); !cmp.Equal(got.strategies, []string{"local", "pubsub", "rueidislock"}) {
		t.Errorf("collect(acq/s, manyKeys) strategies = %q; want local, pubsub, rueidislock", got.strategies)
	}
}

func TestRunWritesImage(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "results.txt")
	if err := os.WriteFile(in, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{"bench.svg", "bench.png"} {
		if err := run(in, filepath.Join(dir, out)); err != nil {
			t.Errorf("run(%s) = %v", out, err)
		}
	}
	// The sample has HotKey acq/s and redis-cmds/op (two panels), no
	// Redis CPU and no ManyKeys row: the SVG has the two titles only.
	svg, err := os.ReadFile(filepath.Join(dir, "bench.svg"))
	if err != nil {
		t.Fatal(err)
	}
	for _, title := range []string{"HotKey: acquisitions/s", "HotKey: Redis commands per acquisition"} {
		if !strings.Contains(string(svg), title) {
			t.Errorf("bench.svg has no panel titled %q", title)
		}
	}
	if strings.Contains(string(svg), "ManyKeys") {
		t.Error("bench.svg has a ManyKeys panel; the input has no ManyKeys row")
	}
	noRows := filepath.Join(dir, "none.txt")
	if err := os.WriteFile(noRows, []byte("BenchmarkHandoff/pubsub-2 100 1 ns/op 80.4 acq/s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := run(noRows, filepath.Join(dir, "x.svg")); err == nil {
		t.Error("run(no HotKey or ManyKeys row) = nil; want an error")
	}
	if err := run(in, filepath.Join(dir, "x.gif")); err == nil {
		t.Error("run(-out x.gif) = nil; want an error")
	}
}

func TestChecks(t *testing.T) {
	in := "BenchmarkUncontended/pubsub-2 100 1 ns/op 8000 acq/s 9 redis-cmds/op 70 redis-cpu-us/op\n" +
		"BenchmarkUncontended/redsync-2 100 1 ns/op 7000 acq/s 4 redis-cmds/op 45 redis-cpu-us/op\n" +
		"BenchmarkUncontended/redislock-2 100 1 ns/op 8000 acq/s 5 redis-cmds/op 50 redis-cpu-us/op\n" +
		"BenchmarkHotKey/empty/pubsub-2 100 1 ns/op 13000 acq/s 4 redis-cmds/op 40 redis-cpu-us/op 0.5 bound-ratio 0.995 jain\n" +
		"BenchmarkHotKey/empty/hybrid-2 100 1 ns/op 90000 acq/s 0.25 redis-cmds/op 5 redis-cpu-us/op\n" +
		"BenchmarkHotKey/empty/redsync-2 100 1 ns/op 2000 acq/s 200 redis-cpu-us/op\n" +
		"BenchmarkHotKey/empty/redislock-2 100 1 ns/op 6000 acq/s 100 redis-cpu-us/op\n" +
		"BenchmarkHotKey/empty/rueidislock-2 100 1 ns/op 6500 acq/s 83 redis-cpu-us/op\n" +
		"BenchmarkManyKeys/pubsub-2 100 1 ns/op 55000 acq/s 14 redis-cpu-us/op\n" +
		"BenchmarkManyKeys/hybrid-2 100 1 ns/op 50000 acq/s 15 redis-cpu-us/op\n" +
		"BenchmarkManyKeys/rueidislock-2 100 1 ns/op 50000 acq/s 14.2 redis-cpu-us/op\n" +
		"BenchmarkHandoff/notice-2 100 1 ns/op 450 acq/s 80000 p50-handoff-ns\n" +
		"BenchmarkHandoff/pubsub-2 100 1 ns/op 440 acq/s 100000 p50-handoff-ns 4 handoff/rtt\n"
	rows, _, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range checks(rows) {
		got = append(got, fmt.Sprintf("%s | %s %.3g %v", c.group, c.what, c.got, c.met()))
	}
	want := []string{
		"issue 13 | HotKey/empty: pubsub redis-cpu-us/op ÷ best peer's (rueidislock) 0.482 true",
		"issue 13 | HotKey/empty: pubsub acq/s ÷ best peer's (rueidislock) 2 true",
		"issue 13 | HotKey/empty: pubsub jain 0.995 true",
		"issue 13 | ManyKeys: pubsub redis-cpu-us/op ÷ best peer's (rueidislock) 0.986 true",
		"issue 13 | Uncontended: pubsub redis-cmds/op 9 false",
		"issue 13 | Uncontended: pubsub redis-cpu-us/op ÷ best peer's (redsync) 1.56 false", // no rueidislock row: best of the others
		"issue 13 | Handoff: pubsub p50 handoff ÷ notice p50 1.25 true",
		"issue 13 | HotKey/empty: hybrid redis-cmds/op 0.25 true",
		"issue 13 | HotKey/empty: hybrid acq/s ÷ best peer's (rueidislock) 13.8 true",
		"issue 14 | ManyKeys: pubsub acq/s ÷ best peer's (rueidislock) 1.1 true",
		"issue 14 | ManyKeys: hybrid acq/s ÷ best peer's (rueidislock) 1 false",
		"issue 5 (earlier) | HotKey/empty: pubsub acq/s ÷ bound 1/(2·RTT) 0.5 false",
		"issue 5 (earlier) | HotKey/empty: pubsub redis-cmds/op 4 true",
		"issue 5 (earlier) | Handoff: pubsub p50 handoff ÷ PING RTT 4 false",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("checks() mismatch (-want +got):\n%s", diff)
	}

	// Without peers or a notice row the ratios are NaN: missed, not met.
	for _, c := range checks(rows[3:5]) {
		if strings.Contains(c.what, "best peer") || strings.Contains(c.what, "notice") {
			if !math.IsNaN(c.got) || c.met() {
				t.Errorf("checks(no peer, no notice): %s = %v, met %v; want NaN, missed", c.what, c.got, c.met())
			}
		}
	}
}

func TestPrintChecks(t *testing.T) {
	var b strings.Builder
	printChecks(&b, []check{
		{"issue 13", "a", 0.25, "<=", 0.5},
		{"issue 13", "b", 1, ">=", 2},
		{"issue 14", "c", math.NaN(), ">=", 1.1},
	})
	want := "Targets of issue 13:\n" +
		"MET    a" + strings.Repeat(" ", 66) + "      0.25  target <= 0.5 (0.5x the limit)\n" +
		"MISSED b" + strings.Repeat(" ", 66) + "         1  target >= 2 (0.5x the target)\n" +
		"\nTargets of issue 14:\n" +
		"MISSED c" + strings.Repeat(" ", 66) + "       NaN  target >= 1.1\n"
	if got := b.String(); got != want {
		t.Errorf("printChecks() =\n%s\nwant\n%s", got, want)
	}
}

func TestTable(t *testing.T) {
	rows, _, err := parse(strings.NewReader(
		"BenchmarkHandoff/pubsub-2 100 1 ns/op 80.4 acq/s 7.5 redis-cmds/op 96.68 redis-us/op 264.1 redis-cpu-us/op 1500000 p50-wait-ns 2.5e7 p99-wait-ns 1 jain 0.0031 bound-ratio 54300 p50-handoff-ns 2.71 handoff/rtt 2.802 handoff/notice\n" +
			"BenchmarkManyKeys/local-2 100 1 ns/op 8540000 acq/s 0 redis-cmds/op 100 p50-wait-ns\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	printTable(&b, rows)
	want := []string{
		"| benchmark | acq/s | redis-cmds/op | redis-us/op | redis-cpu-us/op | p50 wait | p99 wait | jain | bound-ratio | p50 handoff (÷ RTT) | handoff/notice |",
		"|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
		"| Handoff/pubsub | 80.4 | 7.50 | 96.7 | 264 | 1.5ms | 25ms | 1.000 | 0.0031 | 54.3µs (2.71) | 2.8 |",
		"| ManyKeys/local | 8.54M | 0.00 |  |  | 100ns |  |  |  |  |  |",
	}
	if diff := cmp.Diff(want, strings.Split(strings.TrimSpace(b.String()), "\n")); diff != "" {
		t.Errorf("printTable() mismatch (-want +got):\n%s", diff)
	}
}
