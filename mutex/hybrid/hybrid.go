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
	return m.lockers.Locker(m, key, func(key K, err error) {
		m.log().Warn("keyedmutex: Locker: Lock failed, retrying", "err", err)
	})
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
	if m.remote == nil {
		return nil, errNotNew
	}
	if ctx == nil {
		return nil, lockErr(op, key, lockutil.ErrNilContext)
	}
	if keylock.EmptyKey(key) {
		return nil, lockErr(op, key, errEmptyKey)
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
	return &lease[K]{m: m, e: e, key: e.Key(), remote: r, token: token}
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
	return &lease[K]{m: m, e: e, key: key, remote: r, token: r.Token()}, nil
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
	var (
		remotes    []mutex.Lease
		tickets    []remote.Ticket
		contenders []chan struct{}
	)
	m.t.Range(func(e *keylock.Entry[K, cohort]) {
		r, tk, contending := e.Value.shutdown()
		if r != nil {
			remotes = append(remotes, r)
		}
		if tk != nil {
			tickets = append(tickets, tk)
		}
		if contending != nil {
			contenders = append(contenders, contending)
		}
	})
	return m.shutdown(remotes, tickets, contenders)
}

// lease is one local holding of a key: a share of the cohort's remote
// lease.
type lease[K comparable] struct {
	m      *Mutex[K]
	e      *keylock.Entry[K, cohort] // ours while not unlocked
	key    K
	remote mutex.Lease // the cohort's remote lease when granted
	token  uint64
	since  time.Time // when Lock returned it (observed Mutexes only)

	mu       sync.Mutex         // guards the fields below
	unwatch  func() bool        // cancels the remote's AfterDone callback, set by watchLocked
	unlocked bool               // Unlock was called
	err      error              // set when the lease ended: ErrUnlocked or a loss
	done     chan struct{}      // made by watchLocked; closed when the lease ends
	after    lockutil.Callbacks // AfterDone functions, run when the lease ends
}

func (l *lease[K]) Token() uint64 { return l.token }

// Err is nil while the lease is held; then [mutex.ErrUnlocked] after
// Unlock, or an error satisfying errors.Is(err, [mutex.ErrLost]) once
// the remote lease was lost (also [mutex.ErrClosed] after Close). It
// only reads: a loss it sees first ends the lease (closes Done) when the
// watch of the remote lease, or Unlock, finds it.
func (l *lease[K]) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	return l.lostLocked()
}

// lostLocked returns the loss error if the remote lease was lost or taken
// by Close while l is held, else nil. l.mu is held.
func (l *lease[K]) lostLocked() error {
	if l.unlocked {
		return nil
	}
	switch {
	case l.e.Value.isClosed():
		return lockErr("lease", l.key, fmt.Errorf("%w: %w", mutex.ErrLost, mutex.ErrClosed))
	case ended(l.remote):
		return lostErr(l.key, l.remote)
	}
	return nil
}

// lostErr is the error of a lease whose remote lease r was lost: it
// satisfies errors.Is(err, mutex.ErrLost) and carries r's reason.
func lostErr(key any, r mutex.Lease) error {
	if cause := r.Err(); cause != nil && errors.Is(cause, mutex.ErrLost) {
		return lockErr("lease", key, cause)
	}
	return lockErr("lease", key, mutex.ErrLost)
}

// endLocked ends l with err unless it ended already. l.mu is held.
func (l *lease[K]) endLocked(err error) {
	if l.err != nil {
		return
	}
	l.err = err
	if l.done != nil {
		close(l.done)
	}
	after := l.after.Take()
	after.Start()
}

// Done returns a channel that is closed when the lease ends: at Unlock,
// or when the remote lease is lost or Close takes it. The first call
// while held watches the remote lease until then: by its AfterDone if it
// has one (the remotes of this module), else with a goroutine.
func (l *lease[K]) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.watchLocked()
	return l.done
}

// AfterDone runs f in its own goroutine once the lease has ended, or at
// once if it has; stop cancels that and reports whether it did (see
// [remote.Watcher]). It watches the remote lease as Done does.
func (l *lease[K]) AfterDone(f func()) (stop func() bool) {
	l.mu.Lock()
	l.watchLocked()
	if l.err != nil {
		l.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	p := l.after.Add(f)
	l.mu.Unlock()
	return func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.after.Remove(p)
	}
}

// watchLocked, at its first call, makes l.done and, while l is held,
// arranges for l to end when its remote lease does. l.mu is held.
func (l *lease[K]) watchLocked() {
	if l.done != nil {
		return
	}
	l.done = make(chan struct{})
	if l.err == nil && !l.unlocked {
		// Under the cohort's lock (ifOpen), which Close takes to mark it
		// closed before it waits for the watchers: a watcher is either
		// counted before that wait, or never started.
		open := l.e.Value.ifOpen(func() {
			if ended(l.remote) {
				l.err = lostErr(l.key, l.remote)
				return
			}
			l.m.wg.Add(1)
			if w, ok := l.remote.(remote.Watcher); ok {
				// No goroutine while held: the remote calls back.
				l.unwatch = w.AfterDone(l.remoteEnded)
			} else {
				go l.watch(l.done)
			}
		})
		if !open {
			l.err = lockErr("lease", l.key, fmt.Errorf("%w: %w", mutex.ErrLost, mutex.ErrClosed))
		}
	}
	if l.err != nil {
		close(l.done)
	}
}

// watch ends l when its remote lease ends before l does.
func (l *lease[K]) watch(done chan struct{}) {
	select {
	case <-done:
		l.m.wg.Done()
	case <-l.remote.Done():
		l.remoteEnded()
	}
}

// remoteEnded ends l as lost if its remote lease ended while l is held.
func (l *lease[K]) remoteEnded() {
	defer l.m.wg.Done()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.lostLocked(); err != nil {
		l.endLocked(err)
	}
}

// stopWatching cancels the remote's callback, if it has not run.
func (l *lease[K]) stopWatching() {
	l.mu.Lock()
	stop := l.unwatch
	l.unwatch = nil
	l.mu.Unlock()
	if stop != nil && stop() {
		l.m.wg.Done()
	}
}

// Unlock hands the remote lease to the next local waiter, or releases it;
// see the package documentation.
func (l *lease[K]) Unlock() error {
	if l.m.obs == nil {
		return l.unlock()
	}
	err := l.unlock()
	if ev, report := lockutil.Unlocked(time.Since(l.since), err); report {
		l.m.observe(context.Background(), mutex.Unlocked, l.key, ev)
	}
	return err
}

func (l *lease[K]) unlock() error {
	l.mu.Lock()
	if l.unlocked {
		l.mu.Unlock()
		return lockErr("Unlock", l.key, mutex.ErrUnlocked)
	}
	lost := l.err
	if lost == nil {
		lost = l.lostLocked()
	}
	l.unlocked = true
	if lost != nil {
		l.endLocked(lost)
	} else {
		l.endLocked(mutex.ErrUnlocked)
	}
	l.mu.Unlock()
	l.stopWatching()

	key := l.key
	err := l.m.release(l.e, &l.e.Value, lost != nil)
	switch {
	case lost != nil:
		l.m.reportRelease(key, err)
		return lost
	case errors.Is(err, mutex.ErrLost): // with the remote's reason
		l.mu.Lock()
		l.err = lockErr("lease", key, err)
		l.mu.Unlock()
		return lockErr("Unlock", key, err)
	case err != nil:
		return lockErr("Unlock", key, fmt.Errorf("release remote lease: %w", err))
	}
	return nil
}
