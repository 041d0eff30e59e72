// Package report turns the results of the bench module into what a person
// reads: a table of the rows by scenario and strategy, the targets met or
// missed, and a chart. The benchmarks' TestMain prints them at the end of
// the comparison run from the figures it measured; ./cmd/chart does the
// same from a saved `go test -bench` output.
package report

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Row is one benchmark result: its name split at "/" (without the
// "Benchmark" prefix and the -GOMAXPROCS suffix) and its metrics by unit.
type Row struct {
	Path    []string
	Metrics map[string]float64
}

// Name is the row's path joined with "/": "HotKey/empty/pubsub".
func (r Row) Name() string { return strings.Join(r.Path, "/") }

// Meta says where and when a run was made. Every field may be empty.
type Meta struct {
	Date    string // "2026-12-03 14:05 UTC"
	Commit  string // git rev-parse --short HEAD
	Go      string // runtime.Version()
	OS      string // GOOS/GOARCH
	CPU     string // the processor's model name
	NumCPU  string // processors the run could use
	Redis   string // the server's version, or "miniredis"
	Command string // the command line that made the run
}

// ConfigLines returns m as `key: value` lines in the configuration
// format of benchstat (golang.org/x/perf/benchfmt), as `go test -bench`
// writes goos, goarch and cpu: Parse reads them back. Empty fields are
// left out.
func (m Meta) ConfigLines() []string {
	var ls []string
	for _, kv := range [][2]string{
		{"date", m.Date}, {"commit", m.Commit}, {"go", m.Go}, {"nproc", m.NumCPU},
		{"redis", m.Redis}, {"command", m.Command},
	} {
		if kv[1] != "" {
			ls = append(ls, kv[0]+": "+kv[1])
		}
	}
	return ls
}

// Parse reads `go test -bench` output and returns its result lines in
// order and what the configuration lines say (goos, goarch, cpu, and
// those of Meta.ConfigLines). Other lines are ignored: logs, and the
// table and targets the comparison prints after its results. A name seen
// twice keeps its last result.
func Parse(r io.Reader) (rows []Row, meta Meta, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var goos, goarch string
	seen := map[string]int{}
	for sc.Scan() {
		line := sc.Text()
		if k, v, ok := strings.Cut(line, ": "); ok && !strings.ContainsAny(k, " \t") {
			v = strings.TrimSpace(v)
			switch k {
			case "cpu":
				meta.CPU = v
			case "goos":
				goos = v
			case "goarch":
				goarch = v
			case "date":
				meta.Date = v
			case "commit":
				meta.Commit = v
			case "go":
				meta.Go = v
			case "nproc":
				meta.NumCPU = v
			case "redis":
				meta.Redis = v
			case "command":
				meta.Command = v
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue // a log line that happens to start with Benchmark
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		rw := Row{Path: strings.Split(name, "/"), Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, Meta{}, fmt.Errorf("report: %q: bad value %q: %w", f[0], f[i], err)
			}
			rw.Metrics[f[i+1]] = v
		}
		if i, dup := seen[name]; dup {
			rows[i] = rw
			continue
		}
		seen[name] = len(rows)
		rows = append(rows, rw)
	}
	if goos != "" || goarch != "" {
		meta.OS = goos + "/" + goarch
	}
	return rows, meta, sc.Err()
}

// get returns the value of unit in the row named by path, or NaN.
func get(rows []Row, unit string, path ...string) float64 {
	for _, r := range rows {
		if equal(r.Path, path) {
			if v, ok := r.Metrics[unit]; ok {
				return v
			}
		}
	}
	return nan
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
