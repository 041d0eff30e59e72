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
	"github.com/keyedmutex/keyedmutex/internal/rlocker"
	"github.com/keyedmutex/keyedmutex/mutex"
)

var (
	_ mutex.RWKeyed[string] = (*RWMutex[string])(nil)
	_ mutex.Lease           = (*rwLease[string])(nil)
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

// rwCohort is the remote side of one key: the remote write lease that
// local writers pass on, or the remote read leases that local readers
// share. Readers use it together, so every field is guarded by mu.
type rwCohort struct {
	mu        sync.Mutex
	remote    mutex.Lease   // the writers' remote write lease, or nil
	next      uint64        // token of the next local writer of remote
	end       uint64        // one past the last token reserved with remote
	share     *readShare    // the remote read lease new local readers join, or nil
	shares    []*readShare  // every remote read lease local readers hold
	closed    bool          // Close took the remote leases away
	notBefore time.Time     // after a bound release: contend not before
	ticket    remote.Ticket // the remote write waiter queued by a requeue
	// While a holder acquires a remote lease: cancel stops it, and
	// contending is closed when the acquisition has ended. Readers wait
	// for it rather than acquire a second read lease.
	cancel     context.CancelFunc
	contending chan struct{}
}

// readShare is one remote read lease and the local readers that share it.
// Its counts are guarded by the cohort's mu.
type readShare struct {
	remote mutex.Lease
	refs   int // local readers holding it now
	served int // local readers it has served
}

// drop removes s from c.shares. c.mu is held.
func (c *rwCohort) drop(s *readShare) {
	for i, x := range c.shares {
		if x == s {
			c.shares[i] = c.shares[len(c.shares)-1]
			c.shares[len(c.shares)-1] = nil
			c.shares = c.shares[:len(c.shares)-1]
			break
		}
	}
	if c.share == s {
		c.share = nil
	}
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

func (m *RWMutex[K]) lockerError(key K, err error) {
	m.log().Warn("keyedmutex: Locker: Lock failed, retrying", "err", err)
}

// errNotNewRW is the error of an RWMutex that NewRW did not make.
var errNotNewRW = errors.New("hybrid: RWMutex not created by NewRW (the zero value is not usable): use NewRW")

func (m *RWMutex[K]) lock(ctx context.Context, op string, key K, write, try bool) (mutex.Lease, error) {
	switch {
	case m.remote == nil:
		return nil, errNotNewRW
	case ctx == nil:
		return nil, lockErr(op, key, lockutil.ErrNilContext)
	case keylock.EmptyKey(key):
		return nil, lockErr(op, key, errEmptyKey)
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
		return m.releaseWrite(e, lost)
	}
	return m.leaveRead(e, nil)
}

// shareWrite returns a lease on the cohort's remote write lease if it is
// still held and has a token left: a local handoff. The caller holds e
// alone.
func (m *RWMutex[K]) shareWrite(e *keylock.RWEntry[K, rwCohort]) *rwLease[K] {
	c := &e.Value
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.remote == nil || c.next >= c.end || ended(c.remote) {
		return nil
	}
	l := &rwLease[K]{m: m, e: e, key: e.Key(), write: true, remote: c.remote, token: c.next}
	c.next++
	return l
}

// contendWrite acquires the remote write lease for the key of e, which
// the caller holds alone locally, and returns the first local lease of
// it. On failure the local lock passes on.
func (m *RWMutex[K]) contendWrite(ctx context.Context, op string, e *keylock.RWEntry[K, rwCohort], try bool) (mutex.Lease, error) {
	key := e.Key()
	e.Value.mu.Lock()
	r, _, err := m.contendLocked(ctx, e, true, try)
	if err != nil {
		e.Unlock()
		return nil, lockErr(op, key, err)
	}
	return &rwLease[K]{m: m, e: e, key: key, write: true, remote: r, token: r.Token()}, nil
}

// joinRead shares the remote read lease that the local readers hold, if
// it is live and has served fewer than bound+1 of them, or acquires a
// new one; readers wait for an acquisition in progress. The caller holds
// e as a reader.
func (m *RWMutex[K]) joinRead(ctx context.Context, op string, e *keylock.RWEntry[K, rwCohort], try bool) (mutex.Lease, error) {
	c, key := &e.Value, e.Key()
	for {
		c.mu.Lock()
		s := c.share
		switch {
		case c.closed:
			c.mu.Unlock()
			m.leaveRead(e, nil)
			return nil, lockErr(op, key, mutex.ErrClosed)
		case s != nil && s.served < m.perRead && !ended(s.remote):
			s.refs++
			s.served++
			c.mu.Unlock()
			return &rwLease[K]{m: m, e: e, key: key, share: s, remote: s.remote, token: s.remote.Token()}, nil
		case c.contending != nil && try:
			// Not waiting for that acquisition: try one of our own.
			c.mu.Unlock()
			return m.tryOwnRead(ctx, op, e)
		case c.contending != nil:
			wait := c.contending
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				m.leaveRead(e, nil)
				return nil, lockErr(op, key, ctxErrOf(ctx))
			}
		}
		l, _, err := m.contendLocked(ctx, e, false, try)
		if err != nil {
			m.leaveRead(e, nil)
			return nil, lockErr(op, key, err)
		}
		return l, nil
	}
}

// tryOwnRead takes a remote read lease for the caller alone, with
// TryRLock, beside an acquisition in progress that a TryRLock must not
// wait for. Readers that come later join the one in progress. The
// caller holds e as a reader.
func (m *RWMutex[K]) tryOwnRead(ctx context.Context, op string, e *keylock.RWEntry[K, rwCohort]) (mutex.Lease, error) {
	c, key := &e.Value, e.Key()
	r, err := m.rw.TryRLock(ctx, key)
	if err != nil {
		m.leaveRead(e, nil)
		return nil, lockErr(op, key, err)
	}
	s := &readShare{remote: r, refs: 1, served: 1}
	c.mu.Lock()
	closed := c.closed
	if !closed {
		c.shares = append(c.shares, s)
	}
	c.mu.Unlock()
	if closed { // Close came first: it expects no remote lease left
		m.releaseRemote(key, r)
		m.leaveRead(e, nil)
		return nil, lockErr(op, key, mutex.ErrClosed)
	}
	return &rwLease[K]{m: m, e: e, key: key, share: s, remote: r, token: r.Token()}, nil
}

// ctxErrOf returns ctx's error, with its cause if that differs.
func ctxErrOf(ctx context.Context) error {
	err := ctx.Err()
	if cause := context.Cause(ctx); cause != nil && cause != err {
		return fmt.Errorf("%w (%w)", err, cause)
	}
	return err
}

// contendLocked acquires a remote lease for the key of e and installs it
// in the cohort. For a writer, it returns the remote write lease and how
// many tokens it reserved, and releases a (lost) write lease left in the
// cohort. For a reader, it returns the caller's local lease of the new
// read share. The caller holds e, and c.mu, which contendLocked unlocks:
// readers that come meanwhile see the acquisition in progress and wait
// for it.
func (m *RWMutex[K]) contendLocked(caller context.Context, e *keylock.RWEntry[K, rwCohort], write, try bool) (mutex.Lease, uint64, error) {
	c, key := &e.Value, e.Key()
	ctx, cancel := context.WithCancel(caller)
	defer cancel()
	if c.closed {
		c.mu.Unlock()
		return nil, 0, mutex.ErrClosed
	}
	var stale mutex.Lease
	tk := c.ticket
	if write {
		stale = c.remote
		c.remote = nil
	}
	c.ticket = nil
	c.cancel, c.contending = cancel, make(chan struct{})
	c.mu.Unlock()
	if stale != nil {
		m.releaseRemote(key, stale)
	}

	var (
		r        mutex.Lease
		reserved uint64
		err      error
	)
	if tk != nil && write && !try {
		// The previous holder requeued this process in the remote's
		// queue: wait for that turn.
		r, reserved, err = m.waitTicket(ctx, tk)
	} else {
		if tk != nil {
			tk.Cancel()
		}
		if err = awaitTurn(ctx, takeNotBefore(c)); err == nil {
			r, reserved, err = m.acquireRemote(ctx, key, write, try)
		}
	}

	c.mu.Lock()
	closed := c.closed
	var l mutex.Lease = r
	switch {
	case err != nil || closed:
	case write:
		c.remote, c.next, c.end = r, r.Token()+1, r.Token()+reserved
	default:
		s := &readShare{remote: r, refs: 1, served: 1}
		c.share = s
		c.shares = append(c.shares, s)
		l = &rwLease[K]{m: m, e: e, key: key, share: s, remote: r, token: r.Token()}
	}
	contending := c.contending
	c.cancel, c.contending = nil, nil
	c.mu.Unlock()
	close(contending)
	switch {
	case err == nil && !closed:
		return l, reserved, nil
	case err == nil: // Close came first: it expects no remote lease left
		if uerr := r.Unlock(); uerr != nil && !errors.Is(uerr, mutex.ErrLost) {
			err = uerr
		}
		err = errors.Join(mutex.ErrClosed, err)
	case closed && caller.Err() == nil:
		err = fmt.Errorf("%w: %w", mutex.ErrClosed, err)
	}
	return nil, 0, err
}

// takeNotBefore takes the cohort's notBefore (the yield after a bound
// release). The caller holds e (alone, or as the reader that contends for
// its run), so notBefore is its to clear.
func takeNotBefore(c *rwCohort) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	nb := c.notBefore
	c.notBefore = time.Time{}
	return nb
}

// acquireRemote takes the remote lease: a read lease, or a write lease
// that reserves a token per local writer it may serve. It returns the
// lease and how many write tokens it holds (1 for a read lease).
func (m *RWMutex[K]) acquireRemote(ctx context.Context, key K, write, try bool) (mutex.Lease, uint64, error) {
	var (
		l   mutex.Lease
		err error
	)
	switch {
	case write:
		return m.acquireWrite(ctx, key, try)
	case try:
		l, err = m.rw.TryRLock(ctx, key)
	default:
		l, err = m.rw.RLock(ctx, key)
	}
	if err != nil {
		return nil, 0, err
	}
	return l, 1, nil
}

// takeRemote detaches the cohort's remote lease, if any, and its requeue
// ticket.
func takeRemote(c *rwCohort) (mutex.Lease, remote.Ticket) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, tk := c.remote, c.ticket
	c.remote, c.ticket = nil, nil
	return r, tk
}

// releaseWrite ends the write holding of e: it passes the key, with the
// cohort's remote write lease, to the next local waiter if that is a
// writer and the lease is live and has a token left; otherwise it
// requeues (at the bound, with a writer next) or releases the remote
// lease, then the local lock. It returns the remote release's error.
func (m *RWMutex[K]) releaseWrite(e *keylock.RWEntry[K, rwCohort], lost bool) error {
	c := &e.Value
	c.mu.Lock()
	r, tk := c.remote, c.ticket
	live := !lost && !c.closed && r != nil && !ended(r)
	handOff := live && c.next < c.end
	c.mu.Unlock()
	if (handOff || tk != nil) && e.HandOff() {
		// A cohort handoff (no remote command), or the requeued turn
		// passed on to the next writer (a waiter gave up as it was
		// handed the key).
		return nil
	}
	if live && !handOff {
		if waiting, writer := e.Next(); waiting && writer {
			if done, err := m.requeue(e, r); done {
				return err
			}
		}
	}
	err := m.releaseCohort(e, live && !handOff)
	e.Unlock()
	return err
}

// releaseCohort releases the cohort's remote lease, if any, and cancels
// its ticket; after a release forced by the bound it makes the next
// contender yield. The caller holds e alone.
func (m *RWMutex[K]) releaseCohort(e *keylock.RWEntry[K, rwCohort], bound bool) error {
	c := &e.Value
	r, tk := takeRemote(c)
	if tk != nil {
		tk.Cancel()
	}
	err := m.releaseTimed(r, bound)
	if bound {
		// If a local waiter takes the key next, let another process's
		// waiter take the remote lock first.
		c.mu.Lock()
		c.notBefore = time.Now().Add(m.yieldFor())
		c.mu.Unlock()
	}
	return err
}

// requeue ends the cohort's write lease at its bound with a local writer
// next: if the remote lease can requeue, it hands the remote lock to the
// next process in the remote's queue and queues this process again, in
// one step, and passes the key with that queued turn to the next local
// writer. It reports whether it did (false: release as usual).
func (m *RWMutex[K]) requeue(e *keylock.RWEntry[K, rwCohort], r mutex.Lease) (bool, error) {
	rq, ok := r.(remote.Lease)
	if !ok {
		return false, nil
	}
	tk, err := rq.Requeue(m.block)
	if errors.Is(err, remote.ErrUnavailable) {
		return false, nil
	}
	c := &e.Value
	c.mu.Lock()
	if c.remote == r {
		c.remote = nil
	}
	closed := c.closed
	if err == nil && !closed {
		c.ticket = tk
	}
	c.mu.Unlock()
	switch {
	case err != nil:
		e.Unlock()
		return true, err
	case closed:
		tk.Cancel()
		e.Unlock()
		return true, nil
	case e.HandOff():
		return true, nil
	}
	// The next writer left meanwhile: nobody will take the turn.
	_, tk = takeRemote(c)
	if tk != nil {
		tk.Cancel()
	}
	e.Unlock()
	return true, nil
}

// leaveRead ends a read holding of e that shares s (nil: none yet). The
// last local reader of a remote read lease releases it, before its local
// RUnlock, so that a local writer let in by the last RUnlock finds no
// remote read lease of this process left. It returns the remote
// release's error.
func (m *RWMutex[K]) leaveRead(e *keylock.RWEntry[K, rwCohort], s *readShare) error {
	var err error
	if s != nil {
		c := &e.Value
		c.mu.Lock()
		s.refs--
		var r mutex.Lease
		if s.refs == 0 {
			c.drop(s)
			if !c.closed { // else Close released it
				r = s.remote
			}
		}
		c.mu.Unlock()
		if r != nil {
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
	var (
		remotes    []mutex.Lease
		tickets    []remote.Ticket
		contenders []chan struct{}
	)
	m.t.Range(func(e *keylock.RWEntry[K, rwCohort]) {
		c := &e.Value
		c.mu.Lock()
		c.closed = true
		if c.remote != nil {
			remotes = append(remotes, c.remote)
			c.remote = nil
		}
		for _, s := range c.shares {
			remotes = append(remotes, s.remote)
		}
		c.share, c.shares = nil, nil
		if c.ticket != nil {
			tickets = append(tickets, c.ticket)
			c.ticket = nil
		}
		if c.cancel != nil {
			c.cancel()
			contenders = append(contenders, c.contending)
		}
		c.mu.Unlock()
	})
	return m.shutdown(remotes, tickets, contenders)
}
