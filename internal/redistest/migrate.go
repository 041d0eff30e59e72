package redistest

import (
	"context"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// Migration moves one hash slot from the master that serves it to another
// master, in the steps of the standard procedure (the one redis-cli
// --cluster reshard follows), so that a test can run traffic in between:
//
//   - [Cluster.BeginMigration] marks the slot IMPORTING on the destination
//     and MIGRATING on the source. From now on the source answers ASK for
//     keys of the slot it no longer has.
//   - [Migration.MoveKeys] moves keys with CLUSTER GETKEYSINSLOT and
//     MIGRATE, as many as asked.
//   - [Migration.Finish] moves the rest and assigns the slot to the
//     destination on every master. Clients with the old slot map now get
//     MOVED.
//
// [Cluster.MigrateSlot] does all three. The methods end the test on
// failure, so call them from the test's goroutine.
type Migration struct {
	c            *Cluster
	slot         int64
	src, dst     string
	srcID, dstID string
	moved        int
}

// migrateBatch is how many keys one MIGRATE moves, as redis-cli's
// default --cluster-pipeline.
const migrateBatch = 10

// MigrateSlot moves the slot of key from the master that serves it to the
// master at dst and returns the number of keys moved. It returns once
// every live node names dst as the slot's owner.
func (c *Cluster) MigrateSlot(key, dst string) int {
	c.tb.Helper()
	m := c.BeginMigration(key, dst)
	m.Finish()
	return m.Moved()
}

// BeginMigration starts moving the slot of key from the master that
// serves it to the master at dst: CLUSTER SETSLOT slot IMPORTING on dst,
// then CLUSTER SETSLOT slot MIGRATING on the source. No key moves yet.
func (c *Cluster) BeginMigration(key, dst string) *Migration {
	c.tb.Helper()
	m := &Migration{c: c, slot: c.slotOf(key), dst: dst}
	v, err := c.view()
	if err != nil {
		c.tb.Fatalf("redistest: cluster view: %v", err)
	}
	m.src = v.owner[m.slot]
	if _, ok := v.slotsOf[dst]; !ok {
		c.tb.Fatalf("redistest: BeginMigration(%q, %s): %s is not a master that serves slots", key, dst, dst)
	}
	if m.src == dst {
		c.tb.Fatalf("redistest: BeginMigration(%q, %s): slot %d is on %s already", key, dst, m.slot, dst)
	}
	if m.srcID, err = nodeID(m.src); err != nil {
		c.tb.Fatalf("redistest: %v", err)
	}
	if m.dstID, err = nodeID(dst); err != nil {
		c.tb.Fatalf("redistest: %v", err)
	}
	// Importing first: a source that sends ASK to a destination not yet
	// importing would bounce the client back with MOVED.
	if err := nodeDo(dst, "CLUSTER", "SETSLOT", m.slot, "IMPORTING", m.srcID); err != nil {
		c.tb.Fatalf("redistest: %v", err)
	}
	if err := nodeDo(m.src, "CLUSTER", "SETSLOT", m.slot, "MIGRATING", m.dstID); err != nil {
		c.tb.Fatalf("redistest: %v", err)
	}
	return m
}

// Slot is the slot being moved.
func (m *Migration) Slot() int64 { return m.slot }

// From is the address of the master the slot moves away from.
func (m *Migration) From() string { return m.src }

// To is the address of the master the slot moves to.
func (m *Migration) To() string { return m.dst }

// Moved is the number of keys moved so far.
func (m *Migration) Moved() int { return m.moved }

// MoveKeys moves up to n of the slot's keys (every key when n <= 0) from
// the source to the destination with MIGRATE, and returns how many it
// moved: fewer than n once the source has no key of the slot left.
func (m *Migration) MoveKeys(n int) int {
	m.c.tb.Helper()
	src := redis.NewClient(&redis.Options{Addr: m.src})
	defer src.Close()
	moved := 0
	for n <= 0 || moved < n {
		limit := migrateBatch
		if n > 0 {
			limit = min(limit, n-moved)
		}
		found, did, err := m.moveBatch(src, limit)
		if err != nil {
			m.c.tb.Fatalf("redistest: move keys of slot %d from %s to %s: %v", m.slot, m.src, m.dst, err)
		}
		if found == 0 {
			break
		}
		moved += did
	}
	m.moved += moved
	return moved
}

// moveBatch asks the source for up to limit keys of the slot and MIGRATEs
// them. It returns how many it found and how many it moved: none when
// MIGRATE says NOKEY (they expired or were deleted meanwhile).
func (m *Migration) moveBatch(src *redis.Client, limit int) (found, moved int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := src.ClusterGetKeysInSlot(ctx, int(m.slot), limit).Result()
	if err != nil || len(keys) == 0 {
		return 0, 0, err
	}
	host, port, _ := net.SplitHostPort(m.dst)
	args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
	for _, k := range keys {
		args = append(args, k)
	}
	reply, err := src.Do(ctx, args...).Text()
	switch {
	case err != nil:
		return 0, 0, err
	case reply == "NOKEY": // a status reply, not an error
		return len(keys), 0, nil
	}
	return len(keys), len(keys), nil
}

// Finish moves the keys left in the slot, then assigns the slot to the
// destination with CLUSTER SETSLOT slot NODE: on the destination, on the
// source, then on every other master. It returns once every live node
// names the destination as the slot's owner.
func (m *Migration) Finish() {
	m.c.tb.Helper()
	m.MoveKeys(0)
	v, err := m.c.view()
	if err != nil {
		m.c.tb.Fatalf("redistest: cluster view: %v", err)
	}
	masters := []string{m.dst, m.src}
	for addr := range v.slotsOf {
		if !slices.Contains(masters, addr) {
			masters = append(masters, addr)
		}
	}
	for _, addr := range masters {
		if err := nodeDo(addr, "CLUSTER", "SETSLOT", m.slot, "NODE", m.dstID); err != nil {
			m.c.tb.Fatalf("redistest: %v", err)
		}
	}
	err = poll(30*time.Second, func() error {
		for _, s := range m.c.live() {
			cl := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
			v, err := viewOf(cl)
			cl.Close()
			if err != nil {
				return err
			}
			if v.owner[m.slot] != m.dst {
				return fmt.Errorf("%s names %s as the owner of slot %d", s.Addr(), v.owner[m.slot], m.slot)
			}
		}
		return nil
	})
	if err != nil {
		m.c.tb.Fatalf("redistest: slot %d not handed to %s: %v", m.slot, m.dst, err)
	}
}

// slotOf returns the hash slot of key.
func (c *Cluster) slotOf(key string) int64 {
	c.tb.Helper()
	cl := c.liveClient()
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	slot, err := cl.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		c.tb.Fatalf("redistest: CLUSTER KEYSLOT %q: %v", key, err)
	}
	return slot
}

// nodeID returns the cluster node id of the node at addr.
func nodeID(addr string) (string, error) {
	cl := redis.NewClient(&redis.Options{Addr: addr})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id, err := cl.Do(ctx, "CLUSTER", "MYID").Text()
	if err != nil {
		return "", fmt.Errorf("%s: CLUSTER MYID: %w", addr, err)
	}
	return id, nil
}

// nodeDo sends one command to the node at addr.
func nodeDo(addr string, args ...any) error {
	cl := redis.NewClient(&redis.Options{Addr: addr})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cl.Do(ctx, args...).Err(); err != nil {
		return fmt.Errorf("%s: %v: %w", addr, args, err)
	}
	return nil
}
