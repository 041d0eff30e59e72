package redistest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestClusterFailover(t *testing.T) {
	start := time.Now()
	c := StartCluster(t, 3, 1)
	t.Logf("3 masters + 3 replicas up in %v", time.Since(start).Round(time.Millisecond))
	cc := c.Client(t)
	ctx := context.Background()

	masters := c.Masters()
	if len(masters) != 3 {
		t.Fatalf("Masters() = %v; want 3", masters)
	}
	// Keys land on every master.
	seen := map[string]bool{}
	for i := 0; len(seen) < 3 && i < 1000; i++ {
		k := fmt.Sprintf("k{%d}", i)
		if err := cc.Set(ctx, k, i, 0).Err(); err != nil {
			t.Fatalf("SET %s = %v", k, err)
		}
		seen[c.MasterOf(k)] = true
	}
	if len(seen) != 3 {
		t.Fatalf("keys reached %d masters; want 3", len(seen))
	}

	const key = "failover{x}"
	old := c.MasterOf(key)
	// Replication is asynchronous: a write the replica has not seen dies
	// with its master. SET and WAIT on one connection to the master, so
	// the replica has the key before the kill.
	pipe := c.NodeClient(t, old).Pipeline()
	pipe.Set(ctx, key, "v", 0)
	wait := pipe.Do(ctx, "WAIT", 1, 2000) // under the client's 3s read timeout
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("SET, WAIT on %s = %v\n%s", old, err, replicationReport(c))
	}
	if n, err := wait.Int(); n != 1 {
		t.Fatalf("WAIT 1 2000 on %s = %d, %v; want 1 replica\n%s", old, n, err, replicationReport(c))
	}
	start = time.Now()
	now := c.KillMaster(old)
	t.Logf("failover of %s to %s in %v", old, now, time.Since(start).Round(time.Millisecond))
	if now == old || now == "" {
		t.Fatalf("KillMaster(%s) = %q; want another master", old, now)
	}
	if got := c.Masters(); len(got) != 3 {
		t.Errorf("Masters() after failover = %v; want 3", got)
	}
	// The cluster client follows (MOVED / reload) and the key survived
	// (the replica had it before the kill).
	deadline := time.Now().Add(10 * time.Second)
	for {
		cc.ReloadState(ctx) // go-redis alone reloads the slot map only every 10s
		v, err := cc.Get(ctx, key).Result()
		if err == nil {
			if v != "v" {
				t.Errorf("GET after failover = %q; want v", v)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET after failover = %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// replicationReport says, for a failure message, how each node of c sees
// replication.
func replicationReport(c *Cluster) string {
	var b strings.Builder
	for _, s := range c.nodes {
		f, err := info(s.Addr(), "replication")
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", s.Addr(), err)
			continue
		}
		fmt.Fprintf(&b, "%s: role:%s master_port:%s master_link_status:%s connected_slaves:%s slave0:%s\n",
			s.Addr(), f["role"], f["master_port"], f["master_link_status"], f["connected_slaves"], f["slave0"])
	}
	return b.String()
}
