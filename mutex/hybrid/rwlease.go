package hybrid

import (
	"errors"
	"fmt"
	"sync"

	"github.com/keyedmutex/keyedmutex/internal/keylock"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// rwLease is one local holding of a key of an RWMutex: a writer's share
// of the cohort's remote write lease, or a reader's share of the run's
// remote read lease (whose token it carries).
type rwLease[K comparable] struct {
	m      *RWMutex[K]
	e      *keylock.RWEntry[K, rwCohort] // ours while not unlocked
	key    K
	write  bool
	share  *readShare  // a reader's remote read lease and its count
	remote mutex.Lease // the remote lease this holding shares
	token  uint64

	mu       sync.Mutex    // guards the fields below
	unwatch  func() bool   // cancels the remote's AfterDone callback, set by Done
	unlocked bool          // Unlock was called
	err      error         // set when the lease ended: ErrUnlocked or a loss
	done     chan struct{} // made by Done; closed when the lease ends
}

// Token is the fencing token: a writer's own, from the block its remote
// write lease reserved; a reader's is its remote read lease's.
func (l *rwLease[K]) Token() uint64 { return l.token }

// Err is nil while the lease is held; then [mutex.ErrUnlocked] after
// Unlock, or an error satisfying errors.Is(err, [mutex.ErrLost]) once
// the remote lease it shares was lost (also [mutex.ErrClosed] after
// Close). A lost remote read lease ends every local read lease of its
// run.
func (l *rwLease[K]) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err == nil {
		if err := l.lostLocked(); err != nil {
			l.endLocked(err)
		}
	}
	return l.err
}

// lostLocked returns the loss error if the remote lease was lost or taken
// by Close while l is held, else nil. l.mu is held.
func (l *rwLease[K]) lostLocked() error {
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

// endLocked ends l with err unless it ended already. l.mu is held.
func (l *rwLease[K]) endLocked(err error) {
	if l.err != nil {
		return
	}
	l.err = err
	if l.done != nil {
		close(l.done)
	}
}

// Done returns a channel that is closed when the lease ends: at Unlock,
// or when the remote lease is lost or Close takes it. The first call
// while held watches the remote lease: through its AfterDone if it has
// one, else with a goroutine, until then.
func (l *rwLease[K]) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done != nil {
		return l.done
	}
	l.done = make(chan struct{})
	if l.err == nil && !l.unlocked {
		// Under the cohort's mu, which Close takes to mark it closed
		// before it waits for the watchers: a watcher is either counted
		// before that wait, or never started.
		c := &l.e.Value
		c.mu.Lock()
		switch {
		case c.closed:
			l.err = lockErr("lease", l.key, fmt.Errorf("%w: %w", mutex.ErrLost, mutex.ErrClosed))
		case ended(l.remote):
			l.err = lostErr(l.key, l.remote)
		default:
			l.m.wg.Add(1)
			if w, ok := l.remote.(remote.Watcher); ok {
				l.unwatch = w.AfterDone(l.remoteEnded)
			} else {
				go l.watch(l.done)
			}
		}
		c.mu.Unlock()
	}
	if l.err != nil {
		close(l.done)
	}
	return l.done
}

// watch ends l when its remote lease ends before l does.
func (l *rwLease[K]) watch(done chan struct{}) {
	select {
	case <-done:
		l.m.wg.Done()
	case <-l.remote.Done():
		l.remoteEnded()
	}
}

// remoteEnded ends l as lost if its remote lease ended while l is held.
func (l *rwLease[K]) remoteEnded() {
	defer l.m.wg.Done()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.lostLocked(); err != nil {
		l.endLocked(err)
	}
}

// stopWatching cancels the remote's callback, if it has not run.
func (l *rwLease[K]) stopWatching() {
	l.mu.Lock()
	stop := l.unwatch
	l.unwatch = nil
	l.mu.Unlock()
	if stop != nil && stop() {
		l.m.wg.Done()
	}
}

// Unlock ends the holding. A writer hands the remote write lease to the
// next local writer, or releases it; a reader leaves its run, and the
// last reader of the run releases the run's remote read lease. It
// returns the loss of the remote lease, if it was lost while held.
func (l *rwLease[K]) Unlock() error {
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
	var err error
	if l.write {
		err = l.m.releaseLocal(l.e, true, lost != nil)
	} else {
		err = l.m.leaveRead(l.e, l.share)
	}
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
