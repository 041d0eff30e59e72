package distributed

import (
	"bufio"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// The one-time check of the servers behind a Mutex's client (see
// [WithoutEvictionCheck]): their eviction policy and, through a plain
// client, whether the server is a node of a Redis Cluster. It runs at
// the first Lock or TryLock of the Mutex, which waits for it (one round
// trip, once) or for its own ctx; every later call pays one atomic load.
// A check that could not reach a server is tried again by a Lock at least
// checkRetry later.

// checkRetry is how long after a check that could not reach Redis a Lock
// tries it again.
const checkRetry = time.Minute

const (
	checkNone = iota
	checkRunning
	checkDone
)

type serverCheck struct {
	state   atomic.Int32
	retryAt atomic.Int64 // unix ns: no new check before
	mu      sync.Mutex   // guards done
	done    chan struct{}
}

// errCheckRetry ends a cluster check that could not reach a master.
var errCheckRetry = errors.New("distributed: server check: not reached")

// checkServers runs the server check if it has not run yet, waiting for it
// or for ctx's end or Close.
func (c *core) checkServers(ctx context.Context) {
	s := &c.check
	if !c.cfg.serverCheck || s.state.Load() == checkDone {
		return
	}
	s.mu.Lock()
	switch s.state.Load() {
	case checkDone:
		s.mu.Unlock()
		return
	case checkNone:
		if time.Now().UnixNano() < s.retryAt.Load() {
			s.mu.Unlock()
			return
		}
		s.state.Store(checkRunning)
		s.done = make(chan struct{})
		go c.runCheck(s.done)
	}
	done := s.done
	s.mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
	case <-c.closing:
	}
}

// runCheck reads every server's settings and closes done.
func (c *core) runCheck(done chan struct{}) {
	ctx, cancel := context.WithTimeout(c.closeCtx, c.cfg.unlockTimeout)
	defer cancel()
	var reached bool
	if cc, ok := c.client.(*redis.ClusterClient); ok {
		reached = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			if !c.checkNode(ctx, node, node.Options().Addr, false) {
				return errCheckRetry
			}
			return nil
		}) == nil
	} else {
		addr := ""
		if cl, ok := c.client.(*redis.Client); ok {
			addr = cl.Options().Addr
		}
		reached = c.checkNode(ctx, c.client, addr, true)
	}
	c.check.mu.Lock()
	if reached {
		c.check.state.Store(checkDone)
	} else {
		c.check.retryAt.Store(time.Now().Add(checkRetry).UnixNano())
		c.check.state.Store(checkNone)
	}
	close(done)
	c.check.mu.Unlock()
}

// checkNode reads one server's memory settings (and, for a plain client,
// whether it is a Cluster node) and logs what is wrong with them. It
// reports false if the server could not be reached.
func (c *core) checkNode(ctx context.Context, client redis.Cmdable, addr string, plain bool) bool {
	var mem, clu *redis.StringCmd
	_, _ = client.Pipelined(ctx, func(p redis.Pipeliner) error {
		mem = p.Info(ctx, "memory")
		if plain {
			clu = p.Info(ctx, "cluster")
		}
		return nil
	})
	if err := mem.Err(); err != nil {
		if !isReply(err) {
			return false
		}
		// INFO refused (an ACL, a renamed command, a server that
		// does not have it): nothing to read, nothing to retry.
		c.logger().Info("keyedmutex: could not read the server's eviction policy (INFO memory); lock keys must never be evicted: make sure maxmemory-policy is noeviction or maxmemory is 0",
			"server", addr, "reason", err)
	} else if info := parseInfo(mem.Val()); evicts(info) {
		c.logger().Warn("keyedmutex: Redis may evict lock keys, which breaks mutual exclusion without a sign: set maxmemory-policy noeviction (every key of the library has a TTL, so no volatile-* policy spares them), or use WithoutEvictionCheck to accept the risk",
			"server", addr, "maxmemory", info["maxmemory"], "maxmemory-policy", info["maxmemory_policy"])
	}
	if clu != nil && clu.Err() == nil && parseInfo(clu.Val())["cluster_enabled"] == "1" {
		c.logger().Warn("keyedmutex: the server is a node of a Redis Cluster, reached through a plain client: locks on keys of other nodes fail (MOVED); use a *redis.ClusterClient",
			"server", addr)
	}
	return true
}

// evicts reports whether the settings of an INFO memory reply let Redis
// evict the library's keys: a memory limit and any policy but
// noeviction. Every key the library writes has a TTL, so the volatile-*
// policies, which spare only keys without one, evict nothing else.
func evicts(info map[string]string) bool {
	limit, err := strconv.ParseUint(info["maxmemory"], 10, 64)
	if err != nil || limit == 0 {
		return false
	}
	p := info["maxmemory_policy"]
	return p != "" && p != "noeviction"
}

// parseInfo returns the fields of an INFO reply.
func parseInfo(s string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok && !strings.HasPrefix(k, "#") {
			m[k] = v
		}
	}
	return m
}
