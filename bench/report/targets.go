package report

import (
	"fmt"
	"io"
	"math"
	"strings"
)

var nan = math.NaN()

// Check is one target, evaluated on one run's rows.
type Check struct {
	Group  string // the scenario it is about, or "earlier targets"
	What   string // what it compares, naming the peer it picked
	Got    float64
	Op     string // ">=" or "<="
	Target float64
}

// Met reports whether the target is met. A value missing from the run
// (NaN) is missed.
func (c Check) Met() bool {
	if math.IsNaN(c.Got) {
		return false
	}
	if c.Op == ">=" {
		return c.Got >= c.Target
	}
	return c.Got <= c.Target
}

// Peers are the other libraries' strategies; "best peer" is the best of
// them in a row: the highest acq/s, or the lowest cost.
var Peers = []string{"redsync", "redislock", "rueidislock"}

// Checks evaluates the targets of the comparison, all as ratios within
// one run (absolute figures move with the machine's load). A value
// missing from the input is NaN and counts as missed.
func Checks(rows []Row) []Check {
	// bestPeer returns the best peer's value of unit in scenario and its
	// name; lower says whether lower values are better.
	bestPeer := func(scenario []string, unit string, lower bool) (float64, string) {
		best, name := nan, "no peer"
		for _, p := range Peers {
			v := get(rows, unit, append(clone(scenario), p)...)
			if math.IsNaN(v) {
				continue
			}
			if math.IsNaN(best) || lower && v < best || !lower && v > best {
				best, name = v, p
			}
		}
		return best, name
	}
	var cs []Check
	add := func(group, what string, got float64, op string, target float64) {
		cs = append(cs, Check{group, what, got, op, target})
	}
	// vsPeer adds st's unit in scenario ÷ the best peer's there.
	vsPeer := func(scenario []string, st, unit string, lower bool, op string, target float64) {
		best, name := bestPeer(scenario, unit, lower)
		sc := strings.Join(scenario, "/")
		add(sc, fmt.Sprintf("%s: %s %s ÷ best peer's (%s)", sc, st, unit, name),
			get(rows, unit, append(clone(scenario), st)...)/best, op, target)
	}
	// vsRow adds st's unit in scenario ÷ other's there.
	vsRow := func(scenario []string, st, other, unit, op string, target float64) {
		sc := strings.Join(scenario, "/")
		add(sc, fmt.Sprintf("%s: %s %s ÷ %s's", sc, st, unit, other),
			get(rows, unit, append(clone(scenario), st)...)/get(rows, unit, append(clone(scenario), other)...), op, target)
	}
	// value adds st's unit in scenario itself.
	value := func(scenario []string, st, unit, op string, target float64) {
		sc := strings.Join(scenario, "/")
		add(sc, fmt.Sprintf("%s: %s %s", sc, st, unit), get(rows, unit, append(clone(scenario), st)...), op, target)
	}
	many := []string{"ManyKeys"}
	cluster := []string{"ManyKeysCluster"}
	unc := []string{"Uncontended"}
	hot := []string{"HotKey", "empty"}

	vsPeer(many, "pubsub", "acq/s", false, ">=", 1.25)
	vsPeer(many, "pubsub", "redis-cpu-us/op", true, "<=", 0.8)
	vsPeer(many, "pubsub", "redis-us/op", true, "<=", 1)
	vsRow(many, "hybrid", "pubsub", "acq/s", ">=", 0.95)
	value(many, "pubsub", "keys-left/op", "<=", 0)
	value(many, "hybrid", "keys-left/op", "<=", 0)

	vsRow(cluster, "pubsub", "rueidislock", "acq/s", ">=", 1.1)

	vsPeer(unc, "pubsub", "redis-cpu-us/op", true, "<=", 1)
	vsPeer(unc, "pubsub", "client-cpu-us/op", true, "<=", 1.2)
	value(unc, "pubsub", "round-trips/op", "<=", 2)
	value(unc, "pubsub", "redis-cmds/op", "<=", 5)

	vsPeer(hot, "pubsub", "acq/s", false, ">=", 1.3)
	vsPeer(hot, "pubsub", "redis-cpu-us/op", true, "<=", 0.7)
	value(hot, "pubsub", "jain", ">=", 0.99)
	vsPeer(hot, "hybrid", "acq/s", false, ">=", 15)
	value(hot, "hybrid", "redis-cmds/op", "<=", 0.5)

	// Read-write: the RW mutex against the plain mutex of the same
	// implementation, on one hot key with a 1 ms critical section.
	readMostly, writeHeavy := []string{"ReadMostly"}, []string{"WriteHeavy"}
	vsRow(readMostly, "distributed-rw", "pubsub", "acq/s", ">=", 3)
	value(readMostly, "distributed-rw", "jain", ">=", 0.99)
	vsRow(writeHeavy, "distributed-rw", "pubsub", "acq/s", ">=", 0.9)
	value(writeHeavy, "distributed-rw", "jain", ">=", 0.99)
	vsRow(readMostly, "hybrid-rw", "hybrid", "acq/s", ">=", 5)
	vsRow(writeHeavy, "hybrid-rw", "hybrid", "acq/s", ">=", 0.9)
	value(readMostly, "hybrid-rw", "jain", ">=", 0.99)

	add("Handoff", "Handoff: pubsub p50 handoff ÷ notice p50",
		get(rows, "p50-handoff-ns", "Handoff", "pubsub")/get(rows, "p50-handoff-ns", "Handoff", "notice"), "<=", 1.5)

	const earlier = "earlier targets, against one PING round trip"
	add(earlier, "HotKey/empty: pubsub acq/s ÷ bound 1/(2·RTT)", get(rows, "bound-ratio", "HotKey", "empty", "pubsub"), ">=", 0.8)
	add(earlier, "HotKey/empty: pubsub redis-cmds/op", get(rows, "redis-cmds/op", "HotKey", "empty", "pubsub"), "<=", 5)
	add(earlier, "Handoff: pubsub p50 handoff ÷ PING RTT", get(rows, "handoff/rtt", "Handoff", "pubsub"), "<=", 3)
	return cs
}

func clone(s []string) []string { return append([]string(nil), s...) }

// PrintChecks writes one line per target, under a line naming its
// group: met or missed, and by how much; then a count of those met.
func PrintChecks(w io.Writer, cs []Check) {
	group := ""
	met := 0
	for _, c := range cs {
		if c.Group != group {
			if group != "" {
				fmt.Fprintln(w)
			}
			group = c.Group
			fmt.Fprintf(w, "Targets, %s:\n", group)
		}
		verdict := "MET"
		if c.Met() {
			met++
		} else {
			verdict = "MISSED"
		}
		by := ""
		switch {
		case math.IsNaN(c.Got):
			by = " (not measured in this run)"
		case c.Got != 0 && c.Target != 0:
			kind := "limit"
			if c.Op == ">=" {
				kind = "target"
			}
			by = fmt.Sprintf(" (%.3gx the %s)", c.Got/c.Target, kind)
		}
		fmt.Fprintf(w, "%-6s %-62s %9.3g  target %s %g%s\n", verdict, c.What, c.Got, c.Op, c.Target, by)
	}
	fmt.Fprintf(w, "\n%d of %d targets met.\n", met, len(cs))
}
