package hybrid

import (
	"errors"
	"fmt"
	"sync"

	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// holding is what the local leases of a [Mutex] and of an [RWMutex]
// share: the key, the remote lease the holding shares and its token, and
// the end of the holding, at Unlock or when the watch of the remote lease
// finds it lost or taken by Close. A lease embeds it and adds how its
// Unlock releases the key.
type holding[K comparable] struct {
	core   *core[K] // of the Mutex or RWMutex: its watchers and logger
	c      *cohort  // the key's cohort: whether Close took the remote lease
	key    K
	remote mutex.Lease // the remote lease this holding shares
	token  uint64

	mu       sync.Mutex         // guards the fields below
	unwatch  func() bool        // cancels the remote's AfterDone callback, set by watchLocked
	unlocked bool               // Unlock was called
	err      error              // set when the lease ended: ErrUnlocked or a loss
	done     chan struct{}      // made by watchLocked; closed when the lease ends
	after    lockutil.Callbacks // AfterDone functions, run when the lease ends
}

func (l *holding[K]) Token() uint64 { return l.token }

// Err is nil while the lease is held; then [mutex.ErrUnlocked] after
// Unlock, or an error satisfying errors.Is(err, [mutex.ErrLost]) once
// the remote lease was lost (also [mutex.ErrClosed] after Close). It
// only reads: a loss it sees first ends the lease (closes Done) when the
// watch of the remote lease, or Unlock, finds it.
func (l *holding[K]) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	return l.lostLocked()
}

// lostLocked returns the loss error if the remote lease was lost or taken
// by Close while l is held, else nil. l.mu is held.
func (l *holding[K]) lostLocked() error {
	if l.unlocked {
		return nil
	}
	switch {
	case l.c.isClosed():
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
func (l *holding[K]) endLocked(err error) {
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
func (l *holding[K]) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.watchLocked()
	return l.done
}

// AfterDone runs f in its own goroutine once the lease has ended, or at
// once if it has; stop cancels that and reports whether it did (see
// [remote.Watcher]). It watches the remote lease as Done does.
func (l *holding[K]) AfterDone(f func()) (stop func() bool) {
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
func (l *holding[K]) watchLocked() {
	if l.done != nil {
		return
	}
	l.done = make(chan struct{})
	if l.err == nil && !l.unlocked {
		// Under the cohort's lock (ifOpen), which Close takes to mark it
		// closed before it waits for the watchers: a watcher is either
		// counted before that wait, or never started.
		open := l.c.ifOpen(func() {
			if ended(l.remote) {
				l.err = lostErr(l.key, l.remote)
				return
			}
			l.core.wg.Add(1)
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
func (l *holding[K]) watch(done chan struct{}) {
	select {
	case <-done:
		l.core.wg.Done()
	case <-l.remote.Done():
		l.remoteEnded()
	}
}

// remoteEnded ends l as lost if its remote lease ended while l is held.
func (l *holding[K]) remoteEnded() {
	defer l.core.wg.Done()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.lostLocked(); err != nil {
		l.endLocked(err)
	}
}

// stopWatching cancels the remote's callback, if it has not run.
func (l *holding[K]) stopWatching() {
	l.mu.Lock()
	stop := l.unwatch
	l.unwatch = nil
	l.mu.Unlock()
	if stop != nil && stop() {
		l.core.wg.Done()
	}
}

// beginUnlock ends l for its Unlock: it returns the loss of the remote
// lease if it was lost while held (nil if not), or the error of a second
// Unlock (again). The caller then releases the key and calls endUnlock.
func (l *holding[K]) beginUnlock() (lost error, again error) {
	l.mu.Lock()
	if l.unlocked {
		l.mu.Unlock()
		return nil, lockErr("Unlock", l.key, mutex.ErrUnlocked)
	}
	lost = l.err
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
	return lost, nil
}

// endUnlock returns the error of an Unlock that found lost (see
// beginUnlock) and whose release of the key returned err.
func (l *holding[K]) endUnlock(lost, err error) error {
	key := l.key
	switch {
	case lost != nil:
		l.core.reportRelease(key, err)
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
