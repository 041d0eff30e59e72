package hybrid

import (
	"context"
	"errors"
	"fmt"
	"log"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
)

var (
	_ mutex.Keyed[string] = (*Mutex[string])(nil)
	_ mutex.Lease         = (*lease[string])(nil)
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
	remote  mutex.Keyed[K]
	blocker mutex.TokenBlocker[K] // remote as a TokenBlocker if bound > 0, else nil
	block   uint64                // tokens reserved per remote lease: bound+1, or 1
	cfgErr  error                 // reported by Lock and TryLock
	onError func(error)
	yield   time.Duration // fixed yield after a bound release, if !adaptive
	adapt   bool
	rtt     atomic.Int64 // EWMA of the remote release latency, ns

	lockers mutex.LockerSet[K]

	closeCtx context.Context // done once Close starts
	closeFn  context.CancelFunc
	wg       sync.WaitGroup // remote contenders, releasers and watchers

	mu      sync.Mutex // guards entries, closed, every entry and lease.{err,unlocked}
	entries map[K]*entry[K]
	closed  bool
}

// entry is the local state of one key. It exists while a goroutine owns
// the key locally (holds it, contends for it remotely, or releases it) or
// waits for it, and is removed when the last of them leaves.
type entry[K comparable] struct {
	owned  bool          // the key is owned locally, by holder or a contender/releaser
	queue  []*waiter[K]  // FIFO waiters
	remote mutex.Lease   // the remote lease of the cohort, or nil
	stop   chan struct{} // closed when remote is taken away; stops its watcher
	lost   bool          // remote was lost while held
	next   uint64        // token of the next local holder of remote
	end    uint64        // one past the last token reserved with remote
	holder *lease[K]     // the local holder, or nil
}

// waiter is a goroutine queued for a key. Exactly one of its grant fields
// is set before ready is closed, and they are read only after.
type waiter[K comparable] struct {
	ready chan struct{}
	lease *lease[K] // a local handoff of the remote lease
	err   error     // Close
	until time.Time // otherwise: contend for the remote lease, not before until
}

// New returns a Mutex that coordinates processes through remote. A nil
// remote, or an invalid option, is reported by every Lock and TryLock.
// The Mutex does not own remote: Close leaves it open.
func New[K comparable](remote mutex.Keyed[K], opts ...Option) *Mutex[K] {
	c := config{maxHandoffs: DefaultMaxLocalHandoffs}
	for _, o := range opts {
		o(&c)
	}
	m := &Mutex[K]{remote: remote, block: 1, onError: c.onError, entries: make(map[K]*entry[K])}
	m.closeCtx, m.closeFn = context.WithCancel(context.Background())
	switch {
	case remote == nil:
		m.cfgErr = errors.New("hybrid: New: nil remote mutex")
	case isNilPointer(remote):
		m.cfgErr = fmt.Errorf("hybrid: New: nil remote mutex (%T)", remote)
	case c.maxHandoffs < 0:
		m.cfgErr = fmt.Errorf("hybrid: WithMaxLocalHandoffs(%d): negative bound", c.maxHandoffs)
	case c.yieldSet && c.yield < 0:
		m.cfgErr = fmt.Errorf("hybrid: WithReleaseYield(%v): negative duration", c.yield)
	}
	if b, ok := remote.(mutex.TokenBlocker[K]); ok && c.maxHandoffs > 0 {
		m.blocker = b
		m.block = uint64(c.maxHandoffs) + 1
	}
	m.yield, m.adapt = c.yield, !c.yieldSet
	if m.onError == nil {
		m.onError = func(err error) { log.Print(err) }
	}
	return m
}

// Lock blocks until the caller holds the lock for key, ctx is done, the
// remote fails, or m is closed. It waits behind the goroutines of this
// process that asked for key earlier, in FIFO order. On ctx end the error
// satisfies errors.Is(err, ctx.Err()); after Close, errors.Is(err,
// [mutex.ErrClosed]).
func (m *Mutex[K]) Lock(ctx context.Context, key K) (mutex.Lease, error) {
	if m.cfgErr != nil {
		return nil, m.cfgErr
	}
	if ctx == nil {
		return nil, fmt.Errorf("hybrid: lock %v: nil context.Context (use context.Background())", key)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("hybrid: lock %v: %w", key, err)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, errClosed("lock", key)
	}
	e := m.entries[key]
	if e == nil {
		e = &entry[K]{}
		m.entries[key] = e
	}
	if !e.owned {
		e.owned = true
		m.wg.Add(1)
		m.mu.Unlock()
		return m.contend(ctx, key, e, false, time.Time{})
	}
	w := &waiter[K]{ready: make(chan struct{})}
	e.queue = append(e.queue, w)
	m.mu.Unlock()

	select {
	case <-w.ready:
	case <-ctx.Done():
		m.mu.Lock()
		select {
		case <-w.ready:
			// Granted as ctx ended: pretend we were not, and pass the
			// grant on, so that no handoff is lost.
			m.mu.Unlock()
			m.giveBack(key, e, w)
		default:
			e.remove(w)
			m.mu.Unlock()
		}
		return nil, fmt.Errorf("hybrid: lock %v: %w", key, ctx.Err())
	}
	switch {
	case w.err != nil:
		return nil, w.err
	case w.lease != nil:
		return w.lease, nil
	}
	return m.contend(ctx, key, e, false, w.until)
}

// TryLock takes the lock for key only if no goroutine of this process
// holds, waits for or contends for it and the remote grants it at once;
// otherwise it returns an error satisfying errors.Is(err, [mutex.ErrLocked]).
func (m *Mutex[K]) TryLock(ctx context.Context, key K) (mutex.Lease, error) {
	if m.cfgErr != nil {
		return nil, m.cfgErr
	}
	if ctx == nil {
		return nil, fmt.Errorf("hybrid: trylock %v: nil context.Context (use context.Background())", key)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("hybrid: trylock %v: %w", key, err)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, errClosed("trylock", key)
	}
	e := m.entries[key]
	if e != nil && e.owned {
		m.mu.Unlock()
		return nil, fmt.Errorf("hybrid: trylock %v: %w", key, mutex.ErrLocked)
	}
	if e == nil {
		e = &entry[K]{}
		m.entries[key] = e
	}
	e.owned = true
	m.wg.Add(1)
	m.mu.Unlock()
	return m.contend(ctx, key, e, true, time.Time{})
}

// Locker returns a [sync.Locker] for key; see [mutex.LockerSet.Locker].
// Errors it retries go to the [WithErrorHandler] function. On a Mutex
// that New could not configure (nil remote, invalid option), whose every
// Lock would fail, the Locker's Lock panics with the configuration error
// instead of retrying forever; after Close it panics too.
func (m *Mutex[K]) Locker(key K) sync.Locker {
	if m.cfgErr != nil {
		return badLocker{m.cfgErr}
	}
	return m.lockers.Locker(m, key, func(key K, err error) { m.onError(err) })
}

// badLocker is the Locker of a misconfigured Mutex.
type badLocker struct{ err error }

func (l badLocker) Lock()   { panic(l.err.Error()) }
func (l badLocker) Unlock() { panic(l.err.Error()) }

// Close ends m; see the package documentation. It returns once no
// goroutine of m runs and no remote lease of m is held, with the errors of
// the remote releases it made. Close is idempotent: a later call returns
// nil at once.
func (m *Mutex[K]) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	var remotes []mutex.Lease
	for key, e := range m.entries {
		for _, w := range e.queue {
			w.err = errClosed("lock", key)
			close(w.ready)
		}
		e.queue = nil
		if e.holder != nil {
			e.holder.endLocked(fmt.Errorf("hybrid: key %v: %w: %w", key, mutex.ErrLost, mutex.ErrClosed))
		}
		if r := e.takeRemote(); r != nil {
			remotes = append(remotes, r)
		}
	}
	m.mu.Unlock()
	m.closeFn()
	var errs []error
	for _, r := range remotes {
		if err := r.Unlock(); err != nil && !errors.Is(err, mutex.ErrLost) {
			errs = append(errs, fmt.Errorf("hybrid: close: release remote lease: %w", err))
		}
	}
	m.wg.Wait()
	return errors.Join(errs...)
}

func isNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

func errClosed(op string, key any) error {
	return fmt.Errorf("hybrid: %s %v: %w", op, key, mutex.ErrClosed)
}

// contend acquires the remote lease for key, which the caller owns
// locally, and returns the first local lease of it. On failure it passes
// the local ownership on. The caller did m.wg.Add(1) under m.mu.
func (m *Mutex[K]) contend(caller context.Context, key K, e *entry[K], try bool, until time.Time) (mutex.Lease, error) {
	defer m.wg.Done()
	op := "lock"
	if try {
		op = "trylock"
	}
	fail := func(err error) (mutex.Lease, error) {
		m.mu.Lock()
		m.passOn(key, e, until)
		m.mu.Unlock()
		if m.closeCtx.Err() != nil && caller.Err() == nil {
			return nil, fmt.Errorf("hybrid: %s %v: %w: %w", op, key, mutex.ErrClosed, err)
		}
		return nil, fmt.Errorf("hybrid: %s %v: %w", op, key, err)
	}
	if err := m.closeCtx.Err(); err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(caller)
	defer cancel()
	defer context.AfterFunc(m.closeCtx, cancel)()
	if d := time.Until(until); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fail(ctx.Err())
		}
	}
	var (
		r   mutex.Lease
		err error
	)
	switch {
	case m.blocker != nil && try:
		r, err = m.blocker.TryLockBlock(ctx, key, m.block)
	case m.blocker != nil:
		r, err = m.blocker.LockBlock(ctx, key, m.block)
	case try:
		r, err = m.remote.TryLock(ctx, key)
	default:
		r, err = m.remote.Lock(ctx, key)
	}
	if err != nil {
		return fail(err)
	}

	m.mu.Lock()
	if m.closed {
		m.passOn(key, e, time.Time{})
		m.mu.Unlock()
		err := r.Unlock()
		return nil, errors.Join(errClosed(op, key), err)
	}
	e.remote, e.lost, e.stop = r, false, make(chan struct{})
	e.next = r.Token()
	e.end = e.next + m.block
	m.wg.Add(1)
	go m.watch(key, e, r, e.stop)
	h := m.grant(key, e)
	m.mu.Unlock()
	return h, nil
}

// watch ends the local holder's lease when the remote lease r is lost.
func (m *Mutex[K]) watch(key K, e *entry[K], r mutex.Lease, stop chan struct{}) {
	defer m.wg.Done()
	select {
	case <-r.Done():
	case <-stop:
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e.stop != stop { // released by us meanwhile
		return
	}
	e.lost = true
	if e.holder != nil {
		e.holder.endLocked(fmt.Errorf("hybrid: key %v: %w", key, mutex.ErrLost))
	}
}

// grant makes a new local holder of e's remote lease. m.mu is held.
func (m *Mutex[K]) grant(key K, e *entry[K]) *lease[K] {
	h := &lease[K]{m: m, key: key, e: e, token: e.next, done: make(chan struct{})}
	e.next++
	e.holder = h
	return h
}

// passOn hands the local ownership of key, without a remote lease, to the
// next waiter, which contends not before until; or, with no waiter, gives
// it up. m.mu is held.
func (m *Mutex[K]) passOn(key K, e *entry[K], until time.Time) {
	if len(e.queue) > 0 {
		w := e.pop()
		w.until = until
		m.wg.Add(1) // done by the waiter's contend or giveBack
		close(w.ready)
		return
	}
	e.owned = false
	if m.entries[key] == e {
		delete(m.entries, key)
	}
}

// giveBack undoes a grant to w, whose Lock gave up as it was granted.
func (m *Mutex[K]) giveBack(key K, e *entry[K], w *waiter[K]) {
	switch {
	case w.err != nil:
	case w.lease != nil:
		if err := w.lease.Unlock(); err != nil && !errors.Is(err, mutex.ErrLost) {
			m.onError(err)
		}
	default:
		m.mu.Lock()
		m.passOn(key, e, w.until)
		m.mu.Unlock()
		m.wg.Done()
	}
}

// yieldFor is how long the next local head waits after a bound release.
func (m *Mutex[K]) yieldFor() time.Duration {
	if !m.adapt {
		return m.yield
	}
	return min(max(2*time.Duration(m.rtt.Load()), minYield), maxYield)
}

// observe folds a remote release latency into the moving average.
func (m *Mutex[K]) observe(d time.Duration) {
	for {
		old := m.rtt.Load()
		v := int64(d)
		if old != 0 {
			v = old + (v-old)/8
		}
		if m.rtt.CompareAndSwap(old, v) {
			return
		}
	}
}

func (e *entry[K]) pop() *waiter[K] {
	w := e.queue[0]
	e.queue[0] = nil
	e.queue = e.queue[1:]
	return w
}

func (e *entry[K]) remove(w *waiter[K]) {
	for i, x := range e.queue {
		if x == w {
			e.queue = append(e.queue[:i], e.queue[i+1:]...)
			return
		}
	}
}

// takeRemote detaches the remote lease, stopping its watcher.
func (e *entry[K]) takeRemote() mutex.Lease {
	r := e.remote
	if r != nil {
		close(e.stop)
		e.remote, e.stop, e.lost = nil, nil, false
	}
	return r
}

// lease is one local holding of a key: a share of the cohort's remote
// lease.
type lease[K comparable] struct {
	m     *Mutex[K]
	key   K
	e     *entry[K]
	token uint64
	done  chan struct{}

	err      error // guarded by m.mu
	unlocked bool  // guarded by m.mu
}

func (h *lease[K]) Done() <-chan struct{} { return h.done }
func (h *lease[K]) Token() uint64         { return h.token }

func (h *lease[K]) Err() error {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	return h.err
}

// endLocked ends h with err unless it ended already. m.mu is held.
func (h *lease[K]) endLocked(err error) {
	if h.err == nil {
		h.err = err
		close(h.done)
	}
}

// Unlock hands the remote lease to the next local waiter, or releases it;
// see the package documentation.
func (h *lease[K]) Unlock() error {
	m, e, key := h.m, h.e, h.key
	m.mu.Lock()
	if h.unlocked {
		m.mu.Unlock()
		return fmt.Errorf("hybrid: unlock %v: %w", key, mutex.ErrUnlocked)
	}
	h.unlocked = true
	e.holder = nil
	lost := h.err != nil || e.lost || e.remote == nil
	if !lost {
		select {
		case <-e.remote.Done():
			lost = true
		default:
		}
	}
	if lost {
		// Never hand a lost lease on: the next waiter acquires afresh.
		h.endLocked(fmt.Errorf("hybrid: key %v: %w", key, mutex.ErrLost))
		err := h.err
		r := e.takeRemote()
		m.passOn(key, e, time.Time{})
		m.mu.Unlock()
		if r != nil {
			if rerr := r.Unlock(); rerr != nil && !errors.Is(rerr, mutex.ErrLost) {
				m.onError(fmt.Errorf("hybrid: unlock %v: release lost remote lease: %w", key, rerr))
			}
		}
		return err
	}
	if len(e.queue) > 0 && e.next < e.end {
		// Cohort handoff: no remote command.
		h.endLocked(mutex.ErrUnlocked)
		w := e.pop()
		w.lease = m.grant(key, e)
		close(w.ready)
		m.mu.Unlock()
		return nil
	}
	// Bound reached with waiters left: yield to other processes.
	yield := len(e.queue) > 0
	r := e.takeRemote()
	m.wg.Add(1)
	m.mu.Unlock()

	start := time.Now()
	err := r.Unlock()
	if err == nil {
		m.observe(time.Since(start))
	}

	m.mu.Lock()
	switch {
	case err == nil:
		h.endLocked(mutex.ErrUnlocked)
	case errors.Is(err, mutex.ErrLost):
		h.endLocked(fmt.Errorf("hybrid: key %v: %w", key, mutex.ErrLost))
		err = h.err
	default:
		h.endLocked(mutex.ErrUnlocked)
		err = fmt.Errorf("hybrid: unlock %v: release remote lease: %w", key, err)
	}
	var until time.Time
	if yield {
		until = time.Now().Add(m.yieldFor())
	}
	m.passOn(key, e, until)
	m.mu.Unlock()
	m.wg.Done()
	return err
}
