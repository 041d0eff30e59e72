package hybrid

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// The writer's side of a cohort, which a [Mutex] and the writers of an
// [RWMutex] share: contend for the remote (write) lease, and at the end of
// a holding hand it on locally, requeue, or release it.

// holder is the local lock of a writer: a Mutex's entry, or an
// RWMutex's entry held for writing (rwWriter).
type holder[K comparable] interface {
	Key() K
	// Waiting reports whether a waiter that HandOff would pass the lock
	// to waits now.
	Waiting() bool
	// HandOff passes the lock, with the cohort, to that waiter and
	// reports whether it did; if not, the caller still holds it.
	HandOff() bool
	Unlock()
}

// contendWrite acquires the remote (write) lease of the cohort c for key,
// whose local lock the caller holds, makes it the cohort's and returns
// it. On error the caller passes the local lock on.
func (m *core[K]) contendWrite(caller context.Context, c *cohort, key K, try bool) (mutex.Lease, error) {
	// A lost remote lease left behind by the previous holder (it never
	// hands a lost one on, but a loss can come after the handoff).
	if stale := c.detach(); stale != nil {
		m.releaseRemote(key, stale)
	}
	ctx, cancel := context.WithCancel(caller)
	defer cancel()
	tk, notBefore, closed := c.begin(cancel, try)
	if closed {
		return nil, mutex.ErrClosed
	}
	r, reserved, err := m.acquire(ctx, key, tk, notBefore, try)
	closed, contending := c.install(r, reserved, err)
	if err == nil && !closed {
		close(contending)
		m.observe(caller, mutex.RemoteAcquired, key, mutex.Event{})
		return r, nil
	}
	err = abandoned(caller, r, err, closed)
	close(contending)
	return nil, err
}

// abandoned returns the error of an acquisition that failed (err) or
// that Close came before (closed), releasing the lease r it got then:
// Close expects no remote lease left. caller is the caller's ctx.
func abandoned(caller context.Context, r mutex.Lease, err error, closed bool) error {
	switch {
	case err == nil:
		if uerr := r.Unlock(); uerr != nil && !errors.Is(uerr, mutex.ErrLost) {
			err = uerr
		}
		return errors.Join(mutex.ErrClosed, err)
	case closed && caller.Err() == nil:
		return fmt.Errorf("%w: %w", mutex.ErrClosed, err)
	}
	return err
}

// acquire gets the cohort a remote lease: by waiting on the requeue
// ticket tk if there is one (a Lock only; a TryLock cancels it), else,
// once notBefore has passed, from the remote. It returns the lease and
// how many tokens it holds.
func (m *core[K]) acquire(ctx context.Context, key K, tk remote.Ticket, notBefore time.Time, try bool) (mutex.Lease, uint64, error) {
	if tk != nil && !try {
		// The previous holder requeued this process in the remote's
		// queue: wait for that turn.
		return m.waitTicket(ctx, tk)
	}
	if tk != nil {
		tk.Cancel()
	}
	if err := awaitTurn(ctx, notBefore); err != nil {
		return nil, 0, err
	}
	return m.acquireWrite(ctx, key, try)
}

// acquireWrite takes the remote (write) lease, reserving a token per
// local holder it may serve; it returns the lease and how many tokens it
// holds.
func (m *core[K]) acquireWrite(ctx context.Context, key K, try bool) (mutex.Lease, uint64, error) {
	var (
		r   mutex.Reservation
		l   mutex.Lease
		err error
	)
	switch {
	case m.reserver != nil && try:
		r, err = m.reserver.TryLockN(ctx, key, m.block)
	case m.reserver != nil:
		r, err = m.reserver.LockN(ctx, key, m.block)
	case try:
		l, err = m.remote.TryLock(ctx, key)
	default:
		l, err = m.remote.Lock(ctx, key)
	}
	switch {
	case err != nil:
		return nil, 0, err
	case r != nil:
		return r, max(1, min(r.Reserved(), m.block)), nil
	}
	return l, 1, nil
}

// waitTicket waits for the remote turn that a requeue queued, and returns
// its lease and how many tokens it holds.
func (m *core[K]) waitTicket(ctx context.Context, tk remote.Ticket) (mutex.Lease, uint64, error) {
	rs, err := tk.Wait(ctx)
	if err != nil {
		return nil, 0, err
	}
	return rs, max(1, min(rs.Reserved(), m.block)), nil
}

// release ends the holding of e, whose cohort is c: it passes the key,
// with the cohort's remote lease, to the next local waiter if the lease
// is live and has a token left; otherwise it releases the remote lease (yielding, if the
// bound forced it, before the next local contender) and the local lock.
// It returns the remote release's error.
func (m *core[K]) release(e holder[K], c *cohort, lost bool) error {
	if c.hasTicket() {
		// A requeued turn nobody took (a waiter gave up as it was handed
		// the key): the next waiter takes it, or it is cancelled.
		if e.HandOff() {
			return nil
		}
		if tk := c.takeTicket(); tk != nil {
			tk.Cancel()
		}
	}
	r, live, handOff := c.plan(lost)
	if handOff && e.HandOff() {
		m.observe(context.Background(), mutex.LocalHandoff, e.Key(), mutex.Event{})
		return nil // cohort handoff: no remote command
	}
	if live && !handOff && e.Waiting() {
		if done, err := m.requeue(e, c, r); done {
			return err
		}
	}
	err := m.releaseTimed(c.detach(), live && !handOff)
	if live && !handOff {
		// The bound forced this release: if a local waiter takes the key
		// next, let another process's waiter take the remote lock first.
		c.yieldAfter(time.Now().Add(m.yieldFor()))
	}
	e.Unlock()
	return err
}

// requeue ends the cohort at its bound with local waiters left: if the
// remote lease can requeue, it hands the remote lock to the next process
// in the remote's queue and queues this process again, in one step, and
// passes the key with that queued turn to the next local waiter. It
// reports whether it did (false: release as usual).
func (m *core[K]) requeue(e holder[K], c *cohort, r mutex.Lease) (bool, error) {
	rq, ok := r.(remote.Lease)
	if !ok {
		return false, nil
	}
	tk, err := rq.Requeue(m.block)
	if errors.Is(err, remote.ErrUnavailable) {
		return false, nil
	}
	closed := c.requeued(r, tk, err)
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
	// The waiters left meanwhile: nobody will take the turn.
	if tk := c.takeTicket(); tk != nil {
		tk.Cancel()
	}
	e.Unlock()
	return true, nil
}
