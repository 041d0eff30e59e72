package distributed_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/redis/go-redis/v9"
)

// TestInspectKeysStalledMaster: in a Cluster, InspectKeys of a key needs
// only the key's own master: with another master stalled, it reads the
// key (its clock too) every time, and ForceRelease releases it.
func TestInspectKeysStalledMaster(t *testing.T) {
	c := redistest.StartCluster(t, 3, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	m, _ := clusterMutex(t, c, distributed.WithLabel("h"))
	// Find a key on each of two masters.
	byMaster := map[string]string{}
	for i := 0; len(byMaster) < 2; i++ {
		k := fmt.Sprintf("s%d", i)
		byMaster[c.MasterOf("keyedmutex:{"+k+"}")] = k
	}
	var stalled, healthy string
	for addr, k := range byMaster {
		if stalled == "" {
			stalled = addr
		} else {
			healthy = k
		}
	}
	l, err := m.Lock(ctx, healthy)
	if err != nil {
		t.Fatal(err)
	}
	// No retries: a command sent to the stalled master fails at its
	// timeout instead of being sent again, round robin, to another one.
	cc := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs: c.Addrs(), ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond,
		MaxRetries: -1, MaxRedirects: -1,
	})
	t.Cleanup(func() { cc.Close() })
	if err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() }); err != nil {
		t.Fatal(err)
	}
	node := c.Node(stalled)
	node.Pause()
	defer node.Resume()
	// A keyless TIME would go to any master: ten reads all succeed only
	// if none of them needs the stalled one.
	for i := range 10 {
		rs, err := distributed.InspectKeys(ctx, cc, distributed.DefaultPrefix, healthy)
		if err != nil || !rs[0].Held || rs[0].Label != "h" {
			t.Fatalf("InspectKeys #%d of %s (its master runs; %s is stalled) = %+v, %v; want held by h", i, healthy, stalled, rs, err)
		}
	}
	if _, err := distributed.ForceRelease(ctx, cc, distributed.DefaultPrefix, healthy, "h"); err != nil {
		t.Fatalf("ForceRelease of %s with another master stalled: %v", healthy, err)
	}
	node.Resume()
	l.Unlock()
}
