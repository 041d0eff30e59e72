package hybrid

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

func TestMultiConformance(t *testing.T) {
	leakcheck.Register(t)
	t.Run("fake", func(t *testing.T) {
		f := newFake()
		keyedtest.RunMulti(t, keyedtest.Config{
			New:       func(t *testing.T) mutex.Keyed[string] { return newT(t, f) },
			Instances: 3,
		})
	})
	t.Run("local/bound=0", func(t *testing.T) {
		var remote local.Mutex[string]
		keyedtest.RunMulti(t, keyedtest.Config{
			New:       func(t *testing.T) mutex.Keyed[string] { return newT(t, &remote, WithMaxLocalHandoffs(0)) },
			Instances: 3,
		})
	})
}

func TestMultiDistributedConformance(t *testing.T) {
	leakcheck.Register(t)
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			prefix := uniquePrefix(t)
			keyedtest.RunMulti(t, keyedtest.Config{
				New:        func(t *testing.T) mutex.Keyed[string] { return process(t, b, prefix, nil) },
				Instances:  3,
				Goroutines: 4,
			})
		})
	}
}

// TestLockAllTakesFreeKeysAtOnce: over the Redis mutex, LockAll of free
// keys takes their remote leases with one script, and a key held locally
// makes LockAll take the keys before it at once and wait for the rest in
// order.
func TestLockAllTakesFreeKeysAtOnce(t *testing.T) {
	leakcheck.Register(t)
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			cnt := &redistest.Counter{}
			c := b.client(t)
			c.AddHook(cnt)
			d, err := distributed.New[string](c, distributed.WithPrefix(uniquePrefix(t)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			m := newT(t, d)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			keys := []string{keyedtest.Key(t), keyedtest.Key(t), keyedtest.Key(t)}
			for round := 0; round < 2; round++ { // the first loads the script
				before := cnt.Scripts.Load()
				s, err := mutex.LockAll(ctx, m, keys...)
				if err != nil {
					t.Fatal(err)
				}
				if got := cnt.Scripts.Load() - before; round == 1 && got != 1 {
					t.Errorf("LockAll of 3 free keys ran %d scripts; want 1", got)
				}
				if err := s.Unlock(); err != nil {
					t.Fatal(err)
				}
			}
			order, err := m.LockOrder(keys)
			if err != nil {
				t.Fatal(err)
			}
			hold, err := m.Lock(ctx, order[1])
			if err != nil {
				t.Fatal(err)
			}
			got := make(chan error, 1)
			go func() {
				s, err := mutex.LockAll(ctx, m, keys...)
				if err == nil {
					err = s.Unlock()
				}
				got <- err
			}()
			// LockAll takes order[0] at once and waits for order[1].
			for {
				l, err := m.TryLock(ctx, order[0])
				if errors.Is(err, mutex.ErrLocked) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := l.Unlock(); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Millisecond)
			}
			if err := hold.Unlock(); err != nil {
				t.Fatal(err)
			}
			if err := <-got; err != nil {
				t.Fatal(err)
			}
		})
	}
}
