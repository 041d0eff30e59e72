package distributed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

// newRWOn returns an RWMutex on c, closed at cleanup.
func newRWOn(t testing.TB, c redis.UniversalClient, opts ...Option) *RWMutex[string] {
	t.Helper()
	m, err := NewRW[string](c, opts...)
	if err != nil {
		t.Fatalf("NewRW() = %v; want nil error", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close() = %v; want nil", err)
		}
	})
	return m
}

// rwEnv starts a real redis-server and returns its address and an admin
// client.
func rwEnv(t *testing.T) (*redistest.Server, *redis.Client) {
	t.Helper()
	leakcheck.Register(t)
	srv := redistest.Start(t)
	admin := srv.Client(t)
	return srv, admin
}

// rwProcess is one simulated process: its own client and RWMutex.
func rwProcess(t *testing.T, srv *redistest.Server, opts ...Option) *RWMutex[string] {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	return newRWOn(t, c, opts...)
}

func mustLease(t *testing.T, what string, l mutex.Lease, err error) mutex.Lease {
	t.Helper()
	if err != nil {
		t.Fatalf("%s = %v; want a lease", what, err)
	}
	return l
}

func mustUnlock(t *testing.T, what string, l mutex.Lease) {
	t.Helper()
	if err := l.Unlock(); err != nil {
		t.Fatalf("%s: Unlock() = %v; want nil", what, err)
	}
}

// acquireAsync runs lock in a goroutine and returns the outcome channel.
func acquireAsync(lock func() (mutex.Lease, error)) <-chan leaseResult {
	ch := make(chan leaseResult, 1)
	go func() {
		l, err := lock()
		ch <- leaseResult{l, err}
	}()
	return ch
}

type leaseResult struct {
	l   mutex.Lease
	err error
}

// queueLen is the number of entries in key's RW queue.
func queueLen(t *testing.T, admin *redis.Client, key string) int64 {
	t.Helper()
	return admin.ZCard(context.Background(), rwNamesFor(defaultPrefix(), key).queue).Val()
}

func defaultPrefix() string { return defaultConfig().prefix }

// waitQueued polls until key's queue has n entries.
func waitQueued(t *testing.T, admin *redis.Client, key string, n int64) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d entries queued for %s", n, key), func() bool { return queueLen(t, admin, key) == n })
}

func notYet(t *testing.T, ch <-chan leaseResult, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s returned (%v, %v) while it should wait", what, r.l, r.err)
	default:
	}
}

func await(t *testing.T, ch <-chan leaseResult, what string) mutex.Lease {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s = %v; want a lease", what, r.err)
		}
		return r.l
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no lease after 10s", what)
	}
	return nil
}

func TestRWReadersShareWriterExcludes(t *testing.T) {
	srv, _ := rwEnv(t)
	a, b := rwProcess(t, srv), rwProcess(t, srv)
	ctx := ctxT(t, 10*time.Second)

	r1, err := a.RLock(ctx, "k")
	r1 = mustLease(t, "a.RLock", r1, err)
	r2, err := b.TryRLock(ctx, "k")
	r2 = mustLease(t, "b.TryRLock while a reader holds", r2, err)
	r3, err := a.RLock(ctx, "k")
	r3 = mustLease(t, "a.RLock while two readers hold", r3, err)
	if _, err := b.TryLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryLock while readers hold = %v; want ErrLocked", err)
	}
	mustUnlock(t, "r1", r1)
	mustUnlock(t, "r2", r2)
	if _, err := b.TryLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryLock while one reader holds = %v; want ErrLocked", err)
	}
	mustUnlock(t, "r3", r3)
	w, err := b.TryLock(ctx, "k")
	w = mustLease(t, "TryLock of a free key", w, err)
	if _, err := a.TryRLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryRLock while a writer holds = %v; want ErrLocked", err)
	}
	if _, err := a.TryLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryLock while a writer holds = %v; want ErrLocked", err)
	}
	rd := acquireAsync(func() (mutex.Lease, error) { return a.RLock(ctx, "k") })
	wr := acquireAsync(func() (mutex.Lease, error) { return a.Lock(ctx, "k") })
	_ = wr
	mustUnlock(t, "w", w)
	l := await(t, rd, "RLock queued behind a writer")
	mustUnlock(t, "reader after writer", l)
	l = await(t, wr, "Lock queued")
	mustUnlock(t, "writer after reader", l)
	if err := l.Unlock(); !errors.Is(err, mutex.ErrUnlocked) {
		t.Fatalf("second Unlock = %v; want ErrUnlocked", err)
	}
}

// A Mutex and an RWMutex of the same key are different locks.
func TestRWAndMutexAreDifferentLocks(t *testing.T) {
	srv, _ := rwEnv(t)
	rw := rwProcess(t, srv)
	m := newMutexOn(t, srv.Client(t))
	ctx := ctxT(t, 10*time.Second)
	l, err := m.Lock(ctx, "k")
	l = mustLease(t, "Mutex.Lock", l, err)
	defer l.Unlock()
	w, err := rw.TryLock(ctx, "k")
	w = mustLease(t, "RWMutex.TryLock of a key a Mutex holds", w, err)
	mustUnlock(t, "rw", w)
}

var _ = sync.Mutex{}
