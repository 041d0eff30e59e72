package remote

import (
	"context"

	"github.com/keyedmutex/keyedmutex/mutex"
)

// PrefixLocker is a remote that can take several free keys at once
// without waiting: mutex/hybrid's LockAll uses it to take the remote
// leases of keys nobody holds in one step, where Lock would take them one
// round trip each.
type PrefixLocker[K comparable] interface {
	// TryLockPrefixN takes, in the order given, the keys that are free
	// and have nobody queued, up to the first that is not, and returns
	// their leases (each reserving up to n tokens, as LockN), possibly
	// none. It never waits for a key. keys are distinct and in the
	// remote's lock order. On error nothing is held.
	TryLockPrefixN(ctx context.Context, keys []K, n uint64) ([]mutex.Reservation, error)
}
