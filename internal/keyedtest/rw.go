package keyedtest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
)

// RWConfig describes the [mutex.RWKeyed] under test. Its fields mean what
// those of [Config] mean, with the same defaults.
type RWConfig struct {
	// New returns a fresh RWKeyed. Several calls in one test stand for
	// several processes: they must share the backend but nothing else.
	// Cleanup belongs in t.Cleanup. If the value has a Close() error
	// method, the Close test runs on it.
	New func(t *testing.T) mutex.RWKeyed[string]
	// Instances is how many RWKeyed values the exclusion and starvation
	// tests create. The default is 1.
	Instances int
	// Goroutines and Iterations size the exclusion test: each goroutine
	// takes each of Keys keys Iterations times, one time in four as a
	// writer. The defaults are 8, 50 and 4.
	Goroutines, Iterations, Keys int
	// Wait bounds how long a test waits for something that should happen
	// promptly. The default is 10s.
	Wait time.Duration
	// Queued, if set, returns how many Lock and RLock calls of m wait for
	// key now (queued, not holding). The tests that need an order of
	// arrival among waiters use it to know that a waiter has queued
	// before the next one asks; without it they check less.
	Queued func(m mutex.RWKeyed[string], key string) int
	// ReadersPastWriter bounds how many readers that ask on another
	// instance after a writer has queued on the first may still be
	// admitted before that writer: 0 for a strict FIFO across instances.
	// A negative value leaves them unbounded (a hybrid instance shares
	// its remote read lease among its own readers until its handoff
	// bound, and cannot see a writer of another instance waiting); the
	// writer must then still get in while they keep coming. Readers that
	// ask on the writer's own instance after it queued are never
	// admitted before it.
	ReadersPastWriter int
}

func (c *RWConfig) defaults() {
	d := Config{Instances: c.Instances, Goroutines: c.Goroutines, Iterations: c.Iterations, Keys: c.Keys, Wait: c.Wait}
	d.defaults()
	c.Instances, c.Goroutines, c.Iterations, c.Keys, c.Wait = d.Instances, d.Goroutines, d.Iterations, d.Keys, d.Wait
}

// RunRW runs the read-write conformance suite as subtests of t. The
// implementation also passes [Run] (its write lock is a [mutex.Keyed]):
// run both.
func RunRW(t *testing.T, c RWConfig) {
	c.defaults()
	t.Run("ReadersOverlap", func(t *testing.T) { testReadersOverlap(t, c) })
	t.Run("WriterExcludes", func(t *testing.T) { testRWExclusion(t, c) })
	t.Run("TryLockAndTryRLock", func(t *testing.T) { testRWTry(t, c) })
	t.Run("WaitingWriterBlocksLaterReaders", func(t *testing.T) { testWriterBlocksReaders(t, c) })
	t.Run("ReadersAtHeadAdmittedTogether", func(t *testing.T) { testReaderRun(t, c) })
	t.Run("WriterNotStarved", func(t *testing.T) { testWriterNotStarved(t, c) })
	t.Run("CancelledWriterLetsReadersIn", func(t *testing.T) { testCancelWriter(t, c) })
	t.Run("CancelledReader", func(t *testing.T) { testCancelReader(t, c) })
	t.Run("RLockCtxAlreadyDone", func(t *testing.T) { testRLockCtxDone(t, c) })
	t.Run("CancelRace", func(t *testing.T) { testRWCancelRace(t, c) })
	t.Run("ReadLease", func(t *testing.T) { testReadLease(t, c) })
	t.Run("Tokens", func(t *testing.T) { testRWTokens(t, c) })
	t.Run("Lockers", func(t *testing.T) { testRWLockers(t, c) })
	t.Run("NilContext", func(t *testing.T) { testRWNilContext(t, c) })
	t.Run("EmptyKey", func(t *testing.T) { testRWEmptyKey(t, c) })
	t.Run("Close", func(t *testing.T) { testRWClose(t, c) })
}

func instances(t *testing.T, c RWConfig) []mutex.RWKeyed[string] {
	ms := make([]mutex.RWKeyed[string], c.Instances)
	for i := range ms {
		ms[i] = c.New(t)
	}
	return ms
}

func mustRLock(t *testing.T, ctx context.Context, m mutex.RWKeyed[string], key string) mutex.Lease {
	t.Helper()
	l, err := m.RLock(ctx, key)
	if err != nil {
		t.Fatalf("RLock(%q) = %v; want nil error", key, err)
	}
	return l
}

// awaitClosed fails t unless ch is closed within d.
func awaitClosed(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s: not within %v", what, d)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitQueued waits until n calls of m wait for key, if c can tell.
func waitQueued(t *testing.T, c RWConfig, m mutex.RWKeyed[string], key string, n int) {
	t.Helper()
	if c.Queued == nil {
		return
	}
	waitFor(t, c.Wait, fmt.Sprintf("%d waiters queued for %q", n, key), func() bool { return c.Queued(m, key) >= n })
}

// waitWriterQueued polls TryRLock on m until it fails with ErrLocked: a
// writer holds or waits. Readers hold the key meanwhile, so it means
// that the writer queued. With Queued, it first waits for a waiter
// there (readers queue only behind a writer).
func waitWriterQueued(t *testing.T, c RWConfig, m mutex.RWKeyed[string], key string) {
	t.Helper()
	waitQueued(t, c, m, key, 1)
	ctx := ctxT(t, c.Wait)
	waitFor(t, c.Wait, "TryRLock failing with ErrLocked once a writer waits", func() bool {
		l, err := m.TryRLock(ctx, key)
		if err == nil {
			l.Unlock()
			return false
		}
		if !errors.Is(err, mutex.ErrLocked) {
			t.Fatalf("TryRLock(%q) = %v; want nil or ErrLocked", key, err)
		}
		return true
	})
}

// result is what a goroutine that locks reports back.
type result struct {
	l   mutex.Lease
	err error
}

func goRLock(ctx context.Context, m mutex.RWKeyed[string], key string) chan result {
	ch := make(chan result, 1)
	go func() {
		l, err := m.RLock(ctx, key)
		ch <- result{l, err}
	}()
	return ch
}

func goLock(ctx context.Context, m mutex.RWKeyed[string], key string) chan result {
	ch := make(chan result, 1)
	go func() {
		l, err := m.Lock(ctx, key)
		ch <- result{l, err}
	}()
	return ch
}

// recv returns the result of ch, failing t if it has none within d or it
// is an error.
func recv(t *testing.T, ch chan result, d time.Duration, what string) mutex.Lease {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s = %v; want a lease", what, r.err)
		}
		return r.l
	case <-time.After(d):
		t.Fatalf("%s: no lease within %v", what, d)
	}
	return nil
}

// pending fails t if ch has a result now: that call must still wait.
func pending(t *testing.T, ch chan result, what string) {
	t.Helper()
	select {
	case r := <-ch:
		if r.l != nil {
			r.l.Unlock()
		}
		t.Fatalf("%s returned (%v) while it must wait", what, r.err)
	default:
	}
}

// testReadersOverlap: readers spread over the instances all hold the key
// at once, proved by a barrier that is reached only while every one of
// them holds.
func testReadersOverlap(t *testing.T, c RWConfig) {
	ms := instances(t, c)
	ctx := ctxT(t, c.Wait)
	key := Key(t)
	n := 4 * len(ms)
	var holding sync.WaitGroup
	holding.Add(n)
	all := make(chan struct{})
	go func() { holding.Wait(); close(all) }()
	release := make(chan struct{})
	errs := make(chan error, n)
	for i := range n {
		go func() {
			l, err := ms[i%len(ms)].RLock(ctx, key)
			if err != nil {
				holding.Done()
				errs <- err
				return
			}
			holding.Done()
			<-release
			errs <- l.Unlock()
		}()
	}
	awaitClosed(t, all, c.Wait, fmt.Sprintf("%d readers holding at once", n))
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("reader: %v", err)
		}
	}
	l := mustLock(t, ctx, ms[0], key) // every reader left
	mustUnlock(t, l)
}

// rwChecker counts the holders of one key and checks fencing as a store
// would: a writer's token above every token seen, a reader's above the
// last writer's.
type rwChecker struct {
	readers, writers atomic.Int32
	overlaps         atomic.Int64

	mu         sync.Mutex // guards the fields below
	maxSeen    uint64     // the greatest token seen
	lastWriter uint64     // the token of the last writer
	tokenErrs  []string
}

func (k *rwChecker) enter(write bool, tok uint64) {
	if write {
		if k.writers.Add(1) != 1 || k.readers.Load() != 0 {
			k.overlaps.Add(1)
		}
	} else if k.readers.Add(1); k.writers.Load() != 0 {
		k.overlaps.Add(1)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case write && tok <= k.maxSeen:
		k.tokenErrs = append(k.tokenErrs, fmt.Sprintf("writer token %d not above %d, the greatest seen", tok, k.maxSeen))
	case !write && tok <= k.lastWriter:
		k.tokenErrs = append(k.tokenErrs, fmt.Sprintf("reader token %d not above %d, the last writer's", tok, k.lastWriter))
	}
	if write {
		k.lastWriter = tok
	}
	k.maxSeen = max(k.maxSeen, tok)
}

func (k *rwChecker) leave(write bool) {
	if write {
		k.writers.Add(-1)
	} else {
		k.readers.Add(-1)
	}
}

// testRWExclusion: readers and writers over several instances and keys.
// A writer holds alone (the checker's counts, and a plain int that the
// race detector watches), and tokens fence as the contract says.
func testRWExclusion(t *testing.T, c RWConfig) {
	ms := instances(t, c)
	keys := make([]string, c.Keys)
	checks := make([]rwChecker, c.Keys)
	values := make([]int, c.Keys)
	for i := range keys {
		keys[i] = Key(t)
	}
	ctx := ctxT(t, 5*time.Minute)
	n := c.Goroutines * c.Instances
	errs := make(chan error, n)
	var writes atomic.Int64
	var wg sync.WaitGroup
	for g := range n {
		m := ms[g%len(ms)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range c.Iterations {
				for k := range keys {
					k := (k + g) % len(keys)
					write := (it+g+k)%4 == 0
					var (
						l   mutex.Lease
						err error
					)
					if write {
						l, err = m.Lock(ctx, keys[k])
					} else {
						l, err = m.RLock(ctx, keys[k])
					}
					if err != nil {
						errs <- fmt.Errorf("lock %q (write %v): %w", keys[k], write, err)
						return
					}
					checks[k].enter(write, l.Token())
					if write {
						values[k]++
						writes.Add(1)
					} else {
						_ = values[k]
					}
					checks[k].leave(write)
					if err := l.Unlock(); err != nil {
						errs <- fmt.Errorf("unlock %q (write %v): %w", keys[k], write, err)
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
	total := 0
	for k := range checks {
		total += values[k]
		if n := checks[k].overlaps.Load(); n != 0 {
			t.Errorf("key %d: %d holdings that overlapped a writer; want 0", k, n)
		}
		for i, e := range checks[k].tokenErrs {
			if i == 5 {
				t.Errorf("key %d: ... %d token errors in all", k, len(checks[k].tokenErrs))
				break
			}
			t.Errorf("key %d: %s", k, e)
		}
	}
	if int64(total) != writes.Load() {
		t.Errorf("writers counted %d increments; want %d (a lost update)", total, writes.Load())
	}
}

// testRWTry: TryLock fails while readers hold; TryRLock succeeds beside
// readers and fails while a writer holds, or waits behind readers.
func testRWTry(t *testing.T, c RWConfig) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	key := Key(t)
	r1 := mustRLock(t, ctx, m, key)
	if l, err := m.TryLock(ctx, key); !errors.Is(err, mutex.ErrLocked) {
		if err == nil {
			l.Unlock()
		}
		t.Fatalf("TryLock(read-held) = %v; want ErrLocked", err)
	}
	r2, err := m.TryRLock(ctx, key)
	if err != nil {
		t.Fatalf("TryRLock(read-held, no writer waiting) = %v; want nil", err)
	}
	w := goLock(ctx, m, key)
	waitWriterQueued(t, c, m, key) // fails the test if it never happens
	mustUnlock(t, r2)
	pending(t, w, "Lock behind a reader")
	mustUnlock(t, r1)
	wl := recv(t, w, c.Wait, "Lock after the readers left")
	if l, err := m.TryRLock(ctx, key); !errors.Is(err, mutex.ErrLocked) {
		if err == nil {
			l.Unlock()
		}
		t.Fatalf("TryRLock(write-held) = %v; want ErrLocked", err)
	}
	mustUnlock(t, wl)
	l, err := m.TryRLock(ctx, key)
	if err != nil {
		t.Fatalf("TryRLock(free) = %v; want nil", err)
	}
	mustUnlock(t, l)
	l, err = m.TryLock(ctx, key)
	if err != nil {
		t.Fatalf("TryLock(free after readers) = %v; want nil", err)
	}
	mustUnlock(t, l)
}

// testWriterBlocksReaders: with a reader holding and a writer queued,
// readers that ask later wait for the writer's Unlock, and are then all
// admitted together.
func testWriterBlocksReaders(t *testing.T, c RWConfig) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	key := Key(t)
	r0 := mustRLock(t, ctx, m, key)
	w := goLock(ctx, m, key)
	waitWriterQueued(t, c, m, key)
	late := make([]chan result, 3)
	for i := range late {
		late[i] = goRLock(ctx, m, key)
	}
	waitQueued(t, c, m, key, 1+len(late))
	for i := range late {
		pending(t, late[i], "RLock behind a waiting writer")
	}
	mustUnlock(t, r0)
	wl := recv(t, w, c.Wait, "Lock after the reader left")
	for i := range late {
		pending(t, late[i], "RLock while a writer holds")
	}
	mustUnlock(t, wl)
	// All three hold at once: each is received while the others still
	// hold.
	held := make([]mutex.Lease, len(late))
	for i := range late {
		held[i] = recv(t, late[i], c.Wait, "RLock after the writer left")
	}
	for _, l := range held {
		if l.Err() != nil {
			t.Errorf("reader lease Err() = %v while the run holds; want nil", l.Err())
		}
		mustUnlock(t, l)
	}
}

// testReaderRun: readers queued behind a writer, then a writer, then a
// reader: the writer's Unlock admits the first readers together, the
// second writer waits for them all, and the last reader waits for it.
func testReaderRun(t *testing.T, c RWConfig) {
	if c.Queued == nil {
		t.Skip("needs RWConfig.Queued to order the waiters")
	}
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	key := Key(t)
	w1 := mustLock(t, ctx, m, key)
	run := make([]chan result, 3)
	for i := range run {
		run[i] = goRLock(ctx, m, key)
		waitQueued(t, c, m, key, i+1)
	}
	w2 := goLock(ctx, m, key)
	waitQueued(t, c, m, key, len(run)+1)
	r4 := goRLock(ctx, m, key)
	waitQueued(t, c, m, key, len(run)+2)
	mustUnlock(t, w1)
	held := make([]mutex.Lease, len(run))
	for i := range run {
		held[i] = recv(t, run[i], c.Wait, "RLock at the head")
	}
	pending(t, w2, "Lock behind the readers")
	pending(t, r4, "RLock behind a writer")
	for _, l := range held[1:] {
		mustUnlock(t, l)
	}
	pending(t, w2, "Lock behind a reader")
	mustUnlock(t, held[0])
	wl := recv(t, w2, c.Wait, "Lock after the run")
	pending(t, r4, "RLock while a writer holds")
	mustUnlock(t, wl)
	mustUnlock(t, recv(t, r4, c.Wait, "RLock after the second writer"))
}

// testWriterNotStarved: readers on every instance lock and unlock in a
// loop, overlapping, while a writer asks. The writer gets in, and before
// it no reader that asked on its instance after it queued, and at most
// ReadersPastWriter per other instance.
func testWriterNotStarved(t *testing.T, c RWConfig) {
	ms := instances(t, c)
	ctx := ctxT(t, c.Wait)
	key := Key(t)
	r0 := mustRLock(t, ctx, ms[0], key) // the key is read-held throughout
	var (
		queued  atomic.Bool // the writer has queued
		writing atomic.Bool // the writer holds, or held
		stop    atomic.Bool
		late    = make([]atomic.Int64, len(ms)) // per instance: admitted after asking behind the writer, before it
		wg      sync.WaitGroup
		errs    = make(chan error, 3*len(ms))
	)
	for g := range 3 * len(ms) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			i := g % len(ms)
			for !stop.Load() {
				after := queued.Load()
				l, err := ms[i].RLock(ctx, key)
				if err != nil {
					errs <- fmt.Errorf("stream reader on instance %d: %w", i, err)
					return
				}
				if after && !writing.Load() {
					late[i].Add(1)
				}
				runtime.Gosched()
				if err := l.Unlock(); err != nil {
					errs <- fmt.Errorf("stream reader on instance %d: Unlock: %w", i, err)
					return
				}
			}
		}()
	}
	w := make(chan result, 1)
	go func() {
		l, err := ms[0].Lock(ctx, key)
		if err == nil {
			writing.Store(true)
		}
		w <- result{l, err}
	}()
	waitWriterQueued(t, c, ms[0], key)
	queued.Store(true)
	mustUnlock(t, r0)
	wl := recv(t, w, c.Wait, "Lock under a stream of readers")
	got := make([]int64, len(ms))
	for i := range late {
		got[i] = late[i].Load()
	}
	mustUnlock(t, wl)
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got[0] != 0 {
		t.Errorf("%d readers of the writer's instance that asked after it queued were admitted before it; want 0", got[0])
	}
	if c.ReadersPastWriter >= 0 {
		for i := 1; i < len(got); i++ {
			if got[i] > int64(c.ReadersPastWriter) {
				t.Errorf("instance %d: %d readers that asked after the writer queued were admitted before it; want at most %d", i, got[i], c.ReadersPastWriter)
			}
		}
	}
}

// testCancelWriter: a queued writer whose ctx ends gives its turn back:
// the readers queued behind it join the reader that holds.
func testCancelWriter(t *testing.T, c RWConfig) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	key := Key(t)
	r0 := mustRLock(t, ctx, m, key)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := goLock(wctx, m, key)
	waitWriterQueued(t, c, m, key)
	behind := []chan result{goRLock(ctx, m, key), goRLock(ctx, m, key)}
	waitQueued(t, c, m, key, 1+len(behind))
	pending(t, behind[0], "RLock behind a waiting writer")
	cancel()
	select {
	case r := <-w:
		if !errors.Is(r.err, context.Canceled) {
			if r.err == nil {
				r.l.Unlock()
			}
			t.Fatalf("cancelled Lock = %v; want Canceled", r.err)
		}
	case <-time.After(c.Wait):
		t.Fatal("cancelled Lock did not return")
	}
	// r0 still holds: the readers get in beside it.
	for _, ch := range behind {
		mustUnlock(t, recv(t, ch, c.Wait, "RLock behind a cancelled writer, beside a reader"))
	}
	mustUnlock(t, r0)
	mustUnlock(t, mustLock(t, ctx, m, key))
}

// testCancelReader: a reader queued behind a writer gives up; the writer's
// Unlock then leaves the key free, and readers queued beside it are
// admitted and followed by the writer queued after them.
func testCancelReader(t *testing.T, c RWConfig) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	key := Key(t)
	w1 := mustLock(t, ctx, m, key)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r1 := goRLock(rctx, m, key)
	waitQueued(t, c, m, key, 1)
	r2 := goRLock(ctx, m, key)
	waitQueued(t, c, m, key, 2)
	var w2 chan result
	if c.Queued != nil { // a writer only once the readers are known to be ahead of it
		w2 = goLock(ctx, m, key)
		waitQueued(t, c, m, key, 3)
	}
	cancel()
	select {
	case r := <-r1:
		if !errors.Is(r.err, context.Canceled) {
			if r.err == nil {
				r.l.Unlock()
			}
			t.Fatalf("cancelled RLock = %v; want Canceled", r.err)
		}
	case <-time.After(c.Wait):
		t.Fatal("cancelled RLock did not return")
	}
	mustUnlock(t, w1)
	l2 := recv(t, r2, c.Wait, "RLock beside a cancelled reader")
	if w2 != nil {
		pending(t, w2, "Lock behind a reader")
	}
	mustUnlock(t, l2)
	if w2 != nil {
		mustUnlock(t, recv(t, w2, c.Wait, "Lock after the readers"))
	}
	if l, err := m.TryLock(ctx, key); err != nil {
		t.Fatalf("TryLock after everything = %v; want nil (a holding left behind)", err)
	} else {
		mustUnlock(t, l)
	}
}

func testRLockCtxDone(t *testing.T, c RWConfig) {
	m := c.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	key := Key(t)
	if l, err := m.RLock(ctx, key); !errors.Is(err, context.Canceled) {
		if err == nil {
			l.Unlock()
		}
		t.Errorf("RLock(cancelled ctx) = %v; want Canceled", err)
	}
	if l, err := m.TryRLock(ctx, key); err == nil {
		l.Unlock()
		t.Errorf("TryRLock(cancelled ctx) = a lease; want an error")
	}
	l, err := m.TryLock(ctxT(t, c.Wait), key)
	if err != nil {
		t.Fatalf("TryLock after cancelled RLock = %v; want nil", err)
	}
	mustUnlock(t, l)
}

// testRWCancelRace cancels a mix of queued readers and writers at the
// moment the holder unlocks. Whatever order the cancellation and the
// handoff take, no turn is lost: a final Lock succeeds.
func testRWCancelRace(t *testing.T, c RWConfig) {
	m := c.New(t)
	key := Key(t)
	for round := range 20 {
		var l mutex.Lease
		if round%2 == 0 {
			l = mustLock(t, ctxT(t, c.Wait), m, key)
		} else {
			l = mustRLock(t, ctxT(t, c.Wait), m, key)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		results := make(chan error, 6)
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var (
					l   mutex.Lease
					err error
				)
				if (i+round)%3 == 0 {
					l, err = m.Lock(ctx, key)
				} else {
					l, err = m.RLock(ctx, key)
				}
				switch {
				case err == nil:
					err = l.Unlock()
				case errors.Is(err, context.Canceled):
					err = nil
				default:
					err = fmt.Errorf("waiter: %w; want nil or Canceled", err)
				}
				results <- err
			}()
		}
		go cancel()
		mustUnlock(t, l)
		wg.Wait()
		close(results)
		for err := range results {
			if err != nil {
				t.Fatal(err)
			}
		}
		final, err := m.Lock(ctxT(t, c.Wait), key)
		if err != nil {
			t.Fatalf("round %d: Lock after cancelled waiters = %v; want nil (a turn lost)", round, err)
		}
		mustUnlock(t, final)
	}
}

// testReadLease: a read lease answers Done, Err and a second Unlock like
// any lease.
func testReadLease(t *testing.T, c RWConfig) {
	m := c.New(t)
	l := mustRLock(t, ctxT(t, c.Wait), m, Key(t))
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

// testRWTokens: a writer's token is above every earlier token, readers'
// included; readers' tokens lie between the writers around them.
func testRWTokens(t *testing.T, c RWConfig) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	key := Key(t)
	var prevWriter, maxSeen uint64
	for round := range 5 {
		w := mustLock(t, ctx, m, key)
		if round > 0 && w.Token() <= maxSeen {
			t.Errorf("round %d: writer token %d; want > %d, every earlier token", round, w.Token(), maxSeen)
		}
		prevWriter, maxSeen = w.Token(), w.Token()
		mustUnlock(t, w)
		r1 := mustRLock(t, ctx, m, key)
		r2, err := m.TryRLock(ctx, key)
		if err != nil {
			t.Fatalf("TryRLock beside a reader = %v; want nil", err)
		}
		for _, r := range []mutex.Lease{r1, r2} {
			if r.Token() <= prevWriter {
				t.Errorf("round %d: reader token %d; want > %d, the last writer's", round, r.Token(), prevWriter)
			}
			maxSeen = max(maxSeen, r.Token())
		}
		mustUnlock(t, r1)
		mustUnlock(t, r2)
	}
	w := mustLock(t, ctx, m, key)
	if w.Token() <= maxSeen {
		t.Errorf("last writer token %d; want > %d", w.Token(), maxSeen)
	}
	mustUnlock(t, w)
}

// testRWLockers: RLocker adapters share the key's read holdings (two
// RLocker().Lock() hold at once, any adapter value unlocks one), Locker
// waits for them, and an RLocker's Unlock without a read holding panics.
func testRWLockers(t *testing.T, c RWConfig) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	key := Key(t)
	m.RLocker(key).Lock()
	m.RLocker(key).Lock()
	if l, err := m.TryLock(ctx, key); !errors.Is(err, mutex.ErrLocked) {
		if err == nil {
			l.Unlock()
		}
		t.Fatalf("TryLock while RLockers hold = %v; want ErrLocked", err)
	}
	acquired := make(chan struct{})
	go func() {
		m.Locker(key).Lock()
		close(acquired)
	}()
	waitWriterQueued(t, c, m, key)
	m.RLocker(key).Unlock()
	select {
	case <-acquired:
		t.Fatal("Locker().Lock() returned while an RLocker holds")
	default:
	}
	m.RLocker(key).Unlock()
	awaitClosed(t, acquired, c.Wait, "Locker().Lock() after the RLockers unlocked")
	if l, err := m.TryRLock(ctx, key); !errors.Is(err, mutex.ErrLocked) {
		if err == nil {
			l.Unlock()
		}
		t.Fatalf("TryRLock while Locker holds = %v; want ErrLocked", err)
	}
	m.Locker(key).Unlock()
	mustUnlock(t, mustRLock(t, ctx, m, key))

	defer func() {
		if r := recover(); r == nil {
			t.Error("RLocker().Unlock() of a key with no read holding did not panic")
		}
	}()
	m.RLocker(key).Unlock()
}

func testRWNilContext(t *testing.T, c RWConfig) {
	m := c.New(t)
	var nilCtx context.Context
	for _, op := range rwOps(m) {
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

func testRWEmptyKey(t *testing.T, c RWConfig) {
	m := c.New(t)
	ctx := ctxT(t, c.Wait)
	for _, op := range rwOps(m) {
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

type rwOp struct {
	name string
	f    func(context.Context, string) (mutex.Lease, error)
}

func rwOps(m mutex.RWKeyed[string]) []rwOp {
	return []rwOp{{"Lock", m.Lock}, {"TryLock", m.TryLock}, {"RLock", m.RLock}, {"TryRLock", m.TryRLock}}
}

// testRWClose: for an implementation with a Close method, Close wakes
// queued readers and writers with ErrClosed and refuses later calls.
func testRWClose(t *testing.T, c RWConfig) {
	m := c.New(t)
	closer, ok := m.(interface{ Close() error })
	if !ok {
		t.Skipf("%T has no Close method", m)
	}
	ctx := ctxT(t, c.Wait)
	key := Key(t)
	w1 := mustLock(t, ctx, m, key)
	waiters := []chan result{goRLock(ctx, m, key), goLock(ctx, m, key), goRLock(ctx, m, key)}
	waitQueued(t, c, m, key, len(waiters))
	if err := closer.Close(); err != nil {
		t.Fatalf("Close() = %v; want nil", err)
	}
	for i, ch := range waiters {
		select {
		case r := <-ch:
			if !errors.Is(r.err, mutex.ErrClosed) {
				if r.err == nil {
					r.l.Unlock()
				}
				// Without Queued, a waiter may not have asked before
				// Close: it is refused, with the same error.
				t.Errorf("waiter %d after Close = %v; want ErrClosed", i, r.err)
			}
		case <-time.After(c.Wait):
			t.Fatalf("waiter %d not woken by Close", i)
		}
	}
	w1.Unlock() // its error, if any, is the implementation's to choose
	for _, op := range rwOps(m) {
		if l, err := op.f(ctx, key); !errors.Is(err, mutex.ErrClosed) {
			if err == nil {
				l.Unlock()
			}
			t.Errorf("%s after Close = %v; want ErrClosed", op.name, err)
		}
	}
}
