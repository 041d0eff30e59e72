package reliability

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/faulttest"
	"github.com/keyedmutex/keyedmutex/internal/logtest"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/keyedmutex/keyedmutex/mutex/hybrid"
	"github.com/redis/go-redis/v9"
)

// SoakEnv is the environment variable that turns the short form into a
// soak: KEYEDMUTEX_SOAK=10m makes the timed runs last about 10 minutes in
// total.
const SoakEnv = "KEYEDMUTEX_SOAK"

// shortTotal is roughly the sum of the timed runs of the short form; a
// soak scales each by soak/shortTotal.
const shortTotal = 40 * time.Second

var scale = 1.0

// totals sums the figures of every test, printed by TestMain.
var totals struct {
	sync.Mutex
	faulttest.Stats
	tests int
}

func TestMain(m *testing.M) {
	if s := os.Getenv(SoakEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			fmt.Fprintf(os.Stderr, "%s=%q: want a positive duration such as 10m\n", SoakEnv, s)
			os.Exit(2)
		}
		scale = max(1, float64(d)/float64(shortTotal))
	}
	start := time.Now()
	code := m.Run()
	totals.Lock()
	fmt.Printf("reliability: %d runs in %v: %v\n", totals.tests, time.Since(start).Round(time.Second), totals.Stats)
	totals.Unlock()
	os.Exit(code)
}

// runFor scales a short-form duration for a soak.
func runFor(short time.Duration) time.Duration {
	return time.Duration(float64(short) * scale)
}

// iterations scales a short-form iteration count for a soak.
func iterations(short int) int { return int(float64(short) * scale) }

// kinds are the implementations under test.
const (
	pubsub = "pubsub"
	spin   = "spin"
	hyb    = "hybrid"
)

var allKinds = []string{pubsub, spin, hyb}

// config sizes an env.
type config struct {
	kind      string
	instances int
	ttl       time.Duration // the default is 1s
	proxy     bool          // each instance reaches Redis through its own proxy
	opts      []distributed.Option
	client    func(*redis.Options) // adjusts each instance's client options
	on        *deployment          // if set, the deployment used instead of a server of the env's own
}

// deployment is a Redis deployment other than a standalone server of the
// env's own: a Sentinel deployment or a Cluster, which several envs (one
// per kind) share.
type deployment struct {
	// dial returns a new client, the one of one instance (one process).
	dial func() redis.UniversalClient
	// nodes returns the addresses of the data nodes that must be left
	// clean: no lock key, no subscribed channel.
	nodes func() []string
}

// env is one Redis server (or the deployment of config.on) and several
// instances of one implementation, each with its own client (optionally
// through its own proxy).
type env struct {
	t       *testing.T
	cfg     config
	srv     *redistest.Server     // nil with config.on
	admin   redis.UniversalClient // direct, not proxied
	prefix  string
	proxies []*faulttest.Proxy
	clients []redis.UniversalClient
	dists   []*distributed.Mutex[string]
	hybrids []*hybrid.Mutex[string]
	ms      []mutex.Keyed[string]
	reports logtest.Recorder // what the instances logged
	closed  bool
}

var seq atomic.Int64

func setup(t *testing.T, cfg config) *env {
	t.Helper()
	if cfg.ttl == 0 {
		cfg.ttl = time.Second
	}
	if cfg.instances == 0 {
		cfg.instances = 3
	}
	e := &env{t: t, cfg: cfg}
	if cfg.on != nil {
		if cfg.proxy || cfg.client != nil {
			t.Fatalf("setup: config.on takes no proxy and no client options")
		}
		e.admin = cfg.on.dial()
	} else {
		e.srv = redistest.Start(t)
		e.admin = redis.NewClient(&redis.Options{Addr: e.srv.Addr()})
	}
	t.Cleanup(func() { e.admin.Close() })
	e.prefix = fmt.Sprintf("rel%d:", seq.Add(1))
	for i := 0; i < cfg.instances; i++ {
		e.add(t)
	}
	t.Cleanup(e.close)
	return e
}

// add creates one more instance.
func (e *env) add(t *testing.T) int {
	t.Helper()
	var p *faulttest.Proxy
	var c redis.UniversalClient
	if e.cfg.on != nil {
		c = e.cfg.on.dial()
	} else {
		addr := e.srv.Addr()
		if e.cfg.proxy {
			p = faulttest.NewProxy(t, addr)
			addr = p.Addr()
		}
		o := &redis.Options{Addr: addr}
		if e.cfg.client != nil {
			e.cfg.client(o)
		}
		c = redis.NewClient(o)
	}
	logger := slog.New(&e.reports)
	opts := []distributed.Option{distributed.WithTTL(e.cfg.ttl), distributed.WithPrefix(e.prefix), distributed.WithLogger(logger)}
	if e.cfg.kind == spin {
		opts = append(opts, distributed.WithSpin(5*time.Millisecond))
	}
	opts = append(opts, e.cfg.opts...)
	d, err := distributed.New[string](c, opts...)
	if err != nil {
		c.Close()
		t.Fatalf("distributed.New = %v", err)
	}
	var m mutex.Keyed[string] = d
	var h *hybrid.Mutex[string]
	if e.cfg.kind == hyb {
		h, err = hybrid.New[string](d, hybrid.WithMaxLocalHandoffs(16), hybrid.WithLogger(logger))
		if err != nil {
			d.Close()
			c.Close()
			t.Fatalf("hybrid.New = %v", err)
		}
		m = h
	}
	e.proxies = append(e.proxies, p)
	e.clients = append(e.clients, c)
	e.dists = append(e.dists, d)
	e.hybrids = append(e.hybrids, h)
	e.ms = append(e.ms, m)
	return len(e.ms) - 1
}

// closeInstance closes instance i: hybrid, distributed, then its client.
func (e *env) closeInstance(i int) {
	e.closeMutex(i)
	e.clients[i].Close()
}

// closeMutex closes instance i's hybrid and distributed mutexes, not its
// client.
func (e *env) closeMutex(i int) {
	if h := e.hybrids[i]; h != nil {
		if err := h.Close(); err != nil {
			e.t.Logf("hybrid Close: %v", err)
		}
	}
	if err := e.dists[i].Close(); err != nil {
		e.t.Logf("distributed Close: %v", err)
	}
}

// close closes every instance and checks that Redis is left clean: no
// lock key once the TTL has passed, no subscribed channel.
func (e *env) close() {
	if e.closed {
		return
	}
	e.closed = true
	for i := range e.ms {
		e.closeInstance(i)
	}
	for _, p := range e.proxies {
		if p != nil {
			p.Heal()
		}
	}
	if e.cfg.on == nil {
		faulttest.CheckRedisClean(e.t, e.admin, e.prefix, e.cfg.ttl+5*time.Second)
		return
	}
	for _, addr := range e.cfg.on.nodes() {
		c := redis.NewClient(&redis.Options{Addr: addr})
		faulttest.CheckRedisClean(e.t, c, e.prefix, e.cfg.ttl+5*time.Second)
		c.Close()
	}
}

// keys returns n keys unique to this env.
func (e *env) keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("k%d", i)
	}
	return out
}

// workload returns a workload over every instance.
func (e *env) workload(h *faulttest.History, f *faulttest.Fenced, keys int) *faulttest.Workload {
	return &faulttest.Workload{
		Instances:  e.ms,
		Keys:       e.keys(keys),
		Goroutines: 4,
		MaxHold:    2 * time.Millisecond,
		Fenced:     f,
		History:    h,
	}
}

// liveness is the bound on how late Lock may return after its ctx ended:
// generous, a hang detector, not a speed threshold.
const liveness = time.Second

// finish checks the history, logs the figures and adds them to the totals.
func finish(t *testing.T, h *faulttest.History, extra string) {
	t.Helper()
	v := h.Check()
	for i, s := range v {
		if i == 20 {
			t.Errorf("... and %d more violations", len(v)-20)
			break
		}
		t.Errorf("violation: %s", s)
	}
	s := h.Stats()
	if s.Acquisitions == 0 {
		t.Errorf("no lock was acquired in the run: the test proved nothing")
	}
	t.Logf("%s: %v %s", t.Name(), s, extra)
	for msg, n := range h.LockErrors() {
		t.Logf("  Lock error x%d: %s", n, msg)
	}
	totals.Lock()
	totals.tests++
	totals.Acquisitions += s.Acquisitions
	totals.LockErrors += s.LockErrors
	totals.CtxErrors += s.CtxErrors
	totals.Lost += s.Lost
	totals.Faults += s.Faults
	totals.Violations += s.Violations
	totals.Unlock()
}

// forKinds runs f as a subtest per kind.
func forKinds(t *testing.T, kinds []string, f func(t *testing.T, kind string)) {
	for _, k := range kinds {
		t.Run(k, func(t *testing.T) { f(t, k) })
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
