package distributed

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// TestRoundTrips: an uncontended Lock and Unlock take one round trip
// each, and TryLock of a held key two.
func TestRoundTrips(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		for _, s := range strategies {
			t.Run(s.name, func(t *testing.T) {
				var cmds counter
				m := newMutexOn(t, e.client(t, &cmds), s.opts...)
				ctx := ctxT(t, time.Minute)
				key := keyedtest.Key(t)
				l, err := m.Lock(ctx, key) // dial, load the scripts
				if err != nil {
					t.Fatal(err)
				}
				m.TryLock(ctx, key)
				l.Unlock()
				for i := 0; i < 10; i++ {
					before := cmds.Trips.Load()
					l, err := m.Lock(ctx, key)
					if err != nil {
						t.Fatal(err)
					}
					if n := cmds.Trips.Load() - before; n != 1 {
						t.Errorf("Lock of a free key took %d round trips; want 1", n)
					}
					before = cmds.Trips.Load()
					if _, err := m.TryLock(ctx, key); !errors.Is(err, mutex.ErrLocked) {
						t.Fatalf("TryLock(held) = %v; want ErrLocked", err)
					}
					if n := cmds.Trips.Load() - before; n != 2 {
						t.Errorf("TryLock of a held key took %d round trips; want 2 (the try, then the script that says why)", n)
					}
					before = cmds.Trips.Load()
					if err := l.Unlock(); err != nil {
						t.Fatal(err)
					}
					if n := cmds.Trips.Load() - before; n != 1 {
						t.Errorf("Unlock took %d round trips; want 1", n)
					}
				}
			})
		}
	})
}

// TestConcurrentUnlock: of many concurrent Unlocks of one lease exactly
// one succeeds; the others return ErrUnlocked. Done and Err are read
// concurrently (the race detector checks them).
func TestConcurrentUnlock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.newMutex(t)
		ctx := ctxT(t, time.Minute)
		for round := 0; round < 10; round++ {
			l, err := m.Lock(ctx, keyedtest.Key(t))
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for i := 0; i < 8; i++ {
				wg.Go(func() {
					_ = l.Err()
					errs <- l.Unlock()
					<-l.Done()
				})
			}
			wg.Wait()
			close(errs)
			ok := 0
			for err := range errs {
				switch {
				case err == nil:
					ok++
				case !errors.Is(err, mutex.ErrUnlocked):
					t.Errorf("concurrent Unlock = %v; want nil or ErrUnlocked", err)
				}
			}
			if ok != 1 {
				t.Errorf("%d of 8 concurrent Unlocks succeeded; want 1", ok)
			}
			if err := l.Err(); !errors.Is(err, mutex.ErrUnlocked) {
				t.Errorf("Err() = %v; want ErrUnlocked", err)
			}
		}
	})
}

// TestCloseDuringLock closes Mutexes while their Locks wait, are
// cancelled and succeed at random: every Lock returns promptly with a
// lease, ErrClosed or its ctx error, and nothing is left held.
func TestCloseDuringLock(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		admin := e.client(t)
		for _, s := range strategies {
			t.Run(s.name, func(t *testing.T) {
				prefix := "cdl-" + s.name + ":"
				for round := 0; round < 5; round++ {
					m, err := New[string](e.client(t), append(s.opts, WithPrefix(prefix))...)
					if err != nil {
						t.Fatal(err)
					}
					var wg sync.WaitGroup
					errs := make(chan error, 16)
					for i := 0; i < 16; i++ {
						wg.Go(func() {
							ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(20))*time.Millisecond)
							defer cancel()
							l, err := m.Lock(ctx, "k"+string(rune('a'+i%3)))
							switch {
							case err == nil:
								time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond) // work while holding
								if err := l.Unlock(); err != nil && !errors.Is(err, mutex.ErrClosed) {
									errs <- err
								}
							case errors.Is(err, mutex.ErrClosed), errors.Is(err, ctx.Err()):
							default:
								errs <- err
							}
						})
					}
					time.Sleep(time.Duration(rand.IntN(10)) * time.Millisecond) // close at a random moment
					if err := m.Close(); err != nil {
						t.Errorf("Close() = %v", err)
					}
					wg.Wait()
					close(errs)
					for err := range errs {
						t.Errorf("Lock/Unlock during Close: %v", err)
					}
				}
				checkNothingHeld(t, admin, prefix)
			})
		}
	})
}

// TestErrSeesExpiredValidity: a lease whose validity has run out is lost
// as soon as Err is called, before the timer that would find it fires
// (what a process resumed after a pause sees first), for both renewal
// modes: Err and Unlock report ErrLost, Done is closed, and the key is
// free for another Mutex.
func TestErrSeesExpiredValidity(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		for _, tc := range []struct {
			name string
			opts []Option
		}{{"renewal", nil}, {"WithoutRenewal", []Option{WithoutRenewal()}}} {
			t.Run(tc.name, func(t *testing.T) {
				m := e.newMutex(t, append(tc.opts, WithTTL(time.Minute))...)
				ctx := ctxT(t, time.Minute)
				key := keyedtest.Key(t)
				ml, err := m.Lock(ctx, key)
				if err != nil {
					t.Fatal(err)
				}
				l := ml.(*lease)
				l.mu.Lock()
				l.validUntil = time.Now().Add(-time.Millisecond) // as after a pause
				l.mu.Unlock()
				if err := l.Err(); !errors.Is(err, mutex.ErrLost) {
					t.Errorf("Err() = %v; want ErrLost", err)
				}
				select {
				case <-l.Done():
				default:
					t.Errorf("Done() not closed after Err() reported the loss")
				}
				if err := l.Unlock(); !errors.Is(err, mutex.ErrLost) {
					t.Errorf("Unlock() = %v; want ErrLost", err)
				}
				other := e.newMutex(t)
				l2, err := other.Lock(ctx, key) // Redis still has the key for a minute unless released
				if err != nil {
					t.Fatalf("another Mutex's Lock() = %v", err)
				}
				if l2.Token() <= l.Token() {
					t.Errorf("next token %d <= lost lease's %d", l2.Token(), l.Token())
				}
				l2.Unlock()
			})
		}
	})
}

// TestStaleGrantIgnored: a grant that reaches a waiter after a later call
// of its own found it still waiting was made before that call, so it was
// dead by then (it expired while the waiter's process was paused, say);
// it must not be taken for a lease counted from that call.
func TestStaleGrantIgnored(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		holder := e.newMutex(t)
		rec := new(keyedtest.Recorder)
		waiter := e.newMutex(t, WithObserver(rec))
		admin := e.client(t)
		ctx := ctxT(t, time.Minute)
		key := keyedtest.Key(t)
		a, err := holder.Lock(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan mutex.Lease, 1)
		go func() {
			l, err := waiter.Lock(ctx, key)
			if err != nil {
				t.Errorf("waiter's Lock() = %v", err)
			}
			got <- l
		}()
		nm := waiter.names(t, key)
		var member []string
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
			if m := admin.ZRange(ctx, nm.queue, 0, -1).Val(); len(m) == 1 {
				member = strings.Fields(m[0])
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the waiter did not queue")
			}
		}
		// A grant of token 1 (the clock of long ago) for the waiter.
		owner, mid := member[0], member[1]
		if err := admin.Publish(ctx, nm.channel(mid), owner+" 1 1 30000 1").Err(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(time.Minute); len(rec.Events(mutex.Late, key)) == 0; time.Sleep(time.Millisecond) {
			select {
			case l := <-got:
				if l != nil {
					t.Fatalf("the waiter took a stale grant: Lock() returned token %d while another holds the key", l.Token())
				}
				t.FailNow()
			default:
			}
			if time.Now().After(deadline) {
				t.Fatal("no Late event: the stale grant was not seen")
			}
		}
		if err := a.Unlock(); err != nil {
			t.Fatal(err)
		}
		b := <-got
		if b == nil {
			t.FailNow()
		}
		if b.Token() <= a.Token() {
			t.Errorf("waiter's token %d <= holder's %d", b.Token(), a.Token())
		}
		if err := b.Unlock(); err != nil {
			t.Errorf("waiter's Unlock() = %v", err)
		}
	})
}
