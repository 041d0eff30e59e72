package local

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/keyedmutex/keyedmutex/mutex"
)

var (
	_ mutex.Keyed[string]        = (*Mutex[string])(nil)
	_ mutex.TokenBlocker[string] = (*Mutex[string])(nil)
	_ mutex.Lease                = (*lease[string])(nil)
)

// Errors of this package. They are wrapped with the key, so test with
// [errors.Is].
var (
	// ErrBlockSize is returned by LockBlock and TryLockBlock for n == 0.
	ErrBlockSize = errors.New("local: token block size must be at least 1")
	// ErrTokensExhausted is returned when a block of tokens would go past
	// the largest token, 1<<63 - 1. Only absurd block sizes get there.
	ErrTokensExhausted = errors.New("local: fencing tokens exhausted")
)

const (
	numShards = 64 // a power of two
	cacheLine = 64
	// shrinkAbove is the number of live entries a shard must have reached
	// for its map to be dropped, rather than kept, when it empties. Go maps
	// never shrink: without this a burst of many keys held at once would
	// keep its buckets forever.
	shrinkAbove = 1024
	// maxFree is how many unused entries a shard keeps for reuse.
	maxFree = 4
	// numSlots is how many entries a shard keeps outside its map. The
	// common case, a few keys held at once, then never touches the map:
	// no second hash, no map insert or delete.
	numSlots = 2
	// spinRounds bounds how many times a newcomer that finds its key
	// locked, with nobody queued, yields and looks again before it queues.
	spinRounds = 4
)

// seed is fixed for the life of the process, so a key always maps to the
// same shard: that is what keeps its tokens increasing across entries.
var seed = maphash.MakeSeed()

// Mutex is a family of in-process mutexes, one per key of type K.
//
// The zero value is ready to use: all keys unlocked. A Mutex must not be
// copied after first use.
//
// For any key, the Unlock of a lease synchronizes before the Lock or
// TryLock that next returns a lease for that key, as with [sync.Mutex].
// Waiters are served in FIFO order (see the package doc). Only keys that
// are held or waited for take memory.
type Mutex[K comparable] struct {
	shards  [numShards]shard[K]
	lockers mutex.LockerSet[K]
}

type shard[K comparable] struct {
	mu sync.Mutex // guards the fields below and the entries they hold
	// The keys held or waited for: each in one of slots, or else in m.
	slots [numSlots]*entry[K]
	m     map[K]*entry[K]
	last  uint64    // the last fencing token issued in this shard
	peak  int       // len(m) high-water mark since m was made
	free  *entry[K] // unused entries, linked by nextFree
	nfree int       // length of free, at most maxFree
	// The fields above fill one cache line on 64-bit platforms, so
	// neighbouring shards do not share one (false sharing).
}

// entry is the state of one key that is held or waited for. All fields
// are guarded by sh.mu.
type entry[K comparable] struct {
	key        K
	sh         *shard[K]
	ref        int  // the holder (if locked) plus the waiters
	slot       int  // index in sh.slots, or -1 when in sh.m
	spinners   int  // goroutines spinning in lock, at most 1
	locked     bool // stays true while the lock passes from holder to waiter
	head, tail *waiter[K]
	done       chan struct{} // the holder's Done, made lazily
	nextFree   *entry[K]
}

// waiter states, guarded by the shard's mu.
const (
	waiting = iota
	granted // the lock was handed to this waiter
	failed  // the waiter was dequeued with an error in err
)

type waiter[K comparable] struct {
	ready      chan struct{} // closed when state leaves waiting
	l          *lease[K]
	n          uint64 // tokens to reserve
	state      int
	err        error
	prev, next *waiter[K]
}

// lease is one holding of one key. Once returned to the caller it is never
// reused, so a second Unlock always sees it unlocked. It is 16 bytes: the
// one allocation of an uncontended Lock.
type lease[K comparable] struct {
	// state is the fencing token, with unlockedBit set by Unlock. It is
	// written plainly before the lease is published and atomically after.
	// It comes first for 64-bit alignment on 32-bit platforms.
	state uint64
	e     *entry[K] // never changes; e is this lease's while not unlocked
}

const (
	unlockedBit = 1 << 63
	maxToken    = unlockedBit - 1
)

// unlocked is the closed channel that Done returns after Unlock.
var unlocked = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// testHookCancelled, if set, runs when a waiter has seen its ctx end and
// before it takes the shard lock to leave the queue. Tests use it to hand
// the lock over in that window.
var testHookCancelled func()

func (m *Mutex[K]) shard(key K) *shard[K] {
	return &m.shards[maphash.Comparable(seed, key)&(numShards-1)]
}

// Lock blocks until the caller holds the lock for key or ctx is done. On
// ctx end it returns an error satisfying errors.Is(err, ctx.Err()) and
// does not hold the lock. The returned [mutex.Lease] has Token() strictly
// greater than every earlier lease's for key.
func (m *Mutex[K]) Lock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, key, 1, true)
}

// TryLock takes the lock for key only if nobody holds it now; otherwise it
// returns an error satisfying errors.Is(err, [mutex.ErrLocked]). It never
// waits for the holder. If ctx is already done it returns ctx's error.
func (m *Mutex[K]) TryLock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, key, 1, false)
}

// LockBlock is Lock with a lease that reserves n consecutive fencing
// tokens: Token() is the first, and the next lease for key gets a token
// above all n. n == 0 returns an error satisfying errors.Is(err,
// [ErrBlockSize]). See [mutex.TokenBlocker].
func (m *Mutex[K]) LockBlock(ctx context.Context, key K, n uint64) (mutex.Lease, error) {
	if n == 0 {
		return nil, fmt.Errorf("local: LockBlock(%v, 0): %w", key, ErrBlockSize)
	}
	return m.lock(ctx, key, n, true)
}

// TryLockBlock is TryLock with a lease that reserves n consecutive fencing
// tokens, as LockBlock.
func (m *Mutex[K]) TryLockBlock(ctx context.Context, key K, n uint64) (mutex.Lease, error) {
	if n == 0 {
		return nil, fmt.Errorf("local: TryLockBlock(%v, 0): %w", key, ErrBlockSize)
	}
	return m.lock(ctx, key, n, false)
}

// Locker returns a [sync.Locker] for key. Lockers of one Mutex share
// state: m.Locker(k).Lock() in one place and m.Locker(k).Unlock() in
// another behave like one [sync.Mutex]. Unlock of a key not locked through
// a Locker panics, like [sync.Mutex.Unlock].
func (m *Mutex[K]) Locker(key K) sync.Locker {
	return m.lockers.Locker(m, key, nil)
}

func (m *Mutex[K]) lock(ctx context.Context, key K, n uint64, wait bool) (mutex.Lease, error) {
	if ctx == nil {
		return nil, fmt.Errorf("local: lock %v: nil context.Context (use context.Background())", key)
	}
	if err := ctx.Err(); err != nil {
		return nil, ctxErr(ctx, key)
	}
	l := new(lease[K])
	sh := m.shard(key)
	sh.mu.Lock()
	e := sh.lookup(key)
	if e == nil {
		e = sh.newEntry(key)
	}
	if !e.locked {
		return sh.grab(e, l, n)
	}
	if !wait {
		sh.mu.Unlock()
		return nil, fmt.Errorf("local: lock %v: %w", key, mutex.ErrLocked)
	}
	if e.head == nil && e.spinners == 0 && runtime.GOMAXPROCS(0) > 1 {
		// Nobody is queued: spin briefly, since a short critical section
		// often ends sooner than a goroutine can park and wake. The
		// spinner takes the lock only when it is free, which implies an
		// empty queue, so it never overtakes a queued waiter; and it
		// queues like anyone else when the rounds are over.
		e.ref++ // keeps e while the shard lock is let go
		e.spinners++
		for i := 0; i < spinRounds && e.locked && e.head == nil; i++ {
			sh.mu.Unlock()
			runtime.Gosched()
			sh.mu.Lock()
		}
		e.spinners--
		e.ref--
		if !e.locked {
			return sh.grab(e, l, n)
		}
	}
	w := &waiter[K]{ready: make(chan struct{}), l: l, n: n}
	e.push(w)
	e.ref++
	sh.mu.Unlock()

	select {
	case <-w.ready:
		if w.err != nil {
			return nil, fmt.Errorf("local: lock %v: %w", key, w.err)
		}
		return l, nil
	case <-ctx.Done():
	}
	if testHookCancelled != nil {
		testHookCancelled()
	}
	sh.mu.Lock()
	switch w.state {
	case waiting:
		e.remove(w)
		e.ref--
		sh.dropIfUnused(e)
	case granted:
		// The lock was handed to us as ctx ended: pretend it was not,
		// and pass it on.
		sh.release(e)
	case failed:
		// Already dequeued and uncounted by the releaser.
	}
	sh.mu.Unlock()
	return nil, ctxErr(ctx, key)
}

// ctxErr returns an error satisfying errors.Is for ctx.Err() and for its
// cause, if that differs.
func ctxErr[K comparable](ctx context.Context, key K) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("local: lock %v: %w (%w)", key, err, cause)
	}
	return fmt.Errorf("local: lock %v: %w", key, err)
}

// grab takes the free lock of e for l, issuing n tokens, and unlocks
// sh.mu, which the caller holds.
func (sh *shard[K]) grab(e *entry[K], l *lease[K], n uint64) (mutex.Lease, error) {
	tok, ok := sh.take(n)
	if !ok {
		key := e.key
		sh.dropIfUnused(e)
		sh.mu.Unlock()
		return nil, fmt.Errorf("local: lock %v: %w", key, ErrTokensExhausted)
	}
	e.locked = true
	e.ref++
	sh.mu.Unlock()
	l.e, l.state = e, tok
	return l, nil
}

// take issues n consecutive tokens and returns the first. sh.mu is held.
func (sh *shard[K]) take(n uint64) (uint64, bool) {
	if n > maxToken || sh.last > maxToken-n {
		return 0, false
	}
	tok := sh.last + 1
	sh.last += n
	return tok, true
}

// newEntry adds an unlocked entry for key. sh.mu is held.
func (sh *shard[K]) newEntry(key K) *entry[K] {
	e := sh.free
	if e != nil {
		sh.free, e.nextFree = e.nextFree, nil
		sh.nfree--
	} else {
		e = &entry[K]{sh: sh}
	}
	e.key = key
	for i, s := range sh.slots {
		if s == nil {
			sh.slots[i], e.slot = e, i
			return e
		}
	}
	e.slot = -1
	if sh.m == nil {
		sh.m = make(map[K]*entry[K])
	}
	sh.m[key] = e
	if len(sh.m) > sh.peak {
		sh.peak = len(sh.m)
	}
	return e
}

// lookup returns the entry of key, or nil. sh.mu is held.
func (sh *shard[K]) lookup(key K) *entry[K] {
	for _, e := range sh.slots {
		if e != nil && e.key == key {
			return e
		}
	}
	if len(sh.m) == 0 {
		return nil
	}
	return sh.m[key]
}

// dropIfUnused deletes e if no holder or waiter is left. sh.mu is held.
// An entry stays in its slot or in m, as the only entry of its key, from
// newEntry until its ref falls to 0 here.
func (sh *shard[K]) dropIfUnused(e *entry[K]) {
	if e.ref != 0 {
		return
	}
	if e.slot >= 0 {
		sh.slots[e.slot] = nil
	} else {
		delete(sh.m, e.key)
		if len(sh.m) == 0 && sh.peak > shrinkAbove {
			sh.m, sh.peak = nil, 0
		}
	}
	if sh.nfree < maxFree {
		var zero K
		e.key = zero // hold no memory of the key
		e.nextFree = sh.free
		sh.free = e
		sh.nfree++
	}
}

// release ends the current holding of e: the lock passes to the first
// waiter, or e is unlocked (and dropped if nobody waits). sh.mu is held.
func (sh *shard[K]) release(e *entry[K]) {
	if e.done != nil {
		close(e.done)
		e.done = nil
	}
	e.ref--
	for w := e.head; w != nil; w = e.head {
		e.remove(w)
		tok, ok := sh.take(w.n)
		if !ok {
			e.ref--
			w.state, w.err = failed, ErrTokensExhausted
			close(w.ready)
			continue
		}
		w.l.e, w.l.state = e, tok
		w.state = granted
		close(w.ready)
		return
	}
	e.locked = false
	sh.dropIfUnused(e)
}

func (e *entry[K]) push(w *waiter[K]) {
	w.prev = e.tail
	if e.tail != nil {
		e.tail.next = w
	} else {
		e.head = w
	}
	e.tail = w
}

func (e *entry[K]) remove(w *waiter[K]) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		e.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		e.tail = w.prev
	}
	w.prev, w.next = nil, nil
}

// Unlock releases the lock, handing it to the longest waiting goroutine if
// any. Done is closed before the next holder can get the lock. A second
// call returns [mutex.ErrUnlocked].
func (l *lease[K]) Unlock() error {
	// The state only ever gains unlockedBit, so a failed swap means
	// another Unlock won.
	s := atomic.LoadUint64(&l.state)
	if s&unlockedBit != 0 || !atomic.CompareAndSwapUint64(&l.state, s, s|unlockedBit) {
		return mutex.ErrUnlocked
	}
	// e.sh never changes, and e cannot be recycled before this release.
	sh := l.e.sh
	sh.mu.Lock()
	sh.release(l.e)
	sh.mu.Unlock()
	return nil
}

// Done returns a channel closed when the lease is unlocked. Local leases
// are never lost.
func (l *lease[K]) Done() <-chan struct{} {
	if atomic.LoadUint64(&l.state)&unlockedBit != 0 {
		return unlocked
	}
	sh := l.e.sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// Checked again under the lock: while the bit is clear, the release
	// of l has not run (it needs sh.mu), so l.e is still ours and the
	// release will close the channel made here.
	if atomic.LoadUint64(&l.state)&unlockedBit != 0 {
		return unlocked
	}
	if l.e.done == nil {
		l.e.done = make(chan struct{})
	}
	return l.e.done
}

// Err returns nil while the lease is held and [mutex.ErrUnlocked] after
// Unlock.
func (l *lease[K]) Err() error {
	if atomic.LoadUint64(&l.state)&unlockedBit != 0 {
		return mutex.ErrUnlocked
	}
	return nil
}

// Token returns the lease's fencing token: strictly greater than every
// token issued earlier for the same key by the same Mutex.
func (l *lease[K]) Token() uint64 { return atomic.LoadUint64(&l.state) &^ unlockedBit }
