package hybrid

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// TestAfterDone: a hybrid lease runs its AfterDone functions when it
// ends, by Unlock or by the loss of its remote lease, and not after stop;
// so mutex.WithLease over it needs no goroutine.
func TestAfterDone(t *testing.T) {
	leakcheck.Register(t)
	f := newFake()
	m := newT(t, f)
	key := keyedtest.Key(t)

	a := mustLock(t, m, key)
	ran := make(chan struct{})
	a.(remote.Watcher).AfterDone(func() { close(ran) })
	stopped := a.(remote.Watcher).AfterDone(func() { t.Error("a stopped AfterDone function ran") })
	if !stopped() {
		t.Error("stop() = false before the lease ended; want true")
	}
	checkLossEnds(t, a, ran, func() { f.lose(key) })

	b := mustLock(t, m, key)
	unlocked := make(chan struct{})
	b.(remote.Watcher).AfterDone(func() { close(unlocked) })
	if err := b.Unlock(); err != nil {
		t.Fatalf("Unlock() = %v", err)
	}
	select {
	case <-unlocked:
	case <-time.After(wait):
		t.Fatal("AfterDone function did not run after Unlock")
	}
	late := make(chan struct{})
	if b.(remote.Watcher).AfterDone(func() { close(late) })() {
		t.Error("stop() = true after the lease ended; want false")
	}
	select {
	case <-late:
	case <-time.After(wait):
		t.Fatal("AfterDone on an ended lease did not run its function")
	}
	checkClean(t, m, f)
}

// checkLossEnds checks that the held lease l, whose AfterDone closes
// ran, ends when lose loses its remote lease: the AfterDone function
// runs, mutex.WithLease's ctx is cancelled with ErrLost, and Unlock
// reports the loss.
func checkLossEnds(t *testing.T, l mutex.Lease, ran <-chan struct{}, lose func()) {
	t.Helper()
	ctx, cancel := mutex.WithLease(context.Background(), l)
	defer cancel()
	lose()
	select {
	case <-ran:
	case <-time.After(wait):
		t.Fatal("AfterDone function did not run after the remote lease was lost")
	}
	select {
	case <-ctx.Done():
	case <-time.After(wait):
		t.Fatal("WithLease's ctx not cancelled after the remote lease was lost")
	}
	if got := context.Cause(ctx); !errors.Is(got, mutex.ErrLost) {
		t.Errorf("Cause = %v; want ErrLost", got)
	}
	if err := l.Unlock(); !errors.Is(err, mutex.ErrLost) {
		t.Errorf("Unlock() = %v; want ErrLost", err)
	}
}
