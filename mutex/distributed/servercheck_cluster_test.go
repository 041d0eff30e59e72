package distributed_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/logtest"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
)

// TestClusterMisconfigured: on a 3-master cluster, a plain client at one
// node fails at once on keys of other nodes, saying to use a
// ClusterClient; and the eviction check reads every master's policy.
func TestClusterMisconfigured(t *testing.T) {
	leakcheck.Register(t)
	c := redistest.StartCluster(t, 3, 0)
	t.Run("PlainClientAtNode", func(t *testing.T) { plainClientAtNode(t, c) })
	t.Run("EvictionEachMaster", func(t *testing.T) { evictionEachMaster(t, c) })
}

func plainClientAtNode(t *testing.T, c *redistest.Cluster) {
	node := c.Masters()[0]
	key := ""
	for i := 0; key == ""; i++ {
		if k := "elsewhere-" + strings.Repeat("x", i); c.MasterOf("keyedmutex:{"+k+"}") != node {
			key = k
		}
	}
	logger, logged := logtest.New()
	m, err := distributed.New[string](c.NodeClient(t, node), distributed.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, op := range []struct {
		name string
		f    func(context.Context, string) error
	}{
		{"TryLock", func(ctx context.Context, k string) error { _, err := m.TryLock(ctx, k); return err }},
		{"Lock", func(ctx context.Context, k string) error { _, err := m.Lock(ctx, k); return err }},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		got := make(chan error, 1)
		go func() { got <- op.f(ctx, key) }()
		select {
		case err := <-got:
			if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "ClusterClient") {
				t.Errorf("%s(key of another node) = %v; want an error at once that says to use a *redis.ClusterClient", op.name, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("%s(key of another node) still running after 30s; want an error at once", op.name)
		}
		cancel()
	}
	if _, err := m.Inspect(context.Background(), key); err == nil || !strings.Contains(err.Error(), "ClusterClient") {
		t.Errorf("Inspect(key of another node) = %v; want an error that says to use a *redis.ClusterClient", err)
	}
	found := false
	for _, r := range logged.All() {
		found = found || (r.Level == slog.LevelWarn && strings.Contains(r.Text, "ClusterClient") && strings.Contains(r.Text, node))
	}
	if !found {
		t.Errorf("logged %v; want a warning that %s is a cluster node, to use a ClusterClient", logged.All(), node)
	}
}

func evictionEachMaster(t *testing.T, c *redistest.Cluster) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	masters := c.Masters()
	policies := []string{"volatile-lru", "noeviction", "allkeys-lfu"}
	for i, addr := range masters {
		nc := c.NodeClient(t, addr)
		if err := nc.ConfigSet(ctx, "maxmemory", "1gb").Err(); err != nil {
			t.Fatal(err)
		}
		if err := nc.ConfigSet(ctx, "maxmemory-policy", policies[i]).Err(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.ConfigSet(context.Background(), "maxmemory", "0") })
	}
	logger, logged := logtest.New()
	m, err := distributed.New[string](c.Client(t), distributed.WithLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, err := m.Lock(ctx, "eviction")
	if err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	for i, addr := range masters {
		n := 0
		for _, r := range logged.All() {
			if r.Level == slog.LevelWarn && strings.Contains(r.Text, addr) && strings.Contains(r.Text, policies[i]) && strings.Contains(r.Text, "noeviction") {
				n++
			}
		}
		want := 1
		if policies[i] == "noeviction" {
			want = 0
		}
		if n != want {
			t.Errorf("master %s with maxmemory-policy %s: %d eviction warnings; want %d (logged %v)", addr, policies[i], n, want, logged.All())
		}
	}
}
