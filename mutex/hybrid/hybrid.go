package hybrid

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keylock"
	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
)

var (
	_ mutex.Keyed[string] = (*Mutex[string])(nil)
	_ mutex.Lease         = (*lease[string])(nil)
	_ remote.Watcher      = (*lease[string])(nil)
)

// Mutex is a keyed mutex that queues the goroutines of one process locally
// per key and shares one remote lease between them; see the package
// documentation.
//
// A Mutex must be created with [New]; the zero value is not usable. A Mutex
// must not be copied. For any key, the Unlock of a lease synchronizes
// before the Lock or TryLock of this Mutex that next returns a lease for
// that key; across processes the remote mutex gives the same guarantee.
type Mutex[K comparable] struct {
	core[K]

	// t holds the local state of every key in use: its FIFO of local
	// goroutines and, in each entry's Value, the cohort. There is no
	// lock that every key shares.
	t       keylock.Table[K, cohort]
	lockers lockutil.LockerSet[K]
}

// New returns a Mutex that coordinates processes through the remote mutex
// r. A nil r or an invalid option is an error. The Mutex does not own r
// (Close leaves it open) unless [WithOwnedRemote] says so.
func New[K comparable](r mutex.Keyed[K], opts ...Option) (*Mutex[K], error) {
	c, err := configure("New", r, opts)
	if err != nil {
		return nil, err
	}
	m := &Mutex[K]{}
	if err := m.init(r, c); err != nil {
		return nil, err
	}
	return m, nil
}

// Lock blocks until the caller holds the lock for key, ctx is done, the
// remote fails, or m is closed. It waits behind the goroutines of this
// process that asked for key earlier, in FIFO order. On ctx end the error
// satisfies errors.Is(err, ctx.Err()); after Close, errors.Is(err,
// [mutex.ErrClosed]).
func (m *Mutex[K]) Lock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "Lock", key, false)
}

// TryLock takes the lock for key only if no goroutine of this process
// holds, waits for or contends for it and the remote grants it at once;
// otherwise it returns an error satisfying errors.Is(err, [mutex.ErrLocked]).
// Like Lock, it refuses the empty key of a string kind with an error
// satisfying errors.Is(err, [mutex.ErrInvalidKey]), whatever the remote.
func (m *Mutex[K]) TryLock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "TryLock", key, true)
}

// Locker returns a [sync.Locker] for key. Lockers of one Mutex share
// state: m.Locker(k).Lock() in one place and m.Locker(k).Unlock() in
// another behave like one [sync.Mutex]. Its Lock retries errors that can
// heal with a capped exponential backoff; its Unlock of a key not locked
// through a Locker panics.
// Errors it retries go to the [WithLogger] logger. On an invalid key its
// Lock panics; after Close it reports [mutex.ErrClosed] to the logger and
// blocks until the process ends (use Lock with a ctx to get the error).
func (m *Mutex[K]) Locker(key K) sync.Locker {
	if m.remote == nil {
		panic(errNotNew)
	}
	return m.lockers.Locker(m, key, m.lockerError)
}

// errNotNew is the error of a Mutex that New did not make.
var errNotNew = errors.New("hybrid: Mutex not created by New (the zero value is not usable): use New")

// errEmptyKey refuses the empty key, whatever the remote would do.
var errEmptyKey = fmt.Errorf("%w: the empty key (refused by every implementation: Redis cannot name it)", mutex.ErrInvalidKey)

// lockErr is the one error wrapper of this package (see
// [lockutil.KeyError]).
func lockErr(op string, key any, err error) error {
	return lockutil.KeyError("hybrid", op, key, err)
}

func (m *Mutex[K]) lock(ctx context.Context, op string, key K, try bool) (mutex.Lease, error) {
	if err := m.check(ctx, op, key, errNotNew); err != nil {
		return nil, err
	}
	if m.obs == nil {
		return m.lockLocal(ctx, op, key, try, nil)
	}
	start, waited := time.Now(), false
	l, err := m.lockLocal(ctx, op, key, try, func() {
		waited = true
		m.observe(ctx, mutex.Waiting, key, mutex.Event{Op: op})
	})
	m.observe(ctx, mutex.LockDone, key, lockutil.LockDone(ctx, op, time.Since(start), waited, err))
	if err == nil {
		l.(*lease[K]).since = time.Now()
	}
	return l, err
}

// lockLocal queues for key locally (calling waiting, if not nil, if it
// must wait), then shares the cohort's remote lease or contends for one.
func (m *Mutex[K]) lockLocal(ctx context.Context, op string, key K, try bool, waiting func()) (mutex.Lease, error) {
	var (
		e   *keylock.Entry[K, cohort]
		err error
	)
	if try {
		e, _, err = m.t.TryLock(ctx, key, 0)
	} else {
		e, _, err = m.t.Lock(ctx, key, 0, waiting)
	}
	if err != nil {
		if e != nil {
			// Handed to us as ctx ended: pass it on, remote lease and all.
			m.release(e, &e.Value, false)
		}
		if errors.Is(err, mutex.ErrClosed) {
			return nil, lockErr(op, key, mutex.ErrClosed)
		}
		return nil, lockErr(op, key, err)
	}
	if l := m.share(e); l != nil {
		return l, nil
	}
	return m.contend(ctx, op, e, try)
}

// share returns a lease on the cohort's remote lease if it is still held
// and has a token left: a local handoff. The caller holds e.
func (m *Mutex[K]) share(e *keylock.Entry[K, cohort]) *lease[K] {
	r, token, ok := e.Value.share()
	if !ok {
		return nil
	}
	return m.newLease(e, r, token)
}

// contend acquires the remote lease for the key of e, which the caller
// holds locally, and returns the first local lease of it. On failure the
// local lock passes on to the next waiter, which contends in its turn.
func (m *Mutex[K]) contend(caller context.Context, op string, e *keylock.Entry[K, cohort], try bool) (mutex.Lease, error) {
	key := e.Key()
	r, err := m.contendWrite(caller, &e.Value, key, try)
	if err != nil {
		e.Unlock()
		return nil, lockErr(op, key, err)
	}
	return m.newLease(e, r, r.Token()), nil
}

// Close ends m; see the package documentation. It returns once no
// goroutine of m runs and no remote lease of m is held, with the errors of
// the remote releases it made. Close is idempotent: a later call returns
// nil at once.
func (m *Mutex[K]) Close() error {
	if !m.closing.CompareAndSwap(false, true) {
		return nil
	}
	m.t.Close(mutex.ErrClosed)
	var s seized
	m.t.Range(func(e *keylock.Entry[K, cohort]) { e.Value.shutdown(&s) })
	return m.shutdown(&s)
}

// lease is one local holding of a key of a Mutex: a share of the
// cohort's remote lease.
type lease[K comparable] struct {
	holding[K]
	e     *keylock.Entry[K, cohort] // ours while not unlocked
	since time.Time                 // when Lock returned it (observed Mutexes only)
}

// newLease returns a local lease of e on r, the cohort's remote lease,
// with token.
func (m *Mutex[K]) newLease(e *keylock.Entry[K, cohort], r mutex.Lease, token uint64) *lease[K] {
	l := &lease[K]{e: e}
	l.core, l.c, l.key, l.remote, l.token = &m.core, &e.Value, e.Key(), r, token
	return l
}

// Unlock hands the remote lease to the next local waiter, or releases it;
// see the package documentation.
func (l *lease[K]) Unlock() error {
	if l.core.obs == nil {
		return l.unlock()
	}
	err := l.unlock()
	if ev, report := lockutil.Unlocked(time.Since(l.since), err); report {
		l.core.observe(context.Background(), mutex.Unlocked, l.key, ev)
	}
	return err
}

func (l *lease[K]) unlock() error {
	lost, again := l.beginUnlock()
	if again != nil {
		return again
	}
	return l.endUnlock(lost, l.core.release(l.e, &l.e.Value, lost != nil))
}
