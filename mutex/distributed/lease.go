package distributed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

// errClosedLost ends the leases that Close releases.
var errClosedLost = fmt.Errorf("%w: %w", mutex.ErrLost, mutex.ErrClosed)

// lease is one holding of one key's lock in Redis.
//
// Its validity is measured with the monotonic clock from the start of the
// acquire call (Redis set the TTL after that): valid until start+TTL; each
// renewal started at r and confirmed by Redis extends it to r+TTL. Past
// validity the lease is lost even if Redis cannot be asked.
type lease struct {
	c     *core
	nm    names
	owner string
	token uint64
	n     uint64        // tokens reserved: token..token+n-1
	done  chan struct{} // closed when the lease ends, with err set

	// Background work: a timer that renews the lease (or, without
	// renewal, loses it at validity end). No goroutine runs between
	// renewals, so an uncontended Lock and Unlock start none.
	timer *time.Timer

	mu         sync.Mutex         // guards the fields below
	stopped    bool               // stopBackground was called: no more renewals
	stepDone   chan struct{}      // non-nil while a renewal runs; closed at its end
	stepCancel context.CancelFunc // cancels the running renewal's command
	backoff    time.Duration      // next retry delay after a transport error
	lastErr    error              // the last renewal error, nil after a success
	validUntil time.Time
	ending     bool  // Unlock or Close has begun
	err        error // nil while held; set once, when done is closed
}

func newLease(c *core, nm names, owner string, token, n uint64, start time.Time) *lease {
	return &lease{
		c:          c,
		nm:         nm,
		owner:      owner,
		token:      token,
		n:          n,
		done:       make(chan struct{}),
		validUntil: start.Add(c.cfg.ttl),
	}
}

// start starts the renewal timer, or the expiry timer.
func (l *lease) start() {
	l.mu.Lock() // renew reads l.timer under l.mu, and may run at once
	defer l.mu.Unlock()
	if l.c.cfg.renew {
		l.timer = time.AfterFunc(l.c.cfg.ttl/3, l.renew)
		return
	}
	l.timer = time.AfterFunc(time.Until(l.validUntil), func() {
		l.lose(fmt.Errorf("its TTL of %v ran out (WithoutRenewal)", l.c.cfg.ttl))
	})
}

// stopBackground stops the timer, cancels a running renewal and waits
// for it to end. Only the goroutine that set ending calls it.
func (l *lease) stopBackground() {
	l.mu.Lock()
	l.stopped = true
	done, cancel := l.stepDone, l.stepCancel
	if l.timer != nil {
		l.timer.Stop()
	}
	l.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if done != nil {
		<-done
	}
}

// finish ends the lease with err, unless it already ended; it reports
// whether it did.
func (l *lease) finish(err error) bool {
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return false
	}
	l.err = err
	close(l.done)
	l.mu.Unlock()
	l.c.forget(l)
	return true
}

// lose ends the lease as lost and reports it.
func (l *lease) lose(reason error) {
	err := fmt.Errorf("distributed: lease on %s: %w: %w", l.nm.lock, mutex.ErrLost, reason)
	if l.finish(err) {
		l.c.cfg.onError(err)
	}
}

// Renewal backoff after a transport error.
const minRenewBackoff = 10 * time.Millisecond

// renew runs on the timer, every TTL/3 while held: it extends the lease
// if Redis says it is still ours. A failed ownership check loses the
// lease; a transport error is retried, with a backoff, until the
// validity runs out, which loses it.
func (l *lease) renew() {
	l.mu.Lock()
	if l.stopped || l.err != nil {
		l.mu.Unlock()
		return
	}
	valid, lastErr := l.validUntil, l.lastErr
	r := time.Now()
	if !r.Before(valid) {
		l.mu.Unlock()
		l.lose(fmt.Errorf("its validity ran out while renewal failed: %w", lastErr))
		return
	}
	ctx, cancel := context.WithDeadline(context.Background(), valid)
	done := make(chan struct{})
	l.stepDone, l.stepCancel = done, cancel
	l.mu.Unlock()

	res, err := renewScript.Run(ctx, l.c.client, []string{l.nm.lock}, l.owner, l.c.ttlMs).Int64()
	cancel()

	interval := l.c.cfg.ttl / 3
	var lost error
	l.mu.Lock()
	l.stepDone, l.stepCancel = nil, nil
	stopped := l.stopped
	switch {
	case stopped:
		// Unlock or Close is waiting on done; it decides.
	case err == nil && res == 1:
		l.validUntil = r.Add(l.c.cfg.ttl)
		l.backoff, l.lastErr = 0, nil
		l.timer.Reset(interval)
	case err == nil:
		lost = errors.New("the renewal's ownership check failed: the key expired or another owner took it")
	case redis.HasErrorPrefix(err, "WRONGTYPE"):
		lost = fmt.Errorf("the lock key was overwritten: %w", err)
	default:
		l.lastErr = err
		l.backoff = min(max(2*l.backoff, min(minRenewBackoff, interval)), interval)
		l.timer.Reset(max(0, min(l.backoff, time.Until(valid))))
	}
	l.mu.Unlock()
	close(done)
	if stopped {
		return
	}
	if err != nil && lost == nil {
		l.c.failed(err)
		l.c.cfg.onError(fmt.Errorf("distributed: renew lease on %s (retrying until its validity ends): %w", l.nm.lock, err))
	}
	if lost != nil {
		l.lose(lost)
	}
}

// Unlock releases the lock in Redis, bounded by the unlock timeout. It
// stops renewal first. It returns an error satisfying
// errors.Is(err, mutex.ErrLost) if the lease was lost, and one
// satisfying errors.Is(err, mutex.ErrUnlocked) on a second call.
// If Redis cannot be reached, the lease ends anyway and the key expires
// when its TTL runs out; the error says so.
func (l *lease) Unlock() error {
	l.mu.Lock()
	if l.ending {
		l.mu.Unlock()
		<-l.done // another Unlock, or Close, is ending it: learn how
		err := l.Err()
		if errors.Is(err, mutex.ErrLost) {
			return err
		}
		return fmt.Errorf("distributed: Unlock of %s: %w", l.nm.lock, mutex.ErrUnlocked)
	}
	l.ending = true
	lost := l.err
	l.mu.Unlock()
	l.stopBackground()
	if lost != nil {
		return lost
	}
	l.mu.Lock()
	valid, lost := l.validUntil, l.err
	l.mu.Unlock()
	if lost != nil {
		return lost
	}
	if !time.Now().Before(valid) {
		l.lose(errors.New("its validity ran out before Unlock"))
		return l.Err()
	}
	ok, err := l.release()
	switch {
	case err != nil:
		l.finish(mutex.ErrUnlocked)
		return fmt.Errorf("distributed: Unlock of %s: release failed, the key expires when its TTL of %v runs out: %w", l.nm.lock, l.c.cfg.ttl, err)
	case !ok:
		l.lose(errors.New("at Unlock the key had expired or another owner held it"))
		return l.Err()
	}
	l.finish(mutex.ErrUnlocked)
	return nil
}

// release runs the release script with the unlock timeout.
func (l *lease) release() (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), l.c.cfg.unlockTimeout)
	defer cancel()
	sharded, err := l.c.hub.Sharded(ctx)
	if err != nil {
		l.c.failed(err)
		return false, err
	}
	flag := "0"
	if sharded {
		flag = "1"
	}
	res, err := releaseScript.Run(ctx, l.c.client, []string{l.nm.lock}, l.owner, l.nm.channel, flag).Int64()
	l.c.failed(err)
	return res == 1, err
}

// endClosed releases the lease for Close: it ends with errClosedLost.
func (l *lease) endClosed() {
	l.mu.Lock()
	if l.ending || l.err != nil {
		l.mu.Unlock()
		return
	}
	l.ending = true
	l.mu.Unlock()
	l.stopBackground()
	if _, err := l.release(); err != nil {
		l.c.cfg.onError(fmt.Errorf("distributed: Close: release %s (it expires when its TTL runs out): %w", l.nm.lock, err))
	}
	if l.finish(fmt.Errorf("distributed: lease on %s: %w", l.nm.lock, errClosedLost)) {
		l.c.cfg.onError(l.Err())
	}
}

// Done is closed when the lease ends: by Unlock, by loss, or by Close.
func (l *lease) Done() <-chan struct{} { return l.done }

// Err is nil while the lease is held; then [mutex.ErrUnlocked] after
// Unlock, or an error satisfying errors.Is(err, mutex.ErrLost) after a
// loss (and also errors.Is(err, mutex.ErrClosed) after Close).
func (l *lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Token is the lease's fencing token: a microsecond timestamp of the
// Redis clock, floored by the last token issued for the key, so strictly
// greater than every token issued earlier for the key.
func (l *lease) Token() uint64 { return l.token }

// Reserved is the number of fencing tokens the lease holds, from Token().
func (l *lease) Reserved() uint64 { return l.n }
