package distributed

import (
	"errors"
	"fmt"
	"time"
)

// ErrMaxHold is the cause of the loss of a lease that reached its
// maximum hold ([WithMaxHold]): its Err and Unlock then return an error
// satisfying both errors.Is(err, [mutex.ErrLost]) and errors.Is(err,
// ErrMaxHold). A [hybrid] Mutex over a distributed one passes it on to
// its local holder.
//
// [hybrid]: https://pkg.go.dev/github.com/keyedmutex/keyedmutex/mutex/hybrid
var ErrMaxHold = errors.New("distributed: maximum hold reached (WithMaxHold), renewal stopped")

// WithMaxHold caps how long a lease is renewed: no renewal is sent d or
// more after the lease was acquired (the arrival of the reply or grant
// that gave it, just before Lock returns), so a holder that hangs, or
// forgets to Unlock, keeps the key for a bounded time instead of for as
// long as its process lives. The lease then ends as lost when its
// validity runs out: at the first validity end past d, which is at most
// d+TTL after acquisition and more than d after it (a renewal sent just
// before d extends it by a full TTL; one due just after d is not sent).
// [mutex.Lease.Done] closes, Err and Unlock return an error satisfying
// errors.Is(err, [mutex.ErrLost]) and errors.Is(err, [ErrMaxHold]), the
// observer sees a [mutex.Lost] event carrying it, and the key is released
// in Redis if it is somehow still the lease's, so the next waiter gets
// it at once.
//
// A d below the TTL is valid: the renewals due before d are sent (the
// first is due TTL/3 after acquisition), and none after. With d below
// TTL/3 the lease is never renewed and lasts one TTL, as with
// [WithoutRenewal], which WithMaxHold does not change. A negative d is an
// error; 0, the default, means no maximum: a lease is renewed until it is
// unlocked or lost.
func WithMaxHold(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("distributed: WithMaxHold(%v): the maximum hold must not be negative (0 means none)", d)
		}
		c.maxHold = d
		return nil
	}
}

// scheduleRenewalLocked makes l due for renewal at t, unless t is at or
// past its maximum hold: then no renewal is scheduled, and the lease is
// lost, with cause ErrMaxHold, when its validity ends. l.mu is held.
func (l *lease) scheduleRenewalLocked(t time.Time) {
	if l.holdEnd.IsZero() || t.Before(l.holdEnd) {
		l.c.renew.schedule(l, t)
		return
	}
	l.capped = true
	if l.expiry == nil {
		l.expiry = time.AfterFunc(max(time.Until(l.validUntil), 0), l.expire)
	}
}

// maxHoldErr is the reason of a lease lost at its maximum hold; lastErr
// is the last renewal's transport error, if it failed.
func (l *lease) maxHoldErr(lastErr error) error {
	if lastErr != nil {
		return fmt.Errorf("its validity ran out after renewal stopped at its maximum hold of %v: %w (the last renewal had failed: %w)", l.c.cfg.maxHold, ErrMaxHold, lastErr)
	}
	return fmt.Errorf("its validity ran out after renewal stopped at its maximum hold of %v: %w", l.c.cfg.maxHold, ErrMaxHold)
}
