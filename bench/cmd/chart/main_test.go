package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const saved = `date: 2026-12-03 14:05 UTC
commit: abc1234
redis: 7.0.15
goos: linux
goarch: amd64
BenchmarkManyKeys/pubsub-2 100 1 ns/op 62500 acq/s 14 redis-cpu-us/op 0 keys-left/op
BenchmarkManyKeys/rueidislock-2 100 1 ns/op 50000 acq/s 20 redis-cpu-us/op
PASS
`

// TestRunSaved: from a saved output, chart prints the table and the
// targets by default, and writes the figure it is asked for.
func TestRunSaved(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "results.txt")
	if err := os.WriteFile(in, []byte(saved), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := run(in, "", false, false, false, nil, &out); err != nil {
		t.Fatalf("run(defaults) = %v", err)
	}
	for _, s := range []string{
		"Commit:  abc1234",
		"  pubsub             62.5k",
		"MET    ManyKeys: pubsub acq/s ÷ best peer's (rueidislock)",
		"MET    ManyKeys: pubsub keys-left/op",
		"MISSED HotKey/empty: pubsub jain",
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("run(defaults) output has no %q:\n%s", s, out.String())
		}
	}

	out.Reset()
	png := filepath.Join(dir, "c.png")
	if err := run("", png, false, true, false, strings.NewReader(saved), &out); err != nil {
		t.Fatalf("run(stdin, -out, -table) = %v", err)
	}
	if !strings.Contains(out.String(), "| ManyKeys/pubsub | 62.5k |") || strings.Contains(out.String(), "Targets") {
		t.Errorf("run(-table) output = %q; want the Markdown table only", out.String())
	}
	if fi, err := os.Stat(png); err != nil || fi.Size() == 0 {
		t.Errorf("run(-out %s) wrote %v, %v; want a PNG", png, fi, err)
	}

	if err := run("", "", true, false, false, strings.NewReader("PASS\n"), &out); err == nil || !strings.Contains(err.Error(), "no benchmark result") {
		t.Errorf("run(no result line) = %v; want an error saying so", err)
	}
	if err := run(filepath.Join(dir, "missing.txt"), "", true, false, false, nil, &out); err == nil {
		t.Error("run(-in missing file) = nil; want an error")
	}
}
