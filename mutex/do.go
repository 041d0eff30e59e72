package mutex

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyedmutex/keyedmutex/internal/keyname"
)

// Do runs f while holding key's lock on m: the Go form of a "with lock:"
// block, and the recommended way to run a critical section. It locks key
// (waiting as Lock does), runs f under a context that is cancelled, with
// cause [ErrLost], if the lease is lost meanwhile ([WithLease]), and
// always unlocks, even if f panics. It returns f's error joined with
// Unlock's (an error satisfying errors.Is(err, ErrLost) if the lease was
// lost while f ran); if the lock could not be taken, that error, and f
// does not run.
//
// f should stop when its ctx is done: past that point another holder may
// have the lock. Where f writes to a resource that can check fencing
// tokens, pass it the lease's token, as [Lease.Token] explains; Do's
// callers get it through DoLease.
func Do[K comparable](ctx context.Context, m Keyed[K], key K, f func(ctx context.Context) error) error {
	return DoLease(ctx, m, key, func(ctx context.Context, _ Lease) error { return f(ctx) })
}

// DoLease is Do for a function that needs the lease (its fencing token).
func DoLease[K comparable](ctx context.Context, m Keyed[K], key K, f func(ctx context.Context, l Lease) error) (err error) {
	if m == nil || f == nil {
		return errors.New("mutex: Do: nil Keyed or function")
	}
	l, err := m.Lock(ctx, key)
	if err != nil {
		return err
	}
	lctx, cancel := WithLease(ctx, l)
	defer func() {
		cancel()
		if uerr := l.Unlock(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("mutex: Do: Unlock %s: %w", keyname.Quote(key), uerr))
		}
	}()
	return f(lctx, l)
}
