package main

import (
	"fmt"
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
	s := collect(rows, "HotKey", "acq/s")
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

func TestRunWritesImage(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "results.txt")
	if err := os.WriteFile(in, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{"bench.svg", "bench.png"} {
		if err := run(in, filepath.Join(dir, out), "HotKey"); err != nil {
			t.Errorf("run(%s) = %v", out, err)
		}
	}
	if err := run(in, filepath.Join(dir, "x.svg"), "NoSuch"); err == nil {
		t.Error("run(-bench NoSuch) = nil; want an error")
	}
	if err := run(in, filepath.Join(dir, "x.gif"), "HotKey"); err == nil {
		t.Error("run(-out x.gif) = nil; want an error")
	}
}

func TestChecks(t *testing.T) {
	in := "BenchmarkHotKey/empty/pubsub-2 100 1 ns/op 1000 acq/s 4 redis-cmds/op 0.5 bound-ratio\n" +
		"BenchmarkHotKey/empty/hybrid-2 100 1 ns/op 9000 acq/s 0.25 redis-cmds/op\n" +
		"BenchmarkHotKey/empty/redsync-2 100 1 ns/op 2000 acq/s\n" +
		"BenchmarkHotKey/empty/redislock-2 100 1 ns/op 1500 acq/s\n"
	rows, _, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range checks(rows) {
		got = append(got, fmt.Sprintf("%s %.3g %v", c.what, c.got, c.met()))
	}
	want := []string{
		"HotKey/empty: hybrid acq/s ÷ pubsub acq/s 9 true",
		"HotKey/empty: hybrid acq/s ÷ best peer acq/s 4.5 false",
		"HotKey/empty: hybrid redis-cmds/op 0.25 true",
		"HotKey/empty: pubsub acq/s ÷ bound 1/(2·RTT) 0.5 false",
		"HotKey/empty: pubsub redis-cmds/op 4 true",
		"Handoff: pubsub p50 handoff ÷ PING RTT NaN false", // no Handoff row
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("checks() mismatch (-want +got):\n%s", diff)
	}
}

func TestTable(t *testing.T) {
	rows, _, err := parse(strings.NewReader(
		"BenchmarkHandoff/pubsub-2 100 1 ns/op 80.4 acq/s 7.5 redis-cmds/op 1500000 p50-wait-ns 2.5e7 p99-wait-ns 1 jain 0.0031 bound-ratio 54300 p50-handoff-ns 2.71 handoff/rtt\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	printTable(&b, rows)
	want := "| Handoff/pubsub | 80.4 | 7.50 | 1.5ms | 25ms | 1.000 | 0.0031 | 54.3µs (2.71) |"
	if lines := strings.Split(strings.TrimSpace(b.String()), "\n"); len(lines) != 3 || lines[2] != want {
		t.Errorf("printTable() =\n%s\nwant last line\n%s", b.String(), want)
	}
}
