package hybrid

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/logtest"
	"github.com/keyedmutex/keyedmutex/mutex"
)

const wait = 10 * time.Second

func ctxT(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

func newT(t *testing.T, remote mutex.Keyed[string], opts ...Option) *Mutex[string] {
	t.Helper()
	opts = append([]Option{WithLogger(logtest.Fail(t))}, opts...)
	m, err := New(remote, opts...)
	if err != nil {
		t.Fatalf("New() = %v; want nil", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close() = %v; want nil", err)
		}
	})
	return m
}

func mustLock(t *testing.T, m *Mutex[string], key string) mutex.Lease {
	t.Helper()
	l, err := m.Lock(ctxT(t), key)
	if err != nil {
		t.Fatalf("Lock(%q) = %v; want nil", key, err)
	}
	return l
}

// lockQueued starts a Lock of key in m and returns once it waits; the
// channel receives its lease, nil if it failed (the test has failed then).
func lockQueued(t *testing.T, m *Mutex[string], key string) <-chan mutex.Lease {
	t.Helper()
	_, before := m.t.Len(key)
	got := make(chan mutex.Lease, 1)
	go func() {
		l, err := m.Lock(context.Background(), key)
		if err != nil {
			t.Errorf("waiter's Lock(%q) = %v", key, err)
		}
		got <- l
	}()
	queued(t, m, key, before+1)
	return got
}

// queued polls until n goroutines wait for key in m.
func queued(t *testing.T, m *Mutex[string], key string, n int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		_, got := m.t.Len(key)
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters queued for %q; want %d", got, key, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// owned polls until a goroutine owns key in m.
func owned(t *testing.T, m *Mutex[string], key string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		ok := m.t.Locked(key)
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nobody owns %q; want a contending head", key)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkClean fails unless m has no local state and f holds no key.
func checkClean(t *testing.T, m *Mutex[string], f *fake) {
	t.Helper()
	var zero string
	n, _ := m.t.Len(zero)
	if n != 0 {
		t.Errorf("%d entries left in the Mutex; want 0", n)
	}
	if ks := f.heldKeys(); len(ks) != 0 {
		t.Errorf("remote keys still held: %q; want none", ks)
	}
}

func TestConformance(t *testing.T) {
	leakcheck.Register(t)
	for _, tc := range []struct {
		name   string
		remote func(*fake) mutex.Keyed[string]
		opts   []Option
	}{
		{"blocker", func(f *fake) mutex.Keyed[string] { return f }, nil},
		{"blocker/bound=0", func(f *fake) mutex.Keyed[string] { return f }, []Option{WithMaxLocalHandoffs(0)}},
		{"blocker/bound=1", func(f *fake) mutex.Keyed[string] { return f }, []Option{WithMaxLocalHandoffs(1)}},
		{"plain", func(f *fake) mutex.Keyed[string] { return plain{f} }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			keyedtest.Run(t, keyedtest.Config{
				New: func(t *testing.T) mutex.Keyed[string] { return newT(t, tc.remote(f), tc.opts...) },
				Observed: func(t *testing.T, o mutex.Observer) mutex.Keyed[string] {
					return newT(t, tc.remote(f), append(tc.opts, WithObserver(o))...)
				},
				Instances: 3,
			})
		})
	}
}

// TestHandoffBound queues many waiters in one process and checks, from
// the fake's record of remote acquisitions and from the tokens, that no
// remote lease serves more than bound+1 holders, that waiters acquire in
// FIFO order and that one contender per process reaches the remote.
func TestHandoffBound(t *testing.T) {
	leakcheck.Register(t)
	for _, tc := range []struct{ bound, reserve int }{{0, 0}, {1, 0}, {3, 0}, {16, 0}, {16, 5}} {
		// reserve > 0: the remote reserves at most that many tokens per
		// lease (a Redis remote may reserve fewer than asked), which
		// bounds the handoffs instead.
		bound, perLease := tc.bound, tc.bound+1
		if tc.reserve > 0 {
			perLease = min(perLease, tc.reserve)
		}
		t.Run(fmt.Sprintf("bound=%d/reserve=%d", bound, tc.reserve), func(t *testing.T) {
			f := newFake()
			f.maxReserve = uint64(tc.reserve)
			m := newT(t, f, WithMaxLocalHandoffs(bound), WithReleaseYield(0))
			key := keyedtest.Key(t)
			const waiters = 40
			first := mustLock(t, m, key)
			tokens := make([]uint64, waiters)
			var wg sync.WaitGroup
			var order []int
			var orderMu sync.Mutex
			errs := make(chan error, waiters)
			for i := range waiters {
				wg.Add(1)
				go func() {
					defer wg.Done()
					l, err := m.Lock(context.Background(), key)
					if err != nil {
						errs <- err
						return
					}
					tokens[i] = l.Token()
					orderMu.Lock()
					order = append(order, i)
					orderMu.Unlock()
					if err := l.Unlock(); err != nil {
						errs <- err
					}
				}()
				queued(t, m, key, i+1) // enqueue in the order of i
			}
			if err := first.Unlock(); err != nil {
				t.Fatalf("Unlock() = %v; want nil", err)
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			for i, got := range order {
				if got != i {
					t.Fatalf("acquisition order %v; want FIFO 0..%d", order, waiters-1)
				}
			}
			holders := append([]uint64{first.Token()}, tokens...)
			for i := 1; i < len(holders); i++ {
				if holders[i] <= holders[i-1] {
					t.Errorf("holder %d token %d; want > %d", i, holders[i], holders[i-1])
				}
			}
			// Every holder's token falls in exactly one remote block, and
			// no block serves more than bound+1 holders.
			f.mu.Lock()
			acqs := append([]fakeAcq(nil), f.acquired...)
			maxPending := f.maxPending[key]
			f.mu.Unlock()
			for _, a := range acqs {
				served := 0
				for _, tok := range holders {
					if tok >= a.first && tok < a.first+a.n {
						served++
					}
				}
				if served < 1 || served > perLease {
					t.Errorf("remote lease at token %d served %d holders; want 1..%d", a.first, served, perLease)
				}
			}
			want := (waiters + perLease) / perLease // ceil(41/perLease)
			if len(acqs) != want {
				t.Errorf("%d remote acquisitions for %d holders; want %d", len(acqs), waiters+1, want)
			}
			if maxPending != 1 {
				t.Errorf("%d concurrent remote acquisitions at most; want 1", maxPending)
			}
			checkClean(t, m, f)
		})
	}
}

// TestPlainRemoteNoHandoff: without TokenReserver every holder acquires
// remotely, with the remote's own token.
func TestPlainRemoteNoHandoff(t *testing.T) {
	leakcheck.Register(t)
	f := newFake()
	m := newT(t, plain{f}, WithMaxLocalHandoffs(16))
	key := keyedtest.Key(t)
	first := mustLock(t, m, key)
	done := make(chan mutex.Lease, 3)
	for i := range 3 {
		go func() {
			l, err := m.Lock(context.Background(), key)
			if err != nil {
				t.Errorf("Lock() = %v", err)
			}
			done <- l
		}()
		queued(t, m, key, i+1)
	}
	first.Unlock()
	last := first.Token()
	for range 3 {
		l := <-done
		if l == nil {
			t.FailNow()
		}
		if l.Token() <= last {
			t.Errorf("Token() = %d; want > %d", l.Token(), last)
		}
		last = l.Token()
		l.Unlock()
	}
	if got := f.count("Lock"); got != 4 {
		t.Errorf("remote Lock calls = %d; want 4 (no local handoff)", got)
	}
	if got := f.count("LockN"); got != 0 {
		t.Errorf("remote LockN calls = %d; want 0", got)
	}
	checkClean(t, m, f)
}

func TestLostLease(t *testing.T) {
	leakcheck.Register(t)
	f := newFake()
	m := newT(t, f)
	key := keyedtest.Key(t)
	a := mustLock(t, m, key)
	got := lockQueued(t, m, key)
	f.lose(key)
	select {
	case <-a.Done():
	case <-time.After(wait):
		t.Fatal("Done() not closed after the remote lease was lost")
	}
	if err := a.Err(); !errors.Is(err, mutex.ErrLost) {
		t.Errorf("Err() = %v; want ErrLost", err)
	}
	// Local exclusion holds until a unlocks: the waiter is still queued.
	queued(t, m, key, 1)
	if err := a.Unlock(); !errors.Is(err, mutex.ErrLost) {
		t.Errorf("Unlock() of a lost lease = %v; want ErrLost", err)
	}
	if err := a.Unlock(); !errors.Is(err, mutex.ErrUnlocked) {
		t.Errorf("second Unlock() = %v; want ErrUnlocked", err)
	}
	b := <-got
	if b == nil {
		t.FailNow()
	}
	if n := f.count("LockN"); n != 2 {
		t.Errorf("remote acquisitions = %d; want 2 (the waiter acquires afresh)", n)
	}
	if b.Token() <= a.Token() {
		t.Errorf("Token() = %d; want > %d", b.Token(), a.Token())
	}
	if err := b.Unlock(); err != nil {
		t.Errorf("Unlock() = %v; want nil", err)
	}
	checkClean(t, m, f)
}

// TestLostBetweenHandoffs: a lease lost while a local holder holds it is
// not handed on even though tokens remain in the block.
func TestLostWithTokensLeft(t *testing.T) {
	leakcheck.Register(t)
	f := newFake()
	m := newT(t, f, WithMaxLocalHandoffs(100))
	key := keyedtest.Key(t)
	a := mustLock(t, m, key)
	go func() {
		l, err := m.Lock(context.Background(), key)
		if err == nil {
			l.Unlock()
		}
	}()
	queued(t, m, key, 1)
	f.lose(key)
	<-a.Done()
	a.Unlock()
	l := mustLock(t, m, key)
	l.Unlock()
	if n := f.count("LockN"); n < 2 {
		t.Errorf("remote acquisitions = %d; want >= 2", n)
	}
}

// TestCancelContendingHead cancels the head while it waits for the remote;
// the next local waiter must take over the contention.
func TestCancelContendingHead(t *testing.T) {
	leakcheck.Register(t)
	f := newFake()
	m := newT(t, f)
	key := keyedtest.Key(t)
	other, err := f.Lock(ctxT(t), key) // another process holds the key
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.entered = make(chan string, 10)
	f.mu.Unlock()
	hctx, cancel := context.WithCancel(context.Background())
	headErr := make(chan error, 1)
	go func() {
		_, err := m.Lock(hctx, key)
		headErr <- err
	}()
	<-f.entered // the head contends remotely
	got := make(chan error, 1)
	go func() {
		l, err := m.Lock(context.Background(), key)
		if err == nil {
			err = l.Unlock()
		}
		got <- err
	}()
	queued(t, m, key, 1)
	cancel()
	if err := <-headErr; !errors.Is(err, context.Canceled) {
		t.Errorf("head Lock() = %v; want Canceled", err)
	}
	<-f.entered // the waiter took over the contention
	other.Unlock()
	if err := <-got; err != nil {
		t.Errorf("waiter Lock/Unlock = %v; want nil", err)
	}
	f.mu.Lock()
	maxPending := f.maxPending[key]
	f.mu.Unlock()
	if n := maxPending; n != 1 {
		t.Errorf("%d concurrent remote contenders; want 1", n)
	}
	checkClean(t, m, f)
}

// TestCancelRaces cancels waiters at random moments while the lock moves
// between holders, then checks that the key still works and nothing is
// left behind.
func TestCancelRaces(t *testing.T) {
	leakcheck.Register(t)
	f := newFake()
	m := newT(t, f, WithMaxLocalHandoffs(2))
	key := keyedtest.Key(t)
	var wg sync.WaitGroup
	var inside, overlaps int
	var mu sync.Mutex
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				ctx, cancel := context.WithCancel(context.Background())
				if (g+i)%3 == 0 {
					go cancel()
				}
				l, err := m.Lock(ctx, key)
				cancel()
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						t.Errorf("Lock() = %v; want nil or Canceled", err)
					}
					continue
				}
				mu.Lock()
				inside++
				if inside != 1 {
					overlaps++
				}
				mu.Unlock()
				mu.Lock()
				inside--
				mu.Unlock()
				if err := l.Unlock(); err != nil {
					t.Errorf("Unlock() = %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if overlaps != 0 {
		t.Errorf("%d overlaps; want 0", overlaps)
	}
	l := mustLock(t, m, key)
	l.Unlock()
	checkClean(t, m, f)
}

// TestCloseReleasesInParallel: Close releases the remote leases of many
// held keys at once, so that a slow remote (Redis down: each release
// waits its unlock timeout) makes Close wait about one timeout, not one
// per key. The fake's releases each wait until all 8 are in progress: a
// Close that released one after another would never see that.
func TestCloseReleasesInParallel(t *testing.T) {
	leakcheck.Register(t)
	f := newFake()
	m := must(New[string](f))
	const keys = 8
	for i := range keys {
		mustLock(t, m, fmt.Sprintf("%s/%d", keyedtest.Key(t), i))
	}
	var inFlight sync.WaitGroup
	inFlight.Add(keys)
	all := make(chan struct{})
	go func() { inFlight.Wait(); close(all) }()
	f.mu.Lock()
	f.unlockHold = func() {
		inFlight.Done()
		select {
		case <-all:
		case <-time.After(wait):
		}
	}
	f.mu.Unlock()
	closed := make(chan error, 1)
	go func() { closed <- m.Close() }()
	select {
	case <-all:
	case <-time.After(wait):
		t.Fatalf("Close never had %d remote releases in progress at once: it releases one after another", keys)
	}
	if err := <-closed; err != nil {
		t.Errorf("Close() = %v; want nil", err)
	}
	if ks := f.heldKeys(); len(ks) != 0 {
		t.Errorf("remote keys still held after Close: %q", ks)
	}
}

func TestClose(t *testing.T) {
	leakcheck.Register(t)
	f := newFake()
	m := must(New[string](f))
	held, contended := keyedtest.Key(t), keyedtest.Key(t)
	h := mustLock(t, m, held)
	other, err := f.Lock(ctxT(t), contended)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Unlock()
	f.mu.Lock()
	f.entered = make(chan string, 10)
	f.mu.Unlock()
	errs := make(chan error, 4)
	lock := func(key string) {
		l, err := m.Lock(context.Background(), key)
		if err == nil {
			l.Unlock()
			err = errors.New("Lock succeeded")
		}
		errs <- err
	}
	go lock(contended)
	<-f.entered
	go lock(contended)
	go lock(held)
	go lock(held)
	queued(t, m, held, 2)
	queued(t, m, contended, 1)
	if err := m.Close(); err != nil {
		t.Errorf("Close() = %v; want nil", err)
	}
	for range 4 {
		if err := <-errs; !errors.Is(err, mutex.ErrClosed) {
			t.Errorf("Lock() during Close = %v; want ErrClosed", err)
		}
	}
	select {
	case <-h.Done():
	default:
		t.Error("held lease Done() not closed by Close")
	}
	if err := h.Err(); !errors.Is(err, mutex.ErrLost) || !errors.Is(err, mutex.ErrClosed) {
		t.Errorf("held lease Err() = %v; want ErrLost and ErrClosed", err)
	}
	f.mu.Lock()
	stillHeld := f.held[held] != nil
	f.mu.Unlock()
	if stillHeld {
		t.Error("remote lease of the held key not released by Close")
	}
	if err := h.Unlock(); !errors.Is(err, mutex.ErrLost) {
		t.Errorf("Unlock() after Close = %v; want ErrLost", err)
	}
	if _, err := m.Lock(ctxT(t), held); !errors.Is(err, mutex.ErrClosed) {
		t.Errorf("Lock() after Close = %v; want ErrClosed", err)
	}
	if _, err := m.TryLock(ctxT(t), held); !errors.Is(err, mutex.ErrClosed) {
		t.Errorf("TryLock() after Close = %v; want ErrClosed", err)
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close() = %v; want nil", err)
	}
	other.Unlock()
	checkClean(t, m, f)
}

// TestYieldAfterBound: after a release forced by the bound, a process that
// waits takes the key before the releasing process's next local head.
func TestYieldAfterBound(t *testing.T) {
	leakcheck.Register(t)
	f := newFake()
	m := must(New[string](f, WithMaxLocalHandoffs(1), WithReleaseYield(time.Hour)))
	defer m.Close()
	key := keyedtest.Key(t)
	a := mustLock(t, m, key)
	results := make(chan error, 2)
	for i := range 2 {
		go func() {
			l, err := m.Lock(context.Background(), key)
			if err == nil {
				err = l.Unlock()
			}
			results <- err
		}()
		queued(t, m, key, i+1)
	}
	f.mu.Lock()
	f.entered = make(chan string, 10)
	f.mu.Unlock()
	otherGot := make(chan mutex.Lease, 1)
	go func() {
		l, err := f.Lock(context.Background(), key) // another process
		if err != nil {
			t.Errorf("other process Lock() = %v", err)
		}
		otherGot <- l
	}()
	<-f.entered
	a.Unlock() // handoff 1 of 1; the waiter's Unlock then releases
	if err := <-results; err != nil {
		t.Fatalf("first waiter = %v", err)
	}
	other := <-otherGot // the other process wins while the last waiter yields
	if other == nil {
		t.FailNow()
	}
	if n := f.count("LockN"); n != 1 {
		t.Errorf("remote LockN calls = %d; want 1 (the next head yields)", n)
	}
	other.Unlock()
	m.Close()
	if err := <-results; !errors.Is(err, mutex.ErrClosed) {
		t.Errorf("yielding waiter after Close = %v; want ErrClosed", err)
	}
	checkClean(t, m, f)
}

func TestRemoteFailure(t *testing.T) {
	leakcheck.Register(t)
	f := newFake()
	m := newT(t, f)
	key := keyedtest.Key(t)
	a := mustLock(t, m, key)
	boom := errors.New("boom")
	results := make(chan error, 3)
	for i := range 3 {
		go func() {
			_, err := m.Lock(context.Background(), key)
			results <- err
		}()
		queued(t, m, key, i+1)
	}
	f.setFail(boom)
	f.lose(key) // the holder's lease is lost: waiters must acquire afresh
	a.Unlock()
	for range 3 {
		if err := <-results; !errors.Is(err, boom) {
			t.Errorf("Lock() = %v; want boom", err)
		}
	}
	f.setFail(nil)
	l := mustLock(t, m, key)
	l.Unlock()
	checkClean(t, m, f)
}

// TestRemoteExpiredUnseen: a remote lease that a paused process finds
// expired on resuming (Err says lost, Done not closed yet) is not handed
// to a local waiter: the holder's Unlock reports the loss and the waiter
// acquires the remote lock afresh, with a greater token.
func TestRemoteExpiredUnseen(t *testing.T) {
	leakcheck.Register(t)
	f := newFake()
	m := newT(t, f)
	key := keyedtest.Key(t)
	a := mustLock(t, m, key)
	got := lockQueued(t, m, key)
	f.expireUnseen(key)
	if err := a.Err(); !errors.Is(err, mutex.ErrLost) {
		t.Errorf("holder's Err() = %v; want ErrLost", err)
	}
	if err := a.Unlock(); !errors.Is(err, mutex.ErrLost) {
		t.Errorf("holder's Unlock() = %v; want ErrLost (its remote lease expired)", err)
	}
	b := <-got
	if b == nil {
		t.FailNow()
	}
	if b.Token() <= a.Token() {
		t.Errorf("next holder's token %d <= expired holder's %d", b.Token(), a.Token())
	}
	if n := f.count("LockN"); n != 2 {
		t.Errorf("remote acquisitions = %d; want 2 (the expired lease handed on locally)", n)
	}
	b.Unlock()
	checkClean(t, m, f)
}

// TestUnlockTwiceNamesKey: a second Unlock names the lease's own key,
// even after the key's entry was freed and reused for other keys.
func TestUnlockTwiceNamesKey(t *testing.T) {
	leakcheck.Register(t)
	f := newFake()
	m := newT(t, f)
	l := mustLock(t, m, "alpha")
	if err := l.Unlock(); err != nil {
		t.Fatalf("Unlock() = %v", err)
	}
	for i := range 100 {
		if err := mustLock(t, m, fmt.Sprintf("other-%d", i)).Unlock(); err != nil {
			t.Fatalf("Unlock() = %v", err)
		}
	}
	err := l.Unlock()
	if !errors.Is(err, mutex.ErrUnlocked) {
		t.Fatalf("second Unlock() = %v; want ErrUnlocked", err)
	}
	if !strings.Contains(err.Error(), `"alpha"`) {
		t.Errorf("second Unlock() = %q; want it to name key \"alpha\"", err)
	}
	checkClean(t, m, f)
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remote mutex.Keyed[string]
		opts   []Option
		want   string
	}{
		{"nil remote", nil, nil, "nil remote"},
		{"typed nil remote", (*fake)(nil), nil, "nil remote mutex (*hybrid.fake)"},
		{"negative bound", newFake(), []Option{WithMaxLocalHandoffs(-1)}, "WithMaxLocalHandoffs(-1)"},
		{"negative yield", newFake(), []Option{WithReleaseYield(-time.Second)}, "WithReleaseYield(-1s)"},
		{"nil logger", newFake(), []Option{WithLogger(nil)}, "WithLogger(nil)"},
		{"nil observer", newFake(), []Option{WithObserver(nil)}, "WithObserver(nil)"},
		{"owned remote without Close", newFake(), []Option{WithOwnedRemote()}, "no Close method"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.remote, tc.opts...)
			if err == nil || !contains(err.Error(), tc.want) {
				t.Errorf("New() = %v, %v; want an error naming %q", m, err, tc.want)
			}
			if m != nil {
				t.Errorf("New() returned a Mutex with its error; want nil")
			}
		})
	}
}

// must returns m, failing the test (through panic, on the test goroutine)
// if New returned an error.
func must[K comparable](m *Mutex[K], err error) *Mutex[K] {
	if err != nil {
		panic(fmt.Sprintf("New() = %v", err))
	}
	return m
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
