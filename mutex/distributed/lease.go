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
	done  chan struct{} // closed when the lease ends, with err set

	// Background work, started by start and stopped by stopBackground.
	cancel  context.CancelFunc // cancels the renewal goroutine's context
	renewed chan struct{}      // closed when the renewal goroutine exits
	timer   *time.Timer        // without renewal: loss at validity end

	mu         sync.Mutex // guards the fields below
	validUntil time.Time
	ending     bool  // Unlock or Close has begun
	err        error // nil while held; set once, when done is closed
}

func newLease(c *core, nm names, owner string, token uint64, start time.Time) *lease {
	return &lease{
		c:          c,
		nm:         nm,
		owner:      owner,
		token:      token,
		done:       make(chan struct{}),
		validUntil: start.Add(c.cfg.ttl),
	}
}

// start starts the renewal goroutine, or the expiry timer.
func (l *lease) start() {
	if l.c.cfg.renew {
		ctx, cancel := context.WithCancel(context.Background())
		l.cancel = cancel
		l.renewed = make(chan struct{})
		go l.renewLoop(ctx)
		return
	}
	l.mu.Lock()
	d := time.Until(l.validUntil)
	l.mu.Unlock()
	l.timer = time.AfterFunc(d, func() {
		l.lose(fmt.Errorf("its TTL of %v ran out (WithoutRenewal)", l.c.cfg.ttl))
	})
}

// stopBackground stops renewal or the timer and waits for the renewal
// goroutine to exit. Only the goroutine that set ending calls it.
func (l *lease) stopBackground() {
	if l.cancel != nil {
		l.cancel()
		<-l.renewed
	}
	if l.timer != nil {
		l.timer.Stop()
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

func (l *lease) renewLoop(ctx context.Context) {
	defer close(l.renewed)
	interval := l.c.cfg.ttl / 3
	backoff := min(minRenewBackoff, interval)
	t := time.NewTimer(interval)
	defer t.Stop()
	var lastErr error
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		valid := l.validUntil
		l.mu.Unlock()
		r := time.Now()
		if !r.Before(valid) {
			l.lose(fmt.Errorf("its validity ran out while renewal failed: %w", lastErr))
			return
		}
		rctx, cancel := context.WithDeadline(ctx, valid)
		res, err := renewScript.Run(rctx, l.c.client, []string{l.nm.lock}, l.owner, l.c.ttlMs).Int64()
		cancel()
		if ctx.Err() != nil {
			return // stopped by Unlock or Close
		}
		switch {
		case err == nil && res == 1:
			l.mu.Lock()
			l.validUntil = r.Add(l.c.cfg.ttl)
			l.mu.Unlock()
			backoff = min(minRenewBackoff, interval)
			lastErr = nil
			t.Reset(interval)
		case err == nil:
			l.lose(errors.New("the renewal's ownership check failed: the key expired or another owner took it"))
			return
		case redis.HasErrorPrefix(err, "WRONGTYPE"):
			l.lose(fmt.Errorf("the lock key was overwritten: %w", err))
			return
		default:
			l.c.failed(err)
			lastErr = err
			l.c.cfg.onError(fmt.Errorf("distributed: renew lease on %s (retrying until its validity ends): %w", l.nm.lock, err))
			t.Reset(max(0, min(backoff, time.Until(valid))))
			backoff = min(2*backoff, interval)
		}
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
		err := l.err
		l.mu.Unlock()
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
