package distributed

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

// TestRWConformance runs the read-write conformance suite, and the mutex
// suite on the write lock, on every backend.
func TestRWConformance(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		admin := e.client(t)
		newRW := func(t *testing.T) *RWMutex[string] { return newRWOn(t, e.client(t)) }
		keyedtest.RunRW(t, keyedtest.RWConfig{
			New:       func(t *testing.T) mutex.RWKeyed[string] { return newRW(t) },
			Instances: 3,
			Queued:    rwQueuedIn(admin),
		})
		keyedtest.Run(t, keyedtest.Config{
			New:       func(t *testing.T) mutex.Keyed[string] { return newRW(t) },
			Instances: 3,
		})
	})
}

// TestRWRefusesSpin: a spinning writer would not queue, and so could be
// starved by readers.
func TestRWRefusesSpin(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	_, err := NewRW[string](c, WithSpin(time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "WithSpin") {
		t.Fatalf("NewRW(WithSpin) = %v; want an error naming WithSpin", err)
	}
}

// rwQueuedIn returns a keyedtest Queued function: the number of entries
// of an RWMutex's own waiters (its id is the second field of an entry) in
// the key's queue in Redis.
func rwQueuedIn(admin *redis.Client) func(m mutex.RWKeyed[string], key string) int {
	return func(m mutex.RWKeyed[string], key string) int {
		rw := m.(*RWMutex[string])
		enc, err := rw.encode(key)
		if err != nil {
			return 0
		}
		entries, err := admin.ZRange(context.Background(), rw.namesFor(enc).queue, 0, -1).Result()
		if err != nil {
			return 0
		}
		n := 0
		for _, e := range entries {
			if f := strings.Fields(e); len(f) > 1 && f[1] == rw.id {
				n++
			}
		}
		return n
	}
}
