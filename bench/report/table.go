package report

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unicode/utf8"
)

// Header returns the lines that say where and when a run was made, for
// the top of the table: the machine, Redis, the commit and the date.
func (m Meta) Header() []string {
	or := func(s, dflt string) string {
		if s == "" {
			return dflt
		}
		return s
	}
	machine := or(m.OS, "unknown OS")
	if m.NumCPU != "" {
		machine += ", " + m.NumCPU + " CPUs"
	}
	if m.CPU != "" {
		machine += ", " + m.CPU
	}
	if m.Go != "" {
		machine += ", " + m.Go
	}
	return []string{
		"Machine: " + machine,
		"Redis:   " + or(m.Redis, "unknown"),
		"Commit:  " + or(m.Commit, "unknown"),
		"Date:    " + or(m.Date, "unknown"),
	}
}

// Legend is one line per column of PrintText.
var Legend = []string{
	"acq/s       acquisitions per second, all processes of the row together",
	"Redis CPU   redis-server CPU µs per acquisition (INFO cpu; summed over a cluster's masters)",
	"client CPU  the bench process's own CPU µs per acquisition (getrusage: every simulated process, critical sections included)",
	"cmds        Redis commands per acquisition (INFO commandstats; commands inside Lua count)",
	"trips       client round trips per acquisition (one per command sent alone, one per pipeline: below 1 where a client batches callers)",
	"p99 wait    99th percentile of the time from the Lock call to holding the lock",
	"Jain        fairness over the processes' acquisitions: 1 is fair, 1/P is one process taking all",
	"keys left   keys in Redis right after the row, every lock released, ÷ distinct keys it locked",
	"handoff     Handoff rows: p50 from one process's Unlock to the other's Lock returning, ÷ the notice row's",
}

// PrintText writes the table a person reads: meta's header, then one
// line per row, grouped by scenario (the row's path but its last
// element), then the legend. A metric a row does not report is "-".
func PrintText(w io.Writer, meta Meta, rows []Row) {
	for _, l := range meta.Header() {
		fmt.Fprintln(w, l)
	}
	fmt.Fprintln(w)
	lines := [][]string{
		{"scenario / strategy", "acq/s", "Redis CPU", "client CPU", "cmds", "trips", "p99 wait", "Jain", "keys left", "handoff"},
		{"", "", "µs/acq", "µs/acq", "/acq", "/acq", "", "", "/key", "p50"},
	}
	scenario := ""
	for _, r := range rows {
		if sc := strings.Join(r.Path[:len(r.Path)-1], "/"); sc != scenario {
			scenario = sc
			lines = append(lines, []string{sc})
		}
		m := r.Metrics
		cell := func(unit string, f func(float64) string) string {
			if v, ok := m[unit]; ok {
				return f(v)
			}
			return "-"
		}
		handoff := cell("p50-handoff-ns", Dur)
		if h := cell("handoff/notice", g3); h != "-" {
			handoff += " (" + h + "x)"
		}
		lines = append(lines, []string{
			"  " + r.Path[len(r.Path)-1],
			cell("acq/s", Short),
			cell("redis-cpu-us/op", g3),
			cell("client-cpu-us/op", g3),
			cell("redis-cmds/op", f2),
			cell("round-trips/op", f2),
			cell("p99-wait-ns", Dur),
			cell("jain", f3),
			cell("keys-left/op", g3),
			handoff,
		})
	}
	writeColumns(w, lines)
	fmt.Fprintln(w)
	for _, l := range Legend {
		fmt.Fprintln(w, l)
	}
}

// writeColumns writes lines as columns two spaces apart, the first
// aligned left and the others right. A line of one cell (a scenario's
// name) takes no part in the widths.
func writeColumns(w io.Writer, lines [][]string) {
	var width []int
	for _, l := range lines {
		if len(l) == 1 {
			continue
		}
		for i, c := range l {
			if i == len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, l := range lines {
		var b strings.Builder
		for i, c := range l {
			pad := ""
			if len(l) > 1 {
				pad = strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			}
			switch {
			case i == 0:
				b.WriteString(c + pad)
			default:
				b.WriteString("  " + pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// markdownColumns are the columns of PrintMarkdown: header, unit.
var markdownColumns = [][2]string{
	{"acq/s", "acq/s"},
	{"redis-cmds/op", "redis-cmds/op"},
	{"redis-us/op", "redis-us/op"},
	{"redis-cpu-us/op", "redis-cpu-us/op"},
	{"client-cpu-us/op", "client-cpu-us/op"},
	{"round-trips/op", "round-trips/op"},
	{"keys-left/op", "keys-left/op"},
	{"p50 wait", "p50-wait-ns"},
	{"p99 wait", "p99-wait-ns"},
	{"jain", "jain"},
	{"bound-ratio", "bound-ratio"},
}

// PrintMarkdown writes every row as a Markdown table, with every metric
// of PrintText and a few more: the README's full results.
func PrintMarkdown(w io.Writer, rows []Row) {
	head, align := "| benchmark |", "|---|"
	for _, c := range markdownColumns {
		head += " " + c[0] + " |"
		align += "--:|"
	}
	fmt.Fprintln(w, head+" p50 handoff (÷ RTT) | handoff/notice |")
	fmt.Fprintln(w, align+"--:|--:|")
	for _, r := range rows {
		m := r.Metrics
		cell := func(unit string, f func(float64) string) string {
			if v, ok := m[unit]; ok {
				return f(v)
			}
			return ""
		}
		line := "| " + r.Name() + " |"
		for _, c := range markdownColumns {
			f := g3
			switch c[1] {
			case "acq/s":
				f = Short
			case "redis-cmds/op", "round-trips/op":
				f = f2
			case "p50-wait-ns", "p99-wait-ns":
				f = Dur
			case "jain":
				f = f3
			}
			line += " " + cell(c[1], f) + " |"
		}
		handoff := cell("p50-handoff-ns", Dur)
		if h := cell("handoff/rtt", g3); h != "" {
			handoff += " (" + h + ")"
		}
		fmt.Fprintln(w, line+" "+handoff+" | "+cell("handoff/notice", g3)+" |")
	}
}

// g3 formats v with three significant digits, and no exponent below 1e6.
func g3(v float64) string {
	if a := math.Abs(v); a >= 1000 && a < 1e6 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }
func f3(v float64) string { return fmt.Sprintf("%.3f", v) }

// Short formats v with three significant digits and a k or M suffix.
func Short(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 999.5e3: // %.3g would round 999.6k up to "1e+03k"
		return fmt.Sprintf("%.3gM", v/1e6)
	case v >= 999.5:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.3g", v)
}

// Dur formats nanoseconds with three significant digits.
func Dur(ns float64) string {
	d := time.Duration(ns)
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%.0fns", ns)
	case d < time.Millisecond:
		return fmt.Sprintf("%.3gµs", ns/1e3)
	case d < time.Second:
		return fmt.Sprintf("%.3gms", ns/1e6)
	}
	return fmt.Sprintf("%.3gs", ns/1e9)
}
