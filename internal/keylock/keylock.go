// Package keylock is the engine of this module's in-process keyed
// mutexes: a table of FIFO locks, one per key, kept in 64 shards, with
// one wait queue per key. mutex/local is a thin wrapper over it;
// mutex/hybrid keeps its per-key cohort state in the table's entries, so
// both share one wait queue, one cancellation rule and one memory policy.
//
// # Fast path
//
// Each entry has one atomic state word: locked, how many waiters are
// queued, and a few flags. Each shard keeps up to numSlots entries in an
// open-addressed array that is read without a lock (a key's entry is in
// one of numProbes slots from the one its hash names), so locking a free
// key that has an entry there is one compare-and-swap, and so is
// unlocking it when nobody waits: no shard lock, no allocation, and no
// write to memory that other keys share. The shard's mutex is taken only
// to add or evict an entry, to queue a waiter, to hand the lock to one,
// or for a key that overflowed into the shard's map (its numProbes slots
// all held at once).
//
// # Memory
//
// A key costs memory while some goroutine holds or waits for it, and an
// idle key may stay a while in its shard's slots, which are a cache: at
// most numShards*numSlots (2,048) idle entries per Table, each evicted
// when its slot is needed by another key. A shard's slot array (256
// bytes) is made when the shard is first used. Entries of the map are deleted as
// soon as the last holder or waiter leaves, and a shard drops its map
// when a burst of keys is over (Go maps never shrink). Entries are never
// reused for another key, since goroutines read slots without a lock.
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
	// ErrNotLockedByKey is returned by UnlockKey for a key that is not
	// held by a LockKey.
	ErrNotLockedByKey = errors.New("not locked by key")
)

// MaxToken is the largest token a Table issues.
const MaxToken = 1<<63 - 1

const (
	numShards = 64 // a power of two
	// cacheLine is the size a shard is padded to. Go does not align a
	// Table to a cache line, so a shard may straddle two lines; the
	// padding still keeps any two shards from sharing more than one.
	cacheLine = 64
	// numSlots is how many entries a shard keeps where a Lock finds them
	// without the shard's lock (a power of two), and numProbes how many
	// of them, from the one a key's hash names, a key's entry may use.
	numSlots  = 32
	numProbes = 4
	// shrinkAbove is the number of live entries a shard's map must have
	// reached for it to be dropped, rather than kept, when it empties.
	shrinkAbove = 1024
	// A newcomer that finds its key locked with nobody queued polls the
	// state spinLoads times, then yields, up to spinRounds times, before
	// it queues (a short critical section often ends sooner than a
	// goroutine can park and be woken).
	spinRounds = 4
	spinLoads  = 64
)

// The bits of an entry's state. Waiters are counted from bit 8 up.
const (
	stLocked = 1 << iota
	// stByKey marks a holding taken by LockKey, which UnlockKey ends.
	stByKey
	// stMapped: the entry is in the shard's map, not in a slot. Every
	// operation on it takes the shard's lock, so it can be deleted when
	// unused.
	stMapped
	// stDead: the entry was evicted from its slot; whoever still has a
	// pointer to it looks the key up again under the shard's lock.
	stDead

	waiterUnit  = 1 << 8
	minusWaiter = ^uint64(waiterUnit - 1) // adds -waiterUnit
	holdBits    = stLocked | stByKey
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
	_      [cacheLine - 8]byte   // read by every Lock: not on a shard's line
	shards [numShards]shard[K, V]
}

type shard[K comparable, V any] struct {
	// slots is made once, under mu. Its pointers are read without mu,
	// written under it. A slot's entry is not dead; an evicted one
	// leaves its slot before another takes it.
	slots atomic.Pointer[slots[K, V]]

	mu   sync.Mutex // guards the fields below and the queues of the entries
	m    map[K]*Entry[K, V]
	last uint64 // no token of an entry gone from this shard is above it
	peak int    // len(m) high-water mark since m was made
	hand int    // rotates the choice of an idle entry to evict
	_    [cacheLine - 48]byte
}

type slots[K comparable, V any] [numSlots]atomic.Pointer[Entry[K, V]]

// probe returns the index of the i-th slot that key hash h may use.
func probe(h uint64, i int) int {
	return int(h>>8+uint64(i)) & (numSlots - 1)
}

// Entry is the state of one key. Its exported field Value belongs to the
// holder: only the goroutine that holds the entry may use it (a handoff
// passes it on with the lock). An entry that goes idle in its slot keeps
// its Value for the next holder; an entry evicted or deleted does not.
type Entry[K comparable, V any] struct {
	state atomic.Uint64 // st* bits, and the waiters from bit 8

	Value V

	hash uint64
	key  K
	sh   *shard[K, V]
	last uint64 // the last token issued; written by the holder
	q    queue  // guarded by sh.mu
}

// Key returns the entry's key.
func (e *Entry[K, V]) Key() K { return e.key }

// testHookCancelled, if set, runs when a waiter has seen its ctx end and
// before it takes the shard lock to leave the queue. Tests use it to hand
// the lock over in that window.
var testHookCancelled func()

func (t *Table[K, V]) shard(h uint64) *shard[K, V] {
	return &t.shards[h&(numShards-1)]
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
	return t.lock(ctx, key, n, true, stLocked, waiting)
}

// TryLock takes key's lock only if nobody holds it now; otherwise it
// returns ErrLocked. ctx is only checked, never waited on.
func (t *Table[K, V]) TryLock(ctx context.Context, key K, n uint64) (*Entry[K, V], uint64, error) {
	return t.lock(ctx, key, n, false, stLocked, nil)
}

// LockKey is Lock without tokens or waiting hook, for holders that
// unlock by key (a sync.Locker): UnlockKey ends the holding. hint is nil
// or an entry that LockKey returned for key before: if it is still the
// key's entry, and free, LockKey takes it without looking the key up.
func (t *Table[K, V]) LockKey(ctx context.Context, key K, hint *Entry[K, V]) (*Entry[K, V], error) {
	if hint != nil && t.closed.Load() == nil && ctx.Done() == nil && hint.state.CompareAndSwap(0, stLocked|stByKey) {
		// A free entry in a slot, so the key's only live one. ctx can
		// never end, so there is nothing to check.
		return hint, nil
	}
	e, _, err := t.lock(ctx, key, 0, true, stLocked|stByKey, nil)
	if err != nil {
		if e != nil {
			e.Unlock() // handed over as ctx ended: pass it on
		}
		return nil, err
	}
	return e, nil
}

// UnlockKey ends a holding of key taken by LockKey, by any goroutine. It
// returns ErrNotLockedByKey if key is not held, or held by Lock. hint is
// nil or an entry that LockKey returned for key.
func (t *Table[K, V]) UnlockKey(key K, hint *Entry[K, V]) error {
	// An entry in that state is in a slot (so the key's only live one),
	// held by a LockKey, with nobody queued.
	if hint != nil && hint.state.CompareAndSwap(stLocked|stByKey, 0) {
		return nil
	}
	if key != key {
		return ErrNaN
	}
	h := maphash.Comparable(seed, key)
	sh := t.shard(h)
	if e := sh.find(h, key); e != nil && e.state.CompareAndSwap(stLocked|stByKey, 0) {
		return nil
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.lookup(h, key)
	if e == nil || e.state.Load()&holdBits != holdBits {
		return ErrNotLockedByKey
	}
	if !e.handOff() {
		e.free()
	}
	return nil
}

func (t *Table[K, V]) lock(ctx context.Context, key K, n uint64, wait bool, hold uint64, waiting func()) (*Entry[K, V], uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, CtxErr(ctx)
	}
	if key != key {
		return nil, 0, ErrNaN
	}
	if p := t.closed.Load(); p != nil {
		return nil, 0, *p
	}
	h := maphash.Comparable(seed, key)
	sh := t.shard(h)
	if e := sh.find(h, key); e != nil {
		if e.state.CompareAndSwap(0, hold) || wait && e.spin(hold) {
			return e.grabbed(n)
		}
	}
	return t.lockSlow(ctx, sh, h, key, n, wait, hold, waiting)
}

// lockSlow is lock under the shard's lock: it finds or makes the entry,
// then takes it if free or queues.
func (t *Table[K, V]) lockSlow(ctx context.Context, sh *shard[K, V], h uint64, key K, n uint64, wait bool, hold uint64, waiting func()) (*Entry[K, V], uint64, error) {
	sh.mu.Lock()
	// Checked under the shard lock: Close sets closed before it sweeps
	// the shards, so a waiter queued here is either refused or swept.
	if p := t.closed.Load(); p != nil {
		sh.mu.Unlock()
		return nil, 0, *p
	}
	e := sh.lookup(h, key)
	if e == nil {
		e = sh.newEntry(h, key)
	}
	for {
		s := e.state.Load()
		switch {
		case s&stLocked == 0: // free, so nobody is queued
			if e.state.CompareAndSwap(s, s|hold) {
				sh.mu.Unlock()
				return e.grabbed(n)
			}
			continue
		case !wait:
			sh.mu.Unlock()
			return nil, 0, ErrLocked
		}
		// Counted under mu with the push below, so a holder's Unlock
		// that sees no waiter counted may free the lock without mu.
		if e.state.CompareAndSwap(s, s+waiterUnit) {
			break
		}
	}
	w := getWaiter(n, hold)
	e.q.push(w)
	sh.mu.Unlock()
	refreshProcs()
	if waiting != nil {
		waiting()
	}
	return t.await(ctx, e, w)
}

// spin polls e, locked, while nobody is queued, and takes it if it comes
// free; it reports whether it did. It takes the lock only from the free
// state, which implies an empty queue, so it never overtakes a queued
// waiter.
func (e *Entry[K, V]) spin(hold uint64) bool {
	p := procs.Load()
	if p == 0 {
		p = refreshProcs()
	}
	if p == 1 {
		return false
	}
	for range spinRounds {
		for range spinLoads {
			switch s := e.state.Load(); {
			case s == 0:
				if e.state.CompareAndSwap(0, hold) {
					return true
				}
			case s&^holdBits != 0: // queued waiters, or not in a slot
				return false
			}
		}
		runtime.Gosched()
	}
	return false
}

// procs caches runtime.GOMAXPROCS(0), which takes a lock of the runtime
// that every goroutine shares: spin reads the cache, and a goroutine
// that parks (which costs far more) refreshes it. 0: not read yet.
var procs atomic.Int32

func refreshProcs() int32 {
	p := int32(runtime.GOMAXPROCS(0))
	procs.Store(p)
	return p
}

// grabbed issues n tokens to the caller, which has just taken e.
func (e *Entry[K, V]) grabbed(n uint64) (*Entry[K, V], uint64, error) {
	tok, ok := e.take(n)
	if !ok {
		e.Unlock()
		return nil, 0, ErrTokensExhausted
	}
	return e, tok, nil
}

// take issues n consecutive tokens and returns the first (0 for n == 0).
// The caller holds e.
func (e *Entry[K, V]) take(n uint64) (uint64, bool) { return issue(&e.last, n) }

// issue issues n consecutive tokens after *last and returns the first (0
// for n == 0), or false if they would pass MaxToken.
func issue(last *uint64, n uint64) (uint64, bool) {
	if n == 0 {
		return 0, true
	}
	if n > MaxToken || *last > MaxToken-n {
		return 0, false
	}
	tok := *last + 1
	*last += n
	return tok, true
}

// await waits for w's grant or ctx's end; see [awaitGrant].
func (t *Table[K, V]) await(ctx context.Context, e *Entry[K, V], w *waiter) (*Entry[K, V], uint64, error) {
	tok, held, err := awaitGrant(ctx, e, w)
	if !held {
		return nil, 0, err
	}
	return e, tok, err
}

// queued is an entry a waiter queues on, as awaitGrant sees it.
type queued interface {
	// shardMu returns the lock of the entry's shard, which guards its
	// queue.
	shardMu() *sync.Mutex
	// leaveLocked takes the waiting w out of the queue, for good. The
	// shard's lock is held.
	leaveLocked(w *waiter)
}

func (e *Entry[K, V]) shardMu() *sync.Mutex { return &e.sh.mu }

// leaveLocked takes w out of e's queue and count of waiters. Waiters
// exist only while e is held: the holder's Unlock frees or deletes it.
func (e *Entry[K, V]) leaveLocked(w *waiter) {
	e.q.remove(w)
	e.state.Add(minusWaiter)
}

// awaitGrant waits for w's grant, on e, or ctx's end. This is the one
// place that settles the race between the two, for a [Table] and an
// [RWTable]. It reports whether the caller holds e: granted, with the
// first token; or handed to it as ctx ended, with ctx's error (the
// caller gives it back).
func awaitGrant(ctx context.Context, e queued, w *waiter) (tok uint64, held bool, err error) {
	select {
	case <-w.ready:
		state, tok, err := w.state, w.tok, w.err
		putWaiter(w)
		if state == failed {
			return 0, false, err
		}
		return tok, true, nil
	case <-ctx.Done():
	}
	if testHookCancelled != nil {
		testHookCancelled()
	}
	mu := e.shardMu()
	mu.Lock()
	state, tok, err := w.state, w.tok, w.err
	if state == waiting {
		e.leaveLocked(w)
	}
	mu.Unlock()
	if state != waiting {
		<-w.ready // sent under mu, before we took it
	}
	putWaiter(w)
	switch state {
	case waiting:
		return 0, false, CtxErr(ctx)
	case granted:
		return tok, true, CtxErr(ctx)
	default: // failed: already dequeued and uncounted
		return 0, false, err
	}
}

// CtxErr returns an error satisfying errors.Is for ctx.Err() and for its
// cause, if that differs: the error of a wait that ctx ended.
func CtxErr(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("%w (%w)", err, cause)
	}
	return err
}

// find returns the entry of key if it is in a slot, or nil. It takes no
// lock: the entry may be dead by the time the caller uses it.
func (sh *shard[K, V]) find(h uint64, key K) *Entry[K, V] {
	s := sh.slots.Load()
	if s == nil {
		return nil
	}
	for i := range numProbes {
		if e := s[probe(h, i)].Load(); e != nil && e.hash == h && e.key == key {
			return e
		}
	}
	return nil
}

// lookup returns the entry of key, or nil. sh.mu is held.
func (sh *shard[K, V]) lookup(h uint64, key K) *Entry[K, V] {
	if e := sh.find(h, key); e != nil {
		return e
	}
	if len(sh.m) == 0 {
		return nil
	}
	return sh.m[key]
}

// newEntry adds an unlocked entry for key, which has none: in a slot if
// one is empty or holds an idle entry it can evict, else in the map.
// sh.mu is held.
func (sh *shard[K, V]) newEntry(h uint64, key K) *Entry[K, V] {
	e := &Entry[K, V]{hash: h, key: key, sh: sh, last: sh.last}
	s := sh.slots.Load()
	if s == nil {
		s = new(slots[K, V])
		sh.slots.Store(s)
	}
	if i := sh.freeSlot(s, h); i >= 0 {
		s[i].Store(e)
		return e
	}
	e.state.Store(stMapped)
	if sh.m == nil {
		sh.m = make(map[K]*Entry[K, V])
	}
	sh.m[key] = e
	if len(sh.m) > sh.peak {
		sh.peak = len(sh.m)
	}
	return e
}

// freeSlot returns the index of an empty slot that key hash h may use,
// emptying one by evicting an idle entry if need be, or -1 if all of
// them are in use. sh.mu is held.
func (sh *shard[K, V]) freeSlot(s *slots[K, V], h uint64) int {
	for i := range numProbes {
		if j := probe(h, i); s[j].Load() == nil {
			return j
		}
	}
	sh.hand++
	for i := range numProbes {
		j := probe(h, (sh.hand+i)%numProbes)
		if e := s[j].Load(); e.state.CompareAndSwap(0, stDead) {
			s[j].Store(nil)
			sh.retire(e)
			return j
		}
	}
	return -1
}

// retire forgets e, which nobody holds or waits for and nobody can take
// again: its tokens are folded into the shard's, so that the key's next
// entry issues larger ones, and its Value is dropped. sh.mu is held.
func (sh *shard[K, V]) retire(e *Entry[K, V]) {
	sh.last = max(sh.last, e.last)
	var zero V
	e.Value = zero
}

// Unlock ends the current holding of e: the lock passes to the first
// waiter, or e is unlocked (and deleted if in the map). The caller must
// hold e and must not use it afterwards.
func (e *Entry[K, V]) Unlock() {
	if s := e.state.Load(); s&^holdBits == 0 && e.state.CompareAndSwap(s, 0) {
		return
	}
	sh := e.sh
	sh.mu.Lock()
	if !e.handOff() {
		e.free()
	}
	sh.mu.Unlock()
}

// free unlocks e, which the caller holds and nobody waits for, deleting
// it if it is in the map. e.sh.mu is held.
func (e *Entry[K, V]) free() {
	for {
		s := e.state.Load()
		if s&stMapped != 0 {
			// Only ever changed under mu.
			e.state.Store(stDead)
			sh := e.sh
			delete(sh.m, e.key)
			if len(sh.m) == 0 && sh.peak > shrinkAbove {
				sh.m, sh.peak = nil, 0
			}
			sh.retire(e)
			return
		}
		if e.state.CompareAndSwap(s, s&^holdBits) {
			return
		}
	}
}

// Waiting reports whether a goroutine waits for e now. It may change as
// soon as it returns: use HandOff to act on it.
func (e *Entry[K, V]) Waiting() bool {
	return e.state.Load() >= waiterUnit
}

// HandOff passes the lock, with e.Value, to the first waiter if there is
// one, and reports whether it did. If it did not, the caller still holds
// e. A HandOff that returns true is an Unlock.
func (e *Entry[K, V]) HandOff() bool {
	if !e.Waiting() {
		return false
	}
	sh := e.sh
	sh.mu.Lock()
	ok := e.handOff()
	sh.mu.Unlock()
	return ok
}

// handOff grants e to its first waiter that can get its tokens; waiters
// whose tokens are exhausted fail. e.sh.mu is held. While e is held and
// has waiters, only the holder, under mu, changes its state.
func (e *Entry[K, V]) handOff() bool {
	for w := e.q.head; w != nil; w = e.q.head {
		e.q.remove(w)
		tok, ok := e.take(w.n)
		if !ok {
			e.state.Add(minusWaiter)
			w.state, w.err = failed, ErrTokensExhausted
			w.signal()
			continue
		}
		s := e.state.Load()
		e.state.Store((s-waiterUnit)&^holdBits | w.hold)
		w.tok, w.state = tok, granted
		w.signal()
		return true
	}
	return false
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
				e.state.Add(minusWaiter)
				w.state, w.err = failed, err
				w.signal()
			}
		})
		sh.mu.Unlock()
	}
}

// Range calls f for every entry of the table, idle ones in the slots
// included, with its shard locked: f must not block or call the Table.
// An entry that a Lock takes after Close has set its error is one that f
// was called for, so Close followed by Range reaches every holding.
func (t *Table[K, V]) Range(f func(e *Entry[K, V])) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.each(f)
		sh.mu.Unlock()
	}
}

// each calls f for every entry of sh. sh.mu is held.
func (sh *shard[K, V]) each(f func(e *Entry[K, V])) {
	if s := sh.slots.Load(); s != nil {
		for i := range s {
			if e := s[i].Load(); e != nil {
				f(e)
			}
		}
	}
	for _, e := range sh.m {
		f(e)
	}
}

// Locked reports whether key is held now. Tests use it.
func (t *Table[K, V]) Locked(key K) bool {
	h := maphash.Comparable(seed, key)
	sh := t.shard(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.lookup(h, key)
	return e != nil && e.state.Load()&stLocked != 0
}

// Len returns the number of live entries (held or waited for; idle ones
// in the slots are not counted) and, if key has an entry, how many
// goroutines wait for it. Tests use it.
func (t *Table[K, V]) Len(key K) (entries, waiters int) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.each(func(e *Entry[K, V]) {
			if e.state.Load()&stLocked != 0 {
				entries++
			}
			if e.key == key {
				waiters = e.q.len()
			}
		})
		sh.mu.Unlock()
	}
	return entries, waiters
}

// Idle returns the number of idle entries the slots keep. Tests use it.
func (t *Table[K, V]) Idle() int {
	n := 0
	t.Range(func(e *Entry[K, V]) {
		if e.state.Load() == 0 {
			n++
		}
	})
	return n
}

// KeyString is a key as observers see it: a string as it is (no
// allocation), anything else formatted with %v.
func KeyString[K comparable](key K) string {
	if s, ok := any(key).(string); ok {
		return s
	}
	return fmt.Sprint(key)
}
