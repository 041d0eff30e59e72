package reliability

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/faulttest"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/redis/go-redis/v9"
)

// ctxTimeouts makes go-redis honour ctx deadlines on the socket. Without
// it a command stuck on a stalled connection returns only at ReadTimeout
// (3s by default), whatever the ctx says: see TestStalledCommandsDefaultClient.
func ctxTimeouts(o *redis.Options) { o.ContextTimeoutEnabled = true }

// TestCommandPathFaults partitions, stalls (blackhole) and slows the
// command connections of one instance at a time, through its proxy, while
// the workload runs. Faults longer than the TTL cost the instance its
// leases: overlaps are excused only for holders that learned it.
func TestCommandPathFaults(t *testing.T) {
	forKinds(t, allKinds, func(t *testing.T, kind string) {
		leakcheck.Register(t)
		e := setup(t, config{kind: kind, proxy: true, client: ctxTimeouts})
		h := faulttest.NewHistory(e.cfg.ttl, liveness)
		f := &faulttest.Fenced{}
		w := e.workload(h, f, 3)
		w.LockTimeout = time.Second
		var counts map[string]int
		w.Run(t, runFor(4*time.Second), func(until time.Time) {
			// Faults from below to above the TTL.
			counts = pathFaults{path: faulttest.Commands, spread: 1500 * time.Millisecond, latencyShare: 2}.inject(h, e.proxies, until)
		})
		e.close()
		finish(t, h, fmt.Sprintf("faults=%v fenced-writes=%d rejected=%d", counts, f.Accepted(), f.Rejected()))
	})
}

// TestSubscriberPathFaults partitions, stalls and slows only the
// subscriber connections of one instance at a time. Commands work, so no
// lease may be lost and no holder may overlap another; waiters must still
// get the lock (a stalled subscriber costs at most the poll bound).
func TestSubscriberPathFaults(t *testing.T) {
	forKinds(t, []string{pubsub, hyb}, func(t *testing.T, kind string) {
		leakcheck.Register(t)
		e := setup(t, config{kind: kind, proxy: true, client: ctxTimeouts,
			opts: []distributed.Option{distributed.WithPollInterval(200 * time.Millisecond)}})
		h := faulttest.NewHistory(e.cfg.ttl, liveness)
		f := &faulttest.Fenced{}
		w := e.workload(h, f, 2)
		w.LockTimeout = 2 * time.Second
		var counts map[string]int
		w.Run(t, runFor(3*time.Second), func(until time.Time) {
			counts = pathFaults{path: faulttest.Subscriber, spread: 600 * time.Millisecond, latencyShare: 1, kill: true}.inject(h, e.proxies, until)
		})
		e.close()
		finish(t, h, fmt.Sprintf("faults=%v fenced-writes=%d", counts, f.Accepted()))
		if s := h.Stats(); s.Lost != 0 {
			t.Errorf("subscriber faults cost %d leases; want 0 (commands were never cut)", s.Lost)
		}
	})
}

// pathFaults injects faults on one path of the instances' proxies, one
// instance at a time, every 50-150ms until shortly before until: a
// partition, a blackhole or added latency (and, with kill, killed
// connections). A fault lasts 50ms + rand.N(spread), a latency fault that
// divided by latencyShare. Each is recorded in the history.
type pathFaults struct {
	path         faulttest.Path
	spread       time.Duration
	latencyShare time.Duration
	kill         bool
}

// inject runs the faults and returns how many of each kind it injected.
func (pf pathFaults) inject(h *faulttest.History, proxies []*faulttest.Proxy, until time.Time) map[string]int {
	counts := map[string]int{}
	kinds := 3
	if pf.kill {
		kinds = 4
	}
	for time.Now().Add(200 * time.Millisecond).Before(until) {
		time.Sleep(50*time.Millisecond + rand.N(100*time.Millisecond))
		p := proxies[rand.IntN(len(proxies))]
		d := 50*time.Millisecond + rand.N(pf.spread)
		var name string
		switch rand.IntN(kinds) {
		case 0:
			name = "partition"
			end := h.Fault(name)
			p.Partition(pf.path)
			time.Sleep(d)
			p.Heal()
			end()
		case 1:
			name = "blackhole"
			end := h.Fault(name)
			p.Blackhole(pf.path)
			time.Sleep(d)
			p.Heal()
			end()
		case 2:
			name = "latency"
			end := h.Fault(name)
			l := time.Millisecond + rand.N(30*time.Millisecond)
			p.SetLatency(l, l, pf.path)
			time.Sleep(d / pf.latencyShare)
			p.SetLatency(0, 0)
			end()
		case 3:
			name = "kill"
			end := h.Fault(name)
			p.Kill(pf.path)
			end()
		}
		counts[name]++
	}
	return counts
}

// TestStalledCommandsDefaultClient documents what a client with default
// options does when its command connection stalls: go-redis ignores ctx
// deadlines on the socket (ContextTimeoutEnabled is false by default), so
// a Lock stuck in a command returns at the client's ReadTimeout, not at
// its ctx deadline. The test sets ReadTimeout to 1500ms and checks that
// Lock returns by then plus the liveness bound: no hang, whatever the
// client options; the ctx overrun it measures is logged.
func TestStalledCommandsDefaultClient(t *testing.T) {
	leakcheck.Register(t)
	const readTimeout = 1500 * time.Millisecond
	e := setup(t, config{kind: pubsub, instances: 1, proxy: true, client: func(o *redis.Options) {
		o.ReadTimeout = readTimeout
		o.MaxRetries = -1
	}})
	m := e.ms[0]
	if l, err := m.Lock(ctxFor(t, 5*time.Second), "warm"); err != nil {
		t.Fatalf("Lock(warm) = %v", err)
	} else if err := l.Unlock(); err != nil {
		t.Fatalf("Unlock = %v", err)
	}
	e.proxies[0].Blackhole(faulttest.Commands)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	l, err := m.Lock(ctx, "k")
	took := time.Since(start)
	e.proxies[0].Heal()
	if err == nil {
		l.Unlock()
		t.Fatalf("Lock through a stalled connection = nil error; want an error")
	}
	if took > readTimeout+liveness {
		t.Errorf("Lock through a stalled connection took %v; want at most ReadTimeout %v + %v", took, readTimeout, liveness)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock after its ctx deadline = %v; want errors.Is(err, context.DeadlineExceeded)", err)
	}
	t.Logf("Lock with a 100ms ctx through a stalled command connection returned after %v: %v", took, err)
}

// TestPausedHolder pauses a holder longer than its TTL: its instance's
// connections are cut (renewal fails), or its lease has no renewal and it
// simply holds past the TTL. It must learn it lost the lease (Done closes,
// Err is ErrLost, a WithLease ctx is cancelled with cause ErrLost); another
// instance then takes the key, and the paused holder's fenced writes are
// rejected.
func TestPausedHolder(t *testing.T) {
	for _, mode := range []string{"partition", "blackhole", "norenewal"} {
		t.Run(mode, func(t *testing.T) {
			forKinds(t, allKinds, func(t *testing.T, kind string) { testPausedHolder(t, kind, mode) })
		})
	}
}

func testPausedHolder(t *testing.T, kind, mode string) {
	leakcheck.Register(t)
	ttl := 300 * time.Millisecond
	cfg := config{kind: kind, instances: 1, ttl: ttl, proxy: true, client: ctxTimeouts}
	if mode == "norenewal" {
		cfg.opts = []distributed.Option{distributed.WithoutRenewal()}
	}
	e := setup(t, cfg)
	h := faulttest.NewHistory(ttl, liveness)
	f := &faulttest.Fenced{}
	// Only the paused holder needs the short TTL: the next holder gets a
	// long one, so that its own Unlock, slowed by -race and the proxy on
	// a loaded machine, never finds its lease expired.
	a, b := e.ms[0], e.ms[e.addWith(t, distributed.WithTTL(5*time.Second))]
	knewFirst := 0
	n := iterations(3)
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("paused%d", i)
		ha, err := h.Lock(ctxFor(t, 5*time.Second), a, 0, key)
		if err != nil {
			t.Fatalf("Lock(%q) on instance 0 = %v", key, err)
		}
		if err := ha.Write(f); err != nil {
			t.Fatalf("first fenced write of the holder = %v; want nil", err)
		}
		lctx, cancel := mutex.WithLease(context.Background(), ha.Lease)
		end := h.Fault("pause: " + mode)
		switch mode {
		case "partition":
			e.proxies[0].Partition()
		case "blackhole":
			e.proxies[0].Blackhole()
		}
		select {
		case <-ha.Lease.Done():
		case <-time.After(ttl + 5*time.Second):
			t.Fatalf("%s: holder paused past its TTL of %v never learned it lost the lease (Done not closed after %v)", mode, ttl, ttl+5*time.Second)
		}
		if err := ha.Lease.Err(); !errors.Is(err, mutex.ErrLost) {
			t.Errorf("%s: Err() after the pause = %v; want ErrLost", mode, err)
		}
		select {
		case <-lctx.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: WithLease ctx not cancelled 5s after the lease was lost", mode)
		}
		if cause := context.Cause(lctx); !errors.Is(cause, mutex.ErrLost) {
			t.Errorf("%s: context.Cause(WithLease ctx) = %v; want ErrLost", mode, cause)
		}
		cancel()
		// Another instance takes the key once Redis let it expire.
		hb, err := h.Lock(ctxFor(t, 5*time.Second), b, 1, key)
		if err != nil {
			t.Fatalf("Lock(%q) on instance 1 after the holder's TTL = %v; want the lock", key, err)
		}
		if errors.Is(ha.Lease.Err(), mutex.ErrLost) {
			knewFirst++
		}
		if err := hb.Write(f); err != nil {
			t.Errorf("fenced write of the new holder = %v; want nil", err)
		}
		// The paused holder resumes and writes: rejected.
		e.proxies[0].Heal()
		if err := ha.Write(f); !errors.Is(err, faulttest.ErrStale) {
			t.Errorf("%s: fenced write of the resumed holder (token %d, new holder %d) = %v; want ErrStale", mode, ha.Token, hb.Token, err)
		}
		if err := ha.Unlock(); !errors.Is(err, mutex.ErrLost) {
			t.Errorf("%s: Unlock of the lost lease = %v; want ErrLost", mode, err)
		}
		if err := hb.Unlock(); err != nil {
			t.Errorf("Unlock of the new holder = %v; want nil", err)
		}
		end()
	}
	e.close()
	finish(t, h, fmt.Sprintf("pauses=%d knew-before-next-holder=%d/%d rejected-stale-writes=%d", n, knewFirst, n, f.Rejected()))
}

// TestReleaseBeforeSubscribe is the race Redisson had: the holder releases
// (and publishes) while the waiter is still subscribing, so the notice
// reaches nobody. The waiter must not sleep until the poll bound: it
// re-checks the lock after Redis confirmed the subscription. The poll
// bound and the TTL are 30s and the waiter's ctx 5s, so a missed release
// fails the Lock. Latency on the waiter's subscriber path widens the
// window between SUBSCRIBE and its confirmation; the release comes at a
// random moment in it.
func TestReleaseBeforeSubscribe(t *testing.T) {
	forKinds(t, []string{pubsub, hyb}, func(t *testing.T, kind string) {
		leakcheck.Register(t)
		e := setup(t, config{kind: kind, instances: 2, ttl: 30 * time.Second, proxy: true,
			opts: []distributed.Option{distributed.WithPollInterval(30 * time.Second)}})
		h := faulttest.NewHistory(e.cfg.ttl, liveness)
		e.proxies[1].SetLatency(2*time.Millisecond, 0, faulttest.Subscriber)
		a, b := e.ms[0], e.ms[1]
		n := iterations(100)
		var slowest time.Duration
		for i := 0; i < n; i++ {
			key := fmt.Sprintf("race%d", i)
			ha, err := h.Lock(ctxFor(t, 5*time.Second), a, 0, key)
			if err != nil {
				t.Fatalf("Lock(%q) on instance 0 = %v", key, err)
			}
			type result struct {
				hd  *faulttest.Hold
				err error
				d   time.Duration
			}
			got := make(chan result, 1)
			wctx := ctxFor(t, 5*time.Second)
			go func() {
				start := time.Now()
				hd, err := h.Lock(wctx, b, 1, key)
				got <- result{hd, err, time.Since(start)}
			}()
			time.Sleep(rand.N(4 * time.Millisecond)) // the release lands anywhere in the subscribe
			if err := ha.Unlock(); err != nil {
				t.Fatalf("Unlock = %v", err)
			}
			r := <-got
			if r.err != nil {
				t.Fatalf("iteration %d: waiter's Lock = %v after %v; want the lock (its release was missed: the waiter slept toward the 30s poll bound)", i, r.err, r.d)
			}
			slowest = max(slowest, r.d)
			if err := r.hd.Unlock(); err != nil {
				t.Fatalf("Unlock = %v", err)
			}
		}
		e.close()
		finish(t, h, fmt.Sprintf("iterations=%d slowest-waiter=%v", n, slowest))
	})
}

// TestLateAcquireReply delays the replies to one instance's commands
// (600ms, server to client) past its TTL (300ms): its acquire takes the
// free lock at once, but Lock learns it only after the lock has expired
// in Redis, and meanwhile another instance takes the key and releases
// it. A Lock that returns must hold the lock: its lease must not be past
// its validity when it returns (the lease's validity, counted from the
// sending of the acquire, ran out 300ms after it), and its token must be
// greater than that of the holder that came and went before it returned.
func TestLateAcquireReply(t *testing.T) {
	forKinds(t, allKinds, func(t *testing.T, kind string) {
		leakcheck.Register(t)
		ttl := 300 * time.Millisecond
		e := setup(t, config{kind: kind, instances: 2, ttl: ttl, proxy: true, client: ctxTimeouts})
		h := faulttest.NewHistory(ttl, liveness)
		if l, err := e.ms[0].Lock(ctxFor(t, 5*time.Second), "warm"); err != nil {
			t.Fatalf("Lock(warm) = %v", err)
		} else if err := l.Unlock(); err != nil {
			t.Fatalf("Unlock = %v", err)
		}
		const key = "late"
		lockKey := e.prefix + "{" + key + "}"
		end := h.Fault("replies delayed 600ms")
		e.proxies[0].SetLatency(0, 2*ttl, faulttest.Commands)
		type result struct {
			hd    *faulttest.Hold
			err   error
			errAt error // the lease's Err when Lock returned
			took  time.Duration
		}
		got := make(chan result, 1)
		start := time.Now()
		go func() {
			hd, err := h.Lock(ctxFor(t, 5*time.Second), e.ms[0], 0, key)
			r := result{hd: hd, err: err, took: time.Since(start)}
			if err == nil {
				r.errAt = hd.Lease.Err()
			}
			got <- r
		}()
		// The acquire ran: the key is the late instance's in Redis.
		if err := pollUntil(5*time.Second, func() error {
			return e.admin.Get(context.Background(), lockKey).Err()
		}); err != nil {
			t.Fatalf("GET %s: %v; want the late instance's holding", lockKey, err)
		}
		ran := time.Since(start)
		// Another instance takes the key once it expired, and releases it.
		var hb *faulttest.Hold
		if err := pollUntil(5*time.Second, func() error {
			l, err := e.ms[1].TryLock(ctxFor(t, time.Second), key)
			if err == nil {
				hb, _ = h.Record(1, key, l, nil)
			}
			return err
		}); err != nil {
			t.Fatalf("TryLock(%q) on instance 1 after the late instance's TTL = %v", key, err)
		}
		took := time.Since(start)
		if err := hb.Unlock(); err != nil {
			t.Errorf("Unlock = %v", err)
		}
		r := <-got
		e.proxies[0].SetLatency(0, 0)
		end()
		if r.err == nil {
			if r.hd.Token <= hb.Token {
				t.Errorf("Lock(%q) returned after %v with token %d, lower than %d of the holder that locked at %v and unlocked before it returned (its acquire ran at %v; Err() at return: %v); want an error or a greater token",
					key, r.took.Round(time.Millisecond), r.hd.Token, hb.Token, took.Round(time.Millisecond), ran.Round(time.Millisecond), r.errAt)
			}
			if err := r.hd.Unlock(); err != nil && !errors.Is(err, mutex.ErrLost) {
				t.Errorf("Unlock of the late lease = %v", err)
			}
		}
		e.close()
		finish(t, h, fmt.Sprintf("late-lock-err=%v", r.err))
	})
}
