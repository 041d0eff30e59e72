// Package remote is what mutex/hybrid can ask of a remote lease beyond
// mutex.Lease, when the remote (mutex/distributed) offers it:
//
//   - Requeue: release the lock and queue for it again in one step. A
//     hybrid process that reached its handoff bound with local goroutines
//     still waiting uses it to hand the lock to the next process in the
//     remote's queue and take its own place at the back of that queue
//     atomically: processes are then served in strict rotation, with one
//     round trip per turn instead of two or three.
//   - AfterDone: run a function when the lease ends, with no goroutine
//     waiting on its Done channel, so that a process holding many keys
//     watches their losses for free.
//
// It also lets a Keyed whose token reservation is not part of its public
// API (mutex/local's) offer it to mutex/hybrid: see [ReserverOf].
package remote

import (
	"context"
	"errors"
	"sync"

	"github.com/keyedmutex/keyedmutex/mutex"
)

// Watcher is a lease that runs a function when it ends.
type Watcher interface {
	// AfterDone arranges for f to run, in its own goroutine, once the
	// lease has ended (Done closed), or at once if it has. stop cancels
	// that and reports whether it did (false: f ran or was started).
	AfterDone(f func()) (stop func() bool)
}

// Lease is a remote lease that can requeue.
type Lease interface {
	mutex.Reservation
	// Requeue releases the lease (handing the lock to the first waiter
	// queued for it, if any) and queues a new waiter for n tokens at the
	// back of the queue, in one step. It returns the new waiter's
	// Ticket. On success the lease has ended as unlocked. It returns an
	// error satisfying errors.Is(err, ErrUnavailable), with the lease
	// still held, when it cannot requeue now; the caller then unlocks
	// and locks as usual. Any other error ends the lease as Unlock would.
	Requeue(n uint64) (Ticket, error)
}

// Ticket is a waiter queued by Requeue.
type Ticket interface {
	// Wait blocks until the waiter holds the lock, ctx ends, or the
	// mutex is closed. After an error the ticket is spent.
	Wait(ctx context.Context) (mutex.Reservation, error)
	// Cancel takes the waiter out of the queue (and releases the lock
	// if it was granted meanwhile). It is for a ticket nobody will Wait
	// on; Cancel after Wait returned does nothing.
	Cancel()
}

// ErrUnavailable is returned by Requeue when the lease cannot requeue
// now (its mutex is not listening for grants of that key yet).
var ErrUnavailable = errors.New("remote: requeue unavailable")

// reservers are the functions registered by RegisterReserver.
var reservers struct {
	mu sync.Mutex // guards fs
	fs []func(keyed any) any
}

// RegisterReserver registers f, which returns, for a Keyed of the
// registering package, the [mutex.TokenReserver] it offers (nil for any
// other value). A package calls it from init.
func RegisterReserver(f func(keyed any) any) {
	reservers.mu.Lock()
	defer reservers.mu.Unlock()
	reservers.fs = append(reservers.fs, f)
}

// ReserverOf returns the [mutex.TokenReserver] of keyed: keyed itself if
// it implements it, else the one a registered function offers for it.
func ReserverOf[K comparable](keyed mutex.Keyed[K]) (mutex.TokenReserver[K], bool) {
	if r, ok := keyed.(mutex.TokenReserver[K]); ok {
		return r, true
	}
	reservers.mu.Lock()
	fs := reservers.fs
	reservers.mu.Unlock()
	for _, f := range fs {
		if r, ok := f(keyed).(mutex.TokenReserver[K]); ok {
			return r, true
		}
	}
	return nil, false
}
