package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// check is one target, evaluated on one run's rows.
type check struct {
	group  string // who sets the target: "issue 13", ...
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

// peers are the other libraries' strategies; "best peer" is the best of
// them in a row.
var peers = []string{"redsync", "redislock", "rueidislock"}

// checks evaluates the targets of issue 13 (pub/sub lighter on Redis
// than the best peer, handoff near the notice yardstick, hybrid), of
// issue 14 (many keys faster than the best peer) and those of issue 5
// that still say something, all as ratios within one run. A value
// missing from the input is NaN and counts as missed.
func checks(rows []row) []check {
	get := func(unit string, path ...string) float64 {
		for _, r := range rows {
			if slices.Equal(r.path, path) {
				if v, ok := r.metrics[unit]; ok {
					return v
				}
			}
		}
		return math.NaN()
	}
	// vsPeer returns st's value of unit in scenario ÷ the best peer's
	// there, and a description naming that peer; lower says whether
	// lower values are better.
	vsPeer := func(scenario []string, st, unit string, lower bool) (string, float64) {
		best, name := math.NaN(), "no peer"
		for _, p := range peers {
			v := get(unit, append(slices.Clone(scenario), p)...)
			if math.IsNaN(v) {
				continue
			}
			if math.IsNaN(best) || lower && v < best || !lower && v > best {
				best, name = v, p
			}
		}
		what := fmt.Sprintf("%s: %s %s ÷ best peer's (%s)", strings.Join(scenario, "/"), st, unit, name)
		return what, get(unit, append(slices.Clone(scenario), st)...) / best
	}
	var cs []check
	add := func(group, what string, got float64, op string, target float64) {
		cs = append(cs, check{group, what, got, op, target})
	}
	peerCheck := func(group string, scenario []string, st, unit string, lower bool, op string, target float64) {
		what, got := vsPeer(scenario, st, unit, lower)
		add(group, what, got, op, target)
	}
	hot := []string{"HotKey", "empty"}
	many := []string{"ManyKeys"}
	unc := []string{"Uncontended"}

	const i13, i14, i5 = "issue 13", "issue 14", "issue 5 (earlier)"
	peerCheck(i13, hot, "pubsub", "redis-cpu-us/op", true, "<=", 0.5)
	peerCheck(i13, hot, "pubsub", "acq/s", false, ">=", 2)
	add(i13, "HotKey/empty: pubsub jain", get("jain", "HotKey", "empty", "pubsub"), ">=", 0.99)
	peerCheck(i13, many, "pubsub", "redis-cpu-us/op", true, "<=", 1)
	add(i13, "Uncontended: pubsub redis-cmds/op", get("redis-cmds/op", "Uncontended", "pubsub"), "<=", 5)
	peerCheck(i13, unc, "pubsub", "redis-cpu-us/op", true, "<=", 1)
	add(i13, "Handoff: pubsub p50 handoff ÷ notice p50",
		get("p50-handoff-ns", "Handoff", "pubsub")/get("p50-handoff-ns", "Handoff", "notice"), "<=", 1.5)
	add(i13, "HotKey/empty: hybrid redis-cmds/op", get("redis-cmds/op", "HotKey", "empty", "hybrid"), "<=", 0.5)
	peerCheck(i13, hot, "hybrid", "acq/s", false, ">=", 10)

	peerCheck(i14, many, "pubsub", "acq/s", false, ">=", 1.1)
	peerCheck(i14, many, "hybrid", "acq/s", false, ">=", 1.1)

	add(i5, "HotKey/empty: pubsub acq/s ÷ bound 1/(2·RTT)", get("bound-ratio", "HotKey", "empty", "pubsub"), ">=", 0.8)
	add(i5, "HotKey/empty: pubsub redis-cmds/op", get("redis-cmds/op", "HotKey", "empty", "pubsub"), "<=", 5)
	add(i5, "Handoff: pubsub p50 handoff ÷ PING RTT", get("handoff/rtt", "Handoff", "pubsub"), "<=", 3)
	return cs
}

// printChecks writes one line per target, under a line naming its
// group: met or missed, and by how much.
func printChecks(w io.Writer, cs []check) {
	group := ""
	for _, c := range cs {
		if c.group != group {
			if group != "" {
				fmt.Fprintln(w)
			}
			group = c.group
			fmt.Fprintf(w, "Targets of %s:\n", group)
		}
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
		fmt.Fprintf(w, "%-6s %-66s %10.3g  target %s %g%s\n", verdict, c.what, c.got, c.op, c.target, by)
	}
}
