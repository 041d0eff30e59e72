package mutex

import (
	"context"
	"sync"
)

// RWKeyed is a family of reader/writer mutexes, one per key: the keyed
// form of [sync.RWMutex]. For each key, the lock can be held by any number
// of readers or by one writer.
//
// The methods of [Keyed] take the write lock: Lock and TryLock return a
// lease held alone, Locker is a writer's [sync.Locker]. RLock, TryRLock and
// RLocker do the same for the read lock. A read lease is a [Lease] like any
// other: Unlock, Done, Err, Token, and it can be lost.
//
// Waiters are served in arrival order, and consecutive readers at the head
// of the order are admitted together. A writer that waits therefore blocks
// every reader that arrives after it, so a stream of readers cannot starve
// it, and readers queued behind it wait for its Unlock. A Lock or RLock
// whose ctx ends gives its turn back to whoever is next.
//
// Happens-before, as for [sync.RWMutex]: for any key, the Unlock of a write
// lease synchronizes before the return of every later Lock, TryLock, RLock
// and TryRLock that succeeds for that key; the Unlock of a read lease
// synchronizes before the return of the next Lock or TryLock that succeeds
// for that key.
//
// Fencing: a writer's token is strictly greater than every token issued
// earlier for the key, read tokens included, and strictly smaller than
// every token issued later. A reader's token is greater than the token of
// every writer that held the key before it and smaller than that of every
// writer that holds it after; readers that hold the key together may have
// equal or different tokens. A resource that records the greatest writer
// token it has seen can thus reject a stale writer and still accept every
// current reader.
type RWKeyed[K comparable] interface {
	Keyed[K]
	// RLock blocks until the caller holds the read lock for key, ctx is
	// done, or the backend fails. On ctx end the error satisfies
	// errors.Is(err, ctx.Err()).
	RLock(ctx context.Context, key K) (Lease, error)
	// TryRLock takes the read lock only if it can be granted now: no
	// writer holds the key and none waits for it. Otherwise it returns an
	// error satisfying errors.Is(err, ErrLocked).
	TryRLock(ctx context.Context, key K) (Lease, error)
	// RLocker returns a sync.Locker whose Lock and Unlock take and
	// release the read lock for key, as [sync.RWMutex.RLocker] does.
	RLocker(key K) sync.Locker
}
