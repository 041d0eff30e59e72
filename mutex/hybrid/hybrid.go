package hybrid

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keylock"
	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
	"golang.org/x/sync/errgroup"
)

var (
	_ mutex.Keyed[string] = (*Mutex[string])(nil)
	_ mutex.Lease         = (*lease[string])(nil)
	_ remote.Watcher      = (*lease[string])(nil)
)

// Mutex is a keyed mutex that queues the goroutines of one process locally
// per key and shares one remote lease between them; see the package
// documentation.
//
// A Mutex must be created with [New]; the zero value is not usable. A Mutex
// must not be copied. For any key, the Unlock of a lease synchronizes
// before the Lock or TryLock of this Mutex that next returns a lease for
// that key; across processes the remote mutex gives the same guarantee.
type Mutex[K comparable] struct {
	remote         mutex.Keyed[K]
	reserver       mutex.TokenReserver[K] // remote as a TokenReserver if bound > 0, else nil
	block          uint64                 // tokens reserved per remote lease: bound+1, or 1
	logger         *slog.Logger           // nil: slog.Default()
	obs            mutex.Observer         // nil: none
	closer         io.Closer              // the remote, if owned (WithOwnedRemote)
	yield          time.Duration          // fixed yield after a bound release, if !adapt
	adapt          bool
	releaseLatency atomic.Int64 // moving average (EWMA) of the remote release latency, ns

	// t holds the local state of every key in use: its FIFO of local
	// goroutines and, in each entry's Value, the cohort. There is no
	// lock that every key shares.
	t       keylock.Table[K, cohort]
	lockers lockutil.LockerSet[K]

	closing atomic.Bool
	wg      sync.WaitGroup // the watchers started by Done
}

// New returns a Mutex that coordinates processes through the remote mutex
// r. A nil r or an invalid option is an error. The Mutex does not own r
// (Close leaves it open) unless [WithOwnedRemote] says so.
func New[K comparable](r mutex.Keyed[K], opts ...Option) (*Mutex[K], error) {
	switch {
	case r == nil:
		return nil, errors.New("hybrid: New: nil remote mutex")
	case lockutil.IsNilPointer(r):
		return nil, fmt.Errorf("hybrid: New: nil remote mutex (%T)", r)
	}
	c := config{maxHandoffs: DefaultMaxLocalHandoffs}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	m := &Mutex[K]{remote: r, block: 1, logger: c.logger, obs: c.obs, yield: c.yield, adapt: !c.yieldSet}
	if c.ownRemote {
		closer, ok := r.(io.Closer)
		if !ok {
			return nil, fmt.Errorf("hybrid: WithOwnedRemote: the remote (%T) has no Close method", r)
		}
		m.closer = closer
	}
	if b, ok := remote.ReserverOf(r); ok && c.maxHandoffs > 0 {
		m.reserver = b
		m.block = uint64(c.maxHandoffs) + 1
	}
	return m, nil
}

// Lock blocks until the caller holds the lock for key, ctx is done, the
// remote fails, or m is closed. It waits behind the goroutines of this
// process that asked for key earlier, in FIFO order. On ctx end the error
// satisfies errors.Is(err, ctx.Err()); after Close, errors.Is(err,
// [mutex.ErrClosed]).
func (m *Mutex[K]) Lock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "Lock", key, false)
}

// TryLock takes the lock for key only if no goroutine of this process
// holds, waits for or contends for it and the remote grants it at once;
// otherwise it returns an error satisfying errors.Is(err, [mutex.ErrLocked]).
// Like Lock, it refuses the empty key of a string kind with an error
// satisfying errors.Is(err, [mutex.ErrInvalidKey]), whatever the remote.
func (m *Mutex[K]) TryLock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "TryLock", key, true)
}

// Locker returns a [sync.Locker] for key. Lockers of one Mutex share
// state: m.Locker(k).Lock() in one place and m.Locker(k).Unlock() in
// another behave like one [sync.Mutex]. Its Lock retries errors that can
// heal with a capped exponential backoff; its Unlock of a key not locked
// through a Locker panics.
// Errors it retries go to the [WithLogger] logger. On an invalid key its
// Lock panics; after Close it reports [mutex.ErrClosed] to the logger and
// blocks until the process ends (use Lock with a ctx to get the error).
func (m *Mutex[K]) Locker(key K) sync.Locker {
	if m.remote == nil {
		panic(errNotNew)
	}
	return m.lockers.Locker(m, key, func(key K, err error) {
		m.log().Warn("keyedmutex: Locker: Lock failed, retrying", "err", err)
	})
}

func (m *Mutex[K]) log() *slog.Logger { return lockutil.Logger(m.logger) }

// observe tells the observer, if any, about e.
func (m *Mutex[K]) observe(ctx context.Context, kind mutex.EventKind, key K, e mutex.Event) {
	if m.obs == nil {
		return
	}
	e.Kind, e.Backend, e.Key = kind, "hybrid", keylock.KeyString(key)
	m.obs.Observe(ctx, e)
}

// errNotNew is the error of a Mutex that New did not make.
var errNotNew = errors.New("hybrid: Mutex not created by New (the zero value is not usable): use New")

// errEmptyKey refuses the empty key, whatever the remote would do.
var errEmptyKey = fmt.Errorf("%w: the empty key (refused by every implementation: Redis cannot name it)", mutex.ErrInvalidKey)

// lockErr is the one error wrapper of this package (see
// [lockutil.KeyError]).
func lockErr(op string, key any, err error) error {
	return lockutil.KeyError("hybrid", op, key, err)
}

func (m *Mutex[K]) lock(ctx context.Context, op string, key K, try bool) (mutex.Lease, error) {
	if m.remote == nil {
		return nil, errNotNew
	}
	if ctx == nil {
		return nil, lockErr(op, key, lockutil.ErrNilContext)
	}
	if keylock.EmptyKey(key) {
		return nil, lockErr(op, key, errEmptyKey)
	}
	if m.obs == nil {
		return m.lockLocal(ctx, op, key, try, nil)
	}
	start, waited := time.Now(), false
	l, err := m.lockLocal(ctx, op, key, try, func() {
		waited = true
		m.observe(ctx, mutex.Waiting, key, mutex.Event{Op: op})
	})
	m.observe(ctx, mutex.LockDone, key, lockutil.LockDone(ctx, op, time.Since(start), waited, err))
	if err == nil {
		l.(*lease[K]).since = time.Now()
	}
	return l, err
}

// lockLocal queues for key locally (calling waiting, if not nil, if it
// must wait), then shares the cohort's remote lease or contends for one.
func (m *Mutex[K]) lockLocal(ctx context.Context, op string, key K, try bool, waiting func()) (mutex.Lease, error) {
	var (
		e   *keylock.Entry[K, cohort]
		err error
	)
	if try {
		e, _, err = m.t.TryLock(ctx, key, 0)
	} else {
		e, _, err = m.t.Lock(ctx, key, 0, waiting)
	}
	if err != nil {
		if e != nil {
			// Handed to us as ctx ended: pass it on, remote lease and all.
			m.release(e, false)
		}
		if errors.Is(err, mutex.ErrClosed) {
			return nil, lockErr(op, key, mutex.ErrClosed)
		}
		return nil, lockErr(op, key, err)
	}
	if l := m.share(e); l != nil {
		return l, nil
	}
	return m.contend(ctx, op, e, try)
}

// share returns a lease on the cohort's remote lease if it is still held
// and has a token left: a local handoff. The caller holds e.
func (m *Mutex[K]) share(e *keylock.Entry[K, cohort]) *lease[K] {
	r, token, ok := e.Value.share()
	if !ok {
		return nil
	}
	return &lease[K]{m: m, e: e, key: e.Key(), remote: r, token: token}
}

// contend acquires the remote lease for the key of e, which the caller
// holds locally, and returns the first local lease of it. On failure the
// local lock passes on to the next waiter, which contends in its turn.
func (m *Mutex[K]) contend(caller context.Context, op string, e *keylock.Entry[K, cohort], try bool) (mutex.Lease, error) {
	c, key := &e.Value, e.Key()
	// A lost remote lease left behind by the previous holder (it never
	// hands a lost one on, but a loss can come after the handoff).
	if stale := c.detach(); stale != nil {
		m.releaseRemote(key, stale)
	}
	ctx, cancel := context.WithCancel(caller)
	defer cancel()
	tk, notBefore, closed := c.begin(cancel, try)
	if closed {
		e.Unlock()
		return nil, lockErr(op, key, mutex.ErrClosed)
	}
	r, reserved, err := m.acquire(ctx, key, tk, notBefore, try)
	closed, contending := c.install(r, reserved, err)
	switch {
	case err == nil && !closed:
		close(contending)
		m.observe(caller, mutex.RemoteAcquired, key, mutex.Event{})
		return &lease[K]{m: m, e: e, key: key, remote: r, token: r.Token()}, nil
	case err == nil: // Close came first: it expects no remote lease left
		if uerr := r.Unlock(); uerr != nil && !errors.Is(uerr, mutex.ErrLost) {
			err = uerr
		}
		err = errors.Join(mutex.ErrClosed, err)
	case closed && caller.Err() == nil:
		err = fmt.Errorf("%w: %w", mutex.ErrClosed, err)
	}
	close(contending)
	e.Unlock()
	return nil, lockErr(op, key, err)
}

// acquire gets the cohort a remote lease: by waiting on the requeue
// ticket tk if there is one (a Lock only; a TryLock cancels it), else,
// once notBefore has passed, from the remote. It returns the lease and
// how many tokens it holds.
func (m *Mutex[K]) acquire(ctx context.Context, key K, tk remote.Ticket, notBefore time.Time, try bool) (mutex.Lease, uint64, error) {
	if tk != nil && !try {
		// The previous holder requeued this process in the remote's
		// queue: wait for that turn.
		rs, err := tk.Wait(ctx)
		if err != nil {
			return nil, 0, err
		}
		return rs, max(1, min(rs.Reserved(), m.block)), nil
	}
	if tk != nil {
		tk.Cancel()
	}
	if err := awaitTurn(ctx, notBefore); err != nil {
		return nil, 0, err
	}
	return m.acquireRemote(ctx, key, try)
}

// awaitTurn waits until notBefore (the yield after a bound release), or
// ctx's end.
func awaitTurn(ctx context.Context, notBefore time.Time) error {
	if notBefore.IsZero() {
		return nil
	}
	d := time.Until(notBefore)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// acquireRemote takes the remote lease, reserving a token per local
// holder it may serve; it returns the lease and how many tokens it holds.
func (m *Mutex[K]) acquireRemote(ctx context.Context, key K, try bool) (mutex.Lease, uint64, error) {
	var (
		r   mutex.Reservation
		l   mutex.Lease
		err error
	)
	switch {
	case m.reserver != nil && try:
		r, err = m.reserver.TryLockN(ctx, key, m.block)
	case m.reserver != nil:
		r, err = m.reserver.LockN(ctx, key, m.block)
	case try:
		l, err = m.remote.TryLock(ctx, key)
	default:
		l, err = m.remote.Lock(ctx, key)
	}
	switch {
	case err != nil:
		return nil, 0, err
	case r != nil:
		return r, max(1, min(r.Reserved(), m.block)), nil
	}
	return l, 1, nil
}

// releaseFailed reports whether err, from the Unlock of a remote lease
// nobody will use again, is a failure to report: not its loss, nor its
// end by a requeue or Close before (nothing was left to release).
func releaseFailed(err error) bool {
	return err != nil && !errors.Is(err, mutex.ErrLost) && !errors.Is(err, mutex.ErrUnlocked)
}

// releaseRemote releases a remote lease nobody will use again, reporting
// errors other than its loss.
func (m *Mutex[K]) releaseRemote(key K, r mutex.Lease) {
	if err := r.Unlock(); releaseFailed(err) {
		m.log().Warn("keyedmutex: hybrid: release of a lost remote lease failed", "err", lockErr("Unlock", key, err))
	}
}

// release ends the holding of e: it passes the key, with the cohort's
// remote lease, to the next local waiter if the lease is live and has a
// token left; otherwise it releases the remote lease (yielding, if the
// bound forced it, before the next local contender) and the local lock.
// It returns the remote release's error.
func (m *Mutex[K]) release(e *keylock.Entry[K, cohort], lost bool) error {
	c := &e.Value
	if c.hasTicket() {
		// A requeued turn nobody took (a waiter gave up as it was handed
		// the key): the next waiter takes it, or it is cancelled.
		if e.HandOff() {
			return nil
		}
		if tk := c.takeTicket(); tk != nil {
			tk.Cancel()
		}
	}
	r, live, handOff := c.plan(lost)
	if handOff && e.HandOff() {
		m.observe(context.Background(), mutex.LocalHandoff, e.Key(), mutex.Event{})
		return nil // cohort handoff: no remote command
	}
	if live && !handOff && e.Waiting() {
		if done, err := m.requeue(e, r); done {
			return err
		}
	}
	err := m.releaseTimed(c.detach(), live && !handOff)
	if live && !handOff {
		// The bound forced this release: if a local waiter takes the key
		// next, let another process's waiter take the remote lock first.
		c.yieldAfter(time.Now().Add(m.yieldFor()))
	}
	e.Unlock()
	return err
}

// releaseTimed releases r (if not nil). The release latency feeds the
// yield after a bound-forced release, so only such releases (bound set)
// and the first are timed: the clock is not free on every Unlock.
func (m *Mutex[K]) releaseTimed(r mutex.Lease, bound bool) error {
	if r == nil {
		return nil
	}
	timed := m.adapt && (bound || m.releaseLatency.Load() == 0)
	var start time.Time
	if timed {
		start = time.Now()
	}
	err := r.Unlock()
	if err == nil && timed {
		m.recordReleaseLatency(time.Since(start))
	}
	return err
}

// requeue ends the cohort at its bound with local waiters left: if the
// remote lease can requeue, it hands the remote lock to the next process
// in the remote's queue and queues this process again, in one step, and
// passes the key with that queued turn to the next local waiter. It
// reports whether it did (false: release as usual).
func (m *Mutex[K]) requeue(e *keylock.Entry[K, cohort], r mutex.Lease) (bool, error) {
	rq, ok := r.(remote.Lease)
	if !ok {
		return false, nil
	}
	tk, err := rq.Requeue(m.block)
	if errors.Is(err, remote.ErrUnavailable) {
		return false, nil
	}
	c := &e.Value
	closed := c.requeued(r, tk, err)
	switch {
	case err != nil:
		e.Unlock()
		return true, err
	case closed:
		tk.Cancel()
		e.Unlock()
		return true, nil
	case e.HandOff():
		return true, nil
	}
	// The waiters left meanwhile: nobody will take the turn.
	if tk := c.takeTicket(); tk != nil {
		tk.Cancel()
	}
	e.Unlock()
	return true, nil
}

// Close ends m; see the package documentation. It returns once no
// goroutine of m runs and no remote lease of m is held, with the errors of
// the remote releases it made. Close is idempotent: a later call returns
// nil at once.
func (m *Mutex[K]) Close() error {
	if !m.closing.CompareAndSwap(false, true) {
		return nil
	}
	m.t.Close(mutex.ErrClosed)
	var (
		remotes    []mutex.Lease
		tickets    []remote.Ticket
		contenders []chan struct{}
	)
	m.t.Range(func(e *keylock.Entry[K, cohort]) {
		r, tk, contending := e.Value.shutdown()
		if r != nil {
			remotes = append(remotes, r)
		}
		if tk != nil {
			tickets = append(tickets, tk)
		}
		if contending != nil {
			contenders = append(contenders, contending)
		}
	})
	for _, tk := range tickets {
		tk.Cancel()
	}
	errs := releaseAll(remotes)
	for _, done := range contenders {
		<-done
	}
	m.wg.Wait()
	if m.closer != nil {
		if err := m.closer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("hybrid: close the remote: %w", err))
		}
	}
	return errors.Join(errs...)
}

// closeParallel bounds how many remote leases Close releases at once.
const closeParallel = 64

// releaseAll releases remote leases in parallel, at most closeParallel at
// a time, so that Close takes about one release's time (bounded by the
// remote's own unlock timeout), not one per lease; it returns the errors
// other than a loss.
func releaseAll(remotes []mutex.Lease) []error {
	var (
		g    errgroup.Group
		mu   sync.Mutex // guards errs
		errs []error
	)
	g.SetLimit(closeParallel)
	for _, r := range remotes {
		g.Go(func() error {
			// ErrUnlocked: a requeue in progress ended the lease before
			// Close took it from the cohort; nothing is left to release.
			if err := r.Unlock(); releaseFailed(err) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("hybrid: close: release remote lease: %w", err))
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return errs
}

// yieldFor is how long the next local head waits after a bound release.
func (m *Mutex[K]) yieldFor() time.Duration {
	if !m.adapt {
		return m.yield
	}
	return min(max(2*time.Duration(m.releaseLatency.Load()), minYield), maxYield)
}

// recordReleaseLatency folds a remote release latency into releaseLatency.
func (m *Mutex[K]) recordReleaseLatency(d time.Duration) {
	for {
		old := m.releaseLatency.Load()
		v := int64(d)
		if old != 0 {
			v = old + (v-old)/8
		}
		if m.releaseLatency.CompareAndSwap(old, v) {
			return
		}
	}
}

// lease is one local holding of a key: a share of the cohort's remote
// lease.
type lease[K comparable] struct {
	m      *Mutex[K]
	e      *keylock.Entry[K, cohort] // ours while not unlocked
	key    K
	remote mutex.Lease // the cohort's remote lease when granted
	token  uint64
	since  time.Time // when Lock returned it (observed Mutexes only)

	mu       sync.Mutex         // guards the fields below
	unwatch  func() bool        // cancels the remote's AfterDone callback, set by watchLocked
	unlocked bool               // Unlock was called
	err      error              // set when the lease ended: ErrUnlocked or a loss
	done     chan struct{}      // made by watchLocked; closed when the lease ends
	after    lockutil.Callbacks // AfterDone functions, run when the lease ends
}

func (l *lease[K]) Token() uint64 { return l.token }

// Err is nil while the lease is held; then [mutex.ErrUnlocked] after
// Unlock, or an error satisfying errors.Is(err, [mutex.ErrLost]) once
// the remote lease was lost (also [mutex.ErrClosed] after Close). It
// only reads: a loss it sees first ends the lease (closes Done) when the
// watch of the remote lease, or Unlock, finds it.
func (l *lease[K]) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	return l.lostLocked()
}

// lostLocked returns the loss error if the remote lease was lost or taken
// by Close while l is held, else nil. l.mu is held.
func (l *lease[K]) lostLocked() error {
	if l.unlocked {
		return nil
	}
	switch {
	case l.e.Value.isClosed():
		return lockErr("lease", l.key, fmt.Errorf("%w: %w", mutex.ErrLost, mutex.ErrClosed))
	case ended(l.remote):
		return lostErr(l.key, l.remote)
	}
	return nil
}

// lostErr is the error of a lease whose remote lease r was lost: it
// satisfies errors.Is(err, mutex.ErrLost) and carries r's reason.
func lostErr(key any, r mutex.Lease) error {
	if cause := r.Err(); cause != nil && errors.Is(cause, mutex.ErrLost) {
		return lockErr("lease", key, cause)
	}
	return lockErr("lease", key, mutex.ErrLost)
}

// endLocked ends l with err unless it ended already. l.mu is held.
func (l *lease[K]) endLocked(err error) {
	if l.err != nil {
		return
	}
	l.err = err
	if l.done != nil {
		close(l.done)
	}
	after := l.after.Take()
	after.Start()
}

// Done returns a channel that is closed when the lease ends: at Unlock,
// or when the remote lease is lost or Close takes it. The first call
// while held watches the remote lease until then: by its AfterDone if it
// has one (the remotes of this module), else with a goroutine.
func (l *lease[K]) Done() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.watchLocked()
	return l.done
}

// AfterDone runs f in its own goroutine once the lease has ended, or at
// once if it has; stop cancels that and reports whether it did (see
// [remote.Watcher]). It watches the remote lease as Done does.
func (l *lease[K]) AfterDone(f func()) (stop func() bool) {
	l.mu.Lock()
	l.watchLocked()
	if l.err != nil {
		l.mu.Unlock()
		go f()
		return func() bool { return false }
	}
	p := l.after.Add(f)
	l.mu.Unlock()
	return func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.after.Remove(p)
	}
}

// watchLocked, at its first call, makes l.done and, while l is held,
// arranges for l to end when its remote lease does. l.mu is held.
func (l *lease[K]) watchLocked() {
	if l.done != nil {
		return
	}
	l.done = make(chan struct{})
	if l.err == nil && !l.unlocked {
		// Under the cohort's lock (ifOpen), which Close takes to mark it
		// closed before it waits for the watchers: a watcher is either
		// counted before that wait, or never started.
		open := l.e.Value.ifOpen(func() {
			if ended(l.remote) {
				l.err = lostErr(l.key, l.remote)
				return
			}
			l.m.wg.Add(1)
			if w, ok := l.remote.(remote.Watcher); ok {
				// No goroutine while held: the remote calls back.
				l.unwatch = w.AfterDone(l.remoteEnded)
			} else {
				go l.watch(l.done)
			}
		})
		if !open {
			l.err = lockErr("lease", l.key, fmt.Errorf("%w: %w", mutex.ErrLost, mutex.ErrClosed))
		}
	}
	if l.err != nil {
		close(l.done)
	}
}

// watch ends l when its remote lease ends before l does.
func (l *lease[K]) watch(done chan struct{}) {
	select {
	case <-done:
		l.m.wg.Done()
	case <-l.remote.Done():
		l.remoteEnded()
	}
}

// remoteEnded ends l as lost if its remote lease ended while l is held.
func (l *lease[K]) remoteEnded() {
	defer l.m.wg.Done()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.lostLocked(); err != nil {
		l.endLocked(err)
	}
}

// stopWatching cancels the remote's callback, if it has not run.
func (l *lease[K]) stopWatching() {
	l.mu.Lock()
	stop := l.unwatch
	l.unwatch = nil
	l.mu.Unlock()
	if stop != nil && stop() {
		l.m.wg.Done()
	}
}

// Unlock hands the remote lease to the next local waiter, or releases it;
// see the package documentation.
func (l *lease[K]) Unlock() error {
	if l.m.obs == nil {
		return l.unlock()
	}
	err := l.unlock()
	if ev, report := lockutil.Unlocked(time.Since(l.since), err); report {
		l.m.observe(context.Background(), mutex.Unlocked, l.key, ev)
	}
	return err
}

func (l *lease[K]) unlock() error {
	l.mu.Lock()
	if l.unlocked {
		l.mu.Unlock()
		return lockErr("Unlock", l.key, mutex.ErrUnlocked)
	}
	lost := l.err
	if lost == nil {
		lost = l.lostLocked()
	}
	l.unlocked = true
	if lost != nil {
		l.endLocked(lost)
	} else {
		l.endLocked(mutex.ErrUnlocked)
	}
	l.mu.Unlock()
	l.stopWatching()

	key := l.key
	err := l.m.release(l.e, lost != nil)
	switch {
	case lost != nil:
		if releaseFailed(err) {
			l.m.log().Warn("keyedmutex: hybrid: release of a lost remote lease failed", "err", lockErr("Unlock", key, err))
		}
		return lost
	case errors.Is(err, mutex.ErrLost): // with the remote's reason
		l.mu.Lock()
		l.err = lockErr("lease", key, err)
		l.mu.Unlock()
		return lockErr("Unlock", key, err)
	case err != nil:
		return lockErr("Unlock", key, fmt.Errorf("release remote lease: %w", err))
	}
	return nil
}
