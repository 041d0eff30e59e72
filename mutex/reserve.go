package mutex

import "context"

// TokenReserver is implemented by a [Keyed] that can reserve a block of
// consecutive fencing tokens with one lease. The hybrid mutex uses it to
// hand one remote lease between local goroutines, with a fresh, strictly
// increasing token for each and no Redis command.
//
// Both methods behave as Lock and TryLock, except that the lease reserves
// between 1 and n consecutive tokens, n ≥ 1: t = Token() through
// t+Reserved()-1. Every one of them is strictly greater than every token
// issued earlier for key, and strictly smaller than every token issued
// later for key, by this backend. An implementation may reserve fewer
// than n (a Redis backend does so rather than let tokens run ahead of the
// server's clock); callers use [Reservation.Reserved]. n == 0 is an
// error.
type TokenReserver[K comparable] interface {
	LockN(ctx context.Context, key K, n uint64) (Reservation, error)
	TryLockN(ctx context.Context, key K, n uint64) (Reservation, error)
}

// A Reservation is a [Lease] that holds a block of consecutive fencing
// tokens: Token() through Token()+Reserved()-1.
type Reservation interface {
	Lease
	// Reserved is the number of tokens the lease holds, at least 1.
	Reserved() uint64
}
