package hybrid

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/logtest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

// waitGoroutines polls until at most n goroutines run, for up to wait.
func waitGoroutines(t *testing.T, what string, n int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			t.Errorf("%s: %d goroutines %v after every lease ended; want the %d of before", what, runtime.NumGoroutine(), wait, n)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBurstLeavesNoHeap is, for hybrid, mutex/local's test of
// the same name: 100k keys held at once (over a local.Mutex remote, no
// Redis), then all unlocked. The heap must come back to about where it
// was, the entries must go, and so must every goroutine. "watched" calls
// Done on every lease while held, as code that watches for a loss does:
// that must not cost a goroutine per lease, whose descriptor the Go
// runtime never frees (before the fix, the heap kept +51 MiB).
func TestBurstLeavesNoHeap(t *testing.T) {
	const n = 100_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	for _, watched := range []bool{false, true} {
		t.Run(fmt.Sprintf("watched=%v", watched), func(t *testing.T) {
			var remote local.Mutex[string]
			m := newT(t, &remote)
			ctx := context.Background()
			leases := make([]mutex.Lease, n)
			goroutines := runtime.NumGoroutine()
			before := keyedtest.HeapAlloc()
			for i, k := range keys {
				l, err := m.TryLock(ctx, k)
				if err != nil {
					t.Fatalf("TryLock(%q) = %v", k, err)
				}
				if watched {
					l.Done()
				}
				leases[i] = l
			}
			held := runtime.NumGoroutine() - goroutines
			heldHeap := keyedtest.HeapAlloc()
			for i, l := range leases {
				if err := l.Unlock(); err != nil {
					t.Fatalf("Unlock = %v", err)
				}
				leases[i] = nil
			}
			waitGoroutines(t, "after the burst", goroutines)
			after := keyedtest.HeapAlloc()
			if left, _ := m.t.Len(""); left != 0 {
				t.Errorf("%d entries left after the burst; want 0", left)
			}
			keyedtest.CheckHeap(t, fmt.Sprintf("%d keys held at once, then unlocked", n), before, after)
			if held > n/100 {
				t.Errorf("%d more goroutines while %d leases were held (Done called: %v); want no goroutine per lease", held, n, watched)
			}
			t.Logf("HeapAlloc before %d KiB, while held %d KiB (%d bytes per held key, leases and the remote's included), after %d KiB; %d more goroutines while held",
				before>>10, heldHeap>>10, (heldHeap-before)/n, after>>10, held)
			runtime.KeepAlive(m)
		})
	}
	runtime.KeepAlive(keys)
}

// TestNaNKey, for hybrid: a NaN key is refused by
// Lock and TryLock with an error satisfying errors.Is(err,
// mutex.ErrInvalidKey) (before the fix TryLock(NaN) succeeded while NaN
// was held), its Locker panics, and 200k attempts leave no entry and
// the heap flat.
func TestNaNKey(t *testing.T) {
	var remote local.Mutex[float64]
	m, err := New[float64](&remote, WithLogger(logtest.Fail(t)))
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { m.Close() })
	ctx := context.Background()
	nan := math.NaN()
	l, err := m.Lock(ctx, nan)
	if !errors.Is(err, mutex.ErrInvalidKey) {
		t.Errorf("Lock(NaN) = %v; want ErrInvalidKey", err)
	}
	if l != nil {
		l.Unlock()
	}
	if _, err := m.TryLock(ctx, nan); !errors.Is(err, mutex.ErrInvalidKey) {
		t.Errorf("TryLock(NaN) = %v; want ErrInvalidKey", err)
	}
	keyedtest.LockPanics(t, "Locker(NaN)", m.Locker(nan), "invalid key")
	before := keyedtest.HeapAlloc()
	for range 200_000 {
		if l, err := m.Lock(ctx, nan); err == nil {
			l.Unlock()
			t.Fatal("Lock(NaN) = nil error; want ErrInvalidKey")
		}
	}
	after := keyedtest.HeapAlloc()
	keyedtest.CheckHeap(t, "200k Lock(NaN)", before, after)
	if n, _ := m.t.Len(0); n != 0 {
		t.Errorf("%d entries left after 200k Lock(NaN); want 0", n)
	}
	t.Logf("200k Lock(NaN): HeapAlloc before %d KiB, after %d KiB", before>>10, after>>10)
	l, err = m.TryLock(ctx, 1.5)
	if err != nil {
		t.Fatalf("TryLock(1.5) = %v; want nil", err)
	}
	l.Unlock()
}
