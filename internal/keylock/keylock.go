// Package keylock is the engine of this module's in-process keyed
// mutexes: a table of FIFO locks, one per key, kept in 64 cache-line
// padded shards, with one wait queue per key. mutex/local is a thin
// wrapper over it; mutex/hybrid keeps its per-key cohort state in the
// table's entries, so both share one wait queue, one cancellation rule
// and one memory policy.
//
// A key costs memory only while some goroutine holds or waits for it:
// entries are reference-counted and deleted when the last holder or
// waiter leaves, and a shard drops its map when a burst of keys is over
// (Go maps never shrink).
package keylock

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

// Errors returned by the Table. Callers wrap them with their package
// name and the key.
var (
	// ErrLocked is returned by TryLock when the key is held.
	ErrLocked = mutex.ErrLocked
	// ErrNaN is returned for a key that is not equal to itself, such as a
	// floating-point NaN: it could never be found again to be unlocked.
	ErrNaN = fmt.Errorf("%w: it is not equal to itself (a floating-point NaN?), so it could never be found again", mutex.ErrInvalidKey)
	// ErrTokensExhausted is returned when a block of tokens would go past
	// MaxToken. Only absurd block sizes get there.
	ErrTokensExhausted = errors.New("fencing tokens exhausted")
)

// MaxToken is the largest token a Table issues.
const MaxToken = 1<<63 - 1

const (
	numShards = 64 // a power of two
	cacheLine = 64
	// shrinkAbove is the number of live entries a shard must have reached
	// for its map to be dropped, rather than kept, when it empties.
	shrinkAbove = 1024
	// maxFree is how many unused entries a shard keeps for reuse.
	maxFree = 4
	// numSlots is how many entries a shard keeps outside its map: the
	// common case, a few keys held at once, never touches the map.
	numSlots = 2
	// spinRounds bounds how many times a newcomer that finds its key
	// locked, with nobody queued, yields and looks again before it queues.
	spinRounds = 4
)

// seed is fixed for the life of the process, so a key always maps to the
// same shard: that is what keeps its tokens increasing across entries.
var seed = maphash.MakeSeed()

// Table is a family of FIFO locks, one per key of type K, each entry
// carrying a Value of type V that its holder may use.
//
// The zero value is ready to use. A Table must not be copied after first
// use. For any key, the Unlock (or HandOff) of an entry synchronizes
// before the Lock or TryLock that next returns it.
type Table[K comparable, V any] struct {
	closed atomic.Pointer[error] // set once by Close
	shards [numShards]shard[K, V]
}

type shard[K comparable, V any] struct {
	mu    sync.Mutex // guards the fields below and the entries they hold
	slots [numSlots]*Entry[K, V]
	m     map[K]*Entry[K, V]
	last  uint64       // the last token issued in this shard
	peak  int          // len(m) high-water mark since m was made
	free  *Entry[K, V] // unused entries, linked by nextFree
	nfree int          // length of free, at most maxFree
	// The fields above fill one cache line on 64-bit platforms, so
	// neighbouring shards do not share one (false sharing).
}

// Entry is the state of one key that is held or waited for. Its exported
// field Value belongs to the holder: only the goroutine that holds the
// entry may use it (the holder's handoff passes it on with the lock).
type Entry[K comparable, V any] struct {
	Value V

	key      K
	sh       *shard[K, V]
	ref      int    // the holder (if locked) plus the waiters
	slot     int    // index in sh.slots, or -1 when in sh.m
	spinners int    // goroutines spinning in lock, at most 1
	locked   bool   // stays true while the lock passes from holder to waiter
	tok      uint64 // the current holder's first token
	q        queue[K, V]
	done     chan struct{}        // the holder's Done, made lazily
	after    map[*func()]struct{} // AfterDone functions of the holding
	nextFree *Entry[K, V]
}

// Key returns the entry's key.
func (e *Entry[K, V]) Key() K { return e.key }

// testHookCancelled, if set, runs when a waiter has seen its ctx end and
// before it takes the shard lock to leave the queue. Tests use it to hand
// the lock over in that window.
var testHookCancelled func()

func (t *Table[K, V]) shard(key K) *shard[K, V] {
	return &t.shards[maphash.Comparable(seed, key)&(numShards-1)]
}

// Lock blocks until the caller holds key's lock or ctx is done; waiters
// are served in FIFO order. It returns the entry and the first of n
// consecutive fencing tokens it issued for this holding (n == 0 issues
// none and returns 0); tokens are strictly increasing per key for the
// life of the process.
//
// If ctx ends first, Lock returns nil and an error satisfying
// errors.Is(err, ctx.Err()). If the lock was handed to the caller in the
// same instant as ctx ended, Lock returns the entry AND that error: the
// caller holds the lock and must pass it on (with its own release
// logic, ending in Unlock) before it returns the error, so that no
// handoff is ever lost.
//
// If waiting is not nil, Lock calls it once it has queued, before it
// blocks (an observer's Waiting event).
//
// After Close, Lock returns the error given to Close.
func (t *Table[K, V]) Lock(ctx context.Context, key K, n uint64, waiting func()) (*Entry[K, V], uint64, error) {
	return t.lock(ctx, key, n, true, waiting)
}

// TryLock takes key's lock only if nobody holds it now; otherwise it
// returns ErrLocked. ctx is only checked, never waited on.
func (t *Table[K, V]) TryLock(ctx context.Context, key K, n uint64) (*Entry[K, V], uint64, error) {
	return t.lock(ctx, key, n, false, nil)
}

func (t *Table[K, V]) lock(ctx context.Context, key K, n uint64, wait bool, waiting func()) (*Entry[K, V], uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, ctxErr(ctx)
	}
	if key != key {
		return nil, 0, ErrNaN
	}
	sh := t.shard(key)
	sh.mu.Lock()
	// Checked under the shard lock: Close sets closed before it sweeps
	// the shards, so a waiter queued here is either refused or swept.
	if p := t.closed.Load(); p != nil {
		sh.mu.Unlock()
		return nil, 0, *p
	}
	e := sh.lookup(key)
	if e == nil {
		e = sh.newEntry(key)
	}
	if !e.locked {
		return sh.grab(e, n)
	}
	if !wait {
		sh.mu.Unlock()
		return nil, 0, ErrLocked
	}
	if sh.spin(e) {
		return sh.grab(e, n)
	}
	w := &waiter[K, V]{ready: make(chan struct{}), n: n}
	e.q.push(w)
	e.ref++
	sh.mu.Unlock()
	if waiting != nil {
		waiting()
	}
	return t.await(ctx, e, w)
}

// spin lets a newcomer that found e locked with nobody queued yield a few
// times, since a short critical section often ends sooner than a
// goroutine can park and wake. It reports whether e came free; sh.mu is
// held on entry and on return. The spinner takes the lock only when it is
// free, which implies an empty queue, so it never overtakes a queued
// waiter.
func (sh *shard[K, V]) spin(e *Entry[K, V]) bool {
	if !e.q.empty() || e.spinners != 0 || runtime.GOMAXPROCS(0) == 1 {
		return false
	}
	e.ref++ // keeps e while the shard lock is let go
	e.spinners++
	for i := 0; i < spinRounds && e.locked && e.q.empty(); i++ {
		sh.mu.Unlock()
		runtime.Gosched()
		sh.mu.Lock()
	}
	e.spinners--
	e.ref--
	return !e.locked
}

// await waits for w's grant or ctx's end. This is the one place that
// settles the race between the two.
func (t *Table[K, V]) await(ctx context.Context, e *Entry[K, V], w *waiter[K, V]) (*Entry[K, V], uint64, error) {
	select {
	case <-w.ready:
		if w.err != nil {
			return nil, 0, w.err
		}
		return e, w.tok, nil
	case <-ctx.Done():
	}
	if testHookCancelled != nil {
		testHookCancelled()
	}
	sh := e.sh
	sh.mu.Lock()
	switch w.state {
	case waiting:
		e.q.remove(w)
		e.ref--
		sh.dropIfUnused(e)
		sh.mu.Unlock()
		return nil, 0, ctxErr(ctx)
	case granted:
		// Handed to us as ctx ended: the caller gives it back.
		sh.mu.Unlock()
		return e, w.tok, ctxErr(ctx)
	default: // failed: already dequeued and uncounted
		sh.mu.Unlock()
		return nil, 0, w.err
	}
}

// ctxErr returns an error satisfying errors.Is for ctx.Err() and for its
// cause, if that differs.
func ctxErr(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("%w (%w)", err, cause)
	}
	return err
}

// grab takes the free lock of e, issuing n tokens, and unlocks sh.mu,
// which the caller holds.
func (sh *shard[K, V]) grab(e *Entry[K, V], n uint64) (*Entry[K, V], uint64, error) {
	tok, ok := sh.take(n)
	if !ok {
		sh.dropIfUnused(e)
		sh.mu.Unlock()
		return nil, 0, ErrTokensExhausted
	}
	e.locked = true
	e.tok = tok
	e.ref++
	sh.mu.Unlock()
	return e, tok, nil
}

// take issues n consecutive tokens and returns the first (0 for n == 0).
// sh.mu is held.
func (sh *shard[K, V]) take(n uint64) (uint64, bool) {
	if n == 0 {
		return 0, true
	}
	if n > MaxToken || sh.last > MaxToken-n {
		return 0, false
	}
	tok := sh.last + 1
	sh.last += n
	return tok, true
}

// newEntry adds an unlocked entry for key. sh.mu is held.
func (sh *shard[K, V]) newEntry(key K) *Entry[K, V] {
	e := sh.free
	if e != nil {
		sh.free, e.nextFree = e.nextFree, nil
		sh.nfree--
	} else {
		e = &Entry[K, V]{sh: sh}
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
		sh.m = make(map[K]*Entry[K, V])
	}
	sh.m[key] = e
	if len(sh.m) > sh.peak {
		sh.peak = len(sh.m)
	}
	return e
}

// lookup returns the entry of key, or nil. sh.mu is held.
func (sh *shard[K, V]) lookup(key K) *Entry[K, V] {
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
func (sh *shard[K, V]) dropIfUnused(e *Entry[K, V]) {
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
	e.reset() // holds no memory of the key or the value
	if sh.nfree < maxFree {
		e.nextFree = sh.free
		sh.free = e
		sh.nfree++
	}
}

// reset clears every field of e but its shard, which never changes: a
// lease may call Done on its entry long after the drop, and Done reads
// e.sh before it takes the shard's lock.
func (e *Entry[K, V]) reset() {
	var (
		value V
		key   K
	)
	e.Value, e.key = value, key
	e.ref, e.slot, e.spinners, e.locked, e.tok = 0, 0, 0, false, 0
	e.q = queue[K, V]{}
	e.done, e.after, e.nextFree = nil, nil, nil
}

// Unlock ends the current holding of e: the lock passes to the first
// waiter, or e is unlocked (and dropped if nobody waits). The caller
// must hold e and must not use it afterwards.
func (e *Entry[K, V]) Unlock() {
	sh := e.sh
	sh.mu.Lock()
	if !sh.handOff(e) {
		e.endHolding()
		e.ref--
		e.locked = false
		sh.dropIfUnused(e)
	}
	sh.mu.Unlock()
}

// Waiting reports whether a goroutine waits for e now. It may change as
// soon as it returns: use HandOff to act on it.
func (e *Entry[K, V]) Waiting() bool {
	sh := e.sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return !e.q.empty()
}

// HandOff passes the lock, with e.Value, to the first waiter if there is
// one, and reports whether it did. If it did not, the caller still holds
// e. A HandOff that returns true is an Unlock.
func (e *Entry[K, V]) HandOff() bool {
	sh := e.sh
	sh.mu.Lock()
	ok := sh.handOff(e)
	sh.mu.Unlock()
	return ok
}

// handOff grants e to its first waiter that can get its tokens; waiters
// whose tokens are exhausted fail. sh.mu is held.
func (sh *shard[K, V]) handOff(e *Entry[K, V]) bool {
	for w := e.q.head; w != nil; w = e.q.head {
		e.q.remove(w)
		tok, ok := sh.take(w.n)
		if !ok {
			e.ref--
			w.state, w.err = failed, ErrTokensExhausted
			close(w.ready)
			continue
		}
		e.endHolding()
		e.ref-- // the old holding; the waiter's ref becomes the holder's
		e.tok, w.tok = tok, tok
		w.state = granted
		close(w.ready)
		return true
	}
	return false
}

// endHolding closes the current holder's Done channel and starts its
// AfterDone functions. sh.mu is held.
func (e *Entry[K, V]) endHolding() {
	if e.done != nil {
		close(e.done)
		e.done = nil
	}
	for f := range e.after {
		go (*f)()
	}
	e.after = nil
}

// AfterDone runs f in its own goroutine once the holding of e that began
// with token tok ends, or at once if it has; stop cancels that and
// reports whether it did. No goroutine waits meanwhile.
func (e *Entry[K, V]) AfterDone(tok uint64, f func()) (stop func() bool) {
	sh := e.sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !e.locked || e.tok != tok {
		go f()
		return func() bool { return false }
	}
	if e.after == nil {
		e.after = make(map[*func()]struct{})
	}
	p := &f
	e.after[p] = struct{}{}
	return func() bool {
		sh.mu.Lock()
		defer sh.mu.Unlock()
		if _, ok := e.after[p]; !ok || e.tok != tok {
			return false
		}
		delete(e.after, p)
		return true
	}
}

// closedChan is returned by Done for a holding that has ended.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Done returns a channel that is closed when the holding of e that began
// with token tok ends (by Unlock or HandOff); if it has ended already,
// a closed channel. Tokens identify holdings, so Done works for a caller
// that raced its own Unlock, and for an entry since reused.
func (e *Entry[K, V]) Done(tok uint64) <-chan struct{} {
	sh := e.sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if !e.locked || e.tok != tok {
		return closedChan
	}
	if e.done == nil {
		e.done = make(chan struct{})
	}
	return e.done
}

// Close makes every waiter, and every later Lock and TryLock, return
// err. Holders keep their entries until they Unlock.
func (t *Table[K, V]) Close(err error) {
	if !t.closed.CompareAndSwap(nil, &err) {
		return
	}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.each(func(e *Entry[K, V]) {
			for w := e.q.head; w != nil; w = e.q.head {
				e.q.remove(w)
				e.ref--
				w.state, w.err = failed, err
				close(w.ready)
			}
		})
		sh.mu.Unlock()
	}
}

// Range calls f for every entry that is held or waited for, with its
// shard locked: f must not block or call the Table.
func (t *Table[K, V]) Range(f func(e *Entry[K, V])) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.each(f)
		sh.mu.Unlock()
	}
}

// each calls f for every live entry of sh. sh.mu is held.
func (sh *shard[K, V]) each(f func(e *Entry[K, V])) {
	for _, e := range sh.slots {
		if e != nil {
			f(e)
		}
	}
	for _, e := range sh.m {
		f(e)
	}
}

// Locked reports whether key is held now. Tests use it.
func (t *Table[K, V]) Locked(key K) bool {
	sh := t.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.lookup(key)
	return e != nil && e.locked
}

// Len returns the number of live entries (held or waited for) and, if key
// has an entry, how many goroutines wait for it. Tests use it.
func (t *Table[K, V]) Len(key K) (entries, waiters int) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.each(func(e *Entry[K, V]) {
			entries++
			if e.key == key {
				waiters = e.q.len()
			}
		})
		sh.mu.Unlock()
	}
	return entries, waiters
}

// QuoteKey is a key as error messages show it: a string quoted and, past
// 64 bytes, shortened (with its length); anything else formatted with %v.
// distributed and hybrid quote keys alike with it.
func QuoteKey(key any) string {
	const max = 64
	s, ok := key.(string)
	switch {
	case !ok:
		return fmt.Sprint(key)
	case len(s) > max:
		return fmt.Sprintf("%q... (%d bytes)", s[:max], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// KeyString is a key as observers see it: a string as it is (no
// allocation), anything else formatted with %v.
func KeyString[K comparable](key K) string {
	if s, ok := any(key).(string); ok {
		return s
	}
	return fmt.Sprint(key)
}
