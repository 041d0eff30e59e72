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
)

// TestNoFault is the control: the same workload with no fault must show
// no violation and no lost lease (holds are far shorter than the TTL and
// renewal is on), so every excuse the fault tests make is earned.
func TestNoFault(t *testing.T) {
	forKinds(t, allKinds, func(t *testing.T, kind string) {
		leakcheck.Register(t)
		e := setup(t, config{kind: kind})
		h := faulttest.NewHistory(e.cfg.ttl, liveness)
		f := &faulttest.Fenced{}
		e.workload(h, f, 3).Run(t, runFor(1500*time.Millisecond), nil)
		e.close()
		finish(t, h, fmt.Sprintf("fenced-writes=%d rejected=%d", f.Accepted(), f.Rejected()))
		if s := h.Stats(); s.Lost != 0 || s.LockErrors != 0 {
			t.Errorf("with no fault: %d leases lost, %d Lock errors; want 0 and 0", s.Lost, s.LockErrors)
		}
	})
}

// TestRedisRestart SIGKILLs redis-server and restarts it on the same port,
// again and again, while the workload runs. The restarted server has lost
// every lock (no persistence), so a holder can overlap a newer one until
// its renewal finds out: such overlaps are excused only if the older
// holder learned it lost its lease. Tokens must still increase (they are
// floored by the server clock), no Lock may hang, and once the faults
// stop nothing may be left behind.
func TestRedisRestart(t *testing.T) {
	forKinds(t, allKinds, func(t *testing.T, kind string) {
		leakcheck.Register(t)
		e := setup(t, config{kind: kind})
		h := faulttest.NewHistory(e.cfg.ttl, liveness)
		f := &faulttest.Fenced{}
		w := e.workload(h, f, 3)
		w.LockTimeout = time.Second
		restarts := 0
		w.Run(t, runFor(3*time.Second), func(until time.Time) {
			for time.Now().Add(300 * time.Millisecond).Before(until) {
				time.Sleep(100*time.Millisecond + rand.N(200*time.Millisecond)) // let it run
				end := h.Fault("redis restart")
				e.srv.Kill()
				time.Sleep(rand.N(150 * time.Millisecond)) // down for a while
				e.srv.Restart()
				end()
				restarts++
			}
		})
		e.close()
		finish(t, h, fmt.Sprintf("restarts=%d fenced-writes=%d rejected=%d reported-errors=%d", restarts, f.Accepted(), f.Rejected(), e.reports.Len()))
		if restarts == 0 {
			t.Errorf("no restart was injected")
		}
	})
}

// TestPubSubKill kills every Pub/Sub connection (CLIENT KILL TYPE pubsub)
// over and over. No data is lost, so there is no excuse: no overlap, no
// lost lease, and waiters keep getting the lock (a reconnect must wake
// them; a long poll bound makes a missed wake a timeout).
func TestPubSubKill(t *testing.T) {
	forKinds(t, []string{pubsub, hyb}, func(t *testing.T, kind string) {
		leakcheck.Register(t)
		e := setup(t, config{kind: kind, opts: []distributed.Option{distributed.WithPollInterval(30 * time.Second)}})
		h := faulttest.NewHistory(e.cfg.ttl, liveness)
		f := &faulttest.Fenced{}
		w := e.workload(h, f, 2)
		w.LockTimeout = 10 * time.Second // < the poll bound: a lost wake shows as a timeout
		var killed int64
		kills := 0
		w.Run(t, runFor(2*time.Second), func(until time.Time) {
			ctx := context.Background()
			for time.Now().Before(until) {
				time.Sleep(20*time.Millisecond + rand.N(80*time.Millisecond))
				n, err := e.admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Result()
				if err != nil {
					t.Errorf("CLIENT KILL TYPE pubsub: %v", err)
					return
				}
				killed += n
				kills++
			}
		})
		e.close()
		s := h.Stats()
		finish(t, h, fmt.Sprintf("kills=%d connections-killed=%d fenced-writes=%d", kills, killed, f.Accepted()))
		if s.Lost != 0 || s.CtxErrors != 0 {
			t.Errorf("with subscriber kills: %d leases lost, %d Locks timed out (after 10s, poll bound 30s); want 0 and 0", s.Lost, s.CtxErrors)
		}
		if killed == 0 {
			t.Errorf("CLIENT KILL TYPE pubsub never killed a connection: the fault was not injected")
		}
	})
}

// TestCancelAndClose cancels Locks at random moments and closes instances
// while Locks wait, then opens new ones. Every Lock must return promptly
// (its ctx, or ErrClosed), leases ended by Close must say so, and after
// the run nothing is left: no goroutine, subscription or lock key.
func TestCancelAndClose(t *testing.T) {
	forKinds(t, allKinds, func(t *testing.T, kind string) {
		leakcheck.Register(t)
		e := setup(t, config{kind: kind, instances: 2})
		h := faulttest.NewHistory(e.cfg.ttl, liveness)
		f := &faulttest.Fenced{}
		closes := 0
		deadline := time.Now().Add(runFor(2 * time.Second))
		for time.Now().Before(deadline) {
			// One instance that is closed mid-run, next to the long-lived ones.
			i := e.add(t)
			victim := e.ms[i]
			w := &faulttest.Workload{
				Instances:   []mutex.Keyed[string]{e.ms[0], e.ms[1], victim},
				Keys:        e.keys(2),
				Goroutines:  4,
				MaxHold:     2 * time.Millisecond,
				CancelOneIn: 3,
				Fenced:      f,
				History:     h,
			}
			w.Run(t, 300*time.Millisecond, func(until time.Time) {
				time.Sleep(rand.N(250 * time.Millisecond))
				end := h.Fault("close")
				e.closeMutex(i)
				end()
				closes++
			})
			e.clients[i].Close()
		}
		e.close()
		finish(t, h, fmt.Sprintf("closes=%d fenced-writes=%d", closes, f.Accepted()))
		if s := h.Stats(); s.CtxErrors == 0 {
			t.Errorf("no Lock was cancelled: the fault was not injected")
		}
	})
}

// TestRestartLongHolder holds a lock across a server restart that loses
// it. The holder must learn within about a TTL, by its renewal's ownership
// check, not at Unlock: Done closes with ErrLost, and another instance
// can then take the key.
func TestRestartLongHolder(t *testing.T) {
	forKinds(t, allKinds, func(t *testing.T, kind string) {
		leakcheck.Register(t)
		// Longer than a restart, so that the loss is found by the
		// ownership check of a renewal, not by the validity running out.
		ttl := 2 * time.Second
		e := setup(t, config{kind: kind, instances: 2, ttl: ttl})
		h := faulttest.NewHistory(ttl, liveness)
		n := iterations(2)
		for i := 0; i < n; i++ {
			key := fmt.Sprintf("long%d", i)
			ha, err := h.Lock(ctxFor(t, 5*time.Second), e.ms[0], 0, key)
			if err != nil {
				t.Fatalf("Lock(%q) = %v", key, err)
			}
			end := h.Fault("redis restart")
			e.srv.Kill()
			e.srv.Restart()
			end()
			restarted := time.Now()
			select {
			case <-ha.Lease.Done():
			case <-time.After(ttl + 5*time.Second):
				t.Fatalf("holder of %q did not learn in %v that a restart lost its lock (Done not closed)", key, ttl+5*time.Second)
			}
			if err := ha.Lease.Err(); !errors.Is(err, mutex.ErrLost) {
				t.Errorf("Err() after the restart = %v; want ErrLost", err)
			}
			learned := time.Since(restarted)
			hb, err := h.Lock(ctxFor(t, 5*time.Second), e.ms[1], 1, key)
			if err != nil {
				t.Fatalf("Lock(%q) on instance 1 after the restart = %v", key, err)
			}
			if hb.Token <= ha.Token {
				t.Errorf("token after the restart %d <= token before %d; want greater (floored by the server clock)", hb.Token, ha.Token)
			}
			if err := ha.Unlock(); !errors.Is(err, mutex.ErrLost) {
				t.Errorf("Unlock of the lost lease = %v; want ErrLost", err)
			}
			if err := hb.Unlock(); err != nil {
				t.Errorf("Unlock = %v", err)
			}
			t.Logf("holder learned of the loss %v after the restart (TTL %v)", learned.Round(time.Millisecond), ttl)
		}
		e.close()
		finish(t, h, fmt.Sprintf("restarts=%d", n))
	})
}

// TestUnlockDuringClose races a holder's Unlock with Close of its
// instance. Unlock is the lease's first: it must return nil (it released)
// or an error satisfying ErrLost (Close released first), never
// ErrUnlocked, which means "you already unlocked".
func TestUnlockDuringClose(t *testing.T) {
	forKinds(t, allKinds, func(t *testing.T, kind string) {
		leakcheck.Register(t)
		e := setup(t, config{kind: kind, instances: 1})
		counts := map[string]int{}
		n := iterations(50)
		for i := 0; i < n; i++ {
			j := e.add(t)
			l, err := e.ms[j].Lock(ctxFor(t, 5*time.Second), fmt.Sprintf("uc%d", i))
			if err != nil {
				t.Fatalf("Lock = %v", err)
			}
			closed := make(chan struct{})
			go func() { e.closeMutex(j); close(closed) }()
			err = l.Unlock()
			<-closed
			e.clients[j].Close()
			switch {
			case err == nil:
				counts["nil"]++
			case errors.Is(err, mutex.ErrLost):
				counts["ErrLost"]++
			default:
				counts["other"]++
				t.Errorf("iteration %d: first Unlock racing with Close = %v; want nil or ErrLost", i, err)
			}
		}
		e.close()
		t.Logf("%s: first Unlock racing Close returned %v", t.Name(), counts)
	})
}
