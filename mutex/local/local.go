package local

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keylock"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
)

var (
	_ mutex.Keyed[string]         = (*Mutex[string])(nil)
	_ mutex.TokenReserver[string] = (*Mutex[string])(nil)
	_ mutex.Lease                 = (*lease[string])(nil)
	_ mutex.Reservation           = (*reservation[string])(nil)
	_ remote.Watcher              = (*lease[string])(nil)
)

// Errors of this package. They are wrapped with the key, so test with
// [errors.Is].
var (
	// ErrBlockSize is returned by LockN and TryLockN for n == 0.
	ErrBlockSize = fmt.Errorf("local: token block size must be at least 1")
	// ErrTokensExhausted is returned when a block of tokens would go past
	// the largest token, 1<<63 - 1. Only absurd block sizes get there.
	ErrTokensExhausted = keylock.ErrTokensExhausted
)

// Mutex is a family of in-process mutexes, one per key of type K.
//
// The zero value is ready to use: all keys unlocked. A Mutex must not be
// copied after first use.
//
// For any key, the Unlock of a lease synchronizes before the Lock or
// TryLock that next returns a lease for that key, as with [sync.Mutex].
// Waiters are served in FIFO order (see the package doc). Only keys that
// are held or waited for take memory.
type Mutex[K comparable] struct {
	t       keylock.Table[K, held]
	lockers mutex.LockerSet[K]
	obs     mutex.Observer // from WithObserver; nil: none
}

// held is what an observed holding of a key keeps in its entry: the
// observer, and when the holding began. Unobserved holdings leave it zero.
type held struct {
	obs   mutex.Observer
	since time.Time
}

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
// reused, so a second Unlock always sees it unlocked. It is 16 bytes: the
// one allocation of an uncontended Lock.
type lease[K comparable] struct {
	// state is the fencing token, with unlockedBit set by Unlock. It is
	// written plainly before the lease is published and atomically after.
	// It comes first for 64-bit alignment on 32-bit platforms.
	state uint64
	e     *keylock.Entry[K, held] // this lease's while not unlocked
}

const unlockedBit = 1 << 63

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

// LockN is Lock with a lease that reserves n consecutive fencing tokens
// (always exactly n): Token() is the first, and the next lease for key
// gets a token above all n. n == 0 returns an error satisfying
// errors.Is(err, [ErrBlockSize]). See [mutex.TokenReserver].
func (m *Mutex[K]) LockN(ctx context.Context, key K, n uint64) (mutex.Reservation, error) {
	return m.lockN(ctx, key, n, true)
}

// TryLockN is TryLock with a lease that reserves n consecutive fencing
// tokens, as LockN.
func (m *Mutex[K]) TryLockN(ctx context.Context, key K, n uint64) (mutex.Reservation, error) {
	return m.lockN(ctx, key, n, false)
}

func (m *Mutex[K]) lockN(ctx context.Context, key K, n uint64, wait bool) (mutex.Reservation, error) {
	if n == 0 {
		return nil, lockErr(key, ErrBlockSize)
	}
	l, err := m.lock(ctx, key, n, wait)
	if err != nil {
		return nil, err
	}
	return &reservation[K]{lease: l.(*lease[K]), n: n}, nil
}

// reservation is a lease from LockN, which knows its block size.
type reservation[K comparable] struct {
	*lease[K]
	n uint64
}

func (r *reservation[K]) Reserved() uint64 { return r.n }

// Locker returns a [sync.Locker] for key. Lockers of one Mutex share
// state: m.Locker(k).Lock() in one place and m.Locker(k).Unlock() in
// another behave like one [sync.Mutex]. Unlock of a key not locked through
// a Locker panics, like [sync.Mutex.Unlock].
func (m *Mutex[K]) Locker(key K) sync.Locker {
	return m.lockers.Locker(m, key, nil)
}

func (m *Mutex[K]) lock(ctx context.Context, key K, n uint64, wait bool) (mutex.Lease, error) {
	if ctx == nil {
		return nil, lockErr(key, fmt.Errorf("nil context.Context (use context.Background())"))
	}
	if keylock.EmptyKey(key) {
		return nil, lockErr(key, errEmptyKey)
	}
	if m.obs != nil {
		return m.observedLock(ctx, key, n, wait)
	}
	var (
		e   *keylock.Entry[K, held]
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
		return nil, lockErr(key, err)
	}
	return &lease[K]{state: tok, e: e}, nil
}

// observedLock is lock with an observer: the same steps, timed and told.
func (m *Mutex[K]) observedLock(ctx context.Context, key K, n uint64, wait bool) (mutex.Lease, error) {
	op := "TryLock"
	if wait {
		op = "Lock"
	}
	ev := mutex.Event{Backend: "local", Key: keylock.KeyString(key), Op: op}
	start := time.Now()
	var (
		e   *keylock.Entry[K, held]
		tok uint64
		err error
	)
	if wait {
		e, tok, err = m.t.Lock(ctx, key, n, func() {
			ev.Waited = true
			w := ev
			w.Kind = mutex.Waiting
			m.obs.Observe(ctx, w)
		})
	} else {
		e, tok, err = m.t.TryLock(ctx, key, n)
	}
	if err != nil && e != nil {
		e.Unlock()
	}
	now := time.Now()
	ev.Kind, ev.Wait, ev.Outcome, ev.Err = mutex.LockDone, now.Sub(start), mutex.OutcomeOf(ctx, err), err
	m.obs.Observe(ctx, ev)
	if err != nil {
		return nil, lockErr(key, err)
	}
	e.Value = held{obs: m.obs, since: now}
	return &lease[K]{state: tok, e: e}, nil
}

// errEmptyKey refuses the empty key, as every implementation does.
var errEmptyKey = fmt.Errorf("%w: the empty key (refused by every implementation: Redis cannot name it)", mutex.ErrInvalidKey)

// lockErr is the one error wrapper of this package.
func lockErr[K comparable](key K, err error) error {
	return fmt.Errorf("local: lock %v: %w", key, err)
}

// Unlock releases the lock, handing it to the longest waiting goroutine if
// any. Done is closed before the next holder can get the lock. A second
// call returns [mutex.ErrUnlocked].
func (l *lease[K]) Unlock() error {
	// The state only ever gains unlockedBit, so a failed swap means
	// another Unlock won.
	s := atomic.LoadUint64(&l.state)
	if s&unlockedBit != 0 || !atomic.CompareAndSwapUint64(&l.state, s, s|unlockedBit) {
		return mutex.ErrUnlocked
	}
	if h := l.e.Value; h.obs != nil {
		h.obs.Observe(context.Background(), mutex.Event{Kind: mutex.Unlocked, Backend: "local",
			Key: keylock.KeyString(l.e.Key()), Outcome: mutex.Released, Hold: time.Since(h.since)})
	}
	l.e.Unlock()
	return nil
}

// Done returns a channel closed when the lease is unlocked. Local leases
// are never lost.
func (l *lease[K]) Done() <-chan struct{} {
	s := atomic.LoadUint64(&l.state)
	if s&unlockedBit != 0 {
		return unlocked
	}
	// The token names this holding: if it has ended meanwhile, Done
	// returns a closed channel.
	return l.e.Done(s)
}

// AfterDone runs f in its own goroutine once the lease is unlocked, or at
// once if it is; stop cancels that and reports whether it did. It lets a
// caller watch many leases (hybrid's Done, say) without a goroutine each.
func (l *lease[K]) AfterDone(f func()) (stop func() bool) {
	s := atomic.LoadUint64(&l.state)
	if s&unlockedBit != 0 {
		go f()
		return func() bool { return false }
	}
	return l.e.AfterDone(s, f)
}

// Err returns nil while the lease is held and [mutex.ErrUnlocked] after
// Unlock.
func (l *lease[K]) Err() error {
	if atomic.LoadUint64(&l.state)&unlockedBit != 0 {
		return mutex.ErrUnlocked
	}
	return nil
}

// Token returns the lease's fencing token: strictly greater than every
// token issued earlier for the same key by the same Mutex.
func (l *lease[K]) Token() uint64 { return atomic.LoadUint64(&l.state) &^ unlockedBit }
