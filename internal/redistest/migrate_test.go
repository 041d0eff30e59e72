package redistest

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redirects returns how many ASK and MOVED replies the node at addr has
// sent (INFO errorstats).
func redirects(t *testing.T, addr string) (ask, moved int64) {
	t.Helper()
	f, err := info(addr, "errorstats")
	if err != nil {
		t.Fatalf("%v", err)
	}
	count := func(field string) int64 {
		v, ok := strings.CutPrefix(f[field], "count=")
		if !ok {
			return 0 // none sent yet
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("INFO errorstats %s:%s: %v", field, f[field], err)
		}
		return n
	}
	return count("errorstat_ASK"), count("errorstat_MOVED")
}

// countKeys returns CLUSTER COUNTKEYSINSLOT slot on the node at addr.
func countKeys(t *testing.T, addr string, slot int64) int64 {
	t.Helper()
	cl := redis.NewClient(&redis.Options{Addr: addr})
	defer cl.Close()
	n, err := cl.ClusterCountKeysInSlot(context.Background(), int(slot)).Result()
	if err != nil {
		t.Fatalf("%s: CLUSTER COUNTKEYSINSLOT %d = %v", addr, slot, err)
	}
	return n
}

func TestClusterMigrateSlot(t *testing.T) {
	c := StartCluster(t, 3, 1)
	cc := c.Client(t)
	ctx := context.Background()
	const n, written = 40, 5 // keys before the migration; keys written during it
	key := func(i int) string { return fmt.Sprintf("migrate{slot}:%d", i) }
	readAll := func(cl *redis.ClusterClient, when string, count int) {
		t.Helper()
		for i := range count {
			if got, err := cl.Get(ctx, key(i)).Result(); err != nil || got != strconv.Itoa(i) {
				t.Fatalf("%s: GET %s = %q, %v; want %d", when, key(i), got, err, i)
			}
		}
	}
	for i := range n {
		if err := cc.Set(ctx, key(i), i, 0).Err(); err != nil {
			t.Fatalf("SET %s = %v", key(i), err)
		}
	}
	src := c.MasterOf(key(0))
	var dst string
	for _, m := range c.Masters() {
		if m != src {
			dst = m
			break
		}
	}
	readAll(cc, "before the migration", n)

	start := time.Now()
	m := c.BeginMigration(key(0), dst)
	if m.From() != src || m.To() != dst {
		t.Fatalf("BeginMigration(%s, %s) moves from %s to %s; want from %s", key(0), dst, m.From(), m.To(), src)
	}
	ask0, _ := redirects(t, src)
	if got := m.MoveKeys(n / 2); got != n/2 {
		t.Fatalf("MoveKeys(%d) = %d; want %d", n/2, got, n/2)
	}
	if got := countKeys(t, dst, m.Slot()); got != n/2 {
		t.Errorf("COUNTKEYSINSLOT on %s mid-migration = %d; want %d", dst, got, n/2)
	}
	// Half the keys on each side: the source answers ASK for the moved half.
	readAll(cc, "during the migration", n)
	ask1, _ := redirects(t, src)
	if ask1-ask0 < n/2 {
		t.Errorf("ASK replies from %s while reading %d moved keys = %d; want >= %d", src, n/2, ask1-ask0, n/2)
	}
	// A key the source lacks is created on the destination (ASK again).
	for i := n; i < n+written; i++ {
		if err := cc.Set(ctx, key(i), i, 0).Err(); err != nil {
			t.Fatalf("SET %s during the migration = %v", key(i), err)
		}
	}

	// A client that loads the slot map now still sends the slot to the
	// source after Finish, and gets MOVED.
	late := c.Client(t)
	if err := late.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING = %v", err)
	}
	_, moved0 := redirects(t, src)
	m.Finish()
	took := time.Since(start)
	if got := m.Moved(); got != n {
		t.Errorf("Moved() after Finish = %d; want %d", got, n)
	}
	readAll(late, "after the migration", n+written)
	_, moved1 := redirects(t, src)
	if moved1-moved0 < 1 {
		t.Errorf("MOVED replies from %s after Finish = %d; want >= 1", src, moved1-moved0)
	}
	readAll(cc, "after the migration", n+written)
	if got := c.MasterOf(key(0)); got != dst {
		t.Errorf("MasterOf(%s) after Finish = %s; want %s", key(0), got, dst)
	}
	if got := countKeys(t, dst, m.Slot()); got != int64(n+written) {
		t.Errorf("COUNTKEYSINSLOT on %s = %d; want %d moved + %d written", dst, got, n, written)
	}
	if got := countKeys(t, src, m.Slot()); got != 0 {
		t.Errorf("COUNTKEYSINSLOT on %s = %d; want 0", src, got)
	}
	t.Logf("slot %d (%d keys) moved %s -> %s in %v; the source sent %d ASK while half was moved, %d MOVED after",
		m.Slot(), n, src, dst, took.Round(time.Millisecond), ask1-ask0, moved1-moved0)

	// And back in one call.
	start = time.Now()
	if got := c.MigrateSlot(key(0), src); got != n+written {
		t.Errorf("MigrateSlot(%s, %s) = %d; want %d", key(0), src, got, n+written)
	}
	t.Logf("slot %d (%d keys) moved back in %v", m.Slot(), n+written, time.Since(start).Round(time.Millisecond))
	if got := countKeys(t, src, m.Slot()); got != int64(n+written) {
		t.Errorf("COUNTKEYSINSLOT on %s after moving back = %d; want %d", src, got, n+written)
	}
	readAll(cc, "after moving back", n+written)
}
