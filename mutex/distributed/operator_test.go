package distributed

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// TestParseKeyName: every name namesFor makes parses back to its key, and
// names of other prefixes, channels and plain keys do not.
func TestParseKeyName(t *testing.T) {
	for _, k := range []string{"a", "order-17", "x}y", "50%", "%7D", "{}", "a b*?[c]"} {
		nm := namesFor("p:", k)
		for part, name := range map[string]string{"lock": nm.lock, "queue": nm.queue} {
			got, kind, gpart, ok := ParseKeyName("p:", name)
			if !ok || got != k || kind != KindMutex || gpart != part {
				t.Errorf("ParseKeyName(%q) = %q, %q, %q, %v; want %q, mutex, %s", name, got, kind, gpart, ok, k, part)
			}
		}
		if _, _, _, ok := ParseKeyName("other:", nm.lock); ok {
			t.Errorf("ParseKeyName(other:, %q) ok; want not a name under other:", nm.lock)
		}
	}
	for _, name := range []string{"p:", "p:{}", "p:{a", "p:grant:{a}:m1", "p:x{a}", "p:{a%zz}", "order-17", "p:{a}b}"} {
		if k, _, _, ok := ParseKeyName("p:", name); ok {
			t.Errorf("ParseKeyName(%q) = %q, ok; want not a lock name", name, k)
		}
	}
}

// TestForceRelease: the operator API sees the holder and the queue in
// order, refuses a wrong holder and a free key, and a release by label
// hands the lock to the queued waiter while the old lease finds its loss.
func TestForceRelease(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := ctxT(t, time.Minute)
		const ttl = 600 * time.Millisecond
		old := e.newMutex(t, WithLabel("stuck-1"), WithTTL(ttl))
		next := e.newMutex(t, WithLabel("next-2"))
		key := keyedtest.Key(t)
		client := e.client(t)

		if _, err := ForceRelease(ctx, client, DefaultPrefix, key, "stuck-1"); !errors.Is(err, ErrNotLocked) {
			t.Fatalf("ForceRelease(free key) = %v; want ErrNotLocked", err)
		}
		l, err := old.Lock(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		go func() {
			l, err := next.Lock(ctx, key)
			if err == nil {
				err = l.Unlock()
			}
			got <- err
		}()
		var r KeyReport
		eventually(t, "one waiter queued", func() bool {
			rs, err := InspectKeys(ctx, client, DefaultPrefix, key)
			if err != nil {
				return false
			}
			r = rs[0]
			return len(r.Queue) == 1
		})
		if !r.Held || r.Label != "stuck-1" || r.Queue[0].Label != "next-2" || r.Queue[0].Dead || r.LockKey != namesFor(DefaultPrefix, key).lock {
			t.Fatalf("InspectKeys = %+v; want held by stuck-1, next-2 queued", r)
		}
		ls, err := ListKeys(ctx, client, DefaultPrefix, key)
		if err != nil || len(ls) != 1 || ls[0].Key != key || ls[0].Label != "stuck-1" {
			t.Fatalf("ListKeys(match %q) = %+v, %v; want the one key", key, ls, err)
		}
		if _, err := ForceRelease(ctx, client, DefaultPrefix, key, "next-2"); !errors.Is(err, ErrHeldByOther) {
			t.Fatalf("ForceRelease(wrong holder) = %v; want ErrHeldByOther", err)
		}
		res, err := ForceRelease(ctx, client, DefaultPrefix, key, "stuck-1")
		if err != nil {
			t.Fatal(err)
		}
		if res.Before.Label != "stuck-1" {
			t.Errorf("ForceRelease.Before = %+v; want held by stuck-1", res.Before)
		}
		if err := <-got; err != nil {
			t.Fatalf("the waiter's Lock after the forced release: %v", err)
		}
		select {
		case <-l.Done():
		case <-ctx.Done():
			t.Fatal("the old lease never found its loss")
		}
		if err := l.Unlock(); !errors.Is(err, mutex.ErrLost) {
			t.Errorf("old lease Unlock = %v; want ErrLost", err)
		}
	})
}

// TestInspectKeysWrongType: a queue key of another type is reported as
// such, naming it.
func TestInspectKeysWrongType(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		client := e.client(t)
		key := keyedtest.Key(t)
		nm := namesFor(DefaultPrefix, key)
		if err := client.Set(ctx, nm.queue, "x", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		defer client.Del(ctx, nm.queue)
		if _, err := InspectKeys(ctx, client, DefaultPrefix, key); !errors.Is(err, ErrWrongType) {
			t.Errorf("InspectKeys(queue a string) = %v; want ErrWrongType", err)
		}
	})
}

// TestForceReleaseTokens: a lease whose block of tokens runs ahead of the
// server clock, broken at once, leaves the next holder's token above the
// whole block (the release floors it as an Unlock would).
func TestForceReleaseTokens(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		e.real() // miniredis's clock is not the microsecond clock tokens need
		ctx := ctxT(t, time.Minute)
		m := e.newMutex(t, WithLabel("block"))
		client := e.client(t)
		for i := range 20 {
			key := keyedtest.Key(t)
			r, err := m.LockN(ctx, key, maxAhead)
			if err != nil {
				t.Fatal(err)
			}
			top := r.Token() + r.Reserved() - 1
			if _, err := ForceRelease(ctx, client, DefaultPrefix, key, "block"); err != nil {
				t.Fatal(err)
			}
			l, err := m.Lock(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			if l.Token() <= top {
				t.Fatalf("round %d: token after the forced release %d <= %d, the top of the broken lease's block", i, l.Token(), top)
			}
			l.Unlock()
			r.Unlock()
		}
	})
}
