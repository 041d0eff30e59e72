package local

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keylock"
	"github.com/keyedmutex/keyedmutex/internal/keyname"
	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
)

var (
	_ mutex.Keyed[string]         = (*Mutex[string])(nil)
	_ mutex.TokenReserver[string] = reserver[string]{}
	_ mutex.Lease                 = (*lease[string])(nil)
	_ mutex.Reservation           = (*reservation[string])(nil)
	_ remote.Watcher              = (*lease[string])(nil)
)

// Errors of the token reservation that hybrid asks for (see reserver).
var (
	// errBlockSize is returned by lockN for n == 0.
	errBlockSize = fmt.Errorf("local: token block size must be at least 1")
	// errTokensExhausted is returned when a block of tokens would go past
	// the largest token, 1<<63 - 1. Only absurd block sizes get there.
	errTokensExhausted = keylock.ErrTokensExhausted
)

// Mutex is a family of in-process mutexes, one per key of type K.
//
// The zero value is ready to use: all keys unlocked. A Mutex must not be
// copied after first use.
//
// For any key, the Unlock of a lease synchronizes before the Lock or
// TryLock that next returns a lease for that key, as with [sync.Mutex].
// Waiters are served in FIFO order (see the package doc). Only keys that
// are held or waited for take memory, and a bounded cache of idle keys
// (see the package doc).
type Mutex[K comparable] struct {
	t       keylock.Table[K, held[K]]
	lockers lockutil.LockerSet[K]
	obs     mutex.Observer // from WithObserver; nil: none
}

// held is what the holder of a key keeps in its entry: for an observed
// holding, the observer and when the holding began (see clock); and the
// leases the key's next holdings will return.
type held[K comparable] struct {
	obs   mutex.Observer
	since time.Duration
	// slab holds leases not yet handed out, from next on. A lease is
	// handed out once and never reused, but a key locked again and
	// again gets its leases leaseSlab at a time: one allocation per
	// leaseSlab Locks rather than one per Lock.
	slab *[leaseSlab]lease[K]
	next int
	// leased: a lease was returned for this entry before, so the key is
	// locked repeatedly and a slab pays for itself. A key locked once
	// (a burst of distinct keys) gets a lease of its own.
	leased bool
}

// leaseSlab is how many leases a slab holds (16 leases of 32 bytes: a
// 512-byte allocation). A lease keeps its slab alive while referenced.
const leaseSlab = 16

// newLease returns a fresh lease for the holding of e that began with
// token tok. The caller holds e.
func newLease[K comparable](e *keylock.Entry[K, held[K]], tok uint64) *lease[K] {
	h := &e.Value
	if h.slab == nil || h.next == leaseSlab {
		if !h.leased {
			h.leased = true
			return &lease[K]{e: e, tok: tok}
		}
		h.slab, h.next = new([leaseSlab]lease[K]), 0
	}
	// Every other lease first, then the rest: two leases share a cache
	// line, and consecutive ones are often held by goroutines on
	// different CPUs.
	l := &h.slab[h.next%(leaseSlab/2)*2+h.next/(leaseSlab/2)]
	h.next++
	l.e, l.tok = e, tok
	return l
}

// epoch is the origin of clock.
var epoch = time.Now()

// clock reads the monotonic clock only (time.Now reads the wall clock
// too, at twice the cost), for the observer's wait and hold times.
func clock() time.Duration { return time.Since(epoch) }

// New returns a Mutex with options. The zero value is a Mutex without
// any; use New to set an observer.
func New[K comparable](opts ...Option) (*Mutex[K], error) {
	var c config
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	return &Mutex[K]{obs: c.obs}, nil
}

// An Option configures a [Mutex] in [New], which returns the error of an
// invalid one.
type Option func(*config) error

type config struct {
	obs mutex.Observer
}

// WithObserver sets the [mutex.Observer] told about every Lock, TryLock
// and Unlock (wait and hold times, outcomes). o must not be nil. The
// default is none.
func WithObserver(o mutex.Observer) Option {
	return func(c *config) error {
		if o == nil {
			return errors.New("local: WithObserver(nil)")
		}
		c.obs = o
		return nil
	}
}

// lease is one holding of one key. Once returned to the caller it is never
// reused, so a second Unlock always sees it unlocked. It is the one
// allocation of a Lock (32 bytes), or a share of one (see newLease).
type lease[K comparable] struct {
	e   *keylock.Entry[K, held[K]] // this lease's while not unlocked
	tok uint64
	st  atomic.Uint32 // lease* bits
	w   *watch        // made by Done or AfterDone, under leaseBusy
}

// The bits of a lease's st.
const (
	leaseUnlocked = 1 << iota
	// leaseBusy: a Done or AfterDone is changing w; Unlock waits for it.
	leaseBusy
	// leaseWatched: w is set, and Unlock must end it.
	leaseWatched
)

// watch is what Done and AfterDone leave for Unlock to end.
type watch struct {
	done  chan struct{}
	after lockutil.Callbacks
}

// unlocked is the closed channel that Done returns after Unlock.
var unlocked = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Lock blocks until the caller holds the lock for key or ctx is done. On
// ctx end it returns an error satisfying errors.Is(err, ctx.Err()) and
// does not hold the lock. The empty key of a string kind is refused with
// an error satisfying errors.Is(err, [mutex.ErrInvalidKey]), as by every
// implementation of [mutex.Keyed]. The returned [mutex.Lease] has Token() strictly
// greater than every earlier lease's for key.
func (m *Mutex[K]) Lock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, key, 1, true)
}

// TryLock takes the lock for key only if nobody holds it now; otherwise it
// returns an error satisfying errors.Is(err, [mutex.ErrLocked]). It never
// waits for the holder. If ctx is already done it returns ctx's error.
func (m *Mutex[K]) TryLock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, key, 1, false)
}

// reserver is the [mutex.TokenReserver] of a Mutex, which mutex/hybrid
// finds through remote.ReserverOf: a hybrid Mutex over a local one (as
// in tests that stand processes for hybrid instances) hands one lease
// between its goroutines as over a distributed one. It is not part of
// the public API: a user of local has no use for blocks of tokens.
type reserver[K comparable] struct{ m *Mutex[K] }

func init() {
	remote.RegisterReserver(func(keyed any) any {
		if m, ok := keyed.(interface{ reserver() any }); ok {
			return m.reserver()
		}
		return nil
	})
}

func (m *Mutex[K]) reserver() any { return reserver[K]{m} }

// LockN is Lock with a lease that reserves n consecutive fencing tokens
// (always exactly n): Token() is the first, and the next lease for key
// gets a token above all n. n == 0 returns an error satisfying
// errors.Is(err, errBlockSize).
func (r reserver[K]) LockN(ctx context.Context, key K, n uint64) (mutex.Reservation, error) {
	return r.m.lockN(ctx, key, n, true)
}

// TryLockN is TryLock with a lease that reserves n consecutive fencing
// tokens, as LockN.
func (r reserver[K]) TryLockN(ctx context.Context, key K, n uint64) (mutex.Reservation, error) {
	return r.m.lockN(ctx, key, n, false)
}

func (m *Mutex[K]) lockN(ctx context.Context, key K, n uint64, wait bool) (mutex.Reservation, error) {
	if n == 0 {
		return nil, lockErr(opName(wait), key, errBlockSize)
	}
	l, err := m.lock(ctx, key, n, wait)
	if err != nil {
		return nil, err
	}
	return &reservation[K]{lease: l.(*lease[K]), n: n}, nil
}

// reservation is a lease from lockN, which knows its block size.
type reservation[K comparable] struct {
	*lease[K]
	n uint64
}

func (r *reservation[K]) Reserved() uint64 { return r.n }

// Locker returns a [sync.Locker] for key. Lockers of one Mutex share
// state: m.Locker(k).Lock() in one place and m.Locker(k).Unlock() in
// another behave like one [sync.Mutex]. Unlock of a key not locked through
// a Locker panics, like [sync.Mutex.Unlock]; so does Lock of an invalid
// key (a NaN).
//
// Without an observer, a Locker's Lock and Unlock allocate nothing: they
// lock and unlock the key itself, with no lease. Keep the Locker to reuse
// it (the call to Locker allocates it). With an observer, a Locker goes
// through Lock and the lease's Unlock, so that the observer sees them.
func (m *Mutex[K]) Locker(key K) sync.Locker {
	if m.obs != nil {
		return m.lockers.Locker(m, key, nil)
	}
	return &keyLocker[K]{t: &m.t, key: key}
}

// keyLocker is a Locker of an unobserved Mutex: no lease, no allocation.
type keyLocker[K comparable] struct {
	t   *keylock.Table[K, held[K]]
	key K
	// e is the key's entry as of the last Lock: while it stays the key's
	// entry, Lock and Unlock skip the lookup. It is written only when it
	// changes, so a Locker shared by goroutines does not bounce it.
	e atomic.Pointer[keylock.Entry[K, held[K]]]
}

func (l *keyLocker[K]) Lock() {
	hint := l.e.Load()
	e, err := l.t.LockKey(context.Background(), l.key, hint)
	if err != nil {
		panic(fmt.Sprintf("mutex: Locker(%s).Lock cannot succeed: %v", keyname.Quote(l.key), lockErr("Lock", l.key, err)))
	}
	if e != hint {
		l.e.Store(e)
	}
}

func (l *keyLocker[K]) Unlock() {
	if err := l.t.UnlockKey(l.key, l.e.Load()); err != nil {
		panic(fmt.Sprintf("mutex: Locker(%s).Unlock of unlocked key", keyname.Quote(l.key)))
	}
}

func (m *Mutex[K]) lock(ctx context.Context, key K, n uint64, wait bool) (mutex.Lease, error) {
	if ctx == nil {
		return nil, lockErr(opName(wait), key, lockutil.ErrNilContext)
	}
	if keylock.EmptyKey(key) {
		return nil, lockErr(opName(wait), key, errEmptyKey)
	}
	if m.obs != nil {
		return m.observedLock(ctx, key, n, wait)
	}
	var (
		e   *keylock.Entry[K, held[K]]
		tok uint64
		err error
	)
	if wait {
		e, tok, err = m.t.Lock(ctx, key, n, nil)
	} else {
		e, tok, err = m.t.TryLock(ctx, key, n)
	}
	if err != nil {
		if e != nil {
			// Handed to us as ctx ended: pretend it was not, and
			// pass it on.
			e.Unlock()
		}
		return nil, lockErr(opName(wait), key, err)
	}
	return newLease(e, tok), nil
}

// observedLock is lock with an observer: the same steps, timed and told.
// A Lock that takes the key without waiting reads the clock once, when
// it has it, and reports a Wait of 0; one that waits also reads it
// before.
func (m *Mutex[K]) observedLock(ctx context.Context, key K, n uint64, wait bool) (mutex.Lease, error) {
	ev := mutex.Event{Backend: "local", Key: keylock.KeyString(key), Op: opName(wait)}
	var start time.Duration
	e, tok, err := m.t.TryLock(ctx, key, n)
	waited := wait && errors.Is(err, keylock.ErrLocked)
	if waited {
		start = clock()
		e, tok, err = m.t.Lock(ctx, key, n, func() {
			ev.Waited = true
			w := ev
			w.Kind = mutex.Waiting
			m.obs.Observe(ctx, w)
		})
	}
	if err != nil && e != nil {
		e.Unlock()
	}
	now := clock()
	if waited {
		ev.Wait = now - start
	}
	ev.Kind, ev.Outcome, ev.Err = mutex.LockDone, lockutil.OutcomeOf(ctx, err), err
	m.obs.Observe(ctx, ev)
	if err != nil {
		return nil, lockErr(opName(wait), key, err)
	}
	e.Value.obs, e.Value.since = m.obs, now
	return newLease(e, tok), nil
}

// errEmptyKey refuses the empty key, as every implementation does.
var errEmptyKey = fmt.Errorf("%w: the empty key (refused by every implementation: Redis cannot name it)", mutex.ErrInvalidKey)

// lockErr is the one error wrapper of this package (see
// [lockutil.KeyError]).
func lockErr(op string, key any, err error) error {
	return lockutil.KeyError("local", op, key, err)
}

// opName is the name of a Lock (wait) or TryLock in errors and events.
func opName(wait bool) string {
	if wait {
		return "Lock"
	}
	return "TryLock"
}

// Unlock releases the lock, handing it to the longest waiting goroutine if
// any. Done is closed before the next holder can get the lock. A second
// call returns [mutex.ErrUnlocked].
func (l *lease[K]) Unlock() error {
	s := l.st.Load()
	for {
		switch {
		case s&leaseUnlocked != 0:
			return mutex.ErrUnlocked
		case s&leaseBusy != 0: // a Done or AfterDone, for a moment
			runtime.Gosched()
		case l.st.CompareAndSwap(s, leaseUnlocked):
			if s&leaseWatched != 0 {
				l.w.end()
			}
			if h := l.e.Value; h.obs != nil {
				h.obs.Observe(context.Background(), mutex.Event{Kind: mutex.Unlocked, Backend: "local",
					Key: keylock.KeyString(l.e.Key()), Outcome: mutex.Released, Hold: clock() - h.since})
			}
			l.e.Unlock()
			return nil
		}
		s = l.st.Load()
	}
}

// end closes w's channel and starts its functions; the lease is unlocked.
func (w *watch) end() {
	if w.done != nil {
		close(w.done)
	}
	w.after.Start()
}

// change runs f with leaseBusy set, so that Unlock waits for it, and
// reports whether it did: not once the lease is unlocked.
func (l *lease[K]) change(f func(w *watch)) bool {
	for {
		s := l.st.Load()
		switch {
		case s&leaseUnlocked != 0:
			return false
		case s&leaseBusy != 0:
			runtime.Gosched()
		case l.st.CompareAndSwap(s, s|leaseBusy):
			if l.w == nil {
				l.w = new(watch)
			}
			f(l.w)
			l.st.Store(s | leaseWatched)
			return true
		}
	}
}

// Done returns a channel closed when the lease is unlocked. Local leases
// are never lost.
func (l *lease[K]) Done() <-chan struct{} {
	var done chan struct{}
	if !l.change(func(w *watch) {
		if w.done == nil {
			w.done = make(chan struct{})
		}
		done = w.done
	}) {
		return unlocked
	}
	return done
}

// AfterDone runs f in its own goroutine once the lease is unlocked, or at
// once if it is; stop cancels that and reports whether it did. It lets a
// caller watch many leases (hybrid's Done, say) without a goroutine each.
func (l *lease[K]) AfterDone(f func()) (stop func() bool) {
	var p *func()
	if !l.change(func(w *watch) { p = w.after.Add(f) }) {
		go f()
		return func() bool { return false }
	}
	return func() bool {
		stopped := false
		l.change(func(w *watch) { stopped = w.after.Remove(p) })
		return stopped
	}
}

// Err returns nil while the lease is held and [mutex.ErrUnlocked] after
// Unlock.
func (l *lease[K]) Err() error {
	if l.st.Load()&leaseUnlocked != 0 {
		return mutex.ErrUnlocked
	}
	return nil
}

// Token returns the lease's fencing token: strictly greater than every
// token issued earlier for the same key by the same Mutex.
func (l *lease[K]) Token() uint64 { return l.tok }
