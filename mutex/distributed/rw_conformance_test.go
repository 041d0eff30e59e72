package distributed

import (
	"context"
	"errors"
	"fmt"
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
		keyedtest.RunMulti(t, keyedtest.Config{
			New:       func(t *testing.T) mutex.Keyed[string] { return newRW(t) },
			Instances: 3,
		})
	})
}

// TestRWLockOrder: an RWMutex orders a set as a Mutex does (by encoded
// key, the same in every process, whatever the key type), collapses keys
// that encode alike, and refuses an invalid key before taking anything.
func TestRWLockOrder(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	type acct struct{ ID int }
	enc := WithKeyEncoder(func(a acct) (string, error) { return fmt.Sprint("acct-", a.ID), nil })
	rw, err := NewRW[acct](c, enc, WithoutEvictionCheck())
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	m, err := New[acct](c, enc, WithoutEvictionCheck())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	keys := []acct{{10}, {9}, {2}, {10}, {1}}
	got, err := rw.LockOrder(keys)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := m.LockOrder(keys)
	if fmt.Sprint(got) != fmt.Sprint(want) || len(got) != 4 {
		t.Errorf("RWMutex.LockOrder(%v) = %v; want %v, the Mutex's (4 distinct keys)", keys, got, want)
	}

	anyRW, err := NewRW[any](c, WithoutEvictionCheck())
	if err != nil {
		t.Fatal(err)
	}
	defer anyRW.Close()
	if got, err := anyRW.LockOrder([]any{"1", 1}); err != nil || len(got) != 1 {
		t.Errorf(`LockOrder("1", 1) = %v, %v; want one key: they name one lock`, got, err)
	}
	if _, err := anyRW.LockOrder([]any{"a", ""}); !errors.Is(err, mutex.ErrInvalidKey) {
		t.Errorf(`LockOrder("a", "") = %v; want ErrInvalidKey`, err)
	}
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
