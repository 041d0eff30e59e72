package distributed

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

// The liveness rules of the package doc, each with the bound it promises.
// A dead waiter is planted in the queue by hand, ahead of a live one: an
// entry of a process that crashed (its Mutex id has no subscriber), of
// one that stopped refreshing (its deadline passed), and of one that is
// granted but never takes the lock (partitioned just after its grant).
// The holder's lease is a minute long and the live waiter polls every
// 30s while its ctx ends after 20s, so when it gets the lock, the rule
// served it, not its poll nor the holder's expiry.

// plantWaiter puts a queue entry for owner of Mutex id mid at the head of
// key's queue, live until deadline (server time).
func plantWaiter(t *testing.T, admin *redis.Client, nm names, owner, mid string, deadline time.Time) {
	t.Helper()
	// The entry of a waiter whose Mutex polls every 200ms: its grants
	// live 600ms (see lib.lua for the fields).
	member := fmt.Sprintf("%s %s 1 600 P dead-host:1 %d", owner, mid, deadline.UnixMilli())
	if err := admin.ZAdd(context.Background(), nm.queue, redis.Z{Score: 1, Member: member}).Err(); err != nil {
		t.Fatal(err)
	}
}

// serverNow is the Redis server's clock.
func serverNow(t *testing.T, admin *redis.Client) time.Time {
	t.Helper()
	now, err := admin.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now
}

// liveWaiter starts a Lock of key on m that queues behind whatever is
// queued, and returns once it is queued (n entries in the queue).
func liveWaiter(t *testing.T, m *Mutex[string], admin *redis.Client, key string, n int64) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		l, err := m.Lock(ctx, key)
		if err == nil {
			err = l.Unlock()
		}
		done <- err
	}()
	for deadline := time.Now().Add(time.Minute); admin.ZCard(context.Background(), m.names(t, key).queue).Val() < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the live waiter did not queue")
		}
	}
	return done
}

func TestLivenessDeadWaiters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		admin := e.client(t)
		holder := e.newMutex(t, WithTTL(time.Minute))
		waiter := e.newMutex(t, WithPollInterval(30*time.Second))
		cases := []struct {
			name  string
			plant func(nm names, key string)
		}{
			// Its process is gone: the grant reaches no subscriber and
			// is skipped at once, in the same release.
			{"crashed", func(nm names, _ string) {
				plantWaiter(t, admin, nm, "dead0001", "gone-mutex", serverNow(t, admin).Add(time.Hour))
			}},
			// It stopped refreshing: past its deadline, skipped when it
			// reaches the head (its Mutex still listens, so only the
			// deadline tells).
			{"silent", func(nm names, _ string) {
				sub := admin.Subscribe(context.Background(), nm.channel("silent-mutex"))
				t.Cleanup(func() { sub.Close() })
				if _, err := sub.Receive(ctxT(t, time.Minute)); err != nil {
					t.Fatal(err)
				}
				plantWaiter(t, admin, nm, "dead0002", "silent-mutex", serverNow(t, admin).Add(-time.Millisecond))
			}},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				key := keyedtest.Key(t)
				nm := holder.names(t, key)
				h, err := holder.Lock(ctxT(t, time.Minute), key)
				if err != nil {
					t.Fatal(err)
				}
				tc.plant(nm, key)
				done := liveWaiter(t, waiter, admin, key, 2)
				released := time.Now()
				if err := h.Unlock(); err != nil {
					t.Fatal(err)
				}
				if err := <-done; err != nil {
					t.Fatalf("live waiter: %v after %v; want the lock, handed past the dead entry by the release", err, time.Since(released))
				}
				t.Logf("live waiter served %v after the release", time.Since(released).Round(time.Millisecond))
			})
		}
	})
}

// TestLivenessGrantedNeverTaken: a waiter granted the lock that never
// takes it (partitioned just after its grant) holds the key only for the
// grant TTL, min(TTL, 3 poll intervals); the next waiter's refresh then
// serves the queue.
func TestLivenessGrantedNeverTaken(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		const poll = 200 * time.Millisecond
		admin := e.client(t)
		holder := e.newMutex(t, WithPollInterval(poll))
		waiter := e.newMutex(t, WithPollInterval(poll))
		key := keyedtest.Key(t)
		nm := holder.names(t, key)
		// The partitioned waiter's Mutex: subscribed (the grant reaches
		// it), but nothing takes the lock.
		sub := admin.Subscribe(context.Background(), nm.channel("partitioned"))
		t.Cleanup(func() { sub.Close() })
		if _, err := sub.Receive(ctxT(t, time.Minute)); err != nil {
			t.Fatal(err)
		}
		h, err := holder.Lock(ctxT(t, time.Minute), key)
		if err != nil {
			t.Fatal(err)
		}
		plantWaiter(t, admin, nm, "dead0003", "partitioned", serverNow(t, admin).Add(time.Hour))
		done := liveWaiter(t, waiter, admin, key, 2)
		if err := h.Unlock(); err != nil {
			t.Fatal(err)
		}
		info, err := holder.Inspect(ctxT(t, time.Minute), key)
		if err != nil {
			t.Fatal(err)
		}
		if info.Owner != "dead0003" || info.TTL <= 0 || info.TTL > 3*poll {
			t.Errorf("after the release: owner %q, TTL %v; want the granted dead0003 for at most 3 poll intervals (%v)", info.Owner, info.TTL, 3*poll)
		}
		if e.mr != nil {
			e.mr.FastForward(time.Second) // miniredis expires keys only when told
		}
		if err := <-done; err != nil {
			t.Fatalf("live waiter: %v; want the lock once the unclaimed grant expired", err)
		}
	})
}

// TestLivenessCancelAsGranted: a waiter whose ctx ends as its grant
// arrives either returns the lock or passes it on; the waiter behind it
// gets it by the handoff, never by its poll (30s, beyond its ctx).
func TestLivenessCancelAsGranted(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		holder := e.newMutex(t, WithTTL(time.Minute))
		first := e.newMutex(t, WithPollInterval(30*time.Second))
		second := e.newMutex(t, WithPollInterval(30*time.Second))
		admin := e.client(t)
		var won, passed int
		for i := range 30 {
			key := fmt.Sprintf("%s-%d", keyedtest.Key(t), i)
			h, err := holder.Lock(ctxT(t, time.Minute), key)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			firstDone := make(chan mutex.Lease, 1)
			go func() {
				l, _ := first.Lock(ctx, key)
				firstDone <- l
			}()
			for deadline := time.Now().Add(time.Minute); admin.ZCard(context.Background(), first.names(t, key).queue).Val() < 1; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the first waiter did not queue")
				}
			}
			secondDone := liveWaiter(t, second, admin, key, 2)
			go cancel()
			if err := h.Unlock(); err != nil {
				t.Fatal(err)
			}
			if l := <-firstDone; l != nil {
				won++
				if err := l.Unlock(); err != nil {
					t.Fatal(err)
				}
			} else {
				passed++
			}
			if err := <-secondDone; err != nil {
				t.Fatalf("round %d: the waiter behind a cancelled one: %v; want the lock (a grant was lost)", i, err)
			}
		}
		t.Logf("30 rounds: the cancelled waiter returned the lock %d times and passed it on %d times", won, passed)
	})
}
