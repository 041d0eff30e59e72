package lockutil_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// flaky fails its first n Locks with a transport-like error.
type flaky struct {
	mu    sync.Mutex
	fails int
	calls int
}

func (f *flaky) Lock(ctx context.Context, key string) (mutex.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.calls <= f.fails {
		return nil, errors.New("backend down")
	}
	return keyedtest.NewFakeLease(), nil
}
func (f *flaky) TryLock(ctx context.Context, key string) (mutex.Lease, error) {
	return f.Lock(ctx, key)
}
func (f *flaky) Locker(key string) sync.Locker { panic("unused") }

func TestLockerRetriesAndReports(t *testing.T) {
	var set lockutil.LockerSet[string]
	f := &flaky{fails: 3}
	var reported []error
	onErr := func(key string, err error) { reported = append(reported, err) }
	set.Locker(f, "k", onErr).Lock()
	if len(reported) != 3 {
		t.Errorf("onError called %d times; want 3", len(reported))
	}
	set.Locker(f, "k", onErr).Unlock() // another adapter for the same key
	defer func() {
		if r := recover(); r == nil {
			t.Error("Unlock of unlocked key did not panic")
		}
	}()
	set.Locker(f, "k", onErr).Unlock()
}

type closed struct{ flaky }

func (*closed) Lock(ctx context.Context, key string) (mutex.Lease, error) {
	return nil, mutex.ErrClosed
}

// TestLockerBlocksOnClosed: a Locker's Lock on a closed Keyed (Close in
// a graceful shutdown, say, while a goroutine still locks) neither
// panics nor returns as if it held the lock: it reports ErrClosed to
// onError once and blocks until the process ends.
func TestLockerBlocksOnClosed(t *testing.T) {
	release := make(chan struct{})
	restore := lockutil.SetParkForTest(func() { <-release })
	defer restore()
	var set lockutil.LockerSet[string]
	reported := make(chan error, 10)
	out := make(chan string, 1)
	go func() {
		ended := "parked" // runtime.Goexit: neither returned nor panicked
		defer func() {
			if r := recover(); r != nil {
				ended = fmt.Sprintf("panicked: %v", r)
			}
			out <- ended
		}()
		set.Locker(&closed{}, "k", func(_ string, err error) { reported <- err }).Lock()
		ended = "returned"
	}()
	select {
	case err := <-reported:
		if !errors.Is(err, mutex.ErrClosed) {
			t.Errorf("onError got %v; want ErrClosed", err)
		}
	case got := <-out:
		t.Fatalf("Locker.Lock() on a closed Keyed %s; want it to block", got)
	case <-time.After(10 * time.Second):
		t.Fatal("onError not called after 10s; want ErrClosed reported")
	}
	select {
	case got := <-out:
		t.Fatalf("Locker.Lock() on a closed Keyed %s; want it to block", got)
	default:
	}
	close(release)
	if got := <-out; got != "parked" {
		t.Errorf("Locker.Lock() on a closed Keyed %s after the test's park ended; want it to end the goroutine", got)
	}
	if len(reported) != 0 {
		t.Errorf("onError called %d more times; want once", len(reported))
	}
}
