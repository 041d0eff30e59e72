package local

import (
	"context"
	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"sync"

	"github.com/keyedmutex/keyedmutex/internal/keylock"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/internal/rlocker"
	"github.com/keyedmutex/keyedmutex/mutex"
)

var (
	_ mutex.RWKeyed[string]       = (*RWMutex[string])(nil)
	_ mutex.TokenReserver[string] = (*RWMutex[string])(nil)
	_ mutex.Lease                 = (*rwLease[string])(nil)
	_ remote.Watcher              = (*rwLease[string])(nil)
)

// RWMutex is a family of in-process reader/writer mutexes, one per key of
// type K: the keyed form of [sync.RWMutex], and a [mutex.RWKeyed].
//
// The zero value is ready to use: all keys unlocked. An RWMutex must not
// be copied after first use.
//
// For any key, the lock is held by any number of readers (RLock,
// TryRLock, RLocker) or by one writer (Lock, TryLock, Locker). Waiters are
// served in arrival order, and consecutive readers at the head of the
// queue are admitted together: a writer that waits blocks every reader
// that asks after it, so a stream of readers never starves it. A waiter
// whose ctx ends leaves the queue, and readers queued behind a writer
// that gave up join the readers that hold. As with a [sync.RWMutex], a
// goroutine must not take a key's read lock twice: its second RLock
// would wait behind a writer queued meanwhile, which waits for its
// first.
//
// Happens-before, as for [sync.RWMutex]: the Unlock of a write lease
// synchronizes before the return of every later Lock, TryLock, RLock and
// TryRLock that succeeds for the key; the Unlock of a read lease before
// the return of the next Lock or TryLock that succeeds for it.
//
// Fencing tokens: every lease, read or write, gets a token strictly
// greater than every token issued earlier for the key by this RWMutex,
// in the order of admission: a writer's token is above every earlier
// one, readers' included, and a reader's lies between those of the
// writers before and after it. Local leases are never lost.
//
// Only keys that are held or waited for take memory, and at most one
// idle key per shard (64 in all), kept so that a key locked again and
// again is not made anew each time. Every operation takes a lock of the
// key's shard (one of 64) once; keys that hash to different shards share
// nothing.
type RWMutex[K comparable] struct {
	t        keylock.RWTable[K, struct{}]
	lockers  lockutil.LockerSet[K]
	rlockers rlocker.Set[K]
}

// Lock blocks until the caller holds the write lock for key, alone, or
// ctx is done; on ctx end it returns an error satisfying errors.Is(err,
// ctx.Err()) and holds nothing. The empty key of a string kind is
// refused with an error satisfying errors.Is(err, [mutex.ErrInvalidKey]).
func (m *RWMutex[K]) Lock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, key, 1, true, true)
}

// TryLock takes the write lock for key only if nobody holds or waits for
// it; otherwise it returns an error satisfying errors.Is(err,
// [mutex.ErrLocked]).
func (m *RWMutex[K]) TryLock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, key, 1, true, false)
}

// LockN is Lock with a write lease that reserves n consecutive fencing
// tokens (always exactly n), as [Mutex.LockN]: Token() is the first, and
// every later lease for key gets a token above all n. n == 0 returns an
// error satisfying errors.Is(err, [ErrBlockSize]). See
// [mutex.TokenReserver].
func (m *RWMutex[K]) LockN(ctx context.Context, key K, n uint64) (mutex.Reservation, error) {
	return m.lockN(ctx, key, n, true)
}

// TryLockN is TryLock with a write lease that reserves n consecutive
// fencing tokens, as LockN.
func (m *RWMutex[K]) TryLockN(ctx context.Context, key K, n uint64) (mutex.Reservation, error) {
	return m.lockN(ctx, key, n, false)
}

func (m *RWMutex[K]) lockN(ctx context.Context, key K, n uint64, wait bool) (mutex.Reservation, error) {
	if n == 0 {
		return nil, lockErr(opName(wait), key, errBlockSize)
	}
	l, err := m.lock(ctx, key, n, true, wait)
	if err != nil {
		return nil, err
	}
	return &rwReservation[K]{rwLease: l.(*rwLease[K]), n: n}, nil
}

// rwReservation is a write lease from LockN, which knows its block size.
type rwReservation[K comparable] struct {
	*rwLease[K]
	n uint64
}

func (r *rwReservation[K]) Reserved() uint64 { return r.n }

// RLock blocks until the caller holds the read lock for key, or ctx is
// done. It joins the readers that hold the key if no writer waits;
// otherwise it queues behind that writer.
func (m *RWMutex[K]) RLock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, key, 1, false, true)
}

// TryRLock takes the read lock for key only if no writer holds or waits
// for it; otherwise it returns an error satisfying errors.Is(err,
// [mutex.ErrLocked]).
func (m *RWMutex[K]) TryRLock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, key, 1, false, false)
}

// Locker returns a [sync.Locker] that takes and releases the write lock
// for key; Lockers of one RWMutex share state, as [Mutex.Locker]'s do.
// Unlock of a key not locked through a Locker panics, like
// [sync.RWMutex.Unlock].
func (m *RWMutex[K]) Locker(key K) sync.Locker {
	return m.lockers.Locker(m, key, nil)
}

// RLocker returns a [sync.Locker] that takes and releases a read lock for
// key, as [sync.RWMutex.RLocker] does. RLockers of one RWMutex share
// state: an RLocker's Unlock ends one read holding taken by any RLocker
// of key, and panics if there is none.
func (m *RWMutex[K]) RLocker(key K) sync.Locker {
	return m.rlockers.Locker(m, key, nil)
}

func (m *RWMutex[K]) lock(ctx context.Context, key K, n uint64, write, wait bool) (mutex.Lease, error) {
	if ctx == nil {
		return nil, lockErr(rwOpName(write, wait), key, lockutil.ErrNilContext)
	}
	if keylock.EmptyKey(key) {
		return nil, lockErr(rwOpName(write, wait), key, errEmptyKey)
	}
	var (
		e   *keylock.RWEntry[K, struct{}]
		tok uint64
		err error
	)
	switch {
	case write && wait:
		e, tok, err = m.t.Lock(ctx, key, n, nil)
	case write:
		e, tok, err = m.t.TryLock(ctx, key, n)
	case wait:
		e, tok, err = m.t.RLock(ctx, key, 1, nil)
	default:
		e, tok, err = m.t.TryRLock(ctx, key, 1)
	}
	if err != nil {
		if e != nil {
			// Handed to us as ctx ended: pretend it was not, and pass
			// it on.
			release(e, write)
		}
		return nil, lockErr(rwOpName(write, wait), key, err)
	}
	return &rwLease[K]{e: e, tok: tok, write: write}, nil
}

// rwOpName is the name of a call in errors: Lock, TryLock, RLock or
// TryRLock.
func rwOpName(write, wait bool) string {
	switch {
	case write:
		return opName(wait)
	case wait:
		return "RLock"
	}
	return "TryRLock"
}

func release[K comparable](e *keylock.RWEntry[K, struct{}], write bool) {
	if write {
		e.Unlock()
	} else {
		e.RUnlock()
	}
}

// rwLease is one read or write holding of one key.
type rwLease[K comparable] struct {
	e     *keylock.RWEntry[K, struct{}] // ours while not unlocked
	tok   uint64
	write bool

	mu       sync.Mutex // guards the fields below
	unlocked bool
	w        watch
}

// Unlock releases the holding: a writer's Unlock admits the next writer
// or the readers at the head of the queue; the last reader's, the next
// writer. A second call returns [mutex.ErrUnlocked].
func (l *rwLease[K]) Unlock() error {
	l.mu.Lock()
	if l.unlocked {
		l.mu.Unlock()
		return mutex.ErrUnlocked
	}
	l.unlocked = true
	l.w.end()
	l.w = watch{} // a later stop finds nothing to cancel
	l.mu.Unlock()
	release(l.e, l.write)
	return nil
}

// Done returns a channel closed when the lease is unlocked. Local leases
// are never lost.
func (l *rwLease[K]) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unlocked {
		return unlocked
	}
	if l.w.done == nil {
		l.w.done = make(chan struct{})
	}
	return l.w.done
}

// AfterDone runs f in its own goroutine once the lease is unlocked, or at
// once if it is; stop cancels that and reports whether it did.
func (l *rwLease[K]) AfterDone(f func()) (stop func() bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unlocked {
		go f()
		return func() bool { return false }
	}
	h := l.w.after.Add(f)
	return func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.w.after.Remove(h)
	}
}

// Err returns nil while the lease is held and [mutex.ErrUnlocked] after
// Unlock.
func (l *rwLease[K]) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unlocked {
		return mutex.ErrUnlocked
	}
	return nil
}

// Token returns the lease's fencing token; see [RWMutex].
func (l *rwLease[K]) Token() uint64 { return l.tok }
