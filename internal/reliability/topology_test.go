package reliability

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/faulttest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/redis/go-redis/v9"
)

// group runs one env per kind on one shared deployment (Sentinel or
// Cluster) at once, each kind with its own instances, prefix, history and
// fenced store, while the test injects faults that every kind sees: one
// failover serves all three kinds instead of costing one each.
type group struct {
	t     *testing.T
	kinds []string
	keys  []string
	envs  []*env
	hs    []*faulttest.History
	fs    []*faulttest.Fenced
	ws    []*faulttest.Workload
	runs  []*faulttest.Running
	began time.Time // when the workloads started
}

// newGroup sets up an env per kind with cfg (cfg.kind is ignored) and a
// workload over keys for each.
func newGroup(t *testing.T, kinds []string, cfg config, keys []string) *group {
	t.Helper()
	g := &group{t: t, kinds: kinds, keys: keys}
	for _, k := range kinds {
		c := cfg
		c.kind = k
		e := setup(t, c)
		h := faulttest.NewHistory(e.cfg.ttl, liveness)
		f := &faulttest.Fenced{}
		w := e.workload(h, f, len(keys))
		w.Keys = keys
		w.Goroutines = 3
		g.envs = append(g.envs, e)
		g.hs = append(g.hs, h)
		g.fs = append(g.fs, f)
		g.ws = append(g.ws, w)
	}
	return g
}

// start starts every kind's workload.
func (g *group) start() {
	g.began = time.Now()
	for _, w := range g.ws {
		g.runs = append(g.runs, w.Start())
	}
}

// startOn starts, for every kind, one more workload on the same
// instances, history and fenced store: one goroutine per instance locking
// only keys, so that those keys are tried however slow the others are.
func (g *group) startOn(keys []string) {
	for i, w := range g.ws {
		x := &faulttest.Workload{Instances: w.Instances, Keys: keys, Goroutines: 1, MaxHold: w.MaxHold, Fenced: g.fs[i], History: g.hs[i]}
		g.runs = append(g.runs, x.Start())
	}
}

// fault records a fault named name in every kind's history; the returned
// func records its end.
func (g *group) fault(name string) (end func()) {
	return g.faultWith(name, (*faulttest.History).Fault)
}

// splitBrain is fault for a failover where two masters take writes for a
// while (see faulttest.History.SplitBrain).
func (g *group) splitBrain(name string) (end func()) {
	return g.faultWith(name, (*faulttest.History).SplitBrain)
}

func (g *group) faultWith(name string, f func(*faulttest.History, string) func()) (end func()) {
	var ends []func()
	for _, h := range g.hs {
		ends = append(ends, f(h, name))
	}
	return func() {
		for _, e := range ends {
			e()
		}
	}
}

// waitEach polls until every instance of every kind has acquired a lock
// on one of keys (nil: any of the workload's) at least n times after
// since, and returns, per kind, when the first acquisition after since of
// its slowest instance returned. It fails the test after within.
func (g *group) waitEach(what string, since time.Time, keys []string, n int, within time.Duration) []time.Time {
	g.t.Helper()
	deadline := time.Now().Add(within)
	for {
		var missing []string
		firsts := make([]time.Time, len(g.kinds))
		for i, h := range g.hs {
			count := map[int]int{}
			first := map[int]time.Time{}
			for _, a := range h.Acquisitions() {
				if !a.At.After(since) || (keys != nil && !slices.Contains(keys, a.Key)) {
					continue
				}
				if count[a.Instance] == 0 {
					first[a.Instance] = a.At
				}
				count[a.Instance]++
			}
			for inst := range g.ws[i].Instances {
				if count[inst] < n {
					missing = append(missing, fmt.Sprintf("%s instance %d: %d", g.kinds[i], inst, count[inst]))
				}
				if first[inst].After(firsts[i]) {
					firsts[i] = first[inst]
				}
			}
		}
		if len(missing) == 0 {
			return firsts
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%s: not every instance acquired a lock %d times within %v (acquisitions so far: %s)",
				what, n, within, strings.Join(missing, ", "))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// attempts returns, per kind, how many Locks have returned so far.
func (g *group) attempts() []int64 {
	out := make([]int64, len(g.hs))
	for i, h := range g.hs {
		s := h.Stats()
		out[i] = s.Acquisitions + s.LockErrors + s.CtxErrors
	}
	return out
}

// waitAttempts polls until every kind has made n more Lock calls (of any
// outcome) than it had made at from, so that the workload demonstrably
// ran through the current phase of a fault.
func (g *group) waitAttempts(what string, from []int64, n int64, within time.Duration) {
	g.t.Helper()
	deadline := time.Now().Add(within)
	for {
		now := g.attempts()
		done := true
		for i := range now {
			if now[i]-from[i] < n {
				done = false
			}
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%s: Lock calls per kind %v, %v before; want %d more within %v", what, now, from, n, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// timeouts returns, per kind, how many Locks have ended by their ctx so
// far.
func (g *group) timeouts() []int64 {
	out := make([]int64, len(g.hs))
	for i, h := range g.hs {
		out[i] = h.Stats().CtxErrors
	}
	return out
}

// stop stops every workload.
func (g *group) stop() {
	g.t.Helper()
	for _, r := range g.runs {
		r.Stop(g.t)
	}
	g.runs = nil
}

// finish closes every env (checking that nothing is left in Redis), then
// checks each kind's history in a subtest named after the kind, with the
// figures extra(i) adds for kind i.
func (g *group) finish(extra func(i int) string) {
	g.t.Helper()
	for _, e := range g.envs {
		e.close()
	}
	for i, kind := range g.kinds {
		g.t.Run(kind, func(t *testing.T) {
			finish(t, g.hs[i], fmt.Sprintf("%s fenced-writes=%d rejected=%d", extra(i), g.fs[i].Accepted(), g.fs[i].Rejected()))
		})
	}
}

// outage measures how long a fault that began at from kept locks on keys
// (nil: any key) from being taken: the longest gap between successive
// acquisitions that ends after from and no later than until, and when it
// ended. The gap may begin before from (the last lock before the fault).
func outage(acqs []faulttest.Acquisition, keys []string, from, until time.Time) (gap time.Duration, back time.Time) {
	prev := from
	for _, a := range acqs {
		if keys != nil && !slices.Contains(keys, a.Key) {
			continue
		}
		if !a.At.After(from) {
			prev = a.At
			continue
		}
		if a.At.After(until) {
			break
		}
		if d := a.At.Sub(prev); d > gap {
			gap, back = d, a.At
		}
		prev = a.At
	}
	return gap, back
}

// recoveries measures, per kind, the outage of keys (nil: any) that a
// fault which began at from caused, up to until, and returns it as log
// text: when a lock was taken again, when every instance had taken one
// since the outage began, and the longest gap. It fails the test if a
// kind took no lock in (from, until].
func (g *group) recoveries(keys []string, from, until time.Time) string {
	g.t.Helper()
	var parts []string
	for i, h := range g.hs {
		acqs := h.Acquisitions()
		gap, back := outage(acqs, keys, from, until)
		if back.IsZero() {
			g.t.Errorf("%s: no lock taken between the fault and %v after it", g.kinds[i], until.Sub(from).Round(time.Millisecond))
			continue
		}
		began := back.Add(-gap)
		var all time.Time
		for inst := range g.ws[i].Instances {
			for _, a := range acqs {
				if a.Instance == inst && a.At.After(began) && (keys == nil || slices.Contains(keys, a.Key)) {
					if a.At.After(all) {
						all = a.At
					}
					break
				}
			}
		}
		parts = append(parts, fmt.Sprintf("%s locking again after %v, on every instance after %v (longest gap %v)", g.kinds[i],
			back.Sub(from).Round(time.Millisecond), all.Sub(from).Round(time.Millisecond), gap.Round(time.Millisecond)))
	}
	return strings.Join(parts, "; ")
}

// rate returns, per kind, the acquisitions per second of keys (nil: any)
// in [from, to) (from no earlier than the start of the workloads), as log
// text.
func (g *group) rate(keys []string, from, to time.Time) string {
	if from.Before(g.began) {
		from = g.began
	}
	var parts []string
	for i, h := range g.hs {
		n := 0
		for _, a := range h.Acquisitions() {
			if !a.At.Before(from) && a.At.Before(to) && (keys == nil || slices.Contains(keys, a.Key)) {
				n++
			}
		}
		parts = append(parts, fmt.Sprintf("%s %.0f/s", g.kinds[i], float64(n)/to.Sub(from).Seconds()))
	}
	return strings.Join(parts, " ")
}

// pollUntil calls cond every 10ms until it returns nil or within passes;
// it returns cond's last error.
func pollUntil(within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serverPort returns the port of the server c's next command reaches.
func serverPort(c redis.UniversalClient) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	text, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "tcp_port:"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("INFO server has no tcp_port")
}

// redirects returns how many ASK and MOVED replies the node at addr has
// sent (INFO errorstats).
func redirects(addr string) (ask, moved int64, err error) {
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	text, err := c.Info(ctx, "errorstats").Result()
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(text, "\n") {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimPrefix(v, "count="), 10, 64)
		switch name {
		case "errorstat_ASK":
			ask = n
		case "errorstat_MOVED":
			moved = n
		}
	}
	return ask, moved, nil
}

// crc16 is the CRC16 (XMODEM) Redis Cluster hashes keys with: a key
// whose hash tag is tag lives in slot crc16(tag) % 16384.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// sameSlotKeys returns n keys, base0, base1, ..., that share one hash
// slot (the lock key of a key k carries the hash tag {k}), and the slot.
func sameSlotKeys(base string, n int) ([]string, int) {
	bySlot := map[int][]string{}
	for i := 0; ; i++ {
		k := base + strconv.Itoa(i)
		s := int(crc16(k) % 16384)
		bySlot[s] = append(bySlot[s], k)
		if len(bySlot[s]) == n {
			return bySlot[s], s
		}
	}
}

// probeOpts are the options of the wake-up probes: a TTL and a poll
// interval far longer than the waiter's ctx, so that only its grant
// message (or a wake after its subscriber reconnected) can let it in.
func probeOpts(prefix string) []distributed.Option {
	return []distributed.Option{
		distributed.WithPrefix(prefix),
		distributed.WithTTL(30 * time.Second),
		distributed.WithPollInterval(30 * time.Second),
		distributed.WithLogger(slog.New(slog.DiscardHandler)),
	}
}

// waitResult is what a waiting Lock of a probe returned.
type waitResult struct {
	l   mutex.Lease
	err error
	at  time.Time
}
