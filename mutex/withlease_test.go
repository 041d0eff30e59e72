package mutex_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// watchedLease is a FakeLease with AfterDone, whose Done must not be
// called: WithLease uses the callback, not a goroutine on Done.
type watchedLease struct {
	*keyedtest.FakeLease
	mu      sync.Mutex
	f       func()
	stopped bool
}

func (l *watchedLease) Done() <-chan struct{} { panic("WithLease called Done: a goroutine per call") }

func (l *watchedLease) AfterDone(f func()) (stop func() bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.f = f
	return func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.stopped = true
		return true
	}
}

// end ends the lease and runs its callback, as a lease of this module does.
func (l *watchedLease) end(err error) {
	l.FakeLease.End(err)
	l.mu.Lock()
	f := l.f
	l.mu.Unlock()
	if f != nil {
		f()
	}
}

func TestWithLeaseUsesAfterDone(t *testing.T) {
	l := &watchedLease{FakeLease: keyedtest.NewFakeLease()}
	ctx, cancel := mutex.WithLease(context.Background(), l)
	defer cancel()
	if ctx.Err() != nil {
		t.Fatalf("ctx ended while the lease is held: %v", ctx.Err())
	}
	l.end(mutex.ErrLost)
	if got := context.Cause(ctx); !errors.Is(got, mutex.ErrLost) {
		t.Errorf("Cause after loss = %v; want ErrLost", got)
	}
}

func TestWithLeaseCancelStopsCallback(t *testing.T) {
	l := &watchedLease{FakeLease: keyedtest.NewFakeLease()}
	ctx, cancel := mutex.WithLease(context.Background(), l)
	cancel()
	l.mu.Lock()
	stopped := l.stopped
	l.mu.Unlock()
	if !stopped {
		t.Error("cancel did not stop the lease's callback")
	}
	if got := context.Cause(ctx); !errors.Is(got, context.Canceled) {
		t.Errorf("Cause after cancel = %v; want context.Canceled", got)
	}
}
