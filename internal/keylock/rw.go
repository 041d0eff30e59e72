package keylock

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// The two kinds of RWTable holding, as a waiter's hold.
const (
	rwWrite = 1 + iota
	rwRead
)

// RWTable is a family of FIFO read-write locks, one per key of type K,
// each entry carrying a Value of type V: the engine of the in-process
// read-write mutexes (mutex/local and mutex/hybrid), beside [Table], the
// engine of the plain ones, whose fast path it leaves alone.
//
// Waiters are served in arrival order, and consecutive readers at the
// head of the queue are admitted together. A reader that asks while the
// key is read-held joins the holders only if nobody waits, so a waiting
// writer blocks every later reader and is never starved. A waiter whose
// ctx ends leaves the queue and the ones behind it move up: readers
// behind a cancelled writer join the readers that hold.
//
// Every operation takes the key's shard lock once (64 shards, as in
// Table). An entry lives in its shard's map while some goroutine holds or
// waits for it; when the last one leaves, the entry stays as its shard's
// one idle entry (keeping its Value) until another key's entry goes idle
// there, and is then deleted: at most 64 idle entries per table. Tokens
// are issued to writers and readers alike, in order of admission, so a
// writer's token is above every earlier one and a reader's lies between
// the writers around it; they keep increasing across deleted entries,
// as in Table.
//
// The zero value is ready to use. An RWTable must not be copied after
// first use. For any key, the end of a write holding synchronizes before
// every later admission; the end of a read holding synchronizes before
// the next write admission.
type RWTable[K comparable, V any] struct {
	closed atomic.Pointer[error] // set once by Close
	_      [cacheLine - 8]byte
	shards [numShards]rwShard[K, V]
}

type rwShard[K comparable, V any] struct {
	mu   sync.Mutex // guards the fields below and every field of the entries but Value
	m    map[K]*RWEntry[K, V]
	last uint64 // no token of an entry gone from this shard is above it
	peak int    // len(m) high-water mark since m was made
	// idle is the one unused entry the shard keeps in m, so that a key
	// locked and unlocked again and again does not make and delete its
	// entry each time.
	idle *RWEntry[K, V]
	_    [cacheLine - 40]byte
}

// RWEntry is the state of one key of an RWTable. Its exported field Value
// belongs to the holders: a writer uses it alone; the readers of one run
// share it, and must guard what they change in it themselves. It is
// passed on with the lock, kept while the entry is its shard's idle
// entry, and dropped when the entry is deleted.
type RWEntry[K comparable, V any] struct {
	Value V

	key     K
	sh      *rwShard[K, V]
	readers int  // read holdings
	writer  bool // held by a writer
	last    uint64
	q       queue
}

// Key returns the entry's key.
func (e *RWEntry[K, V]) Key() K { return e.key }

func (t *RWTable[K, V]) shard(h uint64) *rwShard[K, V] {
	return &t.shards[h&(numShards-1)]
}

// Lock blocks until the caller holds key's lock alone, as a writer, or
// ctx is done; RLock until it holds it as a reader. Both issue n
// consecutive tokens (n == 0: none, and 0 is returned) and call waiting,
// if not nil, once queued. As with [Table.Lock], a grant that comes in
// the same instant as ctx's end returns the entry AND the error: the
// caller holds it and must release it (Unlock or RUnlock) before
// it returns the error. After Close they return the error given to
// Close.
func (t *RWTable[K, V]) Lock(ctx context.Context, key K, n uint64, waiting func()) (*RWEntry[K, V], uint64, error) {
	return t.lock(ctx, key, n, rwWrite, true, waiting)
}

// TryLock takes key's write lock only if nobody holds or waits for it.
func (t *RWTable[K, V]) TryLock(ctx context.Context, key K, n uint64) (*RWEntry[K, V], uint64, error) {
	return t.lock(ctx, key, n, rwWrite, false, nil)
}

// RLock is Lock for a read holding; see Lock.
func (t *RWTable[K, V]) RLock(ctx context.Context, key K, n uint64, waiting func()) (*RWEntry[K, V], uint64, error) {
	return t.lock(ctx, key, n, rwRead, true, waiting)
}

// TryRLock takes key's read lock only if no writer holds it and nobody
// waits for it.
func (t *RWTable[K, V]) TryRLock(ctx context.Context, key K, n uint64) (*RWEntry[K, V], uint64, error) {
	return t.lock(ctx, key, n, rwRead, false, nil)
}

func (t *RWTable[K, V]) lock(ctx context.Context, key K, n uint64, hold uint64, wait bool, waiting func()) (*RWEntry[K, V], uint64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, CtxErr(ctx)
	}
	if key != key {
		return nil, 0, ErrNaN
	}
	h := maphash.Comparable(seed, key)
	sh := t.shard(h)
	sh.mu.Lock()
	// Checked under the shard lock: Close sets closed before it sweeps
	// the shards, so a waiter queued here is either refused or swept.
	if p := t.closed.Load(); p != nil {
		sh.mu.Unlock()
		return nil, 0, *p
	}
	e := sh.m[key]
	switch {
	case e == nil:
		e = sh.newEntry(key)
	case e == sh.idle:
		sh.idle = nil
	}
	if e.admits(hold) {
		tok, ok := e.take(n)
		if !ok {
			e.idleIfUnused()
			sh.mu.Unlock()
			return nil, 0, ErrTokensExhausted
		}
		e.admit(hold)
		sh.mu.Unlock()
		return e, tok, nil
	}
	if !wait {
		sh.mu.Unlock()
		return nil, 0, ErrLocked
	}
	w := getWaiter(n, hold)
	e.q.push(w)
	sh.mu.Unlock()
	if waiting != nil {
		waiting()
	}
	return t.await(ctx, e, w)
}

// newEntry adds an unheld entry for key, which has none. sh.mu is held.
func (sh *rwShard[K, V]) newEntry(key K) *RWEntry[K, V] {
	e := &RWEntry[K, V]{key: key, sh: sh, last: sh.last}
	if sh.m == nil {
		sh.m = make(map[K]*RWEntry[K, V])
	}
	sh.m[key] = e
	sh.peak = max(sh.peak, len(sh.m))
	return e
}

// admits reports whether a newcomer wanting hold may take e now: a
// writer if nobody holds it, a reader if no writer holds it and nobody
// waits. e.sh.mu is held.
func (e *RWEntry[K, V]) admits(hold uint64) bool {
	return e.admitsWaiter(hold) && e.q.empty()
}

// admit records a holding of kind hold, whose tokens are issued. e.sh.mu
// is held.
func (e *RWEntry[K, V]) admit(hold uint64) {
	if hold == rwWrite {
		e.writer = true
	} else {
		e.readers++
	}
}

// take issues n consecutive tokens and returns the first (0 for n == 0).
// e.sh.mu is held.
func (e *RWEntry[K, V]) take(n uint64) (uint64, bool) { return issue(&e.last, n) }

// idleIfUnused keeps e as its shard's idle entry if nobody holds or
// waits for it, deleting the idle entry it replaces. e.sh.mu is held.
func (e *RWEntry[K, V]) idleIfUnused() {
	if e.writer || e.readers > 0 || !e.q.empty() {
		return
	}
	sh := e.sh
	if old := sh.idle; old != e {
		if old != nil {
			sh.delete(old)
		}
		sh.idle = e
	}
}

// delete deletes e, unused, from sh, folding its tokens into the shard's
// and dropping its Value. sh.mu is held.
func (sh *rwShard[K, V]) delete(e *RWEntry[K, V]) {
	sh.last = max(sh.last, e.last)
	delete(sh.m, e.key)
	if len(sh.m) == 0 && sh.peak > shrinkAbove {
		sh.m, sh.peak = nil, 0
	}
	var zero V
	e.Value = zero
}

// grant admits the waiters at the head of e's queue that can hold now:
// one writer if e is free, or the readers up to the first writer if no
// writer holds; waiters whose tokens are exhausted fail. Then it deletes
// e if it is unused. e.sh.mu is held.
func (e *RWEntry[K, V]) grant() {
	for w := e.q.head; w != nil && e.admitsWaiter(w.hold); w = e.q.head {
		e.q.remove(w)
		tok, ok := e.take(w.n)
		if !ok {
			w.state, w.err = failed, ErrTokensExhausted
			w.signal()
			continue
		}
		e.admit(w.hold)
		w.tok, w.state = tok, granted
		w.signal()
	}
	e.idleIfUnused()
}

// admitsWaiter reports whether the waiter at the head of the queue,
// wanting hold, may take e now. e.sh.mu is held.
func (e *RWEntry[K, V]) admitsWaiter(hold uint64) bool {
	if hold == rwWrite {
		return !e.writer && e.readers == 0
	}
	return !e.writer
}

// await waits for w's grant or ctx's end, and settles the race between
// the two as [Table] does (see [awaitGrant]).
func (t *RWTable[K, V]) await(ctx context.Context, e *RWEntry[K, V], w *waiter) (*RWEntry[K, V], uint64, error) {
	tok, held, err := awaitGrant(ctx, e, w)
	if !held {
		return nil, 0, err
	}
	return e, tok, err
}

func (e *RWEntry[K, V]) shardMu() *sync.Mutex { return &e.sh.mu }

// leaveLocked takes w out of e's queue and lets the ones behind it move
// up.
func (e *RWEntry[K, V]) leaveLocked(w *waiter) {
	e.q.remove(w)
	e.grant()
}

// Unlock ends the caller's write holding of e: the next writer, or the
// readers at the head of the queue, are admitted. The caller must not
// use e afterwards.
func (e *RWEntry[K, V]) Unlock() {
	sh := e.sh
	sh.mu.Lock()
	e.writer = false
	e.grant()
	sh.mu.Unlock()
}

// RUnlock ends one read holding of e; the last reader lets the next
// writer in. The caller must not use e afterwards.
func (e *RWEntry[K, V]) RUnlock() {
	sh := e.sh
	sh.mu.Lock()
	e.readers--
	if e.readers == 0 {
		e.grant()
	}
	sh.mu.Unlock()
}

// Next reports whether a goroutine waits for e now, and if so whether
// the first one is a writer. It may change as soon as it returns: act on
// it with HandOff.
func (e *RWEntry[K, V]) Next() (waiting, writer bool) {
	sh := e.sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e.q.empty() {
		return false, false
	}
	return true, e.q.head.hold == rwWrite
}

// HandOff passes the caller's write holding of e, with e.Value, to the
// first waiter if it is a writer, and reports whether it did. If it did
// not, the caller still holds e. A HandOff that returns true is an
// Unlock.
func (e *RWEntry[K, V]) HandOff() bool {
	sh := e.sh
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if e.q.empty() || e.q.head.hold != rwWrite {
		return false
	}
	e.writer = false
	e.grant()
	return true
}

// Close makes every waiter, and every later lock, return err. Holders
// keep their entries until they release them.
func (t *RWTable[K, V]) Close(err error) {
	if !t.closed.CompareAndSwap(nil, &err) {
		return
	}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			for w := e.q.head; w != nil; w = e.q.head {
				e.q.remove(w)
				w.state, w.err = failed, err
				w.signal()
			}
		}
		sh.mu.Unlock()
	}
}

// Range calls f for every entry of the table with its shard locked: f
// must not block or call the Table. An entry that a lock takes after
// Close has set its error is one that f was called for.
func (t *RWTable[K, V]) Range(f func(e *RWEntry[K, V])) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for _, e := range sh.m {
			f(e)
		}
		sh.mu.Unlock()
	}
}

// Len returns the number of entries in use (keys held or waited for;
// not the idle ones) and how many goroutines wait for key. Tests use it.
func (t *RWTable[K, V]) Len(key K) (entries, waiters int) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		entries += len(sh.m)
		if sh.idle != nil {
			entries--
		}
		if e := sh.m[key]; e != nil {
			waiters = e.q.len()
		}
		sh.mu.Unlock()
	}
	return entries, waiters
}
