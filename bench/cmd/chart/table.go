package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// printTable writes every row as a Markdown table: the README's results.
func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| benchmark | acq/s | redis-cmds/op | redis-us/op | redis-cpu-us/op | p50 wait | p99 wait | jain | bound-ratio | p50 handoff (÷ RTT) | handoff/notice |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, r := range rows {
		m := r.metrics
		cell := func(unit string, f func(float64) string) string {
			v, ok := m[unit]
			if !ok {
				return ""
			}
			return f(v)
		}
		handoff := cell("p50-handoff-ns", dur)
		if h := cell("handoff/rtt", g3); h != "" {
			handoff += " (" + h + ")"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			strings.Join(r.path, "/"),
			cell("acq/s", short),
			cell("redis-cmds/op", func(v float64) string { return fmt.Sprintf("%.2f", v) }),
			cell("redis-us/op", g3),
			cell("redis-cpu-us/op", g3),
			cell("p50-wait-ns", dur),
			cell("p99-wait-ns", dur),
			cell("jain", func(v float64) string { return fmt.Sprintf("%.3f", v) }),
			cell("bound-ratio", g3),
			handoff,
			cell("handoff/notice", g3))
	}
}

// g3 formats v with three significant digits.
func g3(v float64) string { return fmt.Sprintf("%.3g", v) }

// dur formats nanoseconds with three significant digits.
func dur(ns float64) string {
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
