package distributed

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"github.com/keyedmutex/keyedmutex/internal/notify"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

// lockEncoded runs one Lock, TryLock, LockN or TryLockN of the encoded
// key enc.
func (c *core) lockEncoded(ctx context.Context, op, enc string, n uint64, try bool) (*lease, error) {
	if ctx == nil {
		return nil, opErr(op, enc, lockutil.ErrNilContext)
	}
	if err := ctx.Err(); err != nil {
		return nil, opErr(op, enc, err)
	}
	if !c.enter() {
		return nil, opErr(op, enc, mutex.ErrClosed)
	}
	defer c.calls.Done()
	c.checkServers(ctx)

	w := &waiter{c: c, ctx: ctx, op: op, enc: enc, nm: c.namesFor(enc), owner: newID(16), n: n}
	if c.cfg.obs == nil {
		l, err := w.lock(ctx, try)
		return c.settle(ctx, op, w, l, err)
	}
	start := time.Now()
	l, err := w.lock(ctx, try)
	l, err = c.settle(ctx, op, w, l, err)
	c.observe(ctx, mutex.LockDone, enc, lockutil.LockDone(ctx, op, time.Since(start), w.waited, err))
	return l, err
}

// settle ends a Lock: it registers the waiter's new lease and starts its
// renewal, or returns the error with the sentinels a caller tests for.
// The waiter's subscription closes only after the registration, so a
// late copy of its grant is known to be held, not taken for an orphan.
func (c *core) settle(ctx context.Context, op string, w *waiter, l *lease, err error) (*lease, error) {
	if err == nil && !c.register(l) {
		l.endClosed()
		err = mutex.ErrClosed
	}
	w.closeSub()
	if err != nil {
		return nil, opErr(op, w.enc, c.lockErr(ctx, err))
	}
	if c.cfg.obs != nil {
		l.since = time.Now()
	}
	l.start()
	return l, nil
}

// lockErr gives a failed Lock's error the sentinels a caller tests for.
func (c *core) lockErr(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, errStopped) || errors.Is(err, notify.ErrClosed):
		return mutex.ErrClosed
	case ctx.Err() != nil && !errors.Is(err, ctx.Err()):
		return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
	}
	return err
}

// waiter is one Lock call on its way to the lock: its owner id (the
// lease's, if it gets one), its grant subscription and its queue entry.
type waiter struct {
	c     *core
	ctx   context.Context // the Lock's, for the observer
	op    string
	enc   string // the encoded key
	nm    names
	owner string
	n     uint64

	sub           *notify.Subscription // pub/sub waiting only
	member, score string               // the queue entry, once queued
	anchor        time.Time            // when the last call that found the lock not ours was sent
	queuedAt      uint64               // the server clock (µs) when that call ran; 0 if unknown
	waited        bool                 // it emitted Waiting
}

// event tells the observer, if any, about one step of this waiter.
func (w *waiter) event(kind mutex.EventKind) {
	if w.c.cfg.obs == nil {
		return
	}
	if kind == mutex.Waiting {
		if w.waited {
			return
		}
		w.waited = true
	}
	ctx := w.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	w.c.observe(ctx, kind, w.enc, mutex.Event{Op: w.op})
}

// lock takes the lock: one try, then (unless try) spinning or queueing.
func (w *waiter) lock(ctx context.Context, try bool) (*lease, error) {
	pubsub := !try && w.c.cfg.spin == 0
	if pubsub {
		// Others of this Mutex wait on the key (or did a moment ago):
		// join their confirmed subscription and queue at once.
		w.sub = w.c.hub.Join(w.nm.channel(w.c.id), w.owner)
	}
	if w.sub == nil {
		sent := time.Now()
		var (
			r   acquireReply
			err error
		)
		plain := w.c.plain.Load()
		if plain {
			r, err = w.attemptPlain(ctx)
		} else {
			r, err = w.attempt(ctx, "try")
			if err == nil {
				w.c.plainOK()
			}
		}
		if err == nil && !r.held && try && plain {
			// Not taken: the script says why (held, queued, a pending
			// queue to serve, a foreign value), or takes it after all.
			sent = time.Now()
			r, err = w.attempt(ctx, "try")
		}
		switch {
		case err != nil:
			return nil, err
		case r.held:
			if l := w.take(r.g, sent); l != nil {
				return l, nil
			}
			if try {
				return nil, errLate
			}
		case try:
			if r.foreign {
				return nil, fmt.Errorf("%w (lock key %s holds a value this library did not write; it is waited out like a lease: %v left)", mutex.ErrLocked, w.nm.lock, time.Duration(r.pttl)*time.Millisecond)
			}
			return nil, lockedErr(r.pttl)
		}
		if !pubsub {
			return w.spin(ctx)
		}
		if err := w.subscribe(ctx); err != nil {
			return nil, err
		}
	}
	return w.wait(ctx, false, 0)
}

// attemptPlain is the uncontended acquire, three plain commands in one
// round trip: EXISTS of the queue, SET lock id NX PX ttl, TIME. The SET
// takes the lock if it is free; TIME, read while it is held, issues its
// tokens (see lib.lua). If the SET took the lock while waiters were
// queued (behind a lock that expired: a grant nobody claimed, a holder
// that died), it gives the lock back for them and reports it not taken.
// A reply that is not held leaves the rest to the scripts.
func (w *waiter) attemptPlain(ctx context.Context) (acquireReply, error) {
	c := w.c
	id := holderID(w.owner, c.cfg.label)
	res, err := c.exec.doRetrying(ctx, c.closing, func() *call {
		return &call{
			keys: []string{w.nm.lock},
			plain: func(ctx context.Context, p redis.Pipeliner) func() (any, error) {
				exists := p.Exists(ctx, w.nm.queue)
				set := p.SetArgs(ctx, w.nm.lock, id, redis.SetArgs{Mode: "NX", TTL: c.cfg.ttl})
				clock := p.Time(ctx)
				return func() (any, error) { return readPlain(exists, set, clock) }
			},
			abandon: w.abandonedPlain,
		}
	})
	if err != nil {
		if errors.Is(err, errStopped) || ctx.Err() != nil {
			return acquireReply{}, err
		}
		return acquireReply{}, fmt.Errorf("acquire: %w", err)
	}
	r := res.(plainReply)
	switch {
	case !r.set:
		return acquireReply{}, nil
	case r.queued:
		// Give it back at once, so the queue is served; the scripts then
		// take it over.
		if _, err := c.exec.do(ctx, c.closing, c.releaseCall(w.nm, w.owner, "a", "")); err != nil {
			w.c.abort(w.nm, w.owner, "")
			if errors.Is(err, errStopped) || ctx.Err() != nil {
				return acquireReply{}, err
			}
			return acquireReply{}, fmt.Errorf("acquire: %w", err)
		}
		return acquireReply{}, nil
	}
	k := min(w.n, maxAhead)
	return acquireReply{held: true, g: grant{first: r.clock, top: r.clock + k - 1, ttlMs: c.ttlMs, clock: r.clock}}, nil
}

// maxAhead bounds a block of tokens: it starts at the server clock and
// runs at most this many microseconds ahead of it (lib.lua's maxAhead).
const maxAhead = 1000

// plainReply is what attemptPlain's commands answered.
type plainReply struct {
	set, queued bool   // the SET took the lock; the queue existed
	clock       uint64 // TIME, µs
}

func readPlain(exists *redis.IntCmd, set *redis.StatusCmd, clock *redis.TimeCmd) (any, error) {
	if err := exists.Err(); err != nil {
		return nil, err
	}
	if err := set.Err(); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	t, err := clock.Result()
	if err != nil {
		return nil, err
	}
	return plainReply{set: set.Err() == nil, queued: exists.Val() > 0, clock: uint64(t.UnixMicro())}, nil
}

// abandonedPlain runs when attemptPlain's commands finish after its
// caller gave up: it releases the lock if they took it (or may have).
func (w *waiter) abandonedPlain(res any, err error) {
	if r, ok := res.(plainReply); ok && err == nil && !r.set {
		return
	}
	w.c.abort(w.nm, w.owner, "")
}

// errLate is TryLock's error when the lock was taken but the reply came
// after the lease's validity: it was released, nothing is held.
var errLate = errors.New("acquire: the reply came after the lease's validity ran out (a slow network or server); the lock was released, nothing is held")

// take makes the lease of holding g, valid from anchor for g's TTL, unless
// that validity has run out already (the grant or the reply came late: a
// slow network, a paused process): then the lock may be someone else's
// by now, so the holding is released and take returns nil. The waiter
// then carries on under a new owner id, so that the release of the old
// one can never touch a later holding of its own.
func (w *waiter) take(g grant, anchor time.Time) *lease {
	l := newLease(w.c, w.enc, w.nm, w.owner, g, anchor)
	l.read = w.n == 0
	if l.got.Before(l.validUntil) {
		return l
	}
	w.c.abort(w.nm, w.owner, w.member)
	w.owner, w.member, w.score = newID(16), "", ""
	if w.sub != nil {
		w.sub.Close()
		w.sub = nil
	}
	w.event(mutex.Late)
	return nil
}

// lockedErr is TryLock's error: ErrLocked, and what the holder's TTL was.
func lockedErr(pttl int64) error {
	if pttl < 0 {
		return mutex.ErrLocked
	}
	return fmt.Errorf("%w (its lease had %dms left; renewal extends it while held)", mutex.ErrLocked, pttl)
}

// subscribe subscribes the waiter to its Mutex's grant channel of the key
// and returns once Redis confirmed it, so no grant can be missed.
func (w *waiter) subscribe(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(w.c.closeCtx, cancel)
	defer stop()
	sub, err := w.c.hub.Subscribe(sctx, w.nm.channel(w.c.id), w.owner)
	if err != nil {
		if isClosed(w.c.closing) {
			return errStopped
		}
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("subscribe to %s: %w", w.nm.channel(w.c.id), err)
	}
	w.sub = sub
	return nil
}

func (w *waiter) closeSub() {
	if w.sub != nil {
		w.sub.Close()
	}
}

// wait queues the waiter and sleeps until its grant arrives, refreshing
// its queue entry every poll interval (or when the holder's TTL runs
// out, or after a reconnect), which also finds a grant whose message was
// lost. A waiter queued already (by a requeue) passes queued and the
// holder's remaining TTL, and starts asleep.
func (w *waiter) wait(ctx context.Context, queued bool, pttl int64) (*lease, error) {
	w.event(mutex.Waiting)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		if !queued {
			sent := time.Now()
			r, err := w.attempt(ctx, "wait")
			if err != nil {
				w.leave()
				return nil, err
			}
			if r.held {
				if w.member != "" {
					w.event(mutex.Granted) // found at a poll: its notice was lost
				}
				if l := w.take(r.g, sent); l != nil {
					return l, nil
				}
				if err := w.rejoin(ctx); err != nil {
					return nil, err
				}
				continue
			}
			if w.member == "" {
				w.event(mutex.Queued)
			}
			w.member, w.score, w.anchor, pttl = r.member, r.score, sent, r.pttl
			w.queuedAt = uint64(max(r.now, 0))
		}
		d := w.c.cfg.pollInterval
		if p := time.Duration(pttl) * time.Millisecond; pttl >= 0 && p < d {
			d = max(p, time.Millisecond) // -1: no expiry, wait the bound
		}
		queued = false
		t.Reset(d)
		select {
		case <-w.sub.C():
			if g, ok := w.granted(); ok && g.clock < w.queuedAt {
				// A grant made before the last call that found the
				// waiter waiting: dead by then (it expired while this
				// process was paused, say), and its TTL cannot be
				// counted from w.anchor. Check at once.
				w.event(mutex.Late)
			} else if ok {
				w.event(mutex.Notice)
				w.event(mutex.Granted)
				if l := w.take(g, w.anchor); l != nil {
					return l, nil
				}
				if err := w.rejoin(ctx); err != nil {
					return nil, err
				}
			}
			// A wake without a grant (a reconnect), or a late grant:
			// check at once.
		case <-t.C:
			w.event(mutex.PollWake)
		case <-ctx.Done():
			w.leave()
			return nil, ctx.Err()
		case <-w.c.closing:
			w.leave()
			return nil, errStopped
		}
	}
}

// granted returns the grant message that arrived, if one did. A grant
// whose clock is at least w.queuedAt was made after the waiter's last
// call that found it waiting ran, so after that call was sent
// (w.anchor): its TTL counts from no earlier than that.
func (w *waiter) granted() (grant, bool) {
	payload, ok := w.sub.Message()
	if !ok {
		return grant{}, false
	}
	g, err := parseGrant(payload)
	if err != nil {
		w.c.logger().Warn("keyedmutex: ignoring a malformed grant", "channel", w.nm.channel(w.c.id), "err", err)
		return grant{}, false
	}
	return g, true
}

// rejoin subscribes the waiter again after take gave it a new owner id.
func (w *waiter) rejoin(ctx context.Context) error {
	if w.sub = w.c.hub.Join(w.nm.channel(w.c.id), w.owner); w.sub != nil {
		return nil
	}
	return w.subscribe(ctx)
}

// spin retries every spin interval, ±50% jitter, until ctx ends.
func (w *waiter) spin(ctx context.Context) (*lease, error) {
	w.event(mutex.Waiting)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		t.Reset(w.c.cfg.spin/2 + rand.N(w.c.cfg.spin+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-w.c.closing:
			return nil, errStopped
		}
		sent := time.Now()
		r, err := w.attempt(ctx, "try")
		if err != nil {
			return nil, err
		}
		if r.held {
			if l := w.take(r.g, sent); l != nil {
				return l, nil
			}
		}
	}
}

// attempt runs acquire.lua once. If the caller stops waiting for the
// reply, the call finishes in the background and undoes whatever it did.
func (w *waiter) attempt(ctx context.Context, mode string) (acquireReply, error) {
	args, err := w.acquireArgs(ctx, mode)
	if err != nil {
		return acquireReply{}, fmt.Errorf("acquire: %w", err)
	}
	res, err := w.c.exec.doRetrying(ctx, w.c.closing, func() *call {
		return &call{
			script:  w.c.sc.acquire,
			keys:    w.nm.keys(),
			args:    args,
			abandon: w.abandoned,
		}
	})
	if err != nil {
		if isWrongType(err) {
			return acquireReply{}, wrongType(w.nm, err)
		}
		if errors.Is(err, errStopped) || ctx.Err() != nil {
			return acquireReply{}, err
		}
		return acquireReply{}, fmt.Errorf("acquire: %w", err)
	}
	return parseAcquire(res, w.n, w.c.ttlMs)
}

// acquireArgs are acquire.lua's ARGV: a try sends the holder id and n,
// a wait adds the queue entry.
func (w *waiter) acquireArgs(ctx context.Context, mode string) ([]any, error) {
	id := holderID(w.owner, w.c.cfg.label)
	if mode != "wait" {
		return []any{id, w.n}, nil
	}
	base, err := w.c.entryBase(ctx, w.owner, w.n)
	if err != nil {
		return nil, err
	}
	return []any{id, w.n, base, w.member, w.score, w.c.liveMs}, nil
}

// entryBase is a queue entry of this Mutex without its deadline: "<owner>
// <mutex-id> <n> <grant-ms> <verb> <label>" (see lib.lua).
func (c *core) entryBase(ctx context.Context, owner string, n uint64) (string, error) {
	verb := "P"
	if sharded, err := c.publishSharded(ctx); err != nil {
		return "", err
	} else if sharded {
		verb = "S"
	}
	return owner + " " + c.id + " " + strconv.FormatUint(n, 10) + " " + strconv.FormatInt(c.grantMs, 10) + " " + verb + " " + c.cfg.label, nil
}

// abandoned runs when an acquire call finishes after its caller gave up:
// it releases the lock if the call took it, and leaves the queue if it
// joined it. An error means the outcome is unknown: release by owner.
func (w *waiter) abandoned(res any, err error) {
	member := w.member
	if err == nil {
		r, perr := parseAcquire(res, w.n, w.c.ttlMs)
		if perr == nil && !r.held {
			if r.member == "" {
				return // a try that failed: nothing to undo
			}
			member = r.member
		}
	}
	w.c.abort(w.nm, w.owner, member)
}

// leave takes a waiter that gives up out of the queue, and releases the
// lock if it was granted meanwhile; in the background, as the caller is
// leaving.
func (w *waiter) leave() {
	w.c.abort(w.nm, w.owner, w.member)
}

// abort releases, in the background and bounded by nothing but the
// client's timeouts, whatever owner may hold of the key and its queue
// entry member.
func (c *core) abort(nm names, owner, member string) {
	c.exec.submit(c.releaseCall(nm, owner, "a", member))
}

// orphan is told of a grant message for an owner id that no waiter of
// this Mutex has: a waiter that left, or a copy of a grant whose lease is
// held. A grant nobody holds is released at once, so that it does not
// stall the key for its TTL.
func (c *core) orphan(channel, owner, payload string) {
	if c.holds(owner) {
		return
	}
	g, err := parseGrant(payload)
	if err != nil {
		return
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return // Close's own release pass handles what is left
	}
	nm, ok := c.namesOfChannel(channel)
	if !ok {
		return
	}
	c.exec.submit(c.unlockCall(nm, g, holderID(owner, c.cfg.label), !g.ahead()))
}

// unlockCall is the release.lua call that releases holding g of id: the
// one-argument fast path if g's tokens are known to be behind the server
// clock (behind), else the path that checks.
func (c *core) unlockCall(nm names, g grant, id string, behind bool) *call {
	if behind {
		return c.releaseCall(nm, id)
	}
	return c.releaseCall(nm, id, g.top)
}

// releaseCall is a call of release.lua with args (see release.lua).
func (c *core) releaseCall(nm names, args ...any) *call {
	return &call{
		script: c.sc.release,
		keys:   nm.keys(),
		args:   args,
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
