package distributed

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/mutex"
)

func TestMultiConformance(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		for _, s := range strategies {
			t.Run(s.name, func(t *testing.T) {
				keyedtest.RunMulti(t, keyedtest.Config{
					New: func(t *testing.T) mutex.Keyed[string] {
						return e.newMutex(t, s.opts...)
					},
					Instances:  3,
					Goroutines: 4,
				})
			})
		}
	})
}

// TestLockAllOneScript: a set of free keys on one server is taken by one
// script, and released in one round of calls; a held key in the middle
// makes LockAll take the keys before it, queue there, and take the rest
// once it is served.
func TestLockAllOneScript(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		cnt := &counter{}
		c := e.client(t)
		c.AddHook(cnt)
		m := newMutexOn(t, c)
		ctx := ctxT(t, 30*time.Second)
		keys := []string{keyedtest.Key(t), keyedtest.Key(t), keyedtest.Key(t), keyedtest.Key(t)}
		warm, err := mutex.LockAll(ctx, m, keys...) // the first call loads the script
		if err != nil {
			t.Fatal(err)
		}
		if err := warm.Unlock(); err != nil {
			t.Fatal(err)
		}
		before := cnt.Scripts.Load()
		s, err := mutex.LockAll(ctx, m, keys...)
		if err != nil {
			t.Fatal(err)
		}
		if got := cnt.Scripts.Load() - before; got != 1 {
			t.Errorf("LockAll of 4 free keys ran %d scripts; want 1", got)
		}
		toks := map[string]uint64{}
		for _, k := range keys {
			tok, _ := s.Token(k)
			toks[k] = tok
		}
		if err := s.Unlock(); err != nil {
			t.Fatal(err)
		}
		order, err := m.LockOrder(keys)
		if err != nil {
			t.Fatal(err)
		}
		hold, err := m.Lock(ctx, order[2])
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan *mutex.LeaseSet[string], 1)
		go func() {
			s, err := mutex.LockAll(ctx, m, keys...)
			if err != nil {
				t.Error(err)
			}
			got <- s
		}()
		waitLocked(t, m, order[1])
		if err := hold.Unlock(); err != nil {
			t.Fatal(err)
		}
		s = <-got
		if s == nil {
			return
		}
		for _, k := range keys {
			if tok, _ := s.Token(k); tok <= toks[k] {
				t.Errorf("token of %q = %d after %d; want greater", k, tok, toks[k])
			}
		}
		if err := s.Unlock(); err != nil {
			t.Fatal(err)
		}
	})
}

// waitLocked polls TryLock of key until it reports ErrLocked.
func waitLocked(t *testing.T, m *Mutex[string], key string) {
	t.Helper()
	for i := 0; ; i++ {
		l, err := m.TryLock(context.Background(), key)
		if errors.Is(err, mutex.ErrLocked) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		if i > 10000 {
			t.Fatalf("%q never locked", key)
		}
	}
}

func TestLockOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.newMutex(t)
		got, err := m.LockOrder([]string{"b", "a", "c", "a", "ab"})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"a", "ab", "b", "c"}; !equal(got, want) {
			t.Errorf("LockOrder = %v; want %v (by encoded bytes, duplicates once)", got, want)
		}
		if _, err := m.LockOrder([]string{"a", ""}); !errors.Is(err, mutex.ErrInvalidKey) {
			t.Errorf("LockOrder with the empty key = %v; want ErrInvalidKey", err)
		}
	})
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSlotOf(t *testing.T) {
	// Values from the Redis Cluster specification and CLUSTER KEYSLOT.
	for tag, want := range map[string]uint16{"123456789": 0x31C3 % 16384, "foo": 12182, "bar": 5061} {
		if got := slotOf(tag); got != want {
			t.Errorf("slotOf(%q) = %d; want %d", tag, got, want)
		}
	}
}
