package keyedtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
)

// RunMulti runs the conformance suite of locking several keys at once
// (mutex.LockAll, TryLockAll, DoAll) as subtests of t. c.Instances
// Keyed values stand for as many processes; c.Goroutines goroutines per
// instance lock random overlapping sets.
func RunMulti(t *testing.T, c Config) {
	c.defaults()
	t.Run("NoDeadlock", func(t *testing.T) { testMultiNoDeadlock(t, c) })
	t.Run("LeaseSet", func(t *testing.T) { testMultiLeaseSet(t, c) })
	t.Run("Duplicates", func(t *testing.T) { testMultiDuplicates(t, c) })
	t.Run("EmptySet", func(t *testing.T) { testMultiEmpty(t, c) })
	t.Run("InvalidKeyTakesNothing", func(t *testing.T) { testMultiInvalid(t, c) })
	t.Run("TryLockAllAllOrNothing", func(t *testing.T) { testMultiTry(t, c) })
	t.Run("CtxEndAtEveryStep", func(t *testing.T) { testMultiCtxEveryStep(t, c) })
	t.Run("WaiterKeepsItsPlace", func(t *testing.T) { testMultiFIFO(t, c) })
	t.Run("DoAll", func(t *testing.T) { testMultiDoAll(t, c) })
}

// deadlockWait bounds the NoDeadlock test: a run that does not end by
// then is a deadlock (or a livelock), reported with every goroutine's
// stack.
const deadlockWait = 2 * time.Minute

// testMultiNoDeadlock: goroutines of several instances lock random
// overlapping sets of a few keys, given in random order with
// duplicates, mixed with single-key Locks, and check with a flag per key
// that no two hold a key at once. Every goroutine must finish before a
// deadline; a deadlock fails with a dump of every goroutine.
func testMultiNoDeadlock(t *testing.T, c Config) {
	const pool, iterations = 6, 25
	keys := make([]string, pool)
	for i := range keys {
		keys[i] = Key(t)
	}
	ms := make([]mutex.Keyed[string], c.Instances)
	for i := range ms {
		ms[i] = c.New(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadlockWait+30*time.Second)
	defer cancel()
	var (
		held   [pool]atomic.Int32
		sets   atomic.Int64
		failed = make(chan error, c.Instances*c.Goroutines)
		wg     sync.WaitGroup
	)
	enter := func(idx []int) error {
		for _, i := range idx {
			if !held[i].CompareAndSwap(0, 1) {
				return fmt.Errorf("key %s held twice at once", keys[i])
			}
		}
		return nil
	}
	leave := func(idx []int) {
		for _, i := range idx {
			held[i].Store(0)
		}
	}
	for inst := range ms {
		m := ms[inst]
		for g := 0; g < c.Goroutines; g++ {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(inst), uint64(g)))
				for it := 0; it < iterations; it++ {
					if it%5 == 4 { // a single-key Lock among the sets
						i := r.IntN(pool)
						l, err := m.Lock(ctx, keys[i])
						if err != nil {
							failed <- err
							return
						}
						if err := enter([]int{i}); err != nil {
							failed <- err
							return
						}
						leave([]int{i})
						if err := l.Unlock(); err != nil {
							failed <- err
							return
						}
						continue
					}
					n := 2 + r.IntN(3)
					idx := r.Perm(pool)[:n]
					set := make([]string, 0, n+1)
					for _, i := range idx {
						set = append(set, keys[i])
					}
					set = append(set, set[r.IntN(n)]) // a duplicate
					r.Shuffle(len(set), func(a, b int) { set[a], set[b] = set[b], set[a] })
					s, err := mutex.LockAll(ctx, m, set...)
					if err != nil {
						failed <- err
						return
					}
					if got := len(s.Keys()); got != n {
						failed <- fmt.Errorf("LockAll of %d distinct keys (%v) holds %d", n, set, got)
						return
					}
					if err := enter(idx); err != nil {
						failed <- err
						return
					}
					runtime.Gosched()
					leave(idx)
					if err := s.Unlock(); err != nil {
						failed <- err
						return
					}
					sets.Add(1)
				}
			})
		}
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	timer := time.NewTimer(deadlockWait)
	defer timer.Stop()
	select {
	case <-finished:
	case <-timer.C:
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		t.Fatalf("deadlock: %d sets locked, the rest not done after %v; goroutines:\n%s", sets.Load(), deadlockWait, buf)
	}
	close(failed)
	for err := range failed {
		t.Error(err)
	}
	if want := int64(c.Instances * c.Goroutines * (iterations - iterations/5)); sets.Load() != want {
		t.Errorf("%d sets locked; want %d", sets.Load(), want)
	}
}

// testMultiLeaseSet: the set's Keys, per-key leases and tokens, Done,
// Err and a second Unlock; a later set gets greater tokens.
func testMultiLeaseSet(t *testing.T, c Config) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	a, b, k := Key(t), Key(t), Key(t)
	s, err := mutex.LockAll(ctx, m, a, b, k)
	if err != nil {
		t.Fatal(err)
	}
	got := s.Keys()
	if len(got) != 3 {
		t.Fatalf("Keys() = %v; want 3 keys", got)
	}
	if want := mustOrder(t, m, k, b, a); !slices.Equal(got, want) {
		t.Errorf("Keys() = %v; not the lock order %v", got, want)
	}
	toks := map[string]uint64{}
	for _, key := range []string{a, b, k} {
		l := s.Lease(key)
		if l == nil {
			t.Fatalf("Lease(%q) = nil", key)
		}
		tok, ok := s.Token(key)
		if !ok || tok != l.Token() {
			t.Errorf("Token(%q) = %d, %v; want the lease's %d", key, tok, ok, l.Token())
		}
		toks[key] = tok
		if _, err := m.TryLock(ctx, key); !errors.Is(err, mutex.ErrLocked) {
			t.Errorf("TryLock(%q) while the set holds it = %v; want ErrLocked", key, err)
		}
	}
	if s.Lease("not-in-the-set") != nil {
		t.Error("Lease of a key not in the set is not nil")
	}
	if _, ok := s.Token("not-in-the-set"); ok {
		t.Error("Token of a key not in the set reports ok")
	}
	select {
	case <-s.Done():
		t.Fatal("Done closed while held")
	default:
	}
	if err := s.Err(); err != nil {
		t.Fatalf("Err() while held = %v", err)
	}
	if err := s.Unlock(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	default:
		t.Fatal("Done not closed after Unlock")
	}
	if err := s.Err(); !errors.Is(err, mutex.ErrUnlocked) {
		t.Errorf("Err() after Unlock = %v; want ErrUnlocked", err)
	}
	if err := s.Unlock(); !errors.Is(err, mutex.ErrUnlocked) {
		t.Errorf("second Unlock = %v; want ErrUnlocked", err)
	}
	s2, err := mutex.LockAll(ctx, m, k, a, b)
	if err != nil {
		t.Fatal(err)
	}
	for key, old := range toks {
		if tok, _ := s2.Token(key); tok <= old {
			t.Errorf("token of %q: %d after %d; want greater", key, tok, old)
		}
	}
	if err := s2.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// mustOrder is the lock order of keys on m, as LockAll computes it.
func mustOrder(t *testing.T, m mutex.Keyed[string], keys ...string) []string {
	t.Helper()
	if o, ok := m.(mutex.Orderer[string]); ok {
		out, err := o.LockOrder(keys)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	out, err := mutex.SortKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func testMultiDuplicates(t *testing.T, c Config) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	a, b := Key(t), Key(t)
	s, err := mutex.LockAll(ctx, m, a, a, b, a, b)
	if err != nil {
		t.Fatalf("LockAll with duplicates = %v; want them collapsed", err)
	}
	if got := s.Keys(); len(got) != 2 {
		t.Errorf("Keys() = %v; want %q and %q once each", got, a, b)
	}
	if err := s.Unlock(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{a, b} {
		mustUnlock(t, waitFree(t, c, m, k))
	}
	s, err = mutex.TryLockAll(ctx, m, b, b)
	if err != nil {
		t.Fatalf("TryLockAll(b, b) = %v; want one key", err)
	}
	if err := s.Unlock(); err != nil {
		t.Fatal(err)
	}
}

func testMultiEmpty(t *testing.T, c Config) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	if _, err := mutex.LockAll(ctx, m); !errors.Is(err, mutex.ErrNoKeys) {
		t.Errorf("LockAll() = %v; want ErrNoKeys", err)
	}
	if _, err := mutex.TryLockAll(ctx, m); !errors.Is(err, mutex.ErrNoKeys) {
		t.Errorf("TryLockAll() = %v; want ErrNoKeys", err)
	}
	ran := false
	if err := mutex.DoAll(ctx, m, nil, func(context.Context) error { ran = true; return nil }); !errors.Is(err, mutex.ErrNoKeys) {
		t.Errorf("DoAll(nil keys) = %v; want ErrNoKeys", err)
	}
	if ran {
		t.Error("DoAll ran f with no keys")
	}
	if _, err := mutex.LockAll(nil, m, Key(t)); err == nil { //nolint:staticcheck // a nil ctx on purpose
		t.Error("LockAll(nil ctx) succeeded")
	}
}

// testMultiInvalid: a set with the empty key is refused before any key
// is taken.
func testMultiInvalid(t *testing.T, c Config) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	a, z := Key(t), Key(t)
	for _, try := range []bool{false, true} {
		var err error
		if try {
			_, err = mutex.TryLockAll(ctx, m, a, "", z)
		} else {
			_, err = mutex.LockAll(ctx, m, a, "", z)
		}
		if !errors.Is(err, mutex.ErrInvalidKey) {
			t.Fatalf("LockAll(a, \"\", z) (try=%v) = %v; want ErrInvalidKey", try, err)
		}
		for _, k := range []string{a, z} {
			l, err := m.TryLock(ctx, k)
			if err != nil {
				t.Fatalf("TryLock(%q) after a refused set = %v; the set took it", k, err)
			}
			mustUnlock(t, l)
		}
	}
}

// testMultiTry: TryLockAll of a set with one held key takes nothing and
// names the held key.
func testMultiTry(t *testing.T, c Config) {
	m := c.New(t)
	other := m
	if c.Instances > 1 {
		other = c.New(t)
	}
	ctx := ctxT(t, c.Wait)
	keys := []string{Key(t), Key(t), Key(t)}
	order := mustOrder(t, m, keys...)
	for i, busy := range order {
		l := mustLock(t, ctx, other, busy)
		_, err := mutex.TryLockAll(ctx, m, keys...)
		if !errors.Is(err, mutex.ErrLocked) {
			t.Fatalf("TryLockAll with %q (step %d) held = %v; want ErrLocked", busy, i, err)
		}
		for _, k := range order {
			if k == busy {
				continue
			}
			mustUnlock(t, waitFree(t, c, m, k))
		}
		mustUnlock(t, l)
	}
	s, err := mutex.TryLockAll(ctx, m, keys...)
	if err != nil {
		t.Fatalf("TryLockAll of free keys = %v", err)
	}
	if err := s.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// waitFree polls TryLock of key until it succeeds (a release may finish
// in the background), failing after c.Wait.
func waitFree(t *testing.T, c Config, m mutex.Keyed[string], key string) mutex.Lease {
	t.Helper()
	deadline := time.Now().Add(c.Wait)
	for {
		l, err := m.TryLock(context.Background(), key)
		if err == nil {
			return l
		}
		if !errors.Is(err, mutex.ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("key %q still not free after %v: %v", key, c.Wait, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// testMultiCtxEveryStep: for each position i of a set in lock order, a
// holder keeps key i; LockAll takes the keys before it and waits; its
// ctx then ends. LockAll must return ctx's error, every key it took must
// be free again, and the held key must go to the next waiter at once
// when its holder unlocks (no queue entry of the cancelled call left in
// the way).
func testMultiCtxEveryStep(t *testing.T, c Config) {
	m := c.New(t)
	other := m
	if c.Instances > 1 {
		other = c.New(t)
	}
	keys := []string{Key(t), Key(t), Key(t), Key(t)}
	order := mustOrder(t, m, keys...)
	bg := ctxT(t, 4*c.Wait)
	for i, busy := range order {
		hold := mustLock(t, bg, other, busy)
		ctx, cancel := context.WithCancel(bg)
		res := make(chan error, 1)
		go func() {
			s, err := mutex.LockAll(ctx, m, keys...)
			if err == nil {
				err = errors.Join(errors.New("LockAll returned a set while a key was held"), s.Unlock())
			}
			res <- err
		}()
		// Wait until LockAll holds the keys before busy (it then waits
		// for busy).
		for _, k := range order[:i] {
			waitHeld(t, c, m, k)
		}
		cancel()
		if err := <-res; !errors.Is(err, context.Canceled) {
			t.Fatalf("step %d: LockAll = %v; want context.Canceled", i, err)
		}
		for _, k := range order {
			if k != busy {
				mustUnlock(t, waitFree(t, c, m, k))
			}
		}
		// The held key goes to the next Lock once its holder unlocks.
		next := make(chan error, 1)
		go func() {
			l, err := m.Lock(bg, busy)
			if err == nil {
				err = l.Unlock()
			}
			next <- err
		}()
		mustUnlock(t, hold)
		select {
		case err := <-next:
			if err != nil {
				t.Fatalf("step %d: Lock(%q) after its holder unlocked: %v", i, busy, err)
			}
		case <-time.After(c.Wait):
			t.Fatalf("step %d: Lock(%q) not served %v after its holder unlocked: the cancelled LockAll left something behind", i, busy, c.Wait)
		}
	}
}

// waitHeld polls TryLock of key until it fails with ErrLocked.
func waitHeld(t *testing.T, c Config, m mutex.Keyed[string], key string) {
	t.Helper()
	deadline := time.Now().Add(c.Wait)
	for {
		l, err := m.TryLock(context.Background(), key)
		if errors.Is(err, mutex.ErrLocked) {
			return
		}
		if err != nil {
			t.Fatalf("TryLock(%q): %v", key, err)
		}
		mustUnlock(t, l)
		if time.Now().After(deadline) {
			t.Fatalf("key %q not taken by LockAll after %v", key, c.Wait)
		}
		time.Sleep(time.Millisecond)
	}
}

// testMultiFIFO: a LockAll that waits for a key holds the keys before
// it all the while (it never gives them back to retry): a single-key
// Lock of such a key, made while the set waits, is served after the set.
func testMultiFIFO(t *testing.T, c Config) {
	m := c.New(t)
	ctx := ctxT(t, 2*c.Wait)
	keys := []string{Key(t), Key(t)}
	order := mustOrder(t, m, keys...)
	first, second := order[0], order[1]
	hold := mustLock(t, ctx, m, second)
	var (
		mu  sync.Mutex
		seq []string
	)
	served := func(who string) {
		mu.Lock()
		seq = append(seq, who)
		mu.Unlock()
	}
	setDone := make(chan error, 1)
	go func() {
		s, err := mutex.LockAll(ctx, m, keys...)
		if err == nil {
			served("set")
			err = s.Unlock()
		}
		setDone <- err
	}()
	waitHeld(t, c, m, first) // the set holds first and waits for second
	singleDone := make(chan error, 1)
	go func() {
		l, err := m.Lock(ctx, first)
		if err == nil {
			served("single")
			err = l.Unlock()
		}
		singleDone <- err
	}()
	mustUnlock(t, hold)
	for _, ch := range []chan error{setDone, singleDone} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(seq, []string{"set", "single"}) {
		t.Errorf("order served = %v; want the set (which held %q while it waited) before the later Lock of it", seq, first)
	}
}

func testMultiDoAll(t *testing.T, c Config) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	a, b := Key(t), Key(t)
	boom := errors.New("boom")
	err := mutex.DoAll(ctx, m, []string{b, a}, func(ctx context.Context) error {
		for _, k := range []string{a, b} {
			if _, err := m.TryLock(ctx, k); !errors.Is(err, mutex.ErrLocked) {
				return fmt.Errorf("TryLock(%q) inside DoAll = %v; want ErrLocked", k, err)
			}
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("DoAll = %v; want f's error", err)
	}
	for _, k := range []string{a, b} {
		mustUnlock(t, waitFree(t, c, m, k))
	}
	var toks []uint64
	err = mutex.DoAllLeases(ctx, m, []string{a, b}, func(_ context.Context, s *mutex.LeaseSet[string]) error {
		for _, k := range s.Keys() {
			tok, _ := s.Token(k)
			toks = append(toks, tok)
		}
		return nil
	})
	if err != nil || len(toks) != 2 {
		t.Fatalf("DoAllLeases = %v, tokens %v; want nil and 2 tokens", err, toks)
	}
}
