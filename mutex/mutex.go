package mutex

import (
	"context"
	"errors"
	"sync"
)

// Keyed is a family of mutexes, one per key.
//
// Implementations are safe for concurrent use. For any key, the Unlock of a
// lease synchronizes before the Lock or TryLock that next returns a lease
// for the same key, as with [sync.Mutex].
type Keyed[K comparable] interface {
	// Lock blocks until the caller holds the lock for key, ctx is done,
	// or the backend fails. On ctx end the error satisfies
	// errors.Is(err, ctx.Err()).
	Lock(ctx context.Context, key K) (Lease, error)
	// TryLock takes the lock only if nobody holds it now; otherwise it
	// returns an error satisfying errors.Is(err, ErrLocked).
	TryLock(ctx context.Context, key K) (Lease, error)
	// Locker returns a sync.Locker for key: a drop-in for a sync.Mutex.
	Locker(key K) sync.Locker
}

// Lease is one holding of one key's lock. A Lease is safe for concurrent
// use: one goroutine may watch Done while another calls Unlock.
type Lease interface {
	// Unlock releases the lock. It does not take the caller's ctx, so a
	// cancelled request still releases (bounded by an internal timeout).
	// A second call returns ErrUnlocked; a lease already lost returns ErrLost.
	Unlock() error
	// Done is closed when the lease ends: by Unlock or by loss.
	Done() <-chan struct{}
	// Err is nil while held, then ErrUnlocked or ErrLost.
	Err() error
	// Token is a fencing token: strictly greater than every token issued
	// earlier for the same key by the same backend, across processes.
	Token() uint64
}

// The errors of the contract. Implementations wrap them, so test with
// [errors.Is].
var (
	// ErrLocked is returned by TryLock when another owner holds the key.
	ErrLocked = errors.New("mutex: locked by another owner")
	// ErrLost reports a lease that expired or was taken over while held.
	ErrLost = errors.New("mutex: lease lost")
	// ErrUnlocked is returned by a second Unlock of one lease, and by
	// Lease.Err after a successful Unlock.
	ErrUnlocked = errors.New("mutex: lease already unlocked")
	// ErrClosed is returned by a Keyed that was closed.
	ErrClosed = errors.New("mutex: keyed mutex closed")
	// ErrInvalidKey is returned for a key that can never be locked: one
	// that cannot be encoded, is empty or too long for Redis, or is not
	// equal to itself (a floating-point NaN). Retrying cannot help.
	ErrInvalidKey = errors.New("mutex: invalid key")
)

// WithLease returns a copy of parent that is cancelled, with cause
// [ErrLost], when the lease is lost, and plainly (cause
// [context.Canceled]) when the lease is unlocked or cancel is called.
// Code that must not outlive the lock runs under the returned context:
//
//	lease, err := m.Lock(ctx, key)
//	if err != nil { ... }
//	defer lease.Unlock()
//	ctx, cancel := mutex.WithLease(ctx, lease)
//	defer cancel()
//
// The caller must call cancel to release the resources WithLease holds,
// as with [context.WithCancel].
//
// WithLease starts no goroutine for a lease that has a method
// AfterDone(f func()) (stop func() bool), which runs f once the lease has
// ended (every lease of this module has one): the lease calls back. For
// a Lease implementation without it, WithLease starts one goroutine that
// waits for the lease's Done or the context's end.
func WithLease(parent context.Context, l Lease) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	if l.Err() != nil {
		cancel(leaseCause(l))
		return ctx, func() { cancel(context.Canceled) }
	}
	if w, ok := l.(afterDoner); ok {
		stop := w.AfterDone(func() { cancel(leaseCause(l)) })
		return ctx, func() {
			stop()
			cancel(context.Canceled)
		}
	}
	go func() {
		select {
		case <-l.Done():
			cancel(leaseCause(l))
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

// afterDoner is a lease that runs a function when it ends (the leases of
// this module; see internal/remote.Watcher).
type afterDoner interface {
	AfterDone(f func()) (stop func() bool)
}

func leaseCause(l Lease) error {
	if errors.Is(l.Err(), ErrLost) {
		return ErrLost
	}
	return context.Canceled
}
