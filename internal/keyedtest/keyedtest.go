// Package keyedtest is the conformance suite that every [mutex.Keyed] of
// this module passes: local, distributed (both wait strategies) and hybrid
// run the same tests, so the contract is tested once and met everywhere.
package keyedtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
)

// Config describes the implementation under test.
type Config struct {
	// New returns a fresh Keyed. Several calls in one test stand for
	// several processes: they must share the backend (one Redis) but
	// nothing else. Cleanup belongs in t.Cleanup.
	New func(t *testing.T) mutex.Keyed[string]
	// Instances is how many Keyed values the mutual exclusion test
	// creates. The default is 1.
	Instances int
	// Goroutines and Iterations size the mutual exclusion test: each
	// goroutine locks each of Keys keys Iterations times. The defaults
	// are 8, 50 and 4.
	Goroutines, Iterations, Keys int
	// Wait bounds how long a test waits for something that should happen
	// promptly (a lock freed by Unlock). The default is 10s.
	Wait time.Duration
	// Observed, if set, returns a fresh Keyed that reports to o (its
	// WithObserver option); the Observer test runs on it.
	Observed func(t *testing.T, o mutex.Observer) mutex.Keyed[string]
}

func (c *Config) defaults() {
	if c.Instances == 0 {
		c.Instances = 1
	}
	if c.Goroutines == 0 {
		c.Goroutines = 8
	}
	if c.Iterations == 0 {
		c.Iterations = 50
	}
	if c.Keys == 0 {
		c.Keys = 4
	}
	if c.Wait == 0 {
		c.Wait = 10 * time.Second
	}
}

var seq atomic.Int64

// Key returns a key unique to this test run, so tests never share state
// through a backend.
func Key(t testing.TB) string {
	return fmt.Sprintf("%s/%d", t.Name(), seq.Add(1))
}

// Run runs the conformance suite as subtests of t.
func Run(t *testing.T, c Config) {
	c.defaults()
	t.Run("MutualExclusion", func(t *testing.T) { testMutualExclusion(t, c) })
	t.Run("TryLock", func(t *testing.T) { testTryLock(t, c) })
	t.Run("UnlockTwice", func(t *testing.T) { testUnlockTwice(t, c) })
	t.Run("TokensIncrease", func(t *testing.T) { testTokens(t, c) })
	t.Run("KeysIndependent", func(t *testing.T) { testIndependent(t, c) })
	t.Run("LockCtxDeadline", func(t *testing.T) { testCtxDeadline(t, c) })
	t.Run("LockCtxAlreadyDone", func(t *testing.T) { testCtxAlreadyDone(t, c) })
	t.Run("CancelledWaiterDoesNotLoseHandoff", func(t *testing.T) { testCancelRace(t, c) })
	t.Run("Locker", func(t *testing.T) { testLocker(t, c) })
	t.Run("WithLease", func(t *testing.T) { testWithLease(t, c) })
	t.Run("NilContext", func(t *testing.T) { testNilContext(t, c) })
	t.Run("EmptyKey", func(t *testing.T) { testEmptyKey(t, c) })
	t.Run("Observer", func(t *testing.T) { testObserver(t, c) })
	t.Run("Do", func(t *testing.T) { testDo(t, c) })
}

// Recorder is a mutex.Observer that keeps every event, for tests.
type Recorder struct {
	mu     sync.Mutex // guards events
	events []mutex.Event
}

// Observe implements mutex.Observer.
func (r *Recorder) Observe(_ context.Context, e mutex.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// Events returns the events of kind (all kinds for 0) recorded for key.
func (r *Recorder) Events(kind mutex.EventKind, key string) []mutex.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []mutex.Event
	for _, e := range r.events {
		if (kind == 0 || e.Kind == kind) && e.Key == key {
			out = append(out, e)
		}
	}
	return out
}

// testObserver checks the events every implementation reports: an
// uncontended Lock, a Lock that waits, a TryLock of a held key, a Lock
// whose ctx ends, and Unlock with its hold time.
func testObserver(t *testing.T, c Config) {
	if c.Observed == nil {
		t.Skip("no observed constructor")
	}
	var rec Recorder
	m := c.Observed(t, &rec)
	ctx := ctxT(t, c.Wait)
	key := Key(t)
	l := mustLock(t, ctx, m, key)
	if _, err := m.TryLock(ctx, key); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryLock(held) = %v; want ErrLocked", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err := m.Lock(short, key)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock(held, 50ms) = %v; want DeadlineExceeded", err)
	}
	got := make(chan error, 1)
	go func() {
		l2, err := m.Lock(ctx, key)
		if err == nil {
			err = l2.Unlock()
		}
		got <- err
	}()
	deadline := time.Now().Add(c.Wait)
	for len(rec.Events(mutex.Waiting, key)) < 2 { // the cancelled Lock, then this one
		if time.Now().After(deadline) {
			t.Fatalf("no Waiting event for a Lock of a held key: %+v", rec.Events(0, key))
		}
		time.Sleep(time.Millisecond)
	}
	mustUnlock(t, l)
	if err := <-got; err != nil {
		t.Fatalf("waiting Lock = %v", err)
	}
	done := rec.Events(mutex.LockDone, key)
	want := []struct {
		op      string
		outcome mutex.Outcome
		waited  bool
	}{
		{"Lock", mutex.Acquired, false},
		{"TryLock", mutex.Locked, false},
		{"Lock", mutex.Canceled, true},
		{"Lock", mutex.Acquired, true},
	}
	if len(done) != len(want) {
		t.Fatalf("%d LockDone events; want %d: %+v", len(done), len(want), done)
	}
	for i, w := range want {
		e := done[i]
		if e.Op != w.op || e.Outcome != w.outcome || e.Waited != w.waited || e.Backend == "" {
			t.Errorf("LockDone %d = op %s, %v, waited %v, backend %q; want %s, %v, waited %v", i, e.Op, e.Outcome, e.Waited, e.Backend, w.op, w.outcome, w.waited)
		}
	}
	if e := done[2]; e.Wait < 40*time.Millisecond || e.Err == nil {
		t.Errorf("cancelled Lock's LockDone: Wait %v, Err %v; want about 50ms and the ctx error", e.Wait, e.Err)
	}
	unl := rec.Events(mutex.Unlocked, key)
	if len(unl) != 2 {
		t.Fatalf("%d Unlocked events; want 2: %+v", len(unl), unl)
	}
	// The two Unlocks may be reported in either order: the first one's
	// handoff lets the waiter lock and unlock before the first reports.
	held := false
	for _, e := range unl {
		if e.Outcome != mutex.Released {
			t.Errorf("Unlocked = %v; want released", e.Outcome)
		}
		held = held || e.Hold >= 50*time.Millisecond
	}
	if !held {
		t.Errorf("Unlocked holds %v, %v; want one of at least the 50ms of the cancelled Lock", unl[0].Hold, unl[1].Hold)
	}
}

// testDo: mutex.Do runs f under the lock, unlocks after it, returns f's
// error, and does not run f if the lock cannot be taken.
func testDo(t *testing.T, c Config) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	key := Key(t)
	boom := errors.New("boom")
	var ran bool
	err := mutex.Do(ctx, m, key, func(ctx context.Context) error {
		ran = true
		if _, err := m.TryLock(ctx, key); !errors.Is(err, mutex.ErrLocked) {
			t.Errorf("TryLock inside Do = %v; want ErrLocked (Do holds the lock)", err)
		}
		return boom
	})
	if !ran || !errors.Is(err, boom) {
		t.Errorf("Do = %v (ran %v); want f's error", err, ran)
	}
	l := mustLock(t, ctx, m, key) // Do unlocked
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	ran = false
	if err := mutex.Do(short, m, key, func(context.Context) error { ran = true; return nil }); !errors.Is(err, context.DeadlineExceeded) || ran {
		t.Errorf("Do on a held key with a short ctx = %v (ran %v); want DeadlineExceeded, f not run", err, ran)
	}
	mustUnlock(t, l)
}

// testNilContext: a nil ctx is a programming error that gets an error
// naming it, not a panic or a lease.
func testNilContext(t *testing.T, c Config) {
	m := c.New(t)
	var nilCtx context.Context
	for _, op := range []struct {
		name string
		f    func(context.Context, string) (mutex.Lease, error)
	}{{"Lock", m.Lock}, {"TryLock", m.TryLock}} {
		l, err := op.f(nilCtx, Key(t))
		if err == nil {
			l.Unlock()
			t.Errorf("%s(nil ctx) = a lease; want an error", op.name)
			continue
		}
		if !strings.Contains(err.Error(), "nil context") {
			t.Errorf("%s(nil ctx) = %v; want an error naming the nil context", op.name, err)
		}
	}
}

// testEmptyKey: the empty key is refused by every implementation with
// mutex.ErrInvalidKey (Redis cannot name it), so swapping one Keyed for
// another never changes what "" does.
func testEmptyKey(t *testing.T, c Config) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	for _, op := range []struct {
		name string
		f    func(context.Context, string) (mutex.Lease, error)
	}{{"Lock", m.Lock}, {"TryLock", m.TryLock}} {
		l, err := op.f(ctx, "")
		if err == nil {
			l.Unlock()
			t.Errorf("%s(\"\") = a lease; want an error satisfying errors.Is(err, mutex.ErrInvalidKey)", op.name)
			continue
		}
		if !errors.Is(err, mutex.ErrInvalidKey) {
			t.Errorf("%s(\"\") = %v; want an error satisfying errors.Is(err, mutex.ErrInvalidKey)", op.name, err)
		}
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustLock(t *testing.T, ctx context.Context, m mutex.Keyed[string], key string) mutex.Lease {
	t.Helper()
	l, err := m.Lock(ctx, key)
	if err != nil {
		t.Fatalf("Lock(%q) = %v; want nil error", key, err)
	}
	return l
}

func mustUnlock(t *testing.T, l mutex.Lease) {
	t.Helper()
	if err := l.Unlock(); err != nil {
		t.Fatalf("Unlock() = %v; want nil", err)
	}
}

// testMutualExclusion increments a plain int per key inside the critical
// section, from many goroutines spread over the instances. Any overlap
// loses an increment (and the race detector reports it).
func testMutualExclusion(t *testing.T, c Config) {
	ms := make([]mutex.Keyed[string], c.Instances)
	for i := range ms {
		ms[i] = c.New(t)
	}
	keys := make([]string, c.Keys)
	counters := make([]int, c.Keys)
	inside := make([]atomic.Int32, c.Keys)
	for i := range keys {
		keys[i] = Key(t)
	}
	ctx := ctxT(t, 5*time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, c.Goroutines*c.Instances)
	var overlaps atomic.Int64
	var lastToken = make([]uint64, c.Keys)
	var tokenErrs atomic.Int64
	for g := 0; g < c.Goroutines*c.Instances; g++ {
		m := ms[g%len(ms)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := 0; it < c.Iterations; it++ {
				for k := range keys {
					k := (k + g) % len(keys)
					l, err := m.Lock(ctx, keys[k])
					if err != nil {
						errs <- fmt.Errorf("Lock(%q): %w", keys[k], err)
						return
					}
					if inside[k].Add(1) != 1 {
						overlaps.Add(1)
					}
					if tok := l.Token(); tok <= lastToken[k] {
						tokenErrs.Add(1)
					} else {
						lastToken[k] = tok
					}
					counters[k]++
					inside[k].Add(-1)
					if err := l.Unlock(); err != nil {
						errs <- fmt.Errorf("Unlock(%q): %w", keys[k], err)
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
	want := c.Goroutines * c.Instances * c.Iterations
	for k, got := range counters {
		if got != want {
			t.Errorf("counter[%d] = %d; want %d", k, got, want)
		}
	}
	if n := overlaps.Load(); n != 0 {
		t.Errorf("%d overlapping critical sections; want 0", n)
	}
	if n := tokenErrs.Load(); n != 0 {
		t.Errorf("%d tokens not greater than the previous holder's; want 0", n)
	}
}

func testTryLock(t *testing.T, c Config) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	key := Key(t)
	l := mustLock(t, ctx, m, key)
	if l2, err := m.TryLock(ctx, key); !errors.Is(err, mutex.ErrLocked) {
		if err == nil {
			l2.Unlock()
		}
		t.Fatalf("TryLock(held) = %v; want ErrLocked", err)
	}
	if c.Instances > 1 {
		other := c.New(t)
		if l2, err := other.TryLock(ctx, key); !errors.Is(err, mutex.ErrLocked) {
			if err == nil {
				l2.Unlock()
			}
			t.Fatalf("TryLock(held by another instance) = %v; want ErrLocked", err)
		}
	}
	mustUnlock(t, l)
	l2, err := m.TryLock(ctx, key)
	if err != nil {
		t.Fatalf("TryLock(free) = %v; want nil", err)
	}
	if l2.Token() <= l.Token() {
		t.Errorf("TryLock token %d; want > %d", l2.Token(), l.Token())
	}
	mustUnlock(t, l2)
}

func testUnlockTwice(t *testing.T, c Config) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	l := mustLock(t, ctx, m, Key(t))
	if err := l.Err(); err != nil {
		t.Errorf("Err() while held = %v; want nil", err)
	}
	select {
	case <-l.Done():
		t.Fatal("Done() closed while held")
	default:
	}
	mustUnlock(t, l)
	select {
	case <-l.Done():
	default:
		t.Error("Done() not closed after Unlock")
	}
	if err := l.Err(); !errors.Is(err, mutex.ErrUnlocked) {
		t.Errorf("Err() after Unlock = %v; want ErrUnlocked", err)
	}
	if err := l.Unlock(); !errors.Is(err, mutex.ErrUnlocked) {
		t.Errorf("second Unlock() = %v; want ErrUnlocked", err)
	}
}

func testTokens(t *testing.T, c Config) {
	ms := []mutex.Keyed[string]{c.New(t)}
	if c.Instances > 1 {
		ms = append(ms, c.New(t))
	}
	ctx := ctxT(t, c.Wait)
	key := Key(t)
	var last uint64
	for i := 0; i < 20; i++ {
		l := mustLock(t, ctx, ms[i%len(ms)], key)
		if i > 0 && l.Token() <= last {
			t.Errorf("lock %d: Token() = %d; want > %d", i, l.Token(), last)
		}
		last = l.Token()
		mustUnlock(t, l)
	}
}

func testIndependent(t *testing.T, c Config) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	a := mustLock(t, ctx, m, Key(t))
	defer a.Unlock()
	b, err := m.TryLock(ctx, Key(t))
	if err != nil {
		t.Fatalf("TryLock(other key) = %v; want nil", err)
	}
	mustUnlock(t, b)
}

func testCtxDeadline(t *testing.T, c Config) {
	m := c.New(t)
	key := Key(t)
	l := mustLock(t, ctxT(t, c.Wait), m, key)
	defer l.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	l2, err := m.Lock(ctx, key)
	if err == nil {
		l2.Unlock()
		t.Fatal("Lock(held) with deadline = nil error; want DeadlineExceeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Lock(held) = %v; want errors.Is DeadlineExceeded", err)
	}
	if d := time.Since(start); d > c.Wait {
		t.Errorf("Lock returned %v after its deadline", d)
	}
}

func testCtxAlreadyDone(t *testing.T, c Config) {
	m := c.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	key := Key(t)
	if l, err := m.Lock(ctx, key); !errors.Is(err, context.Canceled) {
		if err == nil {
			l.Unlock()
		}
		t.Errorf("Lock(cancelled ctx) = %v; want Canceled", err)
	}
	// Nothing was left held: the key is free.
	l, err := m.TryLock(ctxT(t, c.Wait), key)
	if err != nil {
		t.Fatalf("TryLock after cancelled Lock = %v; want nil", err)
	}
	mustUnlock(t, l)
}

// testCancelRace cancels waiters at the moment the holder unlocks. Whatever
// order the cancellation and the handoff take, the lock must not be lost:
// a final Lock succeeds well within the wait bound.
func testCancelRace(t *testing.T, c Config) {
	m := c.New(t)
	key := Key(t)
	for round := 0; round < 20; round++ {
		l := mustLock(t, ctxT(t, c.Wait), m, key)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		results := make(chan error, 4)
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				l, err := m.Lock(ctx, key)
				if err == nil {
					err = l.Unlock()
				} else if !errors.Is(err, context.Canceled) {
					err = fmt.Errorf("waiter: Lock = %w; want nil or Canceled", err)
				} else {
					err = nil
				}
				results <- err
			}()
		}
		go cancel()
		l.Unlock()
		wg.Wait()
		close(results)
		for err := range results {
			if err != nil {
				t.Fatal(err)
			}
		}
		final, err := m.Lock(ctxT(t, c.Wait), key)
		if err != nil {
			t.Fatalf("round %d: Lock after cancelled waiters = %v; want nil (handoff lost)", round, err)
		}
		mustUnlock(t, final)
	}
}

func testLocker(t *testing.T, c Config) {
	m := c.New(t)
	key := Key(t)
	m.Locker(key).Lock()
	// Another adapter for the same key sees the same lock.
	if l, err := m.TryLock(ctxT(t, c.Wait), key); !errors.Is(err, mutex.ErrLocked) {
		if err == nil {
			l.Unlock()
		}
		t.Fatalf("TryLock while Locker holds = %v; want ErrLocked", err)
	}
	acquired := make(chan struct{})
	go func() {
		m.Locker(key).Lock()
		close(acquired)
	}()
	select {
	case <-acquired:
		t.Fatal("second Locker().Lock() returned while the first held the key")
	case <-time.After(20 * time.Millisecond):
		// Not a synchronisation: a bounded check that it keeps blocking.
	}
	m.Locker(key).Unlock() // a different adapter value releases
	select {
	case <-acquired:
	case <-time.After(c.Wait):
		t.Fatal("second Locker().Lock() did not acquire after Unlock")
	}
	m.Locker(key).Unlock()

	defer func() {
		if r := recover(); r == nil {
			t.Error("Locker().Unlock() of an unlocked key did not panic")
		}
	}()
	m.Locker(key).Unlock()
}

func testWithLease(t *testing.T, c Config) {
	m := c.New(t)
	l := mustLock(t, ctxT(t, c.Wait), m, Key(t))
	ctx, cancel := mutex.WithLease(context.Background(), l)
	defer cancel()
	if ctx.Err() != nil {
		t.Fatalf("WithLease ctx.Err() = %v while held; want nil", ctx.Err())
	}
	mustUnlock(t, l)
	select {
	case <-ctx.Done():
	case <-time.After(c.Wait):
		t.Fatal("WithLease ctx not done after Unlock")
	}
	if cause := context.Cause(ctx); !errors.Is(cause, context.Canceled) {
		t.Errorf("Cause after Unlock = %v; want Canceled", cause)
	}
}
