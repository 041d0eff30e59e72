package mutex_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
)

// fakeLease is a Lease the test ends by hand.
type fakeLease struct {
	once sync.Once
	done chan struct{}
	mu   sync.Mutex
	err  error
}

func newFakeLease() *fakeLease { return &fakeLease{done: make(chan struct{})} }

func (l *fakeLease) end(err error) bool {
	ended := false
	l.once.Do(func() {
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
		close(l.done)
		ended = true
	})
	return ended
}

func (l *fakeLease) Unlock() error {
	if l.end(mutex.ErrUnlocked) {
		return nil
	}
	return l.Err()
}
func (l *fakeLease) Done() <-chan struct{} { return l.done }
func (l *fakeLease) Err() error            { l.mu.Lock(); defer l.mu.Unlock(); return l.err }
func (l *fakeLease) Token() uint64         { return 1 }

func TestWithLeaseCause(t *testing.T) {
	tests := []struct {
		name string
		end  func(l *fakeLease, cancel context.CancelFunc)
		want error
	}{
		{"lost", func(l *fakeLease, _ context.CancelFunc) { l.end(mutex.ErrLost) }, mutex.ErrLost},
		{"unlocked", func(l *fakeLease, _ context.CancelFunc) { l.Unlock() }, context.Canceled},
		{"cancel", func(_ *fakeLease, cancel context.CancelFunc) { cancel() }, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newFakeLease()
			ctx, cancel := mutex.WithLease(context.Background(), l)
			defer cancel()
			if err := ctx.Err(); err != nil {
				t.Fatalf("ctx.Err() while held = %v; want nil", err)
			}
			tt.end(l, cancel)
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("ctx not done after the lease ended")
			}
			if got := context.Cause(ctx); !errors.Is(got, tt.want) {
				t.Errorf("Cause = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestWithLeaseAlreadyLost(t *testing.T) {
	l := newFakeLease()
	l.end(mutex.ErrLost)
	ctx, cancel := mutex.WithLease(context.Background(), l)
	defer cancel()
	if got := context.Cause(ctx); !errors.Is(got, mutex.ErrLost) {
		t.Errorf("Cause = %v; want ErrLost", got)
	}
}
