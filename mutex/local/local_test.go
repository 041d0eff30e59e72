package local

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/keylock"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// wait bounds how long a test waits for something that should happen
// promptly. It is a hang guard, not a timing assertion.
const wait = 10 * time.Second

// entriesLen returns the number of live entries in m.
func (m *Mutex[K]) entriesLen() int {
	var zero K
	n, _ := m.t.Len(zero)
	return n
}

// waiters returns the number of goroutines queued for key.
func (m *Mutex[K]) waiters(key K) int {
	_, n := m.t.Len(key)
	return n
}

// waitWaiters polls until key has n waiters queued.
func waitWaiters[K comparable](t *testing.T, m *Mutex[K], key K, n int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for m.waiters(key) != n {
		if time.Now().After(deadline) {
			t.Fatalf("waiters(%v) = %d after %v; want %d", key, m.waiters(key), wait, n)
		}
		runtime.Gosched()
	}
}

func checkEmpty[K comparable](t *testing.T, m *Mutex[K]) {
	t.Helper()
	if n := m.entriesLen(); n != 0 {
		t.Errorf("%d entries left after every lease was unlocked; want 0", n)
	}
}

func TestConformance(t *testing.T) {
	leakcheck.Register(t)
	keyedtest.Run(t, keyedtest.Config{
		New: func(t *testing.T) mutex.Keyed[string] {
			m := new(Mutex[string])
			t.Cleanup(func() { checkEmpty(t, m) })
			return m
		},
		Goroutines: 16,
		Iterations: 200,
		Keys:       8,
		Observed: func(t *testing.T, o mutex.Observer) mutex.Keyed[string] {
			m, err := New[string](WithObserver(o))
			if err != nil {
				t.Fatal(err)
			}
			return m
		},
	})
}

func TestMutualExclusionManyKeys(t *testing.T) {
	var m Mutex[int]
	const goroutines, keys, rounds = 32, 100, 20
	counters := make([]int, keys) // updated without atomics, under the key's lock
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				for i := 0; i < keys; i++ {
					k := (i*7 + g) % keys
					var l mutex.Lease
					var err error
					switch (g + r) % 3 {
					case 0:
						l, err = m.Lock(ctx, k)
					case 1:
						l, err = m.LockN(ctx, k, 3)
					default:
						for {
							l, err = m.TryLock(ctx, k)
							if !errors.Is(err, mutex.ErrLocked) {
								break
							}
							runtime.Gosched()
						}
					}
					if err != nil {
						errs <- fmt.Errorf("lock %d: %w", k, err)
						return
					}
					counters[k]++
					if err := l.Unlock(); err != nil {
						errs <- fmt.Errorf("Unlock %d: %w", k, err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for k, got := range counters {
		if got != goroutines*rounds {
			t.Errorf("counter[%d] = %d; want %d", k, got, goroutines*rounds)
		}
	}
	checkEmpty(t, &m)
}

// TestCancelRace cancels waiters while the holder unlocks, many times.
// Every waiter either gets the lock or a ctx error, nothing is left held
// and no entry is left behind.
func TestCancelRace(t *testing.T) {
	var m Mutex[string]
	const rounds, waiters = 300, 4
	for r := 0; r < rounds; r++ {
		key := "k" + strconv.Itoa(r%3)
		l, err := m.Lock(context.Background(), key)
		if err != nil {
			t.Fatalf("Lock = %v", err)
		}
		var wg sync.WaitGroup
		results := make(chan error, waiters)
		cancels := make([]context.CancelFunc, waiters)
		for i := range cancels {
			ctx, cancel := context.WithCancel(context.Background())
			cancels[i] = cancel
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, err := m.Lock(ctx, key)
				if err == nil {
					results <- l.Unlock()
					return
				}
				if !errors.Is(err, context.Canceled) {
					results <- fmt.Errorf("Lock = %w; want nil or Canceled", err)
					return
				}
				results <- nil
			}()
		}
		if r%2 == 0 {
			waitWaiters(t, &m, key, waiters) // all queued, then race
		}
		for i, cancel := range cancels {
			if i%2 == r%2 {
				go cancel()
			}
		}
		if err := l.Unlock(); err != nil {
			t.Fatalf("Unlock = %v", err)
		}
		wg.Wait()
		close(results)
		for err := range results {
			if err != nil {
				t.Fatalf("round %d: %v", r, err)
			}
		}
		for _, cancel := range cancels {
			cancel()
		}
		// The lock was not lost: it is free now.
		l, err = m.TryLock(context.Background(), key)
		if err != nil {
			t.Fatalf("round %d: TryLock after the waiters = %v; want nil (handoff lost)", r, err)
		}
		l.Unlock()
		checkEmpty(t, &m)
	}
}

func TestCancelledWaitersLeaveNoEntry(t *testing.T) {
	var m Mutex[string]
	l, err := m.Lock(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	boom := errors.New("boom")
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		go func() {
			_, err := m.Lock(ctx, "k")
			errs <- err
		}()
	}
	waitWaiters(t, &m, "k", 3)
	cancel(boom)
	for i := 0; i < 3; i++ {
		err := <-errs
		if !errors.Is(err, context.Canceled) || !errors.Is(err, boom) {
			t.Errorf("Lock = %v; want Canceled and the cause", err)
		}
	}
	if got := m.waiters("k"); got != 0 {
		t.Errorf("waiters = %d after cancel; want 0", got)
	}
	if got := m.entriesLen(); got != 1 {
		t.Errorf("entries = %d while held; want 1", got)
	}
	l.Unlock()
	checkEmpty(t, &m)
}

func TestFIFO(t *testing.T) {
	var m Mutex[string]
	ctx := context.Background()
	l, err := m.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	const n = 8
	order := make(chan int, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := m.Lock(ctx, "k")
			if err != nil {
				t.Errorf("waiter %d: Lock = %v", i, err)
				return
			}
			order <- i
			l.Unlock()
		}()
		waitWaiters(t, &m, "k", i+1) // queued in order i
	}
	// A newcomer must not barge past the queue.
	if l2, err := m.TryLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		if err == nil {
			l2.Unlock()
		}
		t.Errorf("TryLock with waiters = %v; want ErrLocked", err)
	}
	l.Unlock()
	wg.Wait()
	close(order)
	want := 0
	for got := range order {
		if got != want {
			t.Errorf("waiter %d got the lock in position %d; want FIFO", got, want)
		}
		want++
	}
	checkEmpty(t, &m)
}

func TestMillionKeysLeaveNoHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	m := new(Mutex[int])
	ctx := context.Background()
	before := keyedtest.HeapAlloc()
	for k := 0; k < 1_000_000; k++ {
		l, err := m.Lock(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
	}
	after := keyedtest.HeapAlloc()
	checkEmpty(t, m)
	keyedtest.CheckHeap(t, t.Name(), before, after)
	t.Logf("HeapAlloc before %d, after %d", before, after)
	runtime.KeepAlive(m)
}

// TestBurstLeavesNoHeap holds many keys at once, so the shard maps grow,
// then releases them: the maps must go too.
func TestBurstLeavesNoHeap(t *testing.T) {
	m := new(Mutex[string])
	ctx := context.Background()
	keys := make([]string, 200_000)
	for i := range keys {
		keys[i] = "key-" + strconv.Itoa(i)
	}
	leases := make([]mutex.Lease, len(keys))
	before := keyedtest.HeapAlloc()
	for i, k := range keys {
		l, err := m.TryLock(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		leases[i] = l
	}
	if got := m.entriesLen(); got != len(keys) {
		t.Fatalf("entries = %d while held; want %d", got, len(keys))
	}
	held := keyedtest.HeapAlloc()
	for i, l := range leases {
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		leases[i] = nil
	}
	after := keyedtest.HeapAlloc()
	checkEmpty(t, m) // internal/keylock checks that the shard maps go
	keyedtest.CheckHeap(t, t.Name(), before, after)
	// The slots keep some idle entries as a cache, within their bound.
	if idle := m.t.Idle(); idle > 2048 {
		t.Errorf("%d idle entries kept after the burst; want at most 2048", idle)
	}
	t.Logf("HeapAlloc before %d, while %d keys held %d (%d bytes per held key, its lease included), after %d",
		before, len(keys), held, (held-before)/uint64(len(keys)), after)
	runtime.KeepAlive(m)
	runtime.KeepAlive(keys)
}

// TestNaNKey: a NaN key is not equal to itself,
// so it could never be found again to be unlocked or waited for. Lock,
// TryLock and LockN refuse it with an error satisfying errors.Is(err,
// mutex.ErrInvalidKey) (before the fix TryLock(NaN) succeeded while NaN
// was held), its Locker panics, and 200k attempts leave no entry and the
// heap flat (before the fix each Lock leaked an entry).
func TestNaNKey(t *testing.T) {
	var m Mutex[float64]
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
	if _, err := m.LockN(ctx, nan, 3); !errors.Is(err, mutex.ErrInvalidKey) {
		t.Errorf("LockN(NaN) = %v; want ErrInvalidKey", err)
	}
	var mi Mutex[any] // a NaN inside an interface key
	if _, err := mi.Lock(ctx, any(nan)); !errors.Is(err, mutex.ErrInvalidKey) {
		t.Errorf("Mutex[any].Lock(NaN) = %v; want ErrInvalidKey", err)
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
	checkEmpty(t, &m)
	keyedtest.CheckHeap(t, t.Name(), before, after)
	t.Logf("200k Lock(NaN): HeapAlloc before %d, after %d", before, after)
	// Other keys are unaffected.
	l, err = m.TryLock(ctx, 1.5)
	if err != nil {
		t.Fatalf("TryLock(1.5) = %v; want nil", err)
	}
	l.Unlock()
	checkEmpty(t, &m)
}

func TestLeaseLifecycle(t *testing.T) {
	var m Mutex[string]
	ctx := context.Background()
	l, err := m.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	done := l.Done()
	if l.Done() != done {
		t.Error("Done() returned different channels")
	}
	select {
	case <-done:
		t.Fatal("Done closed while held")
	default:
	}
	if err := l.Err(); err != nil {
		t.Errorf("Err() while held = %v; want nil", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatalf("Unlock() = %v", err)
	}
	select {
	case <-done:
	default:
		t.Error("Done not closed after Unlock")
	}
	if err := l.Unlock(); !errors.Is(err, mutex.ErrUnlocked) {
		t.Errorf("second Unlock() = %v; want ErrUnlocked", err)
	}
	// Unlock twice stays detected after the key is locked again.
	l2, err := m.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Unlock(); !errors.Is(err, mutex.ErrUnlocked) {
		t.Errorf("stale Unlock() = %v; want ErrUnlocked", err)
	}
	if _, err := m.TryLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Errorf("TryLock after stale Unlock = %v; want ErrLocked (stale Unlock released a live lease)", err)
	}
	// Done called only after Unlock is closed.
	l2.Unlock()
	select {
	case <-l2.Done():
	default:
		t.Error("Done() after Unlock not closed")
	}
	checkEmpty(t, &m)
}

func TestTryLockDoneCtx(t *testing.T) {
	var m Mutex[string]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.TryLock(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("TryLock(done ctx) = %v; want Canceled", err)
	}
	checkEmpty(t, &m)
}

func TestTokensSurviveEntryDeletion(t *testing.T) {
	var m Mutex[string]
	ctx := context.Background()
	var last uint64
	for i := 0; i < 100; i++ {
		l, err := m.Lock(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if l.Token() <= last {
			t.Fatalf("Token() = %d; want > %d", l.Token(), last)
		}
		last = l.Token()
		l.Unlock()
		checkEmpty(t, &m) // the next Lock makes a fresh entry
	}
}

func TestTokenReserver(t *testing.T) {
	var m Mutex[string]
	ctx := context.Background()
	if _, err := m.LockN(ctx, "k", 0); !errors.Is(err, ErrBlockSize) {
		t.Errorf("LockN(n=0) = %v; want ErrBlockSize", err)
	}
	if _, err := m.TryLockN(ctx, "k", 0); !errors.Is(err, ErrBlockSize) {
		t.Errorf("TryLockN(n=0) = %v; want ErrBlockSize", err)
	}
	a, err := m.LockN(ctx, "k", 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.TryLockN(ctx, "k", 2); !errors.Is(err, mutex.ErrLocked) {
		t.Errorf("TryLockN(held) = %v; want ErrLocked", err)
	}
	// A waiter with a block gets its tokens on handoff.
	got := make(chan mutex.Lease, 1)
	go func() {
		l, err := m.LockN(ctx, "k", 5)
		if err != nil {
			t.Errorf("LockN waiter = %v", err)
			close(got)
			return
		}
		got <- l
	}()
	waitWaiters(t, &m, "k", 1)
	a.Unlock()
	b, ok := <-got
	if !ok {
		t.FailNow()
	}
	if want := a.Token() + 10; b.Token() < want {
		t.Errorf("token after a block of 10 = %d; want >= %d", b.Token(), want)
	}
	b.Unlock()
	c, err := m.TryLockN(ctx, "k", 1)
	if err != nil {
		t.Fatal(err)
	}
	if want := b.Token() + 5; c.Token() < want {
		t.Errorf("token after a block of 5 = %d; want >= %d", c.Token(), want)
	}
	c.Unlock()
	checkEmpty(t, &m)
}

func TestTokensExhausted(t *testing.T) {
	var m Mutex[string]
	ctx := context.Background()
	if _, err := m.LockN(ctx, "k", math.MaxUint64); !errors.Is(err, ErrTokensExhausted) {
		t.Errorf("LockN(MaxUint64) = %v; want ErrTokensExhausted", err)
	}
	checkEmpty(t, &m)
	l, err := m.LockN(ctx, "k", keylock.MaxToken)
	if err != nil {
		t.Fatal(err)
	}
	// A waiter that cannot get a token fails when the lock reaches it...
	errc := make(chan error, 1)
	go func() {
		_, err := m.LockN(ctx, "k", 2)
		errc <- err
	}()
	waitWaiters(t, &m, "k", 1)
	l.Unlock()
	if err := <-errc; !errors.Is(err, ErrTokensExhausted) {
		t.Errorf("LockN after exhaustion = %v; want ErrTokensExhausted", err)
	}
	checkEmpty(t, &m)
	// ... and so does a newcomer, with nothing left behind.
	if _, err := m.TryLockN(ctx, "k", 2); !errors.Is(err, ErrTokensExhausted) {
		t.Errorf("TryLockN after exhaustion = %v; want ErrTokensExhausted", err)
	}
	checkEmpty(t, &m)
}

func TestLockerAdapter(t *testing.T) {
	var m Mutex[string]
	const goroutines, iters = 8, 200
	counter := 0
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < iters; i++ {
				m.Locker("k").Lock()
				counter++
				m.Locker("k").Unlock() // another adapter value releases
			}
		}()
	}
	wg.Wait()
	if counter != goroutines*iters {
		t.Errorf("counter = %d; want %d", counter, goroutines*iters)
	}
	checkEmpty(t, &m)
	var panicked atomic.Bool
	func() {
		defer func() { panicked.Store(recover() != nil) }()
		m.Locker("k").Unlock()
	}()
	if !panicked.Load() {
		t.Error("Locker().Unlock() of an unlocked key did not panic")
	}
}

// TestSharedLocker: one Locker value shared by goroutines, and leases of
// the same key, exclude each other; Lock and Unlock through a Locker
// allocate nothing; a Locker's Unlock of a key held by a lease panics
// and leaves the lease holding it.
func TestSharedLocker(t *testing.T) {
	var m Mutex[string]
	ctx := context.Background()
	l := m.Locker("k")
	const goroutines, iters = 8, 300
	var counter, inside atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range iters {
				var lease mutex.Lease
				if (g+i)%3 == 0 {
					var err error
					if lease, err = m.Lock(ctx, "k"); err != nil {
						t.Error(err)
						return
					}
				} else {
					l.Lock()
				}
				if inside.Add(1) != 1 {
					t.Error("two holders of one key at once")
				}
				counter.Add(1)
				inside.Add(-1)
				if lease != nil {
					lease.Unlock()
				} else {
					l.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if got := counter.Load(); got != goroutines*iters {
		t.Errorf("counter = %d; want %d", got, goroutines*iters)
	}
	checkEmpty(t, &m)

	if allocs := testing.AllocsPerRun(100, func() { l.Lock(); l.Unlock() }); allocs != 0 {
		t.Errorf("Locker Lock+Unlock: %v allocations; want 0", allocs)
	}

	lease, err := m.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Locker().Unlock() of a key held by a lease did not panic")
			}
		}()
		l.Unlock()
	}()
	if _, err := m.TryLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Errorf("TryLock after the refused Locker Unlock = %v; want ErrLocked (the lease holds it)", err)
	}
	if err := lease.Unlock(); err != nil {
		t.Errorf("lease Unlock = %v", err)
	}
	checkEmpty(t, &m)
}

// TestLeasesFromSlab: a key locked again and again gets its leases from
// slabs, yet every lease is its own: a second Unlock of any of them, long
// after, returns ErrUnlocked and leaves the key's current holder alone,
// and tokens increase. A Lock+Unlock allocates at most one object.
func TestLeasesFromSlab(t *testing.T) {
	var m Mutex[string]
	ctx := context.Background()
	var leases []mutex.Lease
	for i := range 3*16 + 5 {
		l, err := m.Lock(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 && l.Token() <= leases[i-1].Token() {
			t.Errorf("lease %d: token %d after %d; want larger", i, l.Token(), leases[i-1].Token())
		}
		if err := l.Unlock(); err != nil {
			t.Fatalf("lease %d: Unlock = %v", i, err)
		}
		leases = append(leases, l)
	}
	holder, err := m.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range leases {
		if err := l.Unlock(); !errors.Is(err, mutex.ErrUnlocked) {
			t.Errorf("lease %d: second Unlock = %v; want ErrUnlocked", i, err)
		}
		if err := l.Err(); !errors.Is(err, mutex.ErrUnlocked) {
			t.Errorf("lease %d: Err = %v; want ErrUnlocked", i, err)
		}
		select {
		case <-l.Done():
		default:
			t.Errorf("lease %d: Done not closed after Unlock", i)
		}
	}
	if _, err := m.TryLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Errorf("TryLock = %v; want ErrLocked (stale Unlocks must not free the key)", err)
	}
	if err := holder.Unlock(); err != nil {
		t.Errorf("holder Unlock = %v", err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		l, err := m.Lock(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		l.Unlock()
	})
	if allocs > 1 {
		t.Errorf("Lock+Unlock: %v allocations; want at most 1", allocs)
	}
	checkEmpty(t, &m)
}

// TestDoneRacesUnlock calls Done concurrently with Unlock: the channel
// Done returns is always closed once Unlock has returned, and the next
// holder's Done is a fresh, open channel.
func TestDoneRacesUnlock(t *testing.T) {
	var m Mutex[string]
	ctx := context.Background()
	for i := 0; i < 500; i++ {
		l, err := m.Lock(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan (<-chan struct{}), 1)
		go func() { got <- l.Done() }()
		if i%2 == 0 {
			runtime.Gosched()
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-<-got:
		case <-time.After(wait):
			t.Fatalf("round %d: Done from a racing call not closed after Unlock", i)
		}
		// A waiter handed the lock gets an open Done.
		held, err := m.Lock(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		_ = held.Done()
		next := make(chan mutex.Lease, 1)
		go func() {
			l, err := m.Lock(ctx, "k")
			if err != nil {
				t.Error(err)
			}
			next <- l
		}()
		waitWaiters(t, &m, "k", 1)
		held.Unlock()
		n := <-next
		if n == nil {
			t.FailNow()
		}
		select {
		case <-n.Done():
			t.Fatalf("round %d: new holder's Done closed while held", i)
		default:
		}
		n.Unlock()
	}
	checkEmpty(t, &m)
}
