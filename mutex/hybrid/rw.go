package hybrid

import (
	"context"
	"errors"
	"sync"

	"github.com/keyedmutex/keyedmutex/internal/keylock"
	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/internal/rlocker"
	"github.com/keyedmutex/keyedmutex/mutex"
)

var (
	_ mutex.RWKeyed[string] = (*RWMutex[string])(nil)
	_ mutex.Lease           = (*rwLease[string])(nil)
	_ remote.Watcher        = (*rwLease[string])(nil)
)

// RWMutex is a keyed reader/writer mutex, a [mutex.RWKeyed], that queues
// the goroutines of one process locally per key, in FIFO order with
// reader runs admitted together, and shares one remote lease between
// them: the readers of a run share one remote read lease, and writers
// pass one remote write lease from one to the next as [Mutex] does; see
// the package documentation.
//
// An RWMutex must be created with [NewRW]; the zero value is not usable.
// An RWMutex must not be copied. For any key, the Unlock of a write lease
// synchronizes before every later Lock, TryLock, RLock or TryRLock of
// this RWMutex that returns a lease for that key, and the Unlock of a
// read lease before the next Lock or TryLock that does; across
// processes the remote gives the same guarantees.
type RWMutex[K comparable] struct {
	core[K]                  // its remote is rw, as a Keyed: the write side
	rw      mutex.RWKeyed[K] // the remote
	perRead int              // local readers one remote read lease serves: bound+1

	// t holds the local state of every key in use: its FIFO of local
	// goroutines and, in each entry's Value, the cohort.
	t        keylock.RWTable[K, rwCohort]
	lockers  lockutil.LockerSet[K]
	rlockers rlocker.Set[K]
}

// NewRW returns an RWMutex that coordinates processes through the remote
// read-write mutex r. It takes the options of [New], with the same
// meaning and defaults: [WithMaxLocalHandoffs] bounds both the local
// handoffs of a remote write lease (as for [Mutex], and only over a
// remote that implements [mutex.TokenReserver]) and how many local
// readers one remote read lease serves (bound+1; every local reader
// acquires its own with a bound of 0). [WithObserver] is not supported
// yet, and is an error. A nil r is an error.
func NewRW[K comparable](r mutex.RWKeyed[K], opts ...Option) (*RWMutex[K], error) {
	c, err := configure[K]("NewRW", r, opts)
	if err != nil {
		return nil, err
	}
	if c.obs != nil {
		return nil, errors.New("hybrid: NewRW: WithObserver is not supported by RWMutex yet")
	}
	m := &RWMutex[K]{rw: r, perRead: c.maxHandoffs + 1}
	if err := m.init(r, c); err != nil {
		return nil, err
	}
	return m, nil
}

// Lock blocks until the caller holds the write lock for key, ctx is done,
// the remote fails, or m is closed. It waits behind the goroutines of
// this process that asked for key earlier, readers included, then
// shares the write lease of the writer before it, or acquires one. On
// ctx end the error satisfies errors.Is(err, ctx.Err()); after Close,
// errors.Is(err, [mutex.ErrClosed]).
func (m *RWMutex[K]) Lock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "Lock", key, true, false)
}

// TryLock takes the write lock for key only if no goroutine of this
// process holds or waits for it and the remote grants it at once;
// otherwise it returns an error satisfying errors.Is(err,
// [mutex.ErrLocked]).
func (m *RWMutex[K]) TryLock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "TryLock", key, true, true)
}

// RLock blocks until the caller holds the read lock for key, ctx is done,
// the remote fails, or m is closed. It joins the local readers that hold
// the key, and their remote read lease, unless a local writer waits (it
// then queues behind it) or the run has served its bound.
func (m *RWMutex[K]) RLock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "RLock", key, false, false)
}

// TryRLock takes the read lock for key only if no local writer holds or
// waits for it and the local readers hold a remote read lease it can
// share, or the remote grants one at once; otherwise it returns an error
// satisfying errors.Is(err, [mutex.ErrLocked]).
func (m *RWMutex[K]) TryRLock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "TryRLock", key, false, true)
}

// Locker returns a [sync.Locker] for the write lock of key; see
// [lockutil.LockerSet.Locker] and [Mutex.Locker].
func (m *RWMutex[K]) Locker(key K) sync.Locker {
	if m.remote == nil {
		panic(errNotNewRW)
	}
	return m.lockers.Locker(m, key, m.lockerError)
}

// RLocker returns a [sync.Locker] for the read lock of key, as
// [sync.RWMutex.RLocker] does; its Unlock ends one read holding taken by
// any RLocker of key. Errors it retries go to the [WithLogger] logger.
func (m *RWMutex[K]) RLocker(key K) sync.Locker {
	if m.remote == nil {
		panic(errNotNewRW)
	}
	return m.rlockers.Locker(m, key, m.lockerError)
}

// errNotNewRW is the error of an RWMutex that NewRW did not make.
var errNotNewRW = errors.New("hybrid: RWMutex not created by NewRW (the zero value is not usable): use NewRW")

func (m *RWMutex[K]) lock(ctx context.Context, op string, key K, write, try bool) (mutex.Lease, error) {
	if err := m.check(ctx, op, key, errNotNewRW); err != nil {
		return nil, err
	}
	var (
		e   *keylock.RWEntry[K, rwCohort]
		err error
	)
	switch {
	case write && try:
		e, _, err = m.t.TryLock(ctx, key, 0)
	case write:
		e, _, err = m.t.Lock(ctx, key, 0, nil)
	case try:
		e, _, err = m.t.TryRLock(ctx, key, 0)
	default:
		e, _, err = m.t.RLock(ctx, key, 0, nil)
	}
	if err != nil {
		if e != nil {
			// Handed to us as ctx ended: pass it on, remote lease and all.
			m.releaseLocal(e, write, false)
		}
		if errors.Is(err, mutex.ErrClosed) {
			err = mutex.ErrClosed
		}
		return nil, lockErr(op, key, err)
	}
	if write {
		if l := m.shareWrite(e); l != nil {
			return l, nil
		}
		return m.contendWrite(ctx, op, e, try)
	}
	return m.joinRead(ctx, op, e, try)
}

// releaseLocal ends a local holding that has no lease yet: a writer's,
// or a reader's.
func (m *RWMutex[K]) releaseLocal(e *keylock.RWEntry[K, rwCohort], write, lost bool) error {
	if write {
		return m.release(rwWriter[K]{e}, &e.Value.cohort, lost)
	}
	return leaveRead(e, nil)
}

// rwWriter is an entry held for writing, as a writer's release sees it:
// only a writer next can take the remote write lease (a reader waits for
// Unlock, which lets the readers at the head in).
type rwWriter[K comparable] struct {
	*keylock.RWEntry[K, rwCohort]
}

// Waiting reports whether the first waiter is a writer.
func (w rwWriter[K]) Waiting() bool {
	waiting, writer := w.Next()
	return waiting && writer
}

// shareWrite returns a lease on the cohort's remote write lease if it is
// still held and has a token left: a local handoff. The caller holds e
// alone.
func (m *RWMutex[K]) shareWrite(e *keylock.RWEntry[K, rwCohort]) *rwLease[K] {
	r, token, ok := e.Value.share()
	if !ok {
		return nil
	}
	return m.newLease(e, nil, r, token)
}

// contendWrite acquires the remote write lease for the key of e, which
// the caller holds alone locally, and returns the first local lease of
// it. On failure the local lock passes on.
func (m *RWMutex[K]) contendWrite(ctx context.Context, op string, e *keylock.RWEntry[K, rwCohort], try bool) (mutex.Lease, error) {
	key := e.Key()
	r, err := m.core.contendWrite(ctx, &e.Value.cohort, key, try)
	if err != nil {
		e.Unlock()
		return nil, lockErr(op, key, err)
	}
	return m.newLease(e, nil, r, r.Token()), nil
}

// readLease is a local read lease of s.
func (m *RWMutex[K]) readLease(e *keylock.RWEntry[K, rwCohort], s *readShare) *rwLease[K] {
	return m.newLease(e, s, s.remote, s.remote.Token())
}

// joinRead shares the remote read lease that the local readers hold, if
// it is live and has served fewer than bound+1 of them, or acquires a
// new one; readers wait for an acquisition in progress. The caller holds
// e as a reader.
func (m *RWMutex[K]) joinRead(ctx context.Context, op string, e *keylock.RWEntry[K, rwCohort], try bool) (mutex.Lease, error) {
	c, key := &e.Value, e.Key()
	for {
		t := c.join(ctx, m.perRead, try)
		switch t.step {
		case joinClosed:
			leaveRead(e, nil)
			return nil, lockErr(op, key, mutex.ErrClosed)
		case joinShared:
			return m.readLease(e, t.share), nil
		case joinOwn:
			// Not waiting for that acquisition: try one of our own.
			return m.tryOwnRead(ctx, op, e)
		case joinWait:
			select {
			case <-t.wait:
				continue
			case <-ctx.Done():
				leaveRead(e, nil)
				return nil, lockErr(op, key, keylock.CtxErr(ctx))
			}
		}
		l, err := m.contendRead(ctx, e, t, try)
		if err != nil {
			leaveRead(e, nil)
			return nil, lockErr(op, key, err)
		}
		return l, nil
	}
}

// contendRead acquires the run's remote read lease, as join began it
// (t), and returns the caller's local lease of it. Readers that come
// meanwhile wait for it. The caller holds e as a reader.
func (m *RWMutex[K]) contendRead(caller context.Context, e *keylock.RWEntry[K, rwCohort], t readTurn, try bool) (mutex.Lease, error) {
	defer t.cancel()
	if t.tk != nil {
		t.tk.Cancel() // a requeued turn is a writer's
	}
	var r mutex.Lease
	err := awaitTurn(t.ctx, t.notBefore)
	if err == nil {
		r, err = m.acquireRead(t.ctx, e.Key(), try)
	}
	s, closed, contending := e.Value.installRead(r, err)
	if err == nil && !closed {
		close(contending)
		return m.readLease(e, s), nil
	}
	err = abandoned(caller, r, err, closed)
	close(contending)
	return nil, err
}

// tryOwnRead takes a remote read lease for the caller alone, with
// TryRLock, beside an acquisition in progress that a TryRLock must not
// wait for. Readers that come later join the one in progress. The
// caller holds e as a reader.
func (m *RWMutex[K]) tryOwnRead(ctx context.Context, op string, e *keylock.RWEntry[K, rwCohort]) (mutex.Lease, error) {
	key := e.Key()
	r, err := m.rw.TryRLock(ctx, key)
	if err != nil {
		leaveRead(e, nil)
		return nil, lockErr(op, key, err)
	}
	s, closed := e.Value.addOwn(r)
	if closed { // Close came first: it expects no remote lease left
		m.releaseRemote(key, r)
		leaveRead(e, nil)
		return nil, lockErr(op, key, mutex.ErrClosed)
	}
	return m.readLease(e, s), nil
}

// acquireRead takes a remote read lease.
func (m *RWMutex[K]) acquireRead(ctx context.Context, key K, try bool) (mutex.Lease, error) {
	if try {
		return m.rw.TryRLock(ctx, key)
	}
	return m.rw.RLock(ctx, key)
}

// leaveRead ends a read holding of e that shares s (nil: none yet). The
// last local reader of a remote read lease releases it, before its local
// RUnlock, so that a local writer let in by the last RUnlock finds no
// remote read lease of this process left. It returns the remote
// release's error.
func leaveRead[K comparable](e *keylock.RWEntry[K, rwCohort], s *readShare) error {
	var err error
	if s != nil {
		if r := e.Value.leave(s); r != nil {
			err = r.Unlock()
		}
	}
	e.RUnlock()
	return err
}

// Close ends m as [Mutex.Close] ends a Mutex: later calls fail with
// [mutex.ErrClosed], local waiters are woken with it, remote contention
// in progress is cancelled, and every remote lease m holds is released,
// in parallel; local holders' leases end as lost. Close closes the
// remote only with [WithOwnedRemote]. It is idempotent: a later call
// returns nil at once.
func (m *RWMutex[K]) Close() error {
	if m.remote == nil {
		return errNotNewRW
	}
	if !m.closing.CompareAndSwap(false, true) {
		return nil
	}
	m.t.Close(mutex.ErrClosed)
	var s seized
	m.t.Range(func(e *keylock.RWEntry[K, rwCohort]) { e.Value.shutdownAll(&s) })
	return m.shutdown(&s)
}
