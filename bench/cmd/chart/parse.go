package main

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// row is one benchmark result line: its name split at "/" (without the
// "Benchmark" prefix and the -GOMAXPROCS suffix) and its metrics by unit.
type row struct {
	path    []string
	metrics map[string]float64
}

// parse reads `go test -bench` output and returns its result lines in
// order, and the cpu: header line if present. Other lines are ignored.
func parse(r io.Reader) (rows []row, cpu string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if c, ok := strings.CutPrefix(line, "cpu: "); ok {
			cpu = strings.TrimSpace(c)
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
		rw := row{path: strings.Split(name, "/"), metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, "", fmt.Errorf("chart: %q: bad value %q: %w", f[0], f[i], err)
			}
			rw.metrics[f[i+1]] = v
		}
		rows = append(rows, rw)
	}
	return rows, cpu, sc.Err()
}

// series is one panel's values, ready to draw: for each group (the
// sub-scenario, "empty" or "50us"; or the server, one or a cluster) the
// value of a unit per strategy.
type series struct {
	groups     []string
	strategies []string
	values     map[string]map[string]float64 // group -> strategy -> value
}

// collect picks the rows that group names a group and strategy for, and
// collects unit, keeping the order of the input. With redisOnly, rows
// whose redis-cmds/op is 0 are left out.
func collect(rows []row, unit string, group func(path []string) (string, string, bool), redisOnly bool) series {
	s := series{values: map[string]map[string]float64{}}
	for _, r := range rows {
		g, st, ok := group(r.path)
		if !ok {
			continue
		}
		v, ok := r.metrics[unit]
		if !ok {
			continue
		}
		if cmds, ok := r.metrics["redis-cmds/op"]; redisOnly && (!ok || cmds == 0) {
			continue
		}
		if s.values[g] == nil {
			s.values[g] = map[string]float64{}
			s.groups = append(s.groups, g)
		}
		if !contains(s.strategies, st) {
			s.strategies = append(s.strategies, st)
		}
		s.values[g][st] = v
	}
	return s
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
