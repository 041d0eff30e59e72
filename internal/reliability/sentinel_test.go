package reliability

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/redis/go-redis/v9"
)

// sentinelDeployment returns the deployment of s: each instance gets its
// own redis.NewFailoverClient (its own connections to the sentinels and
// its own +switch-master subscription, as a process would have), and the
// data nodes to check at close are those known so far (*data).
func sentinelDeployment(s *redistest.Sentinel, data *[]string) *deployment {
	return &deployment{
		dial: func() redis.UniversalClient {
			return redis.NewFailoverClient(&redis.FailoverOptions{
				MasterName:    s.MasterName(),
				SentinelAddrs: s.SentinelAddrs(),
			})
		},
		nodes: func() []string { return *data },
	}
}

// addNode adds addr to the known data nodes.
func addNode(data *[]string, addr string) {
	if !slices.Contains(*data, addr) {
		*data = append(*data, addr)
	}
}

// TestSentinelFailover runs the workload of every kind, through failover
// clients, on a Sentinel deployment (a master, a replica, three
// sentinels) while a sentinel fails the master over on demand (SENTINEL
// FAILOVER), and on until the sentinels have turned the old master into a
// replica of the new one (which kills its clients). A forced failover
// loses no acknowledged write that the replica had, but the old master
// stays a writable master until the sentinels demote it (about 10s): an
// instance whose client still talks to it can hold a lock that the new
// master's holders never see. That split brain is Sentinel's, documented
// in the README (fencing tokens protect a resource across it), so
// overlaps and rejected stale writes are excused from the failover to
// the demotion (faulttest.History.SplitBrain). Tokens must keep
// increasing across the switch (the new master's clock floors them),
// save that a hybrid cohort may go on spending a block reserved from one
// master while the other issues tokens, provided the fenced resource
// refuses the stale side's writes; no Lock may hang, every instance must
// take locks again, and nothing may be left on either node. The recovery
// is logged per kind: from SENTINEL FAILOVER to the end of the longest
// gap between locks, and to the first lock of every instance since that
// gap began.
//
// A soak fails over iterations(1) times, back and forth.
func TestSentinelFailover(t *testing.T) {
	leakcheck.Register(t)
	s := redistest.StartSentinel(t)
	data := []string{s.MasterAddr()}
	g := newGroup(t, allKinds, config{on: sentinelDeployment(s, &data)}, []string{"k0", "k1", "k2"})
	g.start()
	defer g.stop()
	g.waitEach("before the failover", time.Now(), nil, 10, 30*time.Second)
	n := iterations(1)
	for i := 0; i < n; i++ {
		from := s.WaitReplicated() // the previous round's old master replicates
		t0 := g.timeouts()
		end := g.splitBrain("sentinel failover, until the old master is demoted")
		start := time.Now()
		to := s.Failover()
		agreed := time.Now()
		addNode(&data, to)
		// Every instance's client has followed once it took a lock after
		// the sentinels agreed: its connections to the old master were
		// closed by +switch-master, new ones dial the new master.
		g.waitEach("after the failover", agreed, nil, 1, 30*time.Second)
		settled := time.Now()
		s.WaitReplicated()
		demoted := time.Now()
		end()
		t1 := g.timeouts()
		g.waitEach("after the old master became a replica", demoted, nil, 5, 30*time.Second)
		t.Logf("failover %d (%s -> %s): sentinels agreed after %v; %s; old master a replica after %v; locks/s in the second before %s, until the demotion %s, after %s; Locks timed out (%v) until the demotion %v",
			i+1, from, to, agreed.Sub(start).Round(time.Millisecond), g.recoveries(nil, start, settled),
			demoted.Sub(start).Round(time.Millisecond),
			g.rate(nil, start.Add(-time.Second), start), g.rate(nil, agreed, demoted), g.rate(nil, demoted, time.Now()),
			g.ws[0].LockTimeout, diff(t1, t0))
	}
	g.stop()
	g.finish(func(int) string { return fmt.Sprintf("failovers=%d", n) })
}

// TestSentinelKillMaster runs the workload of every kind on a Sentinel
// deployment while the master is SIGKILLed; once the sentinels have
// promoted the replica and every instance takes locks again, the old
// master is restarted as a replica of the new one (empty: nothing is
// persisted; it syncs). Locks acquired on the dead master that had not
// reached the replica are lost: overlaps are excused only for holders
// told of the loss. Tokens must keep increasing, no Lock may hang, and
// nothing may be left. The recovery is logged per kind: from the SIGKILL
// to the first lock after it, and to the first lock of every instance.
//
// A soak kills the master iterations(1) times.
func TestSentinelKillMaster(t *testing.T) {
	leakcheck.Register(t)
	s := redistest.StartSentinel(t)
	data := []string{s.MasterAddr()}
	g := newGroup(t, allKinds, config{on: sentinelDeployment(s, &data)}, []string{"k0", "k1", "k2"})
	g.start()
	defer g.stop()
	g.waitEach("before the kill", time.Now(), nil, 10, 30*time.Second)
	n := iterations(1)
	for i := 0; i < n; i++ {
		old := s.WaitReplicated()
		end := g.fault("sentinel master SIGKILL")
		start := time.Now()
		now := s.KillMaster()
		agreed := time.Now()
		end()
		addNode(&data, now)
		g.waitEach("after the kill", agreed, nil, 1, 30*time.Second)
		settled := time.Now()
		s.Restart(old)
		restarted := time.Now()
		g.waitEach("after the restart", restarted, nil, 5, 30*time.Second)
		t.Logf("kill %d (%s; %s promoted): sentinels agreed after %v; %s; old master back as a replica in %v",
			i+1, old, now, agreed.Sub(start).Round(time.Millisecond), g.recoveries(nil, start, settled),
			restarted.Sub(settled).Round(time.Millisecond))
	}
	g.stop()
	g.finish(func(int) string { return fmt.Sprintf("kills=%d", n) })
}

// TestSentinelFailoverWakesWaiter queues a waiter on a key, fails the
// master over (SENTINEL FAILOVER), then releases the key through the new
// master. The old master keeps running (until the sentinels make it a
// replica, about 10s later), and go-redis moves a failover client's
// command connections on +switch-master but not its Pub/Sub connection,
// so the grant, published on the new master, reaches nobody. The waiter
// finds it at its next poll: the bound this test checks, with the
// default poll interval of 1s (the TTL is 30s, so the key's expiry does
// not help): the waiter must get the lock within 3s of the release. The
// README's Sentinel section documents it.
func TestSentinelFailoverWakesWaiter(t *testing.T) {
	leakcheck.Register(t)
	s := redistest.StartSentinel(t)
	prefix := fmt.Sprintf("rel%d:", seq.Add(1))
	newMutex := func() (*distributed.Mutex[string], redis.UniversalClient) {
		c := sentinelDeployment(s, nil).dial()
		t.Cleanup(func() { c.Close() })
		m, err := distributed.New[string](c, append(probeOpts(prefix), distributed.WithPollInterval(distributed.DefaultPollInterval))...)
		if err != nil {
			t.Fatalf("distributed.New = %v", err)
		}
		t.Cleanup(func() { m.Close() })
		return m, c
	}
	a, ac := newMutex()
	b, _ := newMutex()
	const key = "probe"
	held, err := a.Lock(ctxFor(t, 5*time.Second), key)
	if err != nil {
		t.Fatalf("Lock(%q) = %v", key, err)
	}
	got := make(chan waitResult, 1)
	go func() {
		l, err := b.Lock(ctxFor(t, 20*time.Second), key)
		got <- waitResult{l, err, time.Now()}
	}()
	old := s.MasterAddr()
	oldClient := redis.NewClient(&redis.Options{Addr: old})
	defer oldClient.Close()
	if err := pollUntil(5*time.Second, func() error {
		n, err := oldClient.ZCard(context.Background(), prefix+"q:{"+key+"}").Result()
		if err != nil || n != 1 {
			return fmt.Errorf("ZCARD of the queue = %d, %v; want 1", n, err)
		}
		return nil
	}); err != nil {
		t.Fatalf("the waiter did not queue: %v", err)
	}
	start := time.Now()
	now := s.Failover()
	_, port, _ := net.SplitHostPort(now)
	if err := pollUntil(10*time.Second, func() error {
		p, err := serverPort(ac)
		if err != nil || p != port {
			return fmt.Errorf("the holder's client reaches port %s (%v); want %s", p, err, port)
		}
		return nil
	}); err != nil {
		t.Fatalf("%v", err)
	}
	released := time.Now()
	if err := held.Unlock(); err != nil {
		t.Fatalf("Unlock on the new master = %v; want nil (the lock was replicated before the failover)", err)
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("waiter's Lock = %v, %v after the release; want the lock", r.err, r.at.Sub(released).Round(time.Millisecond))
	}
	if d := r.at.Sub(released); d > 3*time.Second {
		t.Errorf("waiter got the lock %v after the release on the new master; want it within 3s (its poll, every 1s)", d.Round(time.Millisecond))
	}
	t.Logf("failover %s -> %s; holder released %v after SENTINEL FAILOVER; waiter got the lock %v after the release",
		old, now, released.Sub(start).Round(time.Millisecond), r.at.Sub(released).Round(time.Millisecond))
	if r.l.Token() <= held.Token() {
		t.Errorf("waiter's token %d <= holder's %d", r.l.Token(), held.Token())
	}
	if err := r.l.Unlock(); err != nil {
		t.Errorf("Unlock = %v", err)
	}
}

// diff returns a - b, element by element.
func diff(a, b []int64) []int64 {
	out := make([]int64, len(a))
	for i := range a {
		out[i] = a[i] - b[i]
	}
	return out
}
