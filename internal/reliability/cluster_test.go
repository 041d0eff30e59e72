package reliability

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/redis/go-redis/v9"
)

// clusterDeployment returns the deployment of c: each instance gets its
// own cluster client with go-redis defaults, as a user's process would,
// and the masters that serve slots at close are checked.
func clusterDeployment(c *redistest.Cluster) *deployment {
	return &deployment{
		dial: func() redis.UniversalClient {
			return redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
		},
		nodes: c.Masters,
	}
}

// TestClusterKillMaster runs the workload of every kind on a 3-master,
// 3-replica Redis Cluster, on three keys that live on one master (and,
// with a goroutine per instance of its own, on one key that lives on
// another), and SIGKILLs the first master. Its replica
// takes over; locks acquired on the dead master that had not reached the
// replica are lost, so overlaps are excused only for holders told of the
// loss. Tokens must keep increasing, no Lock may hang, every instance
// must lock the failed-over keys again (the Mutex makes its client reload
// the slot map, the subscriber resubscribes on the new master), the key
// on the other master must keep working meanwhile, and nothing may be
// left on the masters. The recovery is logged as in the Sentinel tests.
//
// A soak runs iterations(1) rounds, each on a new cluster.
func TestClusterKillMaster(t *testing.T) {
	n := iterations(1)
	for round := 1; round <= n; round++ {
		t.Run(fmt.Sprintf("round%d", round), testClusterKillMaster)
	}
}

func testClusterKillMaster(t *testing.T) {
	leakcheck.Register(t)
	c := redistest.StartCluster(t, 3, 1)
	victim := c.MasterOf("{v0}")
	var onVictim []string
	control := ""
	for i := 0; len(onVictim) < 3 || control == ""; i++ {
		k := fmt.Sprintf("v%d", i)
		switch {
		case c.MasterOf("{"+k+"}") != victim:
			if control == "" {
				control = k
			}
		case len(onVictim) < 3:
			onVictim = append(onVictim, k)
		}
	}
	g := newGroup(t, allKinds, config{on: clusterDeployment(c)}, onVictim)
	g.start()
	g.startOn([]string{control})
	defer g.stop()
	g.waitEach("before the kill", time.Now(), onVictim, 5, 30*time.Second)
	g.waitEach("before the kill", time.Now(), []string{control}, 5, 30*time.Second)

	end := g.fault("cluster master SIGKILL")
	start := time.Now()
	now := c.KillMaster(victim)
	agreed := time.Now()
	end()
	g.waitEach("after the failover", agreed, onVictim, 1, 30*time.Second)
	settled := time.Now()
	// The other master kept serving its key while the victim's were down.
	for i, h := range g.hs {
		n := 0
		for _, a := range h.Acquisitions() {
			if a.Key == control && a.At.After(start) && a.At.Before(agreed) {
				n++
			}
		}
		if n == 0 {
			t.Errorf("%s: no lock on %q (on a master that was not killed) in the %v of the failover", g.kinds[i], control, agreed.Sub(start).Round(time.Millisecond))
		}
	}
	g.waitEach("after the failover", settled, onVictim, 5, 30*time.Second)
	t.Logf("killed master %s; %s took over after %v; %s; locks/s on the other master's key before the kill %s, during the failover %s",
		victim, now, agreed.Sub(start).Round(time.Millisecond), g.recoveries(onVictim, start, settled),
		g.rate([]string{control}, start.Add(-time.Second), start), g.rate([]string{control}, start, agreed))
	g.stop()
	g.finish(func(int) string { return "kills=1" })
}

// TestClusterMigration runs the workload of every kind on a 3-master
// Redis Cluster, on three keys that share one hash slot, and moves that
// slot to another master step by step while it runs: CLUSTER SETSLOT
// IMPORTING and MIGRATING, then, with traffic between the steps, MIGRATE
// of every key (the source now answers ASK for the slot), then SETSLOT
// NODE (clients with the old slot map get MOVED, and the source drops the
// slot's shard channels). No data is lost, but the scripts of the
// protocol touch two keys, which Redis refuses (TRYAGAIN) while their
// slot is split between two masters, so Locks and Unlocks may fail during
// the move; the move is recorded as a fault. Mutual exclusion and fencing
// must hold, no Lock may hang, ASK and MOVED must have been sent, an
// instance whose client still has the old slot map must lock through the
// MOVED, every instance must lock again after the move, and nothing may be
// left on the masters.
//
// A soak moves the slot iterations(1) times, round the masters.
func TestClusterMigration(t *testing.T) {
	leakcheck.Register(t)
	c := redistest.StartCluster(t, 3, 0)
	keys, slot := sameSlotKeys("m", 3)
	probe := c.Client(t)
	for _, k := range keys {
		got, err := probe.ClusterKeySlot(context.Background(), "{"+k+"}").Result()
		if err != nil || got != int64(slot) {
			t.Fatalf("CLUSTER KEYSLOT {%s} = %d, %v; want %d (crc16)", k, got, err, slot)
		}
	}
	g := newGroup(t, allKinds, config{on: clusterDeployment(c)}, keys)
	g.start()
	defer g.stop()
	g.waitEach("before the migration", time.Now(), nil, 5, 30*time.Second)

	n := iterations(1)
	for i := 0; i < n; i++ {
		src := c.MasterOf("{" + keys[0] + "}")
		masters := c.Masters()
		dst := masters[(slices.Index(masters, src)+1)%len(masters)]
		// An instance of the pubsub kind that loads its slot map now and
		// next locks a key of the slot after the move: it gets MOVED.
		e, h := g.envs[0], g.hs[0]
		late := e.add(t)
		if l, err := e.ms[late].TryLock(ctxFor(t, 5*time.Second), "elsewhere"); err != nil {
			t.Fatalf("TryLock on the late instance = %v", err)
		} else if err := l.Unlock(); err != nil {
			t.Fatalf("Unlock = %v", err)
		}
		ask0, moved0 := mustRedirects(t, src)

		end := g.fault("slot migration")
		start := time.Now()
		m := c.BeginMigration("{"+keys[0]+"}", dst)
		// While a lock's keys are split between the two masters Redis
		// answers TRYAGAIN and Lock waits (it retries), so traffic is
		// given a span of the fault, not a count of Locks.
		time.Sleep(300 * time.Millisecond)
		onSource := time.Now()
		keysMoved := m.MoveKeys(0)
		time.Sleep(300 * time.Millisecond)
		if err := pollUntil(10*time.Second, func() error {
			if ask, _ := mustRedirects(t, src); ask <= ask0 {
				return fmt.Errorf("no ASK")
			}
			return nil
		}); err != nil {
			t.Errorf("the source %s sent no ASK while the slot's keys were on %s: the command path never met a redirect", src, dst)
		}
		m.Finish()
		finished := time.Now()
		end()
		during := g.rate(nil, start, finished)

		hd, err := h.Lock(ctxFor(t, 10*time.Second), e.ms[late], late, keys[0])
		if err != nil {
			t.Fatalf("Lock(%q) on an instance with the old slot map = %v; want the lock (through MOVED)", keys[0], err)
		}
		if err := hd.Unlock(); err != nil {
			t.Errorf("Unlock = %v", err)
		}
		ask1, moved1 := mustRedirects(t, src)
		if moved1 <= moved0 {
			t.Errorf("the source %s sent no MOVED after the slot moved, though an instance with the old slot map locked a key of it", src)
		}
		g.waitEach("after the migration", finished, nil, 1, 30*time.Second)
		settled := time.Now()
		g.waitEach("after the migration", settled, nil, 5, 30*time.Second)
		t.Logf("slot %d moved %s -> %s (%d keys) in %v, %v of it with the keys on the source; the source sent %d ASK and %d MOVED; locks/s during the move %s, after %s; %s",
			slot, src, dst, keysMoved, finished.Sub(start).Round(time.Millisecond), onSource.Sub(start).Round(time.Millisecond),
			ask1-ask0, moved1-moved0, during, g.rate(nil, finished, time.Now()), g.recoveries(nil, start, settled))
	}
	g.stop()
	g.finish(func(int) string { return fmt.Sprintf("migrations=%d", n) })
}

// mustRedirects returns the ASK and MOVED counts of the node at addr.
func mustRedirects(t *testing.T, addr string) (ask, moved int64) {
	t.Helper()
	ask, moved, err := redirects(addr)
	if err != nil {
		t.Fatalf("INFO errorstats of %s: %v", addr, err)
	}
	return ask, moved
}

// TestClusterMigrationWakesWaiter queues a waiter on a key, then moves
// the key's slot to another master. When the slot leaves it, the source
// drops every shard channel subscription of the slot (Redis 7 sends
// SUNSUBSCRIBE), the waiter's grant channel included: the subscriber must
// subscribe again on the new owner, or the grant of the next release
// reaches nobody and the waiter sleeps until its poll. The TTL and the
// poll interval are 30s and the waiter's ctx 10s: the waiter must get the
// lock within 5s of the release.
func TestClusterMigrationWakesWaiter(t *testing.T) {
	leakcheck.Register(t)
	c := redistest.StartCluster(t, 3, 0)
	prefix := fmt.Sprintf("rel%d:", seq.Add(1))
	newMutex := func() *distributed.Mutex[string] {
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
		t.Cleanup(func() { cc.Close() })
		m, err := distributed.New[string](cc, probeOpts(prefix)...)
		if err != nil {
			t.Fatalf("distributed.New = %v", err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	a, b := newMutex(), newMutex()
	const key = "probe"
	ctx := context.Background()
	held, err := a.Lock(ctxFor(t, 5*time.Second), key)
	if err != nil {
		t.Fatalf("Lock(%q) = %v", key, err)
	}
	got := make(chan waitResult, 1)
	go func() {
		l, err := b.Lock(ctxFor(t, 10*time.Second), key)
		got <- waitResult{l, err, time.Now()}
	}()
	src := c.MasterOf("{" + key + "}")
	srcClient := c.NodeClient(t, src)
	var channel string
	if err := pollUntil(5*time.Second, func() error {
		chans, err := srcClient.PubSubShardChannels(ctx, prefix+"grant:*").Result()
		if err != nil || len(chans) != 1 {
			return fmt.Errorf("shard channels under %s on %s: %v, %v; want 1", prefix, src, chans, err)
		}
		channel = chans[0]
		return nil
	}); err != nil {
		t.Fatalf("the waiter's grant channel: %v", err)
	}
	masters := c.Masters()
	dst := masters[(slices.Index(masters, src)+1)%len(masters)]
	c.MigrateSlot("{"+key+"}", dst)
	moved := time.Now()
	dstClient := c.NodeClient(t, dst)
	if err := pollUntil(5*time.Second, func() error {
		n, err := dstClient.PubSubShardNumSub(ctx, channel).Result()
		if err != nil || n[channel] != 1 {
			return fmt.Errorf("SHARDNUMSUB %s on %s = %v, %v", channel, dst, n, err)
		}
		return nil
	}); err != nil {
		t.Errorf("the waiter's grant channel has no subscriber on the new owner of its slot 5s after the move: %v", err)
	}
	resubscribed := time.Since(moved)
	released := time.Now()
	if err := held.Unlock(); err != nil {
		t.Fatalf("Unlock after the move = %v", err)
	}
	r := <-got
	if r.err != nil {
		t.Fatalf("waiter's Lock = %v, %v after the release; want the lock (its grant reached nobody: it slept toward its 30s poll)", r.err, r.at.Sub(released).Round(time.Millisecond))
	}
	if d := r.at.Sub(released); d > 5*time.Second {
		t.Errorf("waiter got the lock %v after the release; want it within 5s (by its grant)", d.Round(time.Millisecond))
	}
	t.Logf("slot of %q moved %s -> %s; grant channel on the new owner after %v; waiter got the lock %v after the release",
		key, src, dst, resubscribed.Round(time.Millisecond), r.at.Sub(released).Round(time.Millisecond))
	if err := r.l.Unlock(); err != nil {
		t.Errorf("Unlock = %v", err)
	}
}
