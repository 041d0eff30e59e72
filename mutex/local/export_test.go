package local

import (
	"context"

	"github.com/keyedmutex/keyedmutex/mutex"
)

// Test-only names for what the token reservation offers hybrid.
var (
	ErrBlockSize       = errBlockSize
	ErrTokensExhausted = errTokensExhausted
)

func (m *Mutex[K]) LockN(ctx context.Context, key K, n uint64) (mutex.Reservation, error) {
	return m.lockN(ctx, key, n, true)
}

func (m *Mutex[K]) TryLockN(ctx context.Context, key K, n uint64) (mutex.Reservation, error) {
	return m.lockN(ctx, key, n, false)
}
