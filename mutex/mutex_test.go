package mutex_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/mutex"
)

func TestWithLeaseCause(t *testing.T) {
	tests := []struct {
		name string
		end  func(l *keyedtest.FakeLease, cancel context.CancelFunc)
		want error
	}{
		{"lost", func(l *keyedtest.FakeLease, _ context.CancelFunc) { l.End(mutex.ErrLost) }, mutex.ErrLost},
		{"unlocked", func(l *keyedtest.FakeLease, _ context.CancelFunc) { l.Unlock() }, context.Canceled},
		{"cancel", func(_ *keyedtest.FakeLease, cancel context.CancelFunc) { cancel() }, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := keyedtest.NewFakeLease()
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
	l := keyedtest.NewFakeLease()
	l.End(mutex.ErrLost)
	ctx, cancel := mutex.WithLease(context.Background(), l)
	defer cancel()
	if got := context.Cause(ctx); !errors.Is(got, mutex.ErrLost) {
		t.Errorf("Cause = %v; want ErrLost", got)
	}
}
