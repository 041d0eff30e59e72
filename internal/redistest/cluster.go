package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster built for one test from redis-server processes
// on loopback: every node on a free port (with its cluster bus port, port +
// 10000, free too) and in its own temp dir. It is stopped at cleanup.
//
// Nodes use --cluster-node-timeout 1000 (a dead master is replaced in a few
// seconds) and --cluster-require-full-coverage no (the other shards keep
// serving while one has no master).
type Cluster struct {
	tb    testing.TB
	nodes []*Server
}

// NeedCLI skips (or, with KEYEDMUTEX_REQUIRE_REDIS set, fails) tb when
// redis-server or redis-cli is not on PATH, and returns redis-cli's path.
func NeedCLI(tb testing.TB) string {
	tb.Helper()
	Need(tb)
	p, err := exec.LookPath("redis-cli")
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			tb.Fatalf("redis-cli not found on PATH and %s is set: install it (apt-get install -y redis-tools)", RequireEnv)
		}
		tb.Skip("redis-cli not found on PATH, skipping Redis Cluster test (install redis-tools to run it)")
	}
	return p
}

// StartCluster builds a cluster of masters masters with replicasPerMaster
// replicas each, waits until every node reports cluster_state:ok, every
// slot is served and every replica is in sync, and stops it at cleanup.
func StartCluster(tb testing.TB, masters, replicasPerMaster int) *Cluster {
	tb.Helper()
	cli := NeedCLI(tb)
	bin := Need(tb)
	if masters < 3 {
		tb.Fatalf("redistest: a Redis Cluster needs at least 3 masters, got %d", masters)
	}
	c := &Cluster{tb: tb}
	n := masters * (1 + replicasPerMaster)
	errs := make([]error, n)
	c.nodes = make([]*Server, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.nodes[i], errs[i] = startClusterNode(tb, bin)
		}()
	}
	wg.Wait()
	for _, s := range c.nodes {
		if s != nil {
			tb.Cleanup(s.Stop)
		}
	}
	for _, err := range errs {
		if err != nil {
			tb.Fatalf("redistest: start cluster node: %v", err)
		}
	}

	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	t0 := time.Now()
	out, err := exec.Command(cli, args...).CombinedOutput()
	tb.Logf("redistest: redis-cli --cluster create took %v", time.Since(t0).Round(time.Millisecond))
	if err != nil {
		tb.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := c.waitHealthy(masters, 30*time.Second); err != nil {
		tb.Fatalf("redistest: cluster did not come up: %v", err)
	}
	return c
}

// startClusterNode starts one cluster-enabled redis-server on a port p
// where p+10000 (its cluster bus) is free too.
func startClusterNode(tb testing.TB, bin string) (*Server, error) {
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		var port int
		port, err = freeClusterPort()
		if err != nil {
			continue
		}
		s := &Server{tb: tb, bin: bin, dir: tb.TempDir(), port: port, extra: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000",
			"--cluster-require-full-coverage", "no",
			"--cluster-allow-replica-migration", "no",
			"--repl-diskless-sync-delay", "0",
		}}
		if err = s.start(); err == nil {
			return s, nil
		}
	}
	return nil, err
}

// freeClusterPort returns a port p such that p and p+10000 were both free
// on 127.0.0.1 a moment ago.
func freeClusterPort() (int, error) {
	for range 100 {
		p, err := FreePort()
		if err != nil {
			return 0, err
		}
		if p+10000 > 65535 {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			continue
		}
		l.Close()
		return p, nil
	}
	return 0, fmt.Errorf("no port p with p and p+10000 free")
}

// Addrs returns the addresses of every node started, live or killed.
func (c *Cluster) Addrs() []string {
	var a []string
	for _, s := range c.nodes {
		a = append(a, s.Addr())
	}
	return a
}

// Client returns a new cluster client, closed at tb's cleanup.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	tb.Cleanup(func() { cc.Close() })
	return cc
}

// NodeClient returns a plain client for the node at addr (for PUBSUB
// SHARDNUMSUB on one shard, say), closed at tb's cleanup.
func (c *Cluster) NodeClient(tb testing.TB, addr string) *redis.Client {
	cl := redis.NewClient(&redis.Options{Addr: addr})
	tb.Cleanup(func() { cl.Close() })
	return cl
}

// Masters returns the addresses of the live masters that serve slots, as a
// live node sees them, sorted.
func (c *Cluster) Masters() []string {
	c.tb.Helper()
	v, err := c.view()
	if err != nil {
		c.tb.Fatalf("redistest: cluster masters: %v", err)
	}
	var m []string
	for addr := range v.slotsOf {
		m = append(m, addr)
	}
	slices.Sort(m)
	return m
}

// MasterOf returns the address of the master that serves key's slot.
func (c *Cluster) MasterOf(key string) string {
	c.tb.Helper()
	slot := c.slotOf(key)
	v, err := c.view()
	if err != nil {
		c.tb.Fatalf("redistest: cluster view: %v", err)
	}
	return v.owner[slot]
}

// Kill kills the node at addr with SIGKILL and waits until it has exited.
func (c *Cluster) Kill(addr string) {
	c.tb.Helper()
	for _, s := range c.nodes {
		if s.Addr() == addr {
			s.Kill()
			return
		}
	}
	c.tb.Fatalf("redistest: no cluster node at %s", addr)
}

// KillMaster kills the master at addr and waits until a replica has taken
// over its slots and every live node agrees that each slot has a live
// master. It returns the address of the new master.
func (c *Cluster) KillMaster(addr string) string {
	c.tb.Helper()
	v, err := c.view()
	if err != nil {
		c.tb.Fatalf("redistest: cluster view: %v", err)
	}
	slots := v.slotsOf[addr]
	if len(slots) == 0 {
		c.tb.Fatalf("redistest: %s serves no slots", addr)
	}
	c.Kill(addr)
	if err := c.waitHealthy(len(v.slotsOf), 30*time.Second); err != nil {
		c.tb.Fatalf("redistest: no failover after killing %s: %v", addr, err)
	}
	v, err = c.view()
	if err != nil {
		c.tb.Fatalf("redistest: cluster view: %v", err)
	}
	return v.owner[slots[0]]
}

// live returns the nodes whose process runs.
func (c *Cluster) live() []*Server {
	var l []*Server
	for _, s := range c.nodes {
		if s.running() {
			l = append(l, s)
		}
	}
	return l
}

func (c *Cluster) liveClient() *redis.Client {
	l := c.live()
	if len(l) == 0 {
		c.tb.Fatal("redistest: no live cluster node")
	}
	return redis.NewClient(&redis.Options{Addr: l[0].Addr()})
}

// clusterView is one node's idea of the slot map.
type clusterView struct {
	owner   map[int64]string   // slot -> master address
	slotsOf map[string][]int64 // master address -> first slot of each range
}

// view reads the slot map from a live node.
func (c *Cluster) view() (*clusterView, error) {
	cl := c.liveClient()
	defer cl.Close()
	return viewOf(cl)
}

func viewOf(cl *redis.Client) (*clusterView, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	slots, err := cl.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, err
	}
	v := &clusterView{owner: map[int64]string{}, slotsOf: map[string][]int64{}}
	for _, r := range slots {
		if len(r.Nodes) == 0 {
			continue
		}
		addr := r.Nodes[0].Addr
		v.slotsOf[addr] = append(v.slotsOf[addr], int64(r.Start))
		for s := r.Start; s <= r.End; s++ {
			v.owner[int64(s)] = addr
		}
	}
	return v, nil
}

// waitHealthy polls every live node until each says cluster_state:ok,
// knows every slot served by one of masters live masters, agrees with the
// others on the owners, and every live master's live replicas are online.
func (c *Cluster) waitHealthy(masters int, within time.Duration) error {
	return poll(within, func() error { return c.healthy(masters) })
}

func (c *Cluster) healthy(masters int) error {
	live := c.live()
	up := map[string]bool{}
	for _, s := range live {
		up[s.Addr()] = true
	}
	var first *clusterView
	for _, s := range live {
		cl := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
		err := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_assigned:16384") {
				return fmt.Errorf("%s: CLUSTER INFO:\n%s", s.Addr(), info)
			}
			v, err := viewOf(cl)
			if err != nil {
				return err
			}
			if len(v.owner) != 16384 || len(v.slotsOf) != masters {
				return fmt.Errorf("%s sees %d slots served by %d masters; want 16384 by %d", s.Addr(), len(v.owner), len(v.slotsOf), masters)
			}
			for addr := range v.slotsOf {
				if !up[addr] {
					return fmt.Errorf("%s still has slots on the dead master %s", s.Addr(), addr)
				}
			}
			if first == nil {
				first = v
			} else {
				for slot, addr := range first.owner {
					if v.owner[slot] != addr {
						return fmt.Errorf("nodes disagree on the owner of slot %d", slot)
					}
				}
			}
			repl, err := cl.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if strings.Contains(repl, "role:slave") && !strings.Contains(repl, "master_link_status:up") {
				return fmt.Errorf("replica %s not in sync yet", s.Addr())
			}
			return nil
		}()
		cl.Close()
		if err != nil {
			return err
		}
	}
	return nil
}
