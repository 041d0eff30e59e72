package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sentinel is a Redis Sentinel deployment built for one test from
// redis-server processes on loopback, each on a free port in its own temp
// dir: a master, one replica of it, and three sentinels that monitor the
// master under [Sentinel.MasterName] with quorum 2,
// down-after-milliseconds 1000 and failover-timeout 3000. Everything is
// stopped at cleanup.
//
// Which data node is the master changes with [Sentinel.Failover] and
// [Sentinel.KillMaster]; [Sentinel.MasterAddr] asks the sentinels. The
// methods end the test on failure, so call them from the test's goroutine.
type Sentinel struct {
	tb        testing.TB
	data      []*Server // the first master and its replica; roles change
	sentinels []*Server
}

const (
	sentinelMaster = "redistest" // the name the sentinels monitor
	// sentinelWait bounds every wait for the deployment to reach a state.
	sentinelWait = 30 * time.Second
)

// dataArgs are the arguments of every data node: a replica that starts
// syncing sends its snapshot at once instead of waiting 5s for others.
var dataArgs = []string{"--repl-diskless-sync-delay", "0"}

// StartSentinel starts a master, a replica and three sentinels for tb,
// waits until the replica is in sync and every sentinel knows the master,
// the replica and the two other sentinels, and stops them all at cleanup.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	bin := Need(tb)
	s := &Sentinel{tb: tb}
	master := Start(tb, dataArgs...)
	s.data = []*Server{master, Start(tb, replicaArgs(master.Addr())...)}
	// A sentinel learns of replicas from the master's INFO, which it reads
	// when it connects and then every 10s: start it once the replica shows.
	if err := poll(sentinelWait, func() error { return s.replicated(master.Addr()) }); err != nil {
		tb.Fatalf("redistest: replica of %s not in sync: %v", master.Addr(), err)
	}
	for range 3 {
		n, err := startSentinelNode(tb, bin, master.Port())
		if err != nil {
			tb.Fatalf("redistest: start sentinel: %v", err)
		}
		tb.Cleanup(n.Stop) // runs before the data nodes stop: no failover at the end
		s.sentinels = append(s.sentinels, n)
	}
	if err := poll(sentinelWait, func() error { return s.settled(master.Addr()) }); err != nil {
		tb.Fatalf("redistest: sentinels did not come up: %v", err)
	}
	return s
}

// replicaArgs are the arguments of a data node that replicates master.
func replicaArgs(master string) []string {
	host, port, _ := net.SplitHostPort(master)
	return slices.Concat(dataArgs, []string{"--replicaof", host, port})
}

// startSentinelNode starts one sentinel monitoring the master on
// masterPort, with a config file of its own that it may rewrite.
func startSentinelNode(tb testing.TB, bin string, masterPort int) (*Server, error) {
	dir := tb.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		var port int
		port, err = FreePort()
		if err != nil {
			continue
		}
		// Rewritten on every attempt: a sentinel that started saves its
		// state (its id, the port) into the file.
		text := fmt.Sprintf("sentinel monitor %[1]s 127.0.0.1 %[2]d 2\n"+
			"sentinel down-after-milliseconds %[1]s 1000\n"+
			"sentinel failover-timeout %[1]s 3000\n"+
			"sentinel announce-ip 127.0.0.1\n", sentinelMaster, masterPort)
		if err = os.WriteFile(conf, []byte(text), 0o600); err != nil {
			return nil, err
		}
		n := &Server{tb: tb, bin: bin, dir: dir, port: port, conf: conf, extra: []string{"--sentinel"}}
		if err = n.start(); err == nil {
			return n, nil
		}
	}
	return nil, err
}

// MasterName is the name the sentinels monitor the master under: the
// MasterName of [redis.FailoverOptions].
func (s *Sentinel) MasterName() string { return sentinelMaster }

// SentinelAddrs returns the sentinels' addresses: the SentinelAddrs of
// [redis.FailoverOptions].
func (s *Sentinel) SentinelAddrs() []string {
	var a []string
	for _, n := range s.sentinels {
		a = append(a, n.Addr())
	}
	return a
}

// Client returns a new failover client (redis.NewFailoverClient) for the
// deployment, closed at tb's cleanup.
func (s *Sentinel) Client(tb testing.TB) *redis.Client {
	c := redis.NewFailoverClient(&redis.FailoverOptions{
		MasterName:    s.MasterName(),
		SentinelAddrs: s.SentinelAddrs(),
	})
	tb.Cleanup(func() { c.Close() })
	return c
}

// MasterAddr returns the master's address as the first sentinel that
// answers SENTINEL GET-MASTER-ADDR-BY-NAME reports it.
func (s *Sentinel) MasterAddr() string {
	s.tb.Helper()
	var errs []error
	for _, n := range s.sentinels {
		addr, err := masterAddrFrom(n.Addr())
		if err == nil {
			return addr
		}
		errs = append(errs, err)
	}
	s.tb.Fatalf("redistest: no sentinel knows the master: %v", errs)
	return ""
}

// Failover makes a sentinel fail the master over to the replica
// (SENTINEL FAILOVER, which needs no agreement and no dead master) and
// waits until every sentinel names the new master and it answers ROLE as
// master. It returns the new master's address.
//
// The old master keeps running, and stays a master that accepts writes
// until the sentinels turn it into a replica of the new one: a sentinel
// waits 8s before it reconfigures an instance that reports the wrong role,
// so this takes about 10s in all. [Sentinel.WaitReplicated] waits for it.
// Failover first waits for a replica in sync, so calls may follow each
// other.
func (s *Sentinel) Failover() string {
	s.tb.Helper()
	old := s.WaitReplicated()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.sentinels[0].Addr()})
	defer sc.Close()
	// NOGOODSLAVE: the sentinel has not yet read a fresh INFO from the
	// replica (it does every 10s). Any other error is final; retrying
	// INPROG could start a second failover after the first.
	err := poll(sentinelWait, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := sc.Failover(ctx, sentinelMaster).Err()
		if err != nil && !strings.HasPrefix(err.Error(), "NOGOODSLAVE") {
			return errStop{err}
		}
		return err
	})
	if err != nil {
		s.tb.Fatalf("redistest: SENTINEL FAILOVER %s: %v", sentinelMaster, err)
	}
	return s.awaitPromotion(old)
}

// KillMaster kills the master with SIGKILL and waits until the sentinels
// have agreed that it is down, promoted the replica, and every sentinel
// names the new master, which answers ROLE as master. It returns the new
// master's address; [Sentinel.Restart] brings the killed one back.
func (s *Sentinel) KillMaster() string {
	s.tb.Helper()
	old := s.WaitReplicated()
	s.server(old).Kill()
	return s.awaitPromotion(old)
}

// Restart starts the data node at addr again, after KillMaster killed it,
// as a replica of the current master, and waits as [Sentinel.WaitReplicated]
// does. Its data is gone (nothing is persisted) until it has synced.
func (s *Sentinel) Restart(addr string) {
	s.tb.Helper()
	n := s.server(addr)
	if n.running() {
		s.tb.Fatalf("redistest: Restart(%s): it still runs", addr)
	}
	n.extra = replicaArgs(s.MasterAddr())
	n.Restart()
	s.WaitReplicated()
}

// WaitReplicated waits until every running data node but the master
// replicates the master with its link up, every sentinel names that
// master and sees the replicas as healthy, and the sentinels know each
// other. It returns the master's address. It fails the test if no
// replica runs: there would be nothing to fail over to.
func (s *Sentinel) WaitReplicated() string {
	s.tb.Helper()
	var master string
	err := poll(sentinelWait, func() error {
		var err error
		if master, err = masterAddrFrom(s.sentinels[0].Addr()); err != nil {
			return err
		}
		return s.settled(master)
	})
	if err != nil {
		s.tb.Fatalf("redistest: sentinel deployment not settled: %v", err)
	}
	for _, n := range s.data {
		if n.Addr() != master && n.running() {
			return master
		}
	}
	s.tb.Fatalf("redistest: no replica of %s runs", master)
	return ""
}

// server returns the data node at addr.
func (s *Sentinel) server(addr string) *Server {
	s.tb.Helper()
	for _, n := range s.data {
		if n.Addr() == addr {
			return n
		}
	}
	s.tb.Fatalf("redistest: no data node at %s", addr)
	return nil
}

// awaitPromotion waits until every sentinel names one master other than
// old and that master answers ROLE as master, and returns its address.
func (s *Sentinel) awaitPromotion(old string) string {
	s.tb.Helper()
	var now string
	err := poll(sentinelWait, func() error {
		now = ""
		for _, n := range s.sentinels {
			addr, err := masterAddrFrom(n.Addr())
			if err != nil {
				return err
			}
			if addr == old {
				return fmt.Errorf("sentinel %s still names %s", n.Addr(), old)
			}
			if now != "" && addr != now {
				return fmt.Errorf("sentinels name %s and %s", now, addr)
			}
			now = addr
		}
		return wantRole(now, "master")
	})
	if err != nil {
		s.tb.Fatalf("redistest: no new master after %s: %v", old, err)
	}
	return now
}

// settled reports, as an error, what keeps the deployment from the state
// WaitReplicated waits for, with master at master.
func (s *Sentinel) settled(master string) error {
	if err := s.replicated(master); err != nil {
		return err
	}
	for _, n := range s.sentinels {
		if err := s.agrees(n.Addr(), master); err != nil {
			return err
		}
	}
	return nil
}

// replicated reports, as an error, whether master is not a master or a
// running data node does not replicate it with its link up.
func (s *Sentinel) replicated(master string) error {
	if err := wantRole(master, "master"); err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(master)
	for _, n := range s.data {
		if n.Addr() == master || !n.running() {
			continue
		}
		f, err := info(n.Addr(), "replication")
		if err != nil {
			return err
		}
		if f["role"] != "slave" || f["master_port"] != port || f["master_link_status"] != "up" {
			return fmt.Errorf("%s is not an in-sync replica of %s: role:%s master_port:%s master_link_status:%s",
				n.Addr(), master, f["role"], f["master_port"], f["master_link_status"])
		}
	}
	return nil
}

// agrees reports, as an error, whether the sentinel at addr does not name
// master, sees it down, does not know the two other sentinels, or does
// not see every running data node but master as a healthy replica.
func (s *Sentinel) agrees(addr, master string) error {
	sc := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m, err := sc.Master(ctx, sentinelMaster).Result()
	if err != nil {
		return fmt.Errorf("sentinel %s: SENTINEL MASTER: %w", addr, err)
	}
	if got := net.JoinHostPort(m["ip"], m["port"]); got != master {
		return fmt.Errorf("sentinel %s names master %s; want %s", addr, got, master)
	}
	if m["flags"] != "master" || m["num-other-sentinels"] != "2" {
		return fmt.Errorf("sentinel %s: master flags %q, %s other sentinels; want master, 2", addr, m["flags"], m["num-other-sentinels"])
	}
	replicas, err := sc.Replicas(ctx, sentinelMaster).Result()
	if err != nil {
		return fmt.Errorf("sentinel %s: SENTINEL REPLICAS: %w", addr, err)
	}
	healthy := map[string]bool{}
	for _, r := range replicas {
		healthy[net.JoinHostPort(r["ip"], r["port"])] = r["flags"] == "slave"
	}
	for _, n := range s.data {
		if n.Addr() != master && n.running() && !healthy[n.Addr()] {
			return fmt.Errorf("sentinel %s does not see %s as a healthy replica: %v", addr, n.Addr(), replicas)
		}
	}
	return nil
}

// masterAddrFrom asks the sentinel at addr for the master's address.
func masterAddrFrom(addr string) (string, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer sc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	hp, err := sc.GetMasterAddrByName(ctx, sentinelMaster).Result()
	if err != nil {
		return "", fmt.Errorf("sentinel %s: GET-MASTER-ADDR-BY-NAME: %w", addr, err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("sentinel %s: GET-MASTER-ADDR-BY-NAME = %q", addr, hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// wantRole reports, as an error, whether the node at addr does not answer
// ROLE with role ("master", "slave").
func wantRole(addr, role string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := c.Do(ctx, "ROLE").Slice()
	if err != nil {
		return fmt.Errorf("%s: ROLE: %w", addr, err)
	}
	if len(r) == 0 || r[0] != role {
		return fmt.Errorf("%s: ROLE = %v; want %s", addr, r, role)
	}
	return nil
}

// info returns the fields of the node at addr's INFO section.
func info(addr, section string) (map[string]string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	text, err := c.Info(ctx, section).Result()
	if err != nil {
		return nil, fmt.Errorf("%s: INFO %s: %w", addr, section, err)
	}
	return infoFields(text), nil
}

// infoFields returns the name:value fields of an INFO reply.
func infoFields(text string) map[string]string {
	f := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			f[k] = v
		}
	}
	return f
}
