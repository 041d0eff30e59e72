package bench

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyedmutex/keyedmutex/bench/report"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
)

// chartEnv names the file the comparison's chart is written to, instead
// of comparison.png in the package directory (bench/).
const chartEnv = "KEYEDMUTEX_BENCH_CHART"

// TestMain runs the tests and benchmarks; when benchmarks ran, it then
// prints what a person reads after the raw result lines: the table of
// the rows, with where and when the run was made above it, the chart's
// file, and the targets this run can evaluate. Before the benchmarks it
// prints the run's date, commit and Redis as configuration lines
// (benchstat's `key: value`), so a saved output carries them too.
func TestMain(m *testing.M) {
	flag.Parse()
	var meta report.Meta
	benchmarks := flag.Lookup("test.bench").Value.String() != ""
	if benchmarks {
		meta = runMeta()
		for _, l := range meta.ConfigLines() {
			fmt.Println(l)
		}
	}
	code := m.Run()
	if rows := recorded(); benchmarks && len(rows) > 0 {
		out := os.Getenv(chartEnv)
		if out == "" {
			out = "comparison.png"
		}
		summarize(os.Stdout, meta, rows, out)
	}
	os.Exit(code)
}

// summarize writes the table of rows, draws the chart to out and says
// where, and writes the targets rows can evaluate.
func summarize(w io.Writer, meta report.Meta, rows []report.Row, out string) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Comparison (the raw result lines are above; go run ./cmd/chart -in FILE redraws all of this from a saved output)")
	fmt.Fprintln(w)
	report.PrintText(w, meta, rows)
	fmt.Fprintln(w)
	if err := report.WriteChart(out, meta, rows); err != nil {
		fmt.Fprintf(w, "Chart: not written: %v\n", err)
	} else {
		if abs, err := filepath.Abs(out); err == nil {
			out = abs
		}
		fmt.Fprintf(w, "Chart: %s\n", out)
	}
	fmt.Fprintln(w)
	var cs []report.Check
	for _, c := range report.Checks(rows) {
		if !math.IsNaN(c.Got) {
			cs = append(cs, c)
		}
	}
	if skipped := len(report.Checks(rows)) - len(cs); skipped > 0 {
		fmt.Fprintf(w, "(%d targets not evaluated: rows they need did not run)\n", skipped)
	}
	if len(cs) > 0 {
		report.PrintChecks(w, cs)
	}
}

// rows holds the metrics of every row that ran, by b.Name(), in the
// order the rows first ran; a row's last run (the one `go test` prints)
// replaces its earlier ones.
var rows struct {
	sync.Mutex
	order []string
	by    map[string][]metric
}

// record keeps the metrics a row just reported.
func record(name string, ms []metric) {
	rows.Lock()
	defer rows.Unlock()
	if rows.by == nil {
		rows.by = map[string][]metric{}
	}
	if !slices.Contains(rows.order, name) {
		rows.order = append(rows.order, name)
	}
	rows.by[name] = ms
}

// forget drops a row's figures, as it starts a run: if that run fails,
// the table must not show an earlier, shorter run's.
func forget(name string) {
	rows.Lock()
	defer rows.Unlock()
	delete(rows.by, name)
}

// recorded returns the rows recorded, in order, as report rows.
func recorded() []report.Row {
	rows.Lock()
	defer rows.Unlock()
	var rs []report.Row
	for _, name := range rows.order {
		ms, ok := rows.by[name]
		if !ok {
			continue
		}
		r := report.Row{Path: strings.Split(strings.TrimPrefix(name, "Benchmark"), "/"), Metrics: map[string]float64{}}
		for _, m := range ms {
			r.Metrics[m.unit] = m.value
		}
		rs = append(rs, r)
	}
	return rs
}

// runMeta says where and when this run is made.
func runMeta() report.Meta {
	m := report.Meta{
		Date:   time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Commit: gitCommit(),
		Go:     runtime.Version(),
		OS:     runtime.GOOS + "/" + runtime.GOARCH,
		CPU:    cpuModel(),
		NumCPU: strconv.Itoa(runtime.NumCPU()),
		Redis:  redisDescription(),
	}
	var flags []string
	for _, f := range []string{"bench", "benchtime", "count", "cpu"} {
		if fl := flag.Lookup("test." + f); fl != nil && fl.Value.String() != fl.DefValue {
			flags = append(flags, "-"+f+" "+fl.Value.String())
		}
	}
	m.Command = "go test " + strings.Join(flags, " ")
	return m
}

// gitCommit returns the short hash of HEAD, marked when the work tree
// differs from it, or "" outside a git checkout.
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		c += " (with uncommitted changes)"
	}
	return c
}

// cpuModel returns the processor's model name from /proc/cpuinfo, or "".
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// redisDescription says which Redis the run uses, as newTarget picks it.
func redisDescription() string {
	if addr := os.Getenv("REDIS_ADDR"); addr != "" {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return serverVersion(ctx, c) + " at $REDIS_ADDR"
	}
	if bin := redistest.Binary(); bin != "" {
		v := "unknown version"
		if out, err := exec.Command(bin, "--version").Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if s, ok := strings.CutPrefix(f, "v="); ok {
					v = s
				}
			}
		}
		return "redis-server " + v + " on loopback, started for the run"
	}
	return "miniredis (in process: its timings say nothing about Redis)"
}
