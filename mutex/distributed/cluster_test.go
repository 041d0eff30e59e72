package distributed_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/redis/go-redis/v9"
)

// The cluster tests share one 3-master, 3-replica cluster; the last one
// kills a master. They use cluster clients with go-redis defaults, as a
// user would: a ClusterClient reloads its slot map on MOVED or every 60s,
// so after a failover the Mutex must make it reload (ReloadState) when a
// command fails on a dead master, or its locks on that shard stay
// unavailable for up to a minute. The release notice must travel through
// internal/notify's sharded subscriptions (SSUBSCRIBE on the owner).
func TestCluster(t *testing.T) {
	leakcheck.Register(t)
	start := time.Now()
	c := redistest.StartCluster(t, 3, 1)
	t.Logf("cluster of 3 masters + 3 replicas up in %v", time.Since(start).Round(time.Millisecond))
	t.Run("MutualExclusion1000Keys", func(t *testing.T) { clusterMutualExclusion(t, c) })
	t.Run("NoticeThroughOwningShard", func(t *testing.T) { clusterNotice(t, c) })
	t.Run("MasterKilled", func(t *testing.T) { clusterMasterKilled(t, c) })
}

// clusterMutex returns a Mutex with its own cluster client.
func clusterMutex(t *testing.T, c *redistest.Cluster, opts ...distributed.Option) (*distributed.Mutex[string], *redis.ClusterClient) {
	t.Helper()
	cc := c.Client(t)
	m, err := distributed.New[string](cc, opts...)
	if err != nil {
		t.Fatalf("New(cluster client) = %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m, cc
}

// tokenLog records the fencing tokens issued per key, in the order the
// holders recorded them (under the lock).
type tokenLog struct {
	mu sync.Mutex
	m  map[string][]uint64
}

func (l *tokenLog) add(key string, tok uint64) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string][]uint64{}
	}
	l.m[key] = append(l.m[key], tok)
	l.mu.Unlock()
}

func (l *tokenLog) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, toks := range l.m {
		for i := 1; i < len(toks); i++ {
			if toks[i] <= toks[i-1] {
				t.Errorf("key %s: token %d after %d; want strictly increasing", key, toks[i], toks[i-1])
				break
			}
		}
	}
}

// increment is the critical section: a non-atomic read-modify-write of a
// counter in the same slot as the lock.
func increment(ctx context.Context, cc *redis.ClusterClient, key string) error {
	ctr := "ctr:{" + key + "}"
	v, err := cc.Get(ctx, ctr).Int()
	if err != nil && !errors.Is(err, redis.Nil) {
		return err
	}
	return cc.Set(ctx, ctr, v+1, 0).Err()
}

func counter(t *testing.T, cc *redis.ClusterClient, key string) int {
	t.Helper()
	v, err := cc.Get(context.Background(), "ctr:{"+key+"}").Int()
	if err != nil {
		t.Fatalf("GET counter of %s = %v", key, err)
	}
	return v
}

func clusterMutualExclusion(t *testing.T, c *redistest.Cluster) {
	const (
		instances = 4
		perInst   = 2
		nkeys     = 1000
		hotRounds = 25
	)
	prefix := fmt.Sprintf("me%d:", rand.Uint32())
	keys := make([]string, nkeys)
	for i := range keys {
		keys[i] = prefix + fmt.Sprint(i)
	}
	hot := []string{prefix + "hot-a", prefix + "hot-b", prefix + "hot-c"}

	var tokens tokenLog
	errs := make(chan error, instances*perInst)
	var wg sync.WaitGroup
	start := time.Now()
	var clients []*redis.ClusterClient
	for range instances {
		m, cc := clusterMutex(t, c, distributed.WithPrefix(prefix))
		clients = append(clients, cc)
		for range perInst {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				work := append([]string(nil), keys...)
				rand.Shuffle(len(work), func(i, j int) { work[i], work[j] = work[j], work[i] })
				for range hotRounds {
					work = append(work, hot...)
				}
				for _, k := range work {
					l, err := m.Lock(ctx, k)
					if err != nil {
						errs <- fmt.Errorf("Lock(%s) = %v", k, err)
						return
					}
					tokens.add(k, l.Token())
					err = increment(ctx, cc, k)
					if uerr := l.Unlock(); err == nil && uerr != nil {
						err = fmt.Errorf("Unlock(%s) = %v", k, uerr)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	ops := instances * perInst * (nkeys + hotRounds*len(hot))
	el := time.Since(start)
	t.Logf("%d Lock+increment+Unlock on the cluster in %v (%.0f/s)", ops, el.Round(time.Millisecond), float64(ops)/el.Seconds())

	cc := clients[0]
	shards := map[string]int{}
	for _, k := range keys {
		if got, want := counter(t, cc, k), instances*perInst; got != want {
			t.Errorf("counter of %s = %d; want %d (mutual exclusion broken)", k, got, want)
		}
		node, err := cc.MasterForKey(context.Background(), prefix+"{"+k+"}")
		if err != nil {
			t.Fatal(err)
		}
		shards[node.Options().Addr]++
	}
	for _, k := range hot {
		if got, want := counter(t, cc, k), instances*perInst*hotRounds; got != want {
			t.Errorf("counter of hot key %s = %d; want %d (mutual exclusion broken)", k, got, want)
		}
	}
	if len(shards) != 3 {
		t.Errorf("keys spread over %d masters: %v; want 3", len(shards), shards)
	}
	t.Logf("keys per master: %v", shards)
	tokens.check(t)
}

// shardChannels returns the sharded channels with subscribers on addr
// whose names contain sub.
func shardChannels(t *testing.T, c *redistest.Cluster, addr, sub string) map[string]int64 {
	t.Helper()
	cl := c.NodeClient(t, addr)
	ctx := context.Background()
	chans, err := cl.PubSubShardChannels(ctx, "*").Result()
	if err != nil {
		t.Fatalf("PUBSUB SHARDCHANNELS on %s = %v", addr, err)
	}
	out := map[string]int64{}
	for _, ch := range chans {
		if !strings.Contains(ch, sub) {
			continue
		}
		n, err := cl.PubSubShardNumSub(ctx, ch).Result()
		if err != nil {
			t.Fatalf("PUBSUB SHARDNUMSUB on %s = %v", addr, err)
		}
		out[ch] = n[ch]
	}
	return out
}

func clusterNotice(t *testing.T, c *redistest.Cluster) {
	prefix := fmt.Sprintf("nt%d:", rand.Uint32())
	// A poll bound and a TTL longer than the waiter's ctx: only the
	// release notice can let the waiter in before ctx ends.
	opts := []distributed.Option{
		distributed.WithPrefix(prefix),
		distributed.WithTTL(time.Minute),
		distributed.WithPollInterval(time.Minute),
	}
	a, cc := clusterMutex(t, c, opts...)
	b, _ := clusterMutex(t, c, opts...)
	ctx := context.Background()
	for _, key := range []string{"order-1", "order-2", "order-3", "order-4"} {
		node, err := cc.MasterForKey(ctx, prefix+"{"+key+"}")
		if err != nil {
			t.Fatal(err)
		}
		owner := node.Options().Addr
		held, err := a.Lock(ctx, key)
		if err != nil {
			t.Fatalf("Lock(%s) = %v", key, err)
		}
		type result struct {
			l   mutex.Lease
			err error
		}
		got := make(chan result, 1)
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		go func() {
			l, err := b.Lock(wctx, key)
			got <- result{l, err}
		}()
		// While B waits, its subscription lives on the owning shard only.
		deadline := time.Now().Add(10 * time.Second)
		for {
			subs := shardChannels(t, c, owner, key)
			if len(subs) == 1 {
				for ch, n := range subs {
					if n != 1 {
						t.Errorf("SHARDNUMSUB %s on owner %s = %d; want 1", ch, owner, n)
					}
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no shard channel for %s on its owner %s after 10s: %v", key, owner, subs)
			}
			time.Sleep(5 * time.Millisecond)
		}
		for _, m := range c.Masters() {
			if m == owner {
				continue
			}
			if subs := shardChannels(t, c, m, key); len(subs) != 0 {
				t.Errorf("shard channels for %s on non-owner %s: %v; want none", key, m, subs)
			}
		}
		released := time.Now()
		if err := held.Unlock(); err != nil {
			t.Fatalf("Unlock = %v", err)
		}
		r := <-got
		cancel()
		if r.err != nil {
			t.Fatalf("waiting Lock(%s) = %v; want the lock through the release notice", key, r.err)
		}
		t.Logf("%s (owner %s): waiter got the lock %v after Unlock", key, owner, time.Since(released).Round(time.Microsecond))
		if r.l.Token() <= held.Token() {
			t.Errorf("waiter's token %d <= holder's %d", r.l.Token(), held.Token())
		}
		if err := r.l.Unlock(); err != nil {
			t.Errorf("Unlock = %v", err)
		}
		if subs := shardChannels(t, c, owner, key); len(subs) != 0 {
			// The waiter's subscription is dropped asynchronously.
			eventuallyNoShardChannel(t, c, owner, key)
		}
	}
}

func eventuallyNoShardChannel(t *testing.T, c *redistest.Cluster, addr, sub string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(shardChannels(t, c, addr, sub)) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("shard channel for %s still subscribed on %s after 10s", sub, addr)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func clusterMasterKilled(t *testing.T, c *redistest.Cluster) {
	prefix := fmt.Sprintf("mk%d:", rand.Uint32())
	opts := []distributed.Option{distributed.WithPrefix(prefix), distributed.WithTTL(3 * time.Second)}
	keys := make([]string, 30)
	for i := range keys {
		keys[i] = fmt.Sprint("f", i)
	}
	ctx := context.Background()
	probe := c.Client(t)
	ownerOf := func(key string) string {
		node, err := probe.MasterForKey(ctx, prefix+"{"+key+"}")
		if err != nil {
			t.Fatal(err)
		}
		return node.Options().Addr
	}
	const waitKey = "waited-on"
	victim := ownerOf(waitKey)
	onVictim := map[string]bool{}
	for _, k := range keys {
		onVictim[k] = ownerOf(k) == victim
	}

	// A holder and a waiter on the victim's shard.
	holder, _ := clusterMutex(t, c, opts...)
	waiter, _ := clusterMutex(t, c, opts...)
	held, err := holder.Lock(ctx, waitKey)
	if err != nil {
		t.Fatalf("Lock(%s) = %v", waitKey, err)
	}
	waited := make(chan error, 1)
	var waitedLease mutex.Lease
	wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
	defer wcancel()
	var waiterErrs atomic.Int64
	go func() {
		// Lock returns backend errors (the master is gone); a waiter
		// that wants the lock tries again until its ctx ends.
		for {
			l, err := waiter.Lock(wctx, waitKey)
			if err == nil || wctx.Err() != nil {
				waitedLease = l
				waited <- err
				return
			}
			waiterErrs.Add(1)
			time.Sleep(10 * time.Millisecond)
		}
	}()

	// Workers on every shard, tolerating errors while the master is down.
	var tokens tokenLog
	var (
		stop        atomic.Bool
		killed      atomic.Bool
		before      atomic.Int64 // successes before the kill
		afterVictim atomic.Int64 // successes on the victim's keys after failover
		failed      atomic.Int64
		counts      sync.Map // key -> *atomic.Int64, successful increments
	)
	var wg sync.WaitGroup
	for range 3 {
		m, cc := clusterMutex(t, c, opts...)
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					k := keys[rand.IntN(len(keys))]
					lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					l, err := m.Lock(lctx, k)
					if err != nil {
						cancel()
						failed.Add(1)
						continue
					}
					tokens.add(k, l.Token())
					err = increment(lctx, cc, k)
					uerr := l.Unlock()
					cancel()
					if err != nil || uerr != nil {
						failed.Add(1)
						continue
					}
					n, _ := counts.LoadOrStore(k, new(atomic.Int64))
					n.(*atomic.Int64).Add(1)
					switch {
					case !killed.Load():
						before.Add(1)
					case onVictim[k]:
						afterVictim.Add(1)
					}
				}
			}()
		}
	}
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()

	waitFor(t, "200 locks before the kill", 30*time.Second, func() bool { return before.Load() >= 200 })
	start := time.Now()
	killed.Store(true)
	owner := c.KillMaster(victim)
	t.Logf("killed master %s; %s took over in %v", victim, owner, time.Since(start).Round(time.Millisecond))

	// The holder's lease may have survived (replicated) or not; either way
	// its Unlock ends it, and the waiter gets the lock.
	uerr := held.Unlock()
	t.Logf("holder's Unlock after failover = %v", uerr)
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("waiter's Lock across failover = %v; want the lock", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("waiter still waiting 30s after the failover")
	}
	t.Logf("waiter got the lock %v after the kill (%d Lock errors meanwhile)", time.Since(start).Round(time.Millisecond), waiterErrs.Load())
	if waitedLease.Token() <= held.Token() {
		t.Errorf("token after failover %d <= token before %d", waitedLease.Token(), held.Token())
	}
	waitedLease.Unlock()

	waitFor(t, "100 locks on the new master's keys", 30*time.Second, func() bool { return afterVictim.Load() >= 100 })
	t.Logf("locks on the failed-over shard work again %v after the kill (%d failed attempts meanwhile)",
		time.Since(start).Round(time.Millisecond), failed.Load())
	stop.Store(true)
	wg.Wait()

	// Counters on untouched shards are exact; on the failed-over shard an
	// increment (or a lock key) acknowledged just before the kill may be
	// lost with asynchronous replication, so only tokens are checked there.
	for _, k := range keys {
		n, ok := counts.Load(k)
		if !ok || onVictim[k] {
			continue
		}
		if got, want := counter(t, probe, k), int(n.(*atomic.Int64).Load()); got != want {
			t.Errorf("counter of %s (shard not failed over) = %d; want %d", k, got, want)
		}
	}
	tokens.check(t)
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
