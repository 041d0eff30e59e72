package distributed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// errClosedLost ends the leases that Close releases.
var errClosedLost = fmt.Errorf("%w: %w", mutex.ErrLost, mutex.ErrClosed)

// lease is one holding of one key's lock in Redis.
//
// Its validity is measured with the monotonic clock from an instant known
// to precede the moment Redis set the lock's TTL (the sending of the call
// that took it, or, for a lock handed over by a release, of the waiter's
// last call that found it still waiting): valid until then plus that
// TTL; each renewal sent at r and confirmed by Redis extends it to r+TTL.
// Past validity the lease is lost even if Redis cannot be asked.
type lease struct {
	c     *core
	enc   string // the encoded key
	nm    names
	owner string
	val   string // the lock key's value while held
	g     grant
	got   time.Time     // when the reply or grant that made it arrived
	done  chan struct{} // closed when the lease ends, with err set
	since time.Time     // when Lock returned it (observed Mutexes only)
	read  bool          // a read lease of an RWMutex

	mu         sync.Mutex         // guards the fields below
	validUntil time.Time          //
	renewing   bool               // a renewal call is in flight
	backoff    time.Duration      // next retry delay after a transport error
	lastErr    error              // the last renewal error, nil after a success
	expiry     *time.Timer        // loses the lease at validity end: always without renewal, after a failed renewal with it
	ending     bool               // Unlock or Close has begun: no background loss any more
	err        error              // nil while held; set once, when done is closed
	after      lockutil.Callbacks // AfterDone functions, run when done closes
	holdEnd    time.Time          // WithMaxHold: no renewal is sent from then on; zero: none
	capped     bool               // a renewal was not scheduled for holdEnd: lost at validity end with ErrMaxHold
}

func newLease(c *core, enc string, nm names, owner string, g grant, anchor time.Time) *lease {
	return &lease{
		c:          c,
		enc:        enc,
		nm:         nm,
		owner:      owner,
		val:        holderID(owner, c.cfg.label),
		g:          g,
		got:        time.Now(),
		done:       make(chan struct{}),
		validUntil: anchor.Add(time.Duration(g.ttlMs) * time.Millisecond),
	}
}

// start schedules the lease's first renewal a third of its validity
// after its anchor (at once if that is past), or, without renewal, its
// loss at validity end.
func (l *lease) start() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.c.cfg.renew {
		l.expiry = time.AfterFunc(time.Until(l.validUntil), l.expire)
		return
	}
	if l.c.cfg.maxHold > 0 {
		l.holdEnd = l.got.Add(l.c.cfg.maxHold)
	}
	ttl := time.Duration(l.g.ttlMs) * time.Millisecond
	l.scheduleRenewalLocked(l.validUntil.Add(-ttl + ttl/3))
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
	if l.expiry != nil {
		l.expiry.Stop()
	}
	close(l.done)
	after := l.after.Take()
	l.mu.Unlock()
	after.Start()
	l.c.renew.cancel(l)
	l.c.forget(l)
	return true
}

// AfterDone runs f in its own goroutine once the lease has ended, or at
// once if it has; stop cancels that (see [remote.Watcher]). No goroutine
// waits meanwhile.
func (l *lease) AfterDone(f func()) (stop func() bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		go f()
		return func() bool { return false }
	}
	p := l.after.Add(f)
	return func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.after.Remove(p)
	}
}

// lose ends the lease as lost, from the background (a failed ownership
// check, validity run out), unless Unlock or Close has begun, which then
// decide. It reports the loss and, if release is set (the key may still
// be ours in Redis, say a late renewal extended it), releases it in the
// background.
func (l *lease) lose(reason error, release bool) {
	l.mu.Lock()
	ending := l.ending
	l.mu.Unlock()
	if ending {
		return
	}
	err := l.lostErr(reason)
	if !l.finish(err) {
		return
	}
	l.c.logger().Warn("keyedmutex: lease lost", "lock", l.nm.lock, "err", err)
	l.c.observe(context.Background(), mutex.Lost, l.enc, mutex.Event{Hold: l.held(), Err: err})
	if release {
		l.c.abort(l.nm, l.owner, "")
	}
}

func (l *lease) lostErr(reason error) error {
	return opErr("lease", l.enc, fmt.Errorf("%w: %w", mutex.ErrLost, reason))
}

// Unlock releases the lock in Redis, handing it to the first waiter of the
// queue if there is one, bounded by the unlock timeout. It returns an
// error satisfying errors.Is(err, mutex.ErrLost) if the lease was lost
// (it still asks Redis to release the key if it is somehow ours, waiting
// for that a quarter second at most), and one
// satisfying errors.Is(err, mutex.ErrUnlocked) on a second call. If Redis
// cannot be reached, the lease ends anyway and the key expires when its
// TTL runs out; the error says so.
func (l *lease) Unlock() error {
	if l.c.cfg.obs == nil {
		return l.unlock()
	}
	err := l.unlock()
	if ev, report := lockutil.Unlocked(l.held(), err); report {
		l.c.observe(context.Background(), mutex.Unlocked, l.enc, ev)
	}
	return err
}

// held is how long the lease has been held (observed Mutexes only).
func (l *lease) held() time.Duration {
	if l.since.IsZero() {
		return 0
	}
	return time.Since(l.since)
}

func (l *lease) unlock() error {
	l.mu.Lock()
	if l.ending {
		l.mu.Unlock()
		<-l.done // another Unlock, or Close, is ending it: learn how
		if err := l.Err(); errors.Is(err, mutex.ErrLost) {
			return err
		}
		return opErr("Unlock", l.enc, mutex.ErrUnlocked)
	}
	l.ending = true
	lost, valid, capped := l.err, l.validUntil, l.capped
	l.mu.Unlock()
	if lost == nil && !time.Now().Before(valid) {
		reason := errors.New("its validity ran out before Unlock")
		if capped {
			reason = l.maxHoldErr(nil)
		}
		lost = l.lostErr(reason)
		l.finish(lost)
	}
	if lost != nil {
		// Compare-and-release: if a renewal Redis ran late made the key
		// ours again, others need not wait out its TTL. The lease is
		// lost whatever Redis answers, so Unlock waits for the release
		// only briefly: a Redis that does not answer (dead, stalled)
		// costs it lostReleaseWait, and the release goes on in the
		// background.
		_, _ = l.release("abort", min(l.c.cfg.unlockTimeout, lostReleaseWait))
		return lost
	}
	n, err := l.release("unlock", l.c.cfg.unlockTimeout)
	switch {
	case err != nil && isWrongType(err):
		// The queue key was overwritten by something else: the release
		// may have freed the lock, but could not serve the queue.
		l.finish(mutex.ErrUnlocked)
		return opErr("Unlock", l.enc, wrongType(l.nm, err))
	case err != nil:
		l.finish(mutex.ErrUnlocked)
		return opErr("Unlock", l.enc, fmt.Errorf("release not confirmed (if it did not reach Redis, the key expires when its TTL of %v runs out): %w", l.c.cfg.ttl, err))
	case n == 0:
		err := l.lostErr(errors.New("at Unlock another owner held the key"))
		l.finish(err)
		return err
	case n != 1:
		err := l.lostErr(errors.New("at Unlock the key was gone: it expired, or something removed it (eviction under maxmemory, FLUSHALL, a failover that lost it)"))
		l.finish(err)
		return err
	}
	l.finish(mutex.ErrUnlocked)
	return nil
}

// lostReleaseWait bounds how long Unlock of a lost lease waits for its
// release.
const lostReleaseWait = 250 * time.Millisecond

// release runs release.lua for the lease, in mode "unlock" (by value) or
// "abort" (by owner), waiting for it at most timeout (the call then
// finishes in the background); it reports what it found: 1 the lock was
// the lease's and is released, 0 another owner held it, 2 the key was
// absent.
func (l *lease) release(mode string, timeout time.Duration) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	res, err := l.c.exec.doRetrying(ctx, nil, func() *call {
		if mode == "abort" {
			return l.c.releaseCall(l.nm, l.owner, "a", "")
		}
		return l.unlockCall()
	})
	if err != nil {
		return 0, err
	}
	n, _ := res.(int64)
	return n, nil
}

// closeCall starts ending the lease for Close and returns its release
// call, or nil if Unlock or a loss ended it already.
func (l *lease) closeCall() *call {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ending || l.err != nil {
		return nil
	}
	l.ending = true
	return l.unlockCall()
}

// unlockCall is the release.lua call that unlocks the lease: the
// one-argument fast path (which deletes the key) unless its tokens may
// still be ahead of the server clock. They are behind it once more than
// twice their lead has passed here since the reply that issued them
// arrived (the server read its clock before sending that reply; the
// factor covers any difference in clock rates).
func (l *lease) unlockCall() *call {
	lead := time.Duration(l.g.top-min(l.g.clock, l.g.top)) * time.Microsecond
	return l.c.unlockCall(l.nm, l.g, l.val, lead == 0 || time.Since(l.got) > 2*lead)
}

// endClosed releases the lease and ends it as closed: for a Lock that
// succeeded as Close began.
func (l *lease) endClosed() {
	c := l.closeCall()
	if c == nil {
		return
	}
	l.c.exec.submit(c)
	t := time.NewTimer(l.c.cfg.unlockTimeout)
	defer t.Stop()
	select {
	case <-c.done:
		l.closed(c, true)
	case <-t.C:
		l.closed(c, false)
	}
}

// closed ends the lease for Close, once its release call c has finished
// (done) or Close stopped waiting for it.
func (l *lease) closed(c *call, done bool) {
	switch {
	case !done:
		l.c.logger().Warn("keyedmutex: Close: release not confirmed in time; the key expires when its TTL runs out", "lock", l.nm.lock)
	case c.err != nil:
		l.c.logger().Warn("keyedmutex: Close: release not confirmed; if it did not reach Redis, the key expires when its TTL runs out", "lock", l.nm.lock, "err", c.err)
	}
	l.finish(opErr("lease", l.enc, errClosedLost))
}

// renewed is the result of a renewal sent at sent.
func (l *lease) renewed(sent time.Time, res any, err error) {
	n, _ := res.(int64)
	var lost error
	l.mu.Lock()
	l.renewing = false
	if l.ending || l.err != nil {
		l.mu.Unlock()
		return
	}
	switch {
	case err == nil && n == 1:
		l.validUntil = sent.Add(l.c.cfg.ttl)
		l.backoff, l.lastErr = 0, nil
		if l.expiry != nil {
			l.expiry.Stop()
			l.expiry = nil
		}
		l.scheduleRenewalLocked(sent.Add(l.c.cfg.ttl / 3))
	case err == nil:
		lost = errors.New("the renewal's ownership check failed: the key expired or another owner took it")
	case isWrongType(err):
		lost = fmt.Errorf("the lock key was overwritten: %w", err)
	default:
		l.retryLocked(err)
	}
	l.mu.Unlock()
	switch {
	case lost != nil:
		l.lose(lost, false)
	case err != nil:
		l.c.logger().Warn("keyedmutex: lease renewal failed; retrying until its validity ends", "lock", l.nm.lock, "err", err)
		l.c.observe(context.Background(), mutex.Renewed, l.enc, mutex.Event{Outcome: mutex.Failed, Err: err})
	default:
		l.c.observe(context.Background(), mutex.Renewed, l.enc, mutex.Event{Outcome: mutex.Acquired})
	}
}

// retryLocked schedules the next renewal after a transport error, with a
// backoff, and arms the loss at validity end. l.mu is held.
func (l *lease) retryLocked(err error) {
	l.lastErr = err
	interval := l.c.cfg.ttl / 3
	l.backoff = min(max(2*l.backoff, min(minRenewBackoff, interval)), interval)
	left := time.Until(l.validUntil)
	if l.expiry == nil {
		l.expiry = time.AfterFunc(max(left, 0), l.expire)
	}
	if left > 0 {
		l.scheduleRenewalLocked(time.Now().Add(min(l.backoff, left)))
	}
}

// expire loses the lease if its validity has run out: without a
// confirmed renewal, or, WithoutRenewal, at its fixed TTL. Its timer calls
// it, and so does Err, which may run first (a process resumed after a
// pause).
func (l *lease) expire() {
	l.mu.Lock()
	lastErr, capped := l.lastErr, l.capped
	stale := time.Now().Before(l.validUntil) // renewed meanwhile
	l.mu.Unlock()
	if stale {
		return
	}
	if capped {
		l.lose(l.maxHoldErr(lastErr), true)
		return
	}
	if !l.c.cfg.renew {
		l.lose(fmt.Errorf("its TTL of %v ran out (WithoutRenewal)", l.c.cfg.ttl), false)
		return
	}
	reason := errors.New("its validity ran out before a renewal was confirmed")
	if lastErr != nil {
		reason = fmt.Errorf("its validity ran out while renewal failed: %w", lastErr)
	}
	l.lose(reason, true)
}

// Renewal backoff after a transport error.
const minRenewBackoff = 10 * time.Millisecond

// Done is closed when the lease ends: by Unlock, by loss, or by Close.
func (l *lease) Done() <-chan struct{} { return l.done }

// Err is nil while the lease is held; then [mutex.ErrUnlocked] after
// Unlock, or an error satisfying errors.Is(err, mutex.ErrLost) after a
// loss (and also errors.Is(err, mutex.ErrClosed) after Close).
//
// Err reads the clock: a lease whose validity has run out is lost at
// once, even if the timer that would have found it has not fired yet (a
// process resumed after a pause sees Err before its timers run). Done
// closes then too.
func (l *lease) Err() error {
	l.mu.Lock()
	err, ending, valid := l.err, l.ending, l.validUntil
	l.mu.Unlock()
	if err != nil || ending || time.Now().Before(valid) {
		return err
	}
	l.expire()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Token is the lease's fencing token: strictly greater than every token
// issued earlier for the key, by any process.
func (l *lease) Token() uint64 { return l.g.first }

// Reserved is the number of fencing tokens the lease holds, from Token().
func (l *lease) Reserved() uint64 { return l.g.top - l.g.first + 1 }

// Requeue releases the lease, handing the lock to the first waiter
// queued for it, and queues a new waiter of the same Mutex for n tokens
// at the back of the queue, in one script: see [remote.Lease]. It is
// what a hybrid process that reached its handoff bound uses to give
// other processes their turn and take its own place in line at once.
func (l *lease) Requeue(n uint64) (remote.Ticket, error) {
	if n < 1 || n > MaxReserve {
		return nil, fmt.Errorf("distributed: Requeue: n = %d; want 1 <= n <= %d", n, MaxReserve)
	}
	if l.read {
		return nil, remote.ErrUnavailable // an RWMutex's read lease: unlock, then lock
	}
	c := l.c
	w := &waiter{c: c, enc: l.enc, nm: l.nm, owner: newID(16), n: n}
	if w.sub = c.hub.Join(w.nm.channel(c.id), w.owner); w.sub == nil {
		return nil, remote.ErrUnavailable
	}
	// Known already: the subscription that Join shares was confirmed.
	base, err := c.entryBase(context.Background(), w.owner, n)
	if err != nil {
		w.closeSub()
		return nil, remote.ErrUnavailable
	}
	l.mu.Lock()
	if l.ending || l.err != nil || !time.Now().Before(l.validUntil) {
		l.mu.Unlock()
		w.closeSub()
		return nil, remote.ErrUnavailable // Unlock says how it ended
	}
	l.ending = true
	l.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.unlockTimeout)
	defer cancel()
	sent := time.Now()
	res, err := c.exec.do(ctx, nil, c.releaseCall(l.nm, l.val, "r", "", l.g.top, holderID(w.owner, c.cfg.label), n, base, c.liveMs))
	if err != nil {
		l.finish(mutex.ErrUnlocked)
		w.leave() // the new waiter may have been queued, or granted
		w.closeSub()
		return nil, opErr("Requeue", l.enc, fmt.Errorf("release not confirmed (if it did not reach Redis, the key expires when its TTL of %v runs out): %w", c.cfg.ttl, err))
	}
	t := &ticket{w: w}
	switch r, _ := res.([]any); {
	case len(r) == 5 && r[0] == int64(2):
		first, _ := r[1].(int64)
		top, _ := r[2].(int64)
		ttl, _ := r[3].(int64)
		clock, _ := r[4].(int64)
		t.held = newLease(c, w.enc, w.nm, w.owner, grant{first: uint64(first), top: uint64(top), ttlMs: ttl, clock: uint64(clock)}, sent)
	case len(r) == 4 && r[0] == int64(1):
		w.member, _ = r[1].(string)
		w.score, _ = r[2].(string)
		t.pttl, _ = r[3].(int64)
		w.anchor = sent
	default:
		// A retried call (the client resent it after a lost reply) finds
		// its own work done: the new waiter may hold the lock, so release
		// it, as on the error path.
		w.leave()
		w.closeSub()
		err := l.lostErr(errors.New("at Requeue the key had expired or another owner held it"))
		l.finish(err)
		return nil, err
	}
	l.finish(mutex.ErrUnlocked)
	return t, nil
}

// ticket is a waiter queued by Requeue.
type ticket struct {
	w    *waiter
	held *lease // the lock was free: granted at once
	pttl int64  // otherwise: the holder's remaining TTL, ms

	mu    sync.Mutex // guards spent
	spent bool
}

// Wait blocks until the ticket's waiter holds the lock, ctx ends, or the
// Mutex is closed.
func (t *ticket) Wait(ctx context.Context) (mutex.Reservation, error) {
	if !t.spend() {
		return nil, errors.New("distributed: ticket spent")
	}
	c, w := t.w.c, t.w
	if ctx == nil {
		t.abandon()
		return nil, opErr("Lock", w.enc, lockutil.ErrNilContext)
	}
	if !c.enter() {
		t.abandon()
		return nil, opErr("Lock", w.enc, mutex.ErrClosed)
	}
	defer c.calls.Done()
	if t.held != nil {
		if time.Now().Before(t.held.validUntil) {
			return t.reservation(c.settle(ctx, "Lock", w, t.held, nil))
		}
		// Kept too long before Wait: release it, and queue afresh.
		w.take(t.held.g, time.Time{})
		if err := w.rejoin(ctx); err != nil {
			return t.reservation(c.settle(ctx, "Lock", w, nil, err))
		}
		l, err := w.wait(ctx, false, 0)
		return t.reservation(c.settle(ctx, "Lock", w, l, err))
	}
	l, err := w.wait(ctx, true, t.pttl)
	return t.reservation(c.settle(ctx, "Lock", w, l, err))
}

func (t *ticket) reservation(l *lease, err error) (mutex.Reservation, error) {
	if err != nil {
		return nil, err
	}
	return l, nil
}

// Cancel takes the ticket's waiter out of the queue, and releases the
// lock if it holds it.
func (t *ticket) Cancel() {
	if t.spend() {
		t.abandon()
	}
}

func (t *ticket) spend() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.spent {
		return false
	}
	t.spent = true
	return true
}

// abandon gives the ticket up: leaves the queue or releases the lock.
func (t *ticket) abandon() {
	t.w.leave()
	t.w.closeSub()
}
