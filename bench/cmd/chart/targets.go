package main

import (
	"fmt"
	"io"
	"math"
)

// check is one target of issue 5, evaluated on one run's rows.
type check struct {
	what   string
	got    float64
	op     string // ">=" or "<="
	target float64
}

func (c check) met() bool {
	if math.IsNaN(c.got) {
		return false
	}
	if c.op == ">=" {
		return c.got >= c.target
	}
	return c.got <= c.target
}

// checks evaluates the targets of the comparison (issue 5), all ratios
// within one run: HotKey/empty hybrid against pub/sub and the best peer,
// hybrid and pub/sub commands per acquisition, pub/sub against the
// physical bound, and the pub/sub handoff against one PING round trip.
// A value missing from the input is NaN and counts as missed.
func checks(rows []row) []check {
	get := func(unit string, path ...string) float64 {
		for _, r := range rows {
			if equal(r.path, path) {
				if v, ok := r.metrics[unit]; ok {
					return v
				}
			}
		}
		return math.NaN()
	}
	hot := func(st, unit string) float64 { return get(unit, "HotKey", "empty", st) }
	peer := math.Max(hot("redsync", "acq/s"), hot("redislock", "acq/s"))
	return []check{
		{"HotKey/empty: hybrid acq/s ÷ pubsub acq/s", hot("hybrid", "acq/s") / hot("pubsub", "acq/s"), ">=", 8},
		{"HotKey/empty: hybrid acq/s ÷ best peer acq/s", hot("hybrid", "acq/s") / peer, ">=", 5},
		{"HotKey/empty: hybrid redis-cmds/op", hot("hybrid", "redis-cmds/op"), "<=", 0.5},
		{"HotKey/empty: pubsub acq/s ÷ bound 1/(2·RTT)", hot("pubsub", "bound-ratio"), ">=", 0.8},
		{"HotKey/empty: pubsub redis-cmds/op", hot("pubsub", "redis-cmds/op"), "<=", 5},
		{"Handoff: pubsub p50 handoff ÷ PING RTT", get("handoff/rtt", "Handoff", "pubsub"), "<=", 3},
	}
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

// printChecks writes one line per target: met or missed, and by how much.
func printChecks(w io.Writer, cs []check) {
	for _, c := range cs {
		verdict := "MET"
		if !c.met() {
			verdict = "MISSED"
		}
		by := ""
		if c.got != 0 && !math.IsNaN(c.got) {
			if c.op == ">=" {
				by = fmt.Sprintf(" (%.3gx the target)", c.got/c.target)
			} else {
				by = fmt.Sprintf(" (%.3gx the limit)", c.got/c.target)
			}
		}
		fmt.Fprintf(w, "%-6s %-46s %10.3g  target %s %g%s\n", verdict, c.what, c.got, c.op, c.target, by)
	}
}
