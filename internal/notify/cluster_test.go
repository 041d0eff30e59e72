package notify

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/logtest"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// shardNumSub returns PUBSUB SHARDNUMSUB channel on the node at addr.
func shardNumSub(t *testing.T, c *redistest.Cluster, addr, channel string) int64 {
	t.Helper()
	cl := redis.NewClient(&redis.Options{Addr: addr})
	defer cl.Close()
	m, err := cl.PubSubShardNumSub(context.Background(), channel).Result()
	if err != nil {
		t.Fatalf("PUBSUB SHARDNUMSUB on %s = %v", addr, err)
	}
	return m[channel]
}

// checkShardNumSub checks that channel has want subscribers on owner and
// none on the other masters.
func checkShardNumSub(t *testing.T, c *redistest.Cluster, owner, channel string, want int64) {
	t.Helper()
	for _, m := range c.Masters() {
		w := int64(0)
		if m == owner {
			w = want
		}
		if got := shardNumSub(t, c, m, channel); got != w {
			t.Errorf("SHARDNUMSUB %s on %s = %d; want %d (owner %s)", channel, m, got, w, owner)
		}
	}
}

// spublish publishes on channel until a subscriber receives it, reloading
// the client's slot map meanwhile (it may still point at a dead master).
func spublish(t *testing.T, cc *redis.ClusterClient, channel string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(15 * time.Second)
	for {
		n, err := cc.SPublish(ctx, channel, "w x").Result()
		if err == nil && n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("SPUBLISH %s = %d, %v; want 1 receiver", channel, n, err)
		}
		cc.ReloadState(ctx)
		time.Sleep(20 * time.Millisecond)
	}
}

func TestClusterShardedPubSub(t *testing.T) {
	leakcheck.Register(t)
	start := time.Now()
	c := redistest.StartCluster(t, 3, 1)
	t.Logf("cluster up in %v", time.Since(start).Round(time.Millisecond))
	cc := c.Client(t)
	var reported logtest.Recorder
	h, err := Open(cc, WithLogger(slog.New(&reported)))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			h.Close()
		}
	})
	ctx := context.Background()
	if sh, err := h.Sharded(ctx); !sh || err != nil {
		t.Fatalf("Sharded() on Redis 7 Cluster = %v, %v; want true, nil", sh, err)
	}

	// One channel per master.
	byMaster := map[string]string{}
	for i := 0; len(byMaster) < 3 && i < 1000; i++ {
		ch := fmt.Sprintf("release:{%d}", i)
		if m := c.MasterOf(ch); byMaster[m] == "" {
			byMaster[m] = ch
		}
	}
	subs := map[string]*Subscription{}
	for m, ch := range byMaster {
		s := subscribe(t, h, ch)
		subs[ch] = s
		checkShardNumSub(t, c, m, ch, 1)
	}
	h.h.mu.Lock()
	nshards := len(h.h.shards)
	h.h.mu.Unlock()
	if nshards != 3 {
		t.Errorf("hub has %d shard connections for channels on 3 masters; want 3", nshards)
	}
	for _, ch := range byMaster {
		spublish(t, cc, ch)
		waitWake(t, subs[ch], "SPUBLISH "+ch)
	}

	// Kill the master of one channel: the hub resubscribes on the new
	// owner and wakes the waiters; later releases arrive again.
	var victim string
	for m := range byMaster {
		victim = m
		break
	}
	ch := byMaster[victim]
	extra := subscribeID(t, h, ch, "extra") // a second waiter of the same channel
	start = time.Now()
	owner := c.KillMaster(victim)
	t.Logf("failover %s -> %s in %v", victim, owner, time.Since(start).Round(time.Millisecond))
	waitWake(t, subs[ch], "waiter after failover")
	waitWake(t, extra, "second waiter after failover")
	t.Logf("waiters woken %v after the kill", time.Since(start).Round(time.Millisecond))
	eventually(t, "subscription on the new owner", func() bool { return shardNumSub(t, c, owner, ch) == 1 })
	checkShardNumSub(t, c, owner, ch, 1)
	spublish(t, cc, ch)
	waitWake(t, subs[ch], "SPUBLISH after failover")
	if pending(extra) {
		t.Error("one SPUBLISH after failover woke both waiters")
	}
	for m, other := range byMaster {
		if m != victim {
			spublish(t, cc, other)
			waitWake(t, subs[other], "SPUBLISH on an unaffected shard")
		}
	}
	if reported.Len() == 0 {
		t.Error("the logger heard nothing of the lost master")
	}

	closed = true
	h.Close()
	for _, m := range c.Masters() {
		for _, ch := range byMaster {
			if got := shardNumSub(t, c, m, ch); got != 0 {
				t.Errorf("SHARDNUMSUB %s on %s after Close = %d; want 0", ch, m, got)
			}
		}
	}
}
