package local

import (
	"context"
	"testing"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// rwQueued returns how many goroutines wait for key in m.
func rwQueued(m mutex.RWKeyed[string], key string) int {
	_, n := m.(*RWMutex[string]).t.Len(key)
	return n
}

func newRWT(t *testing.T) *RWMutex[string] {
	m := new(RWMutex[string])
	t.Cleanup(func() {
		if n, _ := m.t.Len(""); n != 0 {
			t.Errorf("%d entries left after every lease was unlocked; want 0", n)
		}
	})
	return m
}

func TestRWConformance(t *testing.T) {
	leakcheck.Register(t)
	keyedtest.RunRW(t, keyedtest.RWConfig{
		New:        func(t *testing.T) mutex.RWKeyed[string] { return newRWT(t) },
		Goroutines: 16,
		Iterations: 100,
		Keys:       4,
		Queued:     rwQueued,
	})
}

// TestRWMutexConformance runs the mutex suite on the write lock.
func TestRWMutexConformance(t *testing.T) {
	leakcheck.Register(t)
	keyedtest.Run(t, keyedtest.Config{
		New: func(t *testing.T) mutex.Keyed[string] { return newRWT(t) },
	})
}

// TestRWAfterDone: a read lease's AfterDone runs at Unlock, and a stop
// after that reports that it did not cancel.
func TestRWAfterDone(t *testing.T) {
	var m RWMutex[string]
	l, err := m.RLock(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	stop := l.(*rwLease[string]).AfterDone(func() { close(ran) })
	stop2 := l.(*rwLease[string]).AfterDone(func() { t.Error("stopped AfterDone ran") })
	if !stop2() {
		t.Error("stop() before Unlock = false; want true")
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	<-ran
	if stop() {
		t.Error("stop() after Unlock = true; want false")
	}
}

// TestRWNaNKey: a key not equal to itself is refused, not held forever.
func TestRWNaNKey(t *testing.T) {
	var m RWMutex[float64]
	nan := func() float64 { var z float64; return z / z }()
	for _, f := range []func(context.Context, float64) (mutex.Lease, error){m.Lock, m.RLock, m.TryLock, m.TryRLock} {
		if l, err := f(context.Background(), nan); err == nil {
			l.Unlock()
			t.Errorf("lock(NaN) = a lease; want ErrInvalidKey")
		}
	}
}
