package mutex

import "context"

// TokenBlocker is implemented by a [Keyed] that can issue a block of
// consecutive fencing tokens with one lease. The hybrid mutex uses it to
// hand one remote lease between local goroutines, with a fresh, strictly
// increasing token for each and no Redis command.
//
// Both methods behave as Lock and TryLock, except that the lease reserves
// n ≥ 1 tokens: its Token is the first, t, and every one of t..t+n-1 is
// strictly greater than every token issued earlier for key and strictly
// smaller than every token issued later for key, by this backend.
// n == 0 is an error.
type TokenBlocker[K comparable] interface {
	LockBlock(ctx context.Context, key K, n uint64) (Lease, error)
	TryLockBlock(ctx context.Context, key K, n uint64) (Lease, error)
}
