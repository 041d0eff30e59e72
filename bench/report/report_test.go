package report

import (
	"bytes"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const sample = `bench: target: redis-server 7.0.15 started on 127.0.0.1:1 for this run
date: 2026-12-03 14:05 UTC
commit: abc1234
go: go1.26.8
nproc: 2
redis: 7.0.15
goos: linux
goarch: amd64
pkg: github.com/keyedmutex/keyedmutex/bench
cpu: AMD EPYC
BenchmarkHotKey/empty/local-2    	  461050	       744.0 ns/op	   1344057 acq/s	         0 redis-cmds/op
BenchmarkHotKey/empty/pubsub-2   	     100	  10357951 ns/op	        96.55 acq/s	       164.2 redis-cmds/op
BenchmarkHotKey/50us/pubsub-2    	     100	   8136556 ns/op	       122.9 acq/s	       103.4 redis-cmds/op
BenchmarkHandoff/pubsub-2        	     100	  12437941 ns/op	        80.40 acq/s
BenchmarkHotKey/empty/hybrid-nohandoff-16 	     100	  11383976 ns/op	        87.84 acq/s	        25.76 redis-cmds/op
--- BENCH: BenchmarkHotKey
PASS
Machine: linux/amd64, 2 CPUs
  pubsub  96.6  x y z
`

func TestParse(t *testing.T) {
	rows, meta, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	wantMeta := Meta{Date: "2026-12-03 14:05 UTC", Commit: "abc1234", Go: "go1.26.8", OS: "linux/amd64", CPU: "AMD EPYC", NumCPU: "2", Redis: "7.0.15"}
	if diff := cmp.Diff(wantMeta, meta); diff != "" {
		t.Errorf("Parse() meta mismatch (-want +got):\n%s", diff)
	}
	var names []string
	for _, r := range rows {
		names = append(names, r.Name())
	}
	want := []string{"HotKey/empty/local", "HotKey/empty/pubsub", "HotKey/50us/pubsub", "Handoff/pubsub", "HotKey/empty/hybrid-nohandoff"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("Parse() rows mismatch (-want +got):\n%s", diff)
	}
	if got := rows[1].Metrics; !cmp.Equal(got, map[string]float64{"ns/op": 10357951, "acq/s": 96.55, "redis-cmds/op": 164.2}) {
		t.Errorf("Parse() HotKey/empty/pubsub metrics = %v", got)
	}

	// A row seen twice keeps its last result, in its first place.
	rows, _, err = Parse(strings.NewReader("BenchmarkA/x-2 1 1 ns/op 5 acq/s\nBenchmarkB/y-2 1 1 ns/op 6 acq/s\nBenchmarkA/x-2 9 1 ns/op 7 acq/s\n"))
	if err != nil || len(rows) != 2 || rows[0].Name() != "A/x" || rows[0].Metrics["acq/s"] != 7 {
		t.Errorf("Parse(A twice) = %v, %v; want A/x with acq/s 7 first, then B/y", rows, err)
	}
	if _, _, err := Parse(strings.NewReader("BenchmarkA-2 1 1 ns/op x acq/s\n")); err == nil || !strings.Contains(err.Error(), `bad value "x"`) {
		t.Errorf("Parse(bad value) = %v; want an error naming the value", err)
	}
}

// TestConfigLinesRoundTrip: what Meta.ConfigLines writes, Parse reads
// back.
func TestConfigLinesRoundTrip(t *testing.T) {
	m := Meta{Date: "2026-12-03 14:05 UTC", Commit: "abc1234", Go: "go1.26.8", NumCPU: "2", Redis: "7.0.15 (redis-server started for this run)", Command: "go test -bench ."}
	_, got, err := Parse(strings.NewReader(strings.Join(m.ConfigLines(), "\n") + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, got); diff != "" {
		t.Errorf("Parse(ConfigLines()) mismatch (-want +got):\n%s", diff)
	}
}

// run is a complete comparison: every row a target looks at.
const run = `BenchmarkUncontended/ping-2 100 1 ns/op 13000 acq/s 1 redis-cmds/op 36 redis-cpu-us/op 20 client-cpu-us/op 1 round-trips/op
BenchmarkUncontended/pubsub-2 100 1 ns/op 8000 acq/s 5 redis-cmds/op 0.2 redis-us/op 40 redis-cpu-us/op 50 client-cpu-us/op 2 round-trips/op 0 keys-left/op
BenchmarkUncontended/redsync-2 100 1 ns/op 7000 acq/s 4 redis-cmds/op 45 redis-cpu-us/op 60 client-cpu-us/op 2 round-trips/op
BenchmarkUncontended/redislock-2 100 1 ns/op 8000 acq/s 5 redis-cmds/op 50 redis-cpu-us/op 40 client-cpu-us/op 2 round-trips/op
BenchmarkHotKey/empty/pubsub-2 100 1 ns/op 13000 acq/s 4 redis-cmds/op 40 redis-cpu-us/op 0.5 bound-ratio 0.995 jain 2e7 p99-wait-ns
BenchmarkHotKey/empty/hybrid-2 100 1 ns/op 100000 acq/s 0.25 redis-cmds/op 5 redis-cpu-us/op 1 jain 1e6 p99-wait-ns
BenchmarkHotKey/empty/redsync-2 100 1 ns/op 2000 acq/s 200 redis-cpu-us/op 0.99 jain
BenchmarkHotKey/empty/redislock-2 100 1 ns/op 6000 acq/s 100 redis-cpu-us/op 0.98 jain
BenchmarkHotKey/empty/rueidislock-2 100 1 ns/op 6500 acq/s 83 redis-cpu-us/op 0.992 jain
BenchmarkManyKeys/local-2 100 1 ns/op 2500000 acq/s 0 redis-cmds/op 0.001 redis-cpu-us/op 0 keys-left/op
BenchmarkManyKeys/pubsub-2 100 1 ns/op 62500 acq/s 10 redis-us/op 14 redis-cpu-us/op 0 keys-left/op
BenchmarkManyKeys/hybrid-2 100 1 ns/op 60000 acq/s 15 redis-cpu-us/op 0.25 keys-left/op
BenchmarkManyKeys/redsync-2 100 1 ns/op 20000 acq/s 5 redis-us/op 30 redis-cpu-us/op
BenchmarkManyKeys/rueidislock-2 100 1 ns/op 50000 acq/s 15 redis-us/op 20 redis-cpu-us/op
BenchmarkManyKeysCluster/pubsub-2 100 1 ns/op 16000 acq/s
BenchmarkManyKeysCluster/rueidislock-2 100 1 ns/op 15000 acq/s
BenchmarkHandoff/notice-2 100 1 ns/op 450 acq/s 80000 p50-handoff-ns
BenchmarkHandoff/pubsub-2 100 1 ns/op 440 acq/s 100000 p50-handoff-ns 4 handoff/rtt 1.25 handoff/notice
BenchmarkReadMostly/pubsub-2 100 1 ns/op 500 acq/s 1 jain
BenchmarkReadMostly/distributed-rw-2 100 1 ns/op 1750 acq/s 0.999 jain
BenchmarkWriteHeavy/pubsub-2 100 1 ns/op 520 acq/s
BenchmarkWriteHeavy/distributed-rw-2 100 1 ns/op 500 acq/s 0.98 jain
`

func TestChecks(t *testing.T) {
	rows, _, err := Parse(strings.NewReader(run))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range Checks(rows) {
		got = append(got, fmt.Sprintf("%s | %s %.3g %v", c.Group, c.What, c.Got, c.Met()))
	}
	want := []string{
		"ManyKeys | ManyKeys: pubsub acq/s ÷ best peer's (rueidislock) 1.25 true",
		"ManyKeys | ManyKeys: pubsub redis-cpu-us/op ÷ best peer's (rueidislock) 0.7 true",
		"ManyKeys | ManyKeys: pubsub redis-us/op ÷ best peer's (redsync) 2 false", // the fastest peer by command time, not by acq/s
		"ManyKeys | ManyKeys: hybrid acq/s ÷ pubsub's 0.96 true",
		"ManyKeys | ManyKeys: pubsub keys-left/op 0 true",
		"ManyKeys | ManyKeys: hybrid keys-left/op 0.25 false",
		"ManyKeysCluster | ManyKeysCluster: pubsub acq/s ÷ rueidislock's 1.07 false",
		"Uncontended | Uncontended: pubsub redis-cpu-us/op ÷ best peer's (redsync) 0.889 true", // no rueidislock row: best of the others
		"Uncontended | Uncontended: pubsub client-cpu-us/op ÷ best peer's (redislock) 1.25 false",
		"Uncontended | Uncontended: pubsub round-trips/op 2 true",
		"Uncontended | Uncontended: pubsub redis-cmds/op 5 true",
		"HotKey/empty | HotKey/empty: pubsub acq/s ÷ best peer's (rueidislock) 2 true",
		"HotKey/empty | HotKey/empty: pubsub redis-cpu-us/op ÷ best peer's (rueidislock) 0.482 true",
		"HotKey/empty | HotKey/empty: pubsub jain 0.995 true",
		"HotKey/empty | HotKey/empty: hybrid acq/s ÷ best peer's (rueidislock) 15.4 true",
		"HotKey/empty | HotKey/empty: hybrid redis-cmds/op 0.25 true",
		"ReadMostly | ReadMostly: distributed-rw acq/s ÷ pubsub's 3.5 true",
		"ReadMostly | ReadMostly: distributed-rw jain 0.999 true",
		"WriteHeavy | WriteHeavy: distributed-rw acq/s ÷ pubsub's 0.962 true",
		"WriteHeavy | WriteHeavy: distributed-rw jain 0.98 false",
		"ReadMostly | ReadMostly: hybrid-rw acq/s ÷ hybrid's NaN false",
		"WriteHeavy | WriteHeavy: hybrid-rw acq/s ÷ hybrid's NaN false",
		"ReadMostly | ReadMostly: hybrid-rw jain NaN false",
		"Handoff | Handoff: pubsub p50 handoff ÷ notice p50 1.25 true",
		"earlier targets, against one PING round trip | HotKey/empty: pubsub acq/s ÷ bound 1/(2·RTT) 0.5 false",
		"earlier targets, against one PING round trip | HotKey/empty: pubsub redis-cmds/op 4 true",
		"earlier targets, against one PING round trip | Handoff: pubsub p50 handoff ÷ PING RTT 4 false",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Checks() mismatch (-want +got):\n%s", diff)
	}
	for _, c := range Checks(rows) {
		if strings.Contains(strings.ToLower(c.What+c.Group), "issue") {
			t.Errorf("target %q names an issue; name it by what it checks", c.What)
		}
	}

	// Without peers or a notice row the ratios are NaN: missed, not met.
	for _, c := range Checks(rows[4:6]) {
		if strings.Contains(c.What, "peer") || strings.Contains(c.What, "notice") {
			if !math.IsNaN(c.Got) || c.Met() {
				t.Errorf("Checks(no peer, no notice): %s = %v, met %v; want NaN, missed", c.What, c.Got, c.Met())
			}
		}
	}
}

func TestPrintChecks(t *testing.T) {
	var b strings.Builder
	PrintChecks(&b, []Check{
		{"HotKey", "a", 0.25, "<=", 0.5},
		{"HotKey", "b", 1, ">=", 2},
		{"ManyKeys", "c", math.NaN(), ">=", 1.1},
		{"ManyKeys", "d", 0, "<=", 0},
	})
	pad := strings.Repeat(" ", 61)
	want := "Targets, HotKey:\n" +
		"MET    a" + pad + "      0.25  target <= 0.5 (0.5x the limit)\n" +
		"MISSED b" + pad + "         1  target >= 2 (0.5x the target)\n" +
		"\nTargets, ManyKeys:\n" +
		"MISSED c" + pad + "       NaN  target >= 1.1 (not measured in this run)\n" +
		"MET    d" + pad + "         0  target <= 0\n" +
		"\n2 of 4 targets met.\n"
	if got := b.String(); got != want {
		t.Errorf("PrintChecks() =\n%s\nwant\n%s", got, want)
	}
}

func TestPrintText(t *testing.T) {
	rows, _, err := Parse(strings.NewReader(
		"BenchmarkHandoff/pubsub-2 100 1 ns/op 80.4 acq/s 7.5 redis-cmds/op 264.1 redis-cpu-us/op 31.5 client-cpu-us/op 3 round-trips/op 0 keys-left/op 2.5e7 p99-wait-ns 1 jain 54300 p50-handoff-ns 1.47 handoff/notice\n" +
			"BenchmarkManyKeys/local-2 100 1 ns/op 2490000 acq/s 0 redis-cmds/op 0.31 client-cpu-us/op 1570 p99-wait-ns 1 jain 0 keys-left/op\n" +
			"BenchmarkManyKeys/pubsub-2 100 1 ns/op 29700 acq/s 5.12 redis-cmds/op 23.9 redis-cpu-us/op 48.2 client-cpu-us/op 2 round-trips/op 3.13e6 p99-wait-ns 0.9996 jain 0 keys-left/op\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	PrintText(&b, Meta{OS: "linux/amd64", NumCPU: "2", Redis: "7.0.15", Commit: "abc1234", Date: "2026-12-03 14:05 UTC"}, rows)
	want := `Machine: linux/amd64, 2 CPUs
Redis:   7.0.15
Commit:  abc1234
Date:    2026-12-03 14:05 UTC

scenario / strategy  acq/s  Redis CPU  client CPU  cmds  trips  p99 wait   Jain  keys left         handoff
                               µs/acq      µs/acq  /acq   /acq                        /key             p50
Handoff
  pubsub              80.4        264        31.5  7.50   3.00      25ms  1.000          0  54.3µs (1.47x)
ManyKeys
  local              2.49M          -        0.31  0.00      -    1.57µs  1.000          0               -
  pubsub             29.7k       23.9        48.2  5.12   2.00    3.13ms  1.000          0               -

` + strings.Join(Legend, "\n") + "\n"
	if diff := cmp.Diff(strings.Split(want, "\n"), strings.Split(b.String(), "\n")); diff != "" {
		t.Errorf("PrintText() mismatch (-want +got):\n%s", diff)
	}
	// The table is for people: no line of it may pass for a result line
	// or a configuration line when the output is parsed again.
	again, meta, err := Parse(strings.NewReader(b.String()))
	if err != nil || len(again) != 0 || meta != (Meta{}) {
		t.Errorf("Parse(PrintText output) = %d rows, %+v, %v; want nothing", len(again), meta, err)
	}
}

func TestPrintMarkdown(t *testing.T) {
	rows, _, err := Parse(strings.NewReader(
		"BenchmarkHandoff/pubsub-2 100 1 ns/op 80.4 acq/s 7.5 redis-cmds/op 96.68 redis-us/op 264.1 redis-cpu-us/op 31.5 client-cpu-us/op 3 round-trips/op 0 keys-left/op 1500000 p50-wait-ns 2.5e7 p99-wait-ns 1 jain 0.0031 bound-ratio 54300 p50-handoff-ns 2.71 handoff/rtt 2.802 handoff/notice\n" +
			"BenchmarkManyKeys/local-2 100 1 ns/op 8540000 acq/s 0 redis-cmds/op 100 p50-wait-ns\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	PrintMarkdown(&b, rows)
	want := []string{
		"| benchmark | acq/s | redis-cmds/op | redis-us/op | redis-cpu-us/op | client-cpu-us/op | round-trips/op | keys-left/op | p50 wait | p99 wait | jain | bound-ratio | p50 handoff (÷ RTT) | handoff/notice |",
		"|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
		"| Handoff/pubsub | 80.4 | 7.50 | 96.7 | 264 | 31.5 | 3.00 | 0 | 1.5ms | 25ms | 1.000 | 0.0031 | 54.3µs (2.71) | 2.8 |",
		"| ManyKeys/local | 8.54M | 0.00 |  |  |  |  |  | 100ns |  |  |  |  |  |",
	}
	if diff := cmp.Diff(want, strings.Split(strings.TrimSpace(b.String()), "\n")); diff != "" {
		t.Errorf("PrintMarkdown() mismatch (-want +got):\n%s", diff)
	}
}

// TestAxisRange: a log axis fits the data (a maximum of 1.2M ends at 2M,
// not at 1e8), and Jain's axis ends just above 1.
func TestShort(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 12.34: "12.3", 999.4: "999", 999.6: "1k", 29700: "29.7k", 999600: "1M", 1.2e6: "1.2M"} {
		if got := Short(v); got != want {
			t.Errorf("Short(%v) = %q; want %q", v, got, want)
		}
	}
}

func TestAxisRange(t *testing.T) {
	for _, tc := range []struct {
		bs     []bar
		scale  string
		lo, hi float64
	}{
		{[]bar{{"local", 1.2e6}, {"redsync", 877}, {"pubsub", 4810}}, "log", 500, 2e6},
		{[]bar{{"local", 0}, {"pubsub", 12}, {"redsync", 56.7}}, "log", 5, 100},
		{[]bar{{"pubsub", 1}, {"rueidislock", 0.992}}, "jain", 0.985, 1.00225},
		{[]bar{{"pubsub", 0.25}, {"redsync", 0.25}}, "jain", 0, 1.15},
		{nil, "log", 1, 10},
	} {
		lo, hi := axisRange(tc.bs, tc.scale)
		if math.Abs(lo-tc.lo) > 1e-9 || math.Abs(hi-tc.hi) > 1e-9 {
			t.Errorf("axisRange(%v, %s) = %v, %v; want %v, %v", tc.bs, tc.scale, lo, hi, tc.lo, tc.hi)
		}
	}
	ticks := logTicks(500, 2e6)
	var labels []string
	for _, tk := range ticks {
		labels = append(labels, tk.Label)
	}
	if want := []string{"", "1k", "10k", "100k", "1M", ""}; !cmp.Equal(labels, want) {
		t.Errorf("logTicks(500, 2M) = %q; want %q", labels, want)
	}
	labels = labels[:0]
	for _, tk := range logTicks(10, 50) {
		labels = append(labels, tk.Label)
	}
	if want := []string{"10", "20", "50"}; !cmp.Equal(labels, want) {
		t.Errorf("logTicks(10, 50) = %q; want %q", labels, want)
	}
}

func TestWriteChart(t *testing.T) {
	rows, meta, err := Parse(strings.NewReader(sample + run))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "comparison.png")
	if err := WriteChart(out, meta, rows); err != nil {
		t.Fatalf("WriteChart(png) = %v", err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("WriteChart wrote no PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 600 {
		t.Errorf("chart is %dx%d px; want at least 800x600", b.Dx(), b.Dy())
	}
	// The SVG has the text: the header says when and where, and every
	// panel with rows has its title.
	svg := filepath.Join(dir, "comparison.svg")
	if err := WriteChart(svg, meta, rows); err != nil {
		t.Fatalf("WriteChart(svg) = %v", err)
	}
	data, err = os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"abc1234", "2026-12-03", "7.0.15", "HotKey: fairness", "ManyKeys (10,000 keys): acquisitions/s", "Uncontended: client CPU"} {
		if !bytes.Contains(data, []byte(s)) {
			t.Errorf("comparison.svg does not contain %q", s)
		}
	}
	// One row for one panel (Handoff) is enough for a figure.
	if err := WriteChart(filepath.Join(dir, "x.svg"), meta, rows[3:4]); err != nil {
		t.Errorf("WriteChart(one Handoff row) = %v; want the Handoff panel alone", err)
	}
	if err := WriteChart(filepath.Join(dir, "x.svg"), meta, []Row{{Path: []string{"Other", "x"}, Metrics: map[string]float64{"acq/s": 1}}}); err == nil {
		t.Error("WriteChart(no row for any panel) = nil; want an error")
	}
	if err := WriteChart(filepath.Join(dir, "x.gif"), meta, rows); err == nil {
		t.Error("WriteChart(x.gif) = nil; want an error")
	}
}
