package redistest

import (
	"context"
	"fmt"
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
	if err := cc.Set(ctx, key, "v", 0).Err(); err != nil {
		t.Fatalf("SET = %v", err)
	}
	old := c.MasterOf(key)
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
	// (it was replicated long before the kill).
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
