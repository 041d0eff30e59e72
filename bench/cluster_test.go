package bench

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyedmutex/keyedmutex/internal/redistest"
)

// clusterMasters is the size of the benchmark cluster. It has no
// replicas: the benchmark measures throughput and load per shard, not
// failover.
const clusterMasters = 3

// startCluster starts masters redis-server nodes in cluster mode, each on
// a free loopback port in its own temp dir (stopped at tb's cleanup), and
// joins them with redis-cli --cluster create. It skips tb where
// redis-server or redis-cli is missing, unless KEYEDMUTEX_REQUIRE_REDIS is
// set.
func startCluster(tb testing.TB, masters int) *target {
	tb.Helper()
	redistest.Need(tb)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		tb.Skip("redis-cli not found on PATH, skipping the cluster benchmark")
	}
	var addrs []string
	for range masters {
		s := redistest.Start(tb, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")
		addrs = append(addrs, s.Addr())
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	waitClusterOK(tb, addrs)
	t := &target{kind: "cluster", addr: addrs[0], nodes: addrs}
	t.measure(tb)
	return t
}

// waitClusterOK polls every node until it reports cluster_state:ok and
// knows every other node, or fails tb after 30s.
func waitClusterOK(tb testing.TB, addrs []string) {
	tb.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(addrs))) {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				tb.Fatalf("cluster node %s not ready after 30s: %v\n%s", a, err, info)
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.Close()
	}
}
