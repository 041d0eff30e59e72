package keylock

import (
	"context"
	"errors"
	"hash/maphash"
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/keyedmutex/keyedmutex/mutex"
)

// wait bounds how long a test waits for something that should happen
// promptly. It is a hang guard, not a timing assertion.
const wait = 10 * time.Second

// waitWaiters polls until key has n waiters queued.
func waitWaiters[K comparable, V any](t *testing.T, tb *Table[K, V], key K, n int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		_, got := tb.Len(key)
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiters(%v) = %d after %v; want %d", key, got, wait, n)
		}
		runtime.Gosched()
	}
}

func checkEmpty[K comparable, V any](t *testing.T, tb *Table[K, V]) {
	t.Helper()
	var zero K
	if n, _ := tb.Len(zero); n != 0 {
		t.Errorf("%d entries left after every holding ended; want 0", n)
	}
}

func mustLock[K comparable, V any](t *testing.T, tb *Table[K, V], key K) *Entry[K, V] {
	t.Helper()
	e, _, err := tb.Lock(context.Background(), key, 1, nil)
	if err != nil {
		t.Fatalf("Lock(%v) = %v; want nil", key, err)
	}
	return e
}

// TestGrantRacingCancel forces the race that await settles: the lock is
// handed to a waiter after it saw its ctx end. Lock must return the entry
// with the ctx error (the caller holds it and gives it back), and after
// the give-back the next waiter gets the lock: no handoff is lost.
func TestGrantRacingCancel(t *testing.T) {
	var tb Table[string, int]
	ctx := context.Background()
	holder := mustLock(t, &tb, "k")
	holder.Value = 42
	cctx, cancel := context.WithCancel(ctx)
	testHookCancelled = func() { holder.Unlock() }
	defer func() { testHookCancelled = nil }()

	type result struct {
		e   *Entry[string, int]
		val int
		err error
	}
	first := make(chan result, 1)
	go func() {
		e, _, err := tb.Lock(cctx, "k", 1, nil)
		r := result{e: e, err: err}
		if e != nil {
			r.val = e.Value
			e.Unlock() // the give-back
		}
		first <- r
	}()
	waitWaiters(t, &tb, "k", 1)
	second := make(chan error, 1)
	go func() {
		e, _, err := tb.Lock(ctx, "k", 1, nil)
		if err == nil {
			e.Unlock()
		}
		second <- err
	}()
	waitWaiters(t, &tb, "k", 2)
	cancel()
	r := <-first
	if !errors.Is(r.err, context.Canceled) || r.e == nil {
		t.Errorf("cancelled waiter granted in the same instant: Lock = %v, %v; want the entry and Canceled", r.e, r.err)
	}
	if r.val != 42 {
		t.Errorf("the racing grant carried Value %d; want 42 (the holder's)", r.val)
	}
	testHookCancelled = nil
	select {
	case err := <-second:
		if err != nil {
			t.Errorf("second waiter: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("second waiter never got the lock: the handoff was lost")
	}
	checkEmpty(t, &tb)
}

// TestCancelWaiting: a waiter whose ctx ends while queued leaves the
// queue, returns the ctx error and its cause, and takes nothing.
func TestCancelWaiting(t *testing.T) {
	var tb Table[string, struct{}]
	holder := mustLock(t, &tb, "k")
	cause := errors.New("the caller gave up")
	ctx, cancel := context.WithCancelCause(context.Background())
	errc := make(chan error, 1)
	go func() {
		e, _, err := tb.Lock(ctx, "k", 1, nil)
		if e != nil {
			e.Unlock()
		}
		errc <- err
	}()
	waitWaiters(t, &tb, "k", 1)
	cancel(cause)
	err := <-errc
	if !errors.Is(err, context.Canceled) || !errors.Is(err, cause) {
		t.Errorf("Lock = %v; want Canceled and its cause", err)
	}
	if _, w := tb.Len("k"); w != 0 {
		t.Errorf("%d waiters left after the cancel; want 0", w)
	}
	holder.Unlock()
	checkEmpty(t, &tb)
}

// TestHandOff passes the entry, with its Value, only when a waiter exists.
func TestHandOff(t *testing.T) {
	var tb Table[string, []string]
	e := mustLock(t, &tb, "k")
	if e.HandOff() {
		t.Fatal("HandOff() with no waiter = true; want false (still held)")
	}
	if _, _, err := tb.TryLock(context.Background(), "k", 1); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryLock after a refused HandOff = %v; want ErrLocked", err)
	}
	e.Value = append(e.Value, "cohort")
	got := make(chan *Entry[string, []string], 1)
	go func() {
		e2, _, err := tb.Lock(context.Background(), "k", 1, nil)
		if err != nil {
			t.Error(err)
		}
		got <- e2
	}()
	waitWaiters(t, &tb, "k", 1)
	if !e.HandOff() {
		t.Fatal("HandOff() with a waiter = false; want true")
	}
	e2 := <-got
	if e2 == nil {
		t.FailNow()
	}
	if len(e2.Value) != 1 || e2.Value[0] != "cohort" {
		t.Errorf("handed-off Value = %q; want [cohort]", e2.Value)
	}
	e2.Unlock()
	checkEmpty(t, &tb)
}

// sameSlots returns n keys, other than not, of the shard and slots of
// key not.
func sameSlots(not string, n int) []string {
	h := maphash.Comparable(seed, not)
	var keys []string
	for i := 0; len(keys) < n; i++ {
		k := "other-" + strconv.Itoa(i)
		if o := maphash.Comparable(seed, k); o&(numShards-1) == h&(numShards-1) && probe(o, 0) == probe(h, 0) {
			keys = append(keys, k)
		}
	}
	return keys
}

// TestEviction: an idle entry keeps its slot (and Value) until another
// key of its shard needs the slot; then the key's next entry starts with
// a zero Value and still issues larger tokens.
func TestEviction(t *testing.T) {
	var tb Table[string, int]
	ctx := context.Background()
	e, tok1, err := tb.Lock(ctx, "k", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.Value = 7
	e.Unlock()
	if n := tb.Idle(); n != 1 {
		t.Fatalf("Idle() = %d after one Lock+Unlock; want 1", n)
	}
	e, tok2, err := tb.Lock(ctx, "k", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.Value != 7 || tok2 <= tok1 {
		t.Errorf("idle entry taken again: Value %d, token %d; want 7 and > %d", e.Value, tok2, tok1)
	}
	e.Unlock()
	// numProbes keys of its slots held at once evict k.
	var held []*Entry[string, int]
	for _, k := range sameSlots("k", numProbes) {
		held = append(held, mustLock(t, &tb, k))
	}
	if n := tb.Idle(); n != 0 {
		t.Errorf("Idle() = %d with every slot held; want 0 (k evicted)", n)
	}
	e, tok3, err := tb.Lock(ctx, "k", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.Value != 0 || tok3 <= tok2 {
		t.Errorf("k after eviction: Value %d, token %d; want 0 and > %d", e.Value, tok3, tok2)
	}
	if e.state.Load()&stMapped == 0 {
		t.Error("k locked with every slot held is not in the map")
	}
	e.Unlock()
	for _, h := range held {
		h.Unlock()
	}
	checkEmpty(t, &tb)
	for i := range tb.shards {
		if sh := &tb.shards[i]; len(sh.m) != 0 {
			t.Errorf("shard %d map keeps %d entries; want 0", i, len(sh.m))
		}
	}
}

// TestManyKeysBoundedCache: keys locked one after another leave at most
// the slots' worth of idle entries.
func TestManyKeysBoundedCache(t *testing.T) {
	var tb Table[int, struct{}]
	ctx := context.Background()
	for i := range 100_000 {
		e, _, err := tb.Lock(ctx, i, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		e.Unlock()
	}
	checkEmpty(t, &tb)
	if n := tb.Idle(); n > numShards*numSlots {
		t.Errorf("Idle() = %d; want at most %d", n, numShards*numSlots)
	}
}

// TestLockKey: UnlockKey ends only a holding taken by LockKey, and the
// kind of holding passes with a handoff.
func TestLockKey(t *testing.T) {
	var tb Table[string, struct{}]
	ctx := context.Background()
	if err := tb.UnlockKey("k", nil); !errors.Is(err, ErrNotLockedByKey) {
		t.Errorf("UnlockKey of a free key = %v; want ErrNotLockedByKey", err)
	}
	e := mustLock(t, &tb, "k")
	if err := tb.UnlockKey("k", e); !errors.Is(err, ErrNotLockedByKey) {
		t.Errorf("UnlockKey of a key held by Lock = %v; want ErrNotLockedByKey", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := tb.LockKey(ctx, "k", nil)
		done <- err
	}()
	waitWaiters(t, &tb, "k", 1)
	e.Unlock() // hands off to LockKey
	if err := <-done; err != nil {
		t.Fatalf("LockKey = %v", err)
	}
	got := make(chan *Entry[string, struct{}], 1)
	go func() {
		e, _, err := tb.Lock(ctx, "k", 1, nil)
		if err != nil {
			t.Error(err)
		}
		got <- e
	}()
	waitWaiters(t, &tb, "k", 1)
	if err := tb.UnlockKey("k", e); err != nil { // hands off to Lock
		t.Fatalf("UnlockKey = %v", err)
	}
	e = <-got
	if err := tb.UnlockKey("k", e); !errors.Is(err, ErrNotLockedByKey) {
		t.Errorf("UnlockKey after a handoff to Lock = %v; want ErrNotLockedByKey", err)
	}
	e.Unlock()
	// The fast paths, with and without a hint; a stale hint (an evicted
	// entry) falls back to the lookup.
	hint, err := tb.LockKey(ctx, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := tb.UnlockKey("k", nil); err != nil {
		t.Errorf("UnlockKey without hint = %v", err)
	}
	if e, err := tb.LockKey(ctx, "k", hint); err != nil || e != hint {
		t.Fatalf("LockKey(hint) = %p, %v; want the hint, nil", e, err)
	}
	if err := tb.UnlockKey("k", hint); err != nil {
		t.Errorf("UnlockKey(hint) = %v", err)
	}
	if err := tb.UnlockKey("k", hint); !errors.Is(err, ErrNotLockedByKey) {
		t.Errorf("second UnlockKey = %v; want ErrNotLockedByKey", err)
	}
	var held []*Entry[string, struct{}]
	for _, k := range sameSlots("k", numProbes) {
		held = append(held, mustLock(t, &tb, k))
	}
	if e, err := tb.LockKey(ctx, "k", hint); err != nil || e == hint {
		t.Fatalf("LockKey(evicted hint) = %p, %v; want a new entry, nil", e, err)
	}
	if err := tb.UnlockKey("k", hint); err != nil {
		t.Errorf("UnlockKey(evicted hint) = %v", err)
	}
	for _, h := range held {
		h.Unlock()
	}
	checkEmpty(t, &tb)
}

// TestNaN: a key not equal to itself is refused, and leaves no entry.
func TestNaN(t *testing.T) {
	var tb Table[float64, struct{}]
	for _, try := range []bool{false, true} {
		var err error
		if try {
			_, _, err = tb.TryLock(context.Background(), math.NaN(), 1)
		} else {
			_, _, err = tb.Lock(context.Background(), math.NaN(), 1, nil)
		}
		if !errors.Is(err, ErrNaN) {
			t.Errorf("lock(NaN, try=%v) = %v; want ErrNaN", try, err)
		}
	}
	var ti Table[any, struct{}]
	if _, _, err := ti.Lock(context.Background(), any(math.NaN()), 1, nil); !errors.Is(err, ErrNaN) {
		t.Errorf("Lock(any(NaN)) = %v; want ErrNaN", err)
	}
	checkEmpty(t, &tb)
	checkEmpty(t, &ti)
}

// TestClose fails every waiter and every later Lock with the given error;
// holders keep their lock until they Unlock.
func TestClose(t *testing.T) {
	var tb Table[string, struct{}]
	holder := mustLock(t, &tb, "k")
	closed := errors.New("closed for the test")
	errc := make(chan error, 3)
	for range 3 {
		go func() {
			e, _, err := tb.Lock(context.Background(), "k", 1, nil)
			if e != nil {
				e.Unlock()
			}
			errc <- err
		}()
	}
	waitWaiters(t, &tb, "k", 3)
	tb.Close(closed)
	for range 3 {
		if err := <-errc; !errors.Is(err, closed) {
			t.Errorf("waiter after Close: %v; want the Close error", err)
		}
	}
	if _, _, err := tb.Lock(context.Background(), "other", 1, nil); !errors.Is(err, closed) {
		t.Errorf("Lock after Close = %v; want the Close error", err)
	}
	if n, _ := tb.Len("k"); n != 1 {
		t.Errorf("%d entries after Close with a holder; want 1 (the holder keeps it)", n)
	}
	holder.Unlock()
	checkEmpty(t, &tb)
}

// TestBurstDropsMaps holds many keys at once, so the shard maps grow, then
// releases them: the maps must go too, since Go maps never shrink.
func TestBurstDropsMaps(t *testing.T) {
	var tb Table[string, struct{}]
	ctx := context.Background()
	var held []*Entry[string, struct{}]
	for i := range 100_000 {
		e, _, err := tb.TryLock(ctx, "key-"+strconv.Itoa(i), 1)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, e)
	}
	for _, e := range held {
		e.Unlock()
	}
	checkEmpty(t, &tb)
	for i := range tb.shards {
		if sh := &tb.shards[i]; sh.m != nil {
			t.Errorf("shard %d keeps its emptied map of peak %d entries; want it dropped", i, sh.peak)
		}
	}
}

func TestShardSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the layout is tuned for 64-bit platforms")
	}
	if got := unsafe.Sizeof(shard[string, struct{}]{}); got != cacheLine {
		t.Errorf("shard size = %d; want %d (one cache line)", got, cacheLine)
	}
}

// TestStress mixes every way in and out of the table on a few keys that
// share their slots (so entries are evicted, and some overflow into the
// map, all the time): Lock with and without a ctx that ends, TryLock,
// LockKey and UnlockKey. One holder at a time per key, and tokens that
// increase from holder to holder.
func TestStress(t *testing.T) {
	var tb Table[string, struct{}]
	keys := append(sameSlots("k", numProbes+2), "k")
	type state struct {
		inside atomic.Int32
		last   uint64 // the last token issued, guarded by the key's lock
	}
	states := make([]state, len(keys))
	const goroutines, iters = 8, 3000
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range iters {
				k := (g*7 + i*13) % len(keys)
				st := &states[k]
				var (
					e     *Entry[string, struct{}]
					tok   uint64
					err   error
					byKey bool
				)
				switch i % 4 {
				case 0:
					e, tok, err = tb.Lock(context.Background(), keys[k], 1, nil)
				case 1:
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%50)*time.Microsecond)
					e, tok, err = tb.Lock(ctx, keys[k], 1, nil)
					cancel()
					if err != nil && e != nil {
						e.Unlock() // the give-back
						continue
					}
				case 2:
					e, tok, err = tb.TryLock(context.Background(), keys[k], 1)
				case 3:
					e, err = tb.LockKey(context.Background(), keys[k], nil)
					byKey = true
				}
				if err != nil {
					continue
				}
				if n := st.inside.Add(1); n != 1 {
					t.Errorf("%d holders of %q at once", n, keys[k])
				}
				if !byKey {
					if tok <= st.last {
						t.Errorf("token %d for %q after %d; want larger", tok, keys[k], st.last)
					}
					st.last = tok
				}
				st.inside.Add(-1)
				if byKey {
					if err := tb.UnlockKey(keys[k], nil); err != nil {
						t.Errorf("UnlockKey = %v", err)
					}
				} else {
					e.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	checkEmpty(t, &tb)
}
