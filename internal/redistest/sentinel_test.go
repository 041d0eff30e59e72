package redistest

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// onMaster reports, as an error, whether c's next command does not reach
// the master at want or does not find key set to "v" there.
func onMaster(c *redis.Client, want, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv, err := c.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("INFO server = %w", err)
	}
	if _, port, _ := net.SplitHostPort(want); infoFields(srv)["tcp_port"] != port {
		return fmt.Errorf("client is on port %s, not on %s yet", infoFields(srv)["tcp_port"], want)
	}
	if got, err := c.Get(ctx, key).Result(); err != nil || got != "v" {
		return fmt.Errorf("GET %s = %q, %v; want v", key, got, err)
	}
	return nil
}

// setReplicated sets key to "v" through c and waits until the replica has
// it: a failover may lose writes the replica has not seen. WAIT counts the
// writes of its own connection, so both go down one pipeline.
func setReplicated(t *testing.T, c *redis.Client, key string) {
	t.Helper()
	ctx := context.Background()
	pipe := c.Pipeline()
	pipe.Set(ctx, key, "v", 0)
	wait := pipe.Do(ctx, "WAIT", 1, 2000) // under the client's 3s read timeout
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("SET %s, WAIT = %v", key, err)
	}
	if n, err := wait.Int(); n != 1 {
		t.Fatalf("WAIT 1 2000 = %d, %v; want 1 replica", n, err)
	}
}

func TestSentinelFailover(t *testing.T) {
	start := time.Now()
	s := StartSentinel(t)
	t.Logf("master, replica and 3 sentinels up in %v", time.Since(start).Round(time.Millisecond))
	c := s.Client(t)
	const key = "sentinel-failover"
	setReplicated(t, c, key)
	first := s.MasterAddr()
	if err := onMaster(c, first, key); err != nil {
		t.Fatalf("before failover: %v", err)
	}

	// With one replica, failovers alternate: the second returns to first,
	// which proves the sentinels made the old master a replica again.
	for round := 1; round <= 2; round++ {
		from := s.MasterAddr()
		start = time.Now()
		to := s.Failover()
		took := time.Since(start)
		if to == from {
			t.Fatalf("Failover() = %s; want a master other than %s", to, from)
		}
		if got := s.MasterAddr(); got != to {
			t.Errorf("MasterAddr() after Failover = %s; want %s", got, to)
		}
		start = time.Now()
		if err := poll(sentinelWait, func() error { return onMaster(c, to, key) }); err != nil {
			t.Fatalf("failover client after Failover: %v", err)
		}
		reached := time.Since(start)
		start = time.Now()
		if got := s.WaitReplicated(); got != to {
			t.Errorf("WaitReplicated() = %s; want %s", got, to)
		}
		if err := wantRole(from, "slave"); err != nil {
			t.Errorf("old master after WaitReplicated: %v", err)
		}
		t.Logf("failover %d, %s -> %s: sentinels agree in %v, client there %v later; old master replicates after %v more",
			round, from, to, took.Round(time.Millisecond), reached.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	}
	if got := s.MasterAddr(); got != first {
		t.Errorf("MasterAddr() after two failovers = %s; want %s again", got, first)
	}
}

func TestSentinelKillMaster(t *testing.T) {
	s := StartSentinel(t)
	c := s.Client(t)
	const key = "sentinel-kill"
	setReplicated(t, c, key)
	old := s.MasterAddr()

	start := time.Now()
	now := s.KillMaster()
	took := time.Since(start)
	if now == old {
		t.Fatalf("KillMaster() = %s; want a master other than %s", now, old)
	}
	if got := s.MasterAddr(); got != now {
		t.Errorf("MasterAddr() after KillMaster = %s; want %s", got, now)
	}
	start = time.Now()
	if err := poll(sentinelWait, func() error { return onMaster(c, now, key) }); err != nil {
		t.Fatalf("failover client after KillMaster: %v", err)
	}
	t.Logf("killed master %s: %s promoted, sentinels agree in %v, client there %v later",
		old, now, took.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))

	start = time.Now()
	s.Restart(old)
	t.Logf("%s back as a replica in %v", old, time.Since(start).Round(time.Millisecond))
	if err := wantRole(old, "slave"); err != nil {
		t.Errorf("after Restart: %v", err)
	}
	r := redis.NewClient(&redis.Options{Addr: old})
	defer r.Close()
	if got, err := r.Get(context.Background(), key).Result(); err != nil || got != "v" {
		t.Errorf("GET %s on the restarted replica = %q, %v; want v", key, got, err)
	}
}
