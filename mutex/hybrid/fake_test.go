package hybrid

import (
	"context"
	"fmt"
	"sync"

	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// fake is a remote keyed mutex for tests: one per "Redis". It counts
// calls, records every remote acquisition, and can be told to lose a
// lease, to fail, and to block acquisitions at a gate.
type fake struct {
	mu         sync.Mutex
	held       map[string]*fakeLease
	freed      map[string]chan struct{} // closed and replaced on each release
	tokens     map[string]uint64        // next token per key
	calls      map[string]int           // per method
	pending    map[string]int           // Lock calls in flight per key
	maxPending map[string]int
	acquired   []fakeAcq
	fail       error         // if set, acquisitions fail with it
	maxReserve uint64        // if set, a block holds at most this many tokens
	unlockHold func()        // if set, every Unlock calls it first (outside mu)
	gate       chan struct{} // if set, acquisitions wait until it is closed
	entered    chan string   // if set, receives the key of each blocking acquisition as it starts
}

type fakeAcq struct {
	key   string
	first uint64
	n     uint64
}

func newFake() *fake {
	return &fake{
		held: map[string]*fakeLease{}, freed: map[string]chan struct{}{},
		tokens: map[string]uint64{}, calls: map[string]int{},
		pending: map[string]int{}, maxPending: map[string]int{},
	}
}

var _ mutex.TokenReserver[string] = (*fake)(nil)

func (f *fake) Lock(ctx context.Context, key string) (mutex.Lease, error) {
	return asLease(f.acquire(ctx, "Lock", key, 1, false))
}
func (f *fake) TryLock(ctx context.Context, key string) (mutex.Lease, error) {
	return asLease(f.acquire(ctx, "TryLock", key, 1, true))
}
func (f *fake) LockN(ctx context.Context, key string, n uint64) (mutex.Reservation, error) {
	return asReservation(f.acquire(ctx, "LockN", key, n, false))
}
func (f *fake) TryLockN(ctx context.Context, key string, n uint64) (mutex.Reservation, error) {
	return asReservation(f.acquire(ctx, "TryLockN", key, n, true))
}

// asLease and asReservation return a *fakeLease as the interface, or a nil
// interface with the error.
func asLease(l *fakeLease, err error) (mutex.Lease, error) {
	if err != nil {
		return nil, err
	}
	return l, nil
}

func asReservation(l *fakeLease, err error) (mutex.Reservation, error) {
	if err != nil {
		return nil, err
	}
	return l, nil
}

var fakeLockers lockutil.LockerSet[string]

func (f *fake) Locker(key string) sync.Locker { return fakeLockers.Locker(f, key, nil) }

func (f *fake) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *fake) setFail(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

func (f *fake) acquire(ctx context.Context, method, key string, n uint64, try bool) (*fakeLease, error) {
	if n == 0 {
		return nil, fmt.Errorf("fake: %s(%q, 0)", method, key)
	}
	f.mu.Lock()
	f.calls[method]++
	f.pending[key]++
	f.maxPending[key] = max(f.maxPending[key], f.pending[key])
	gate, entered := f.gate, f.entered
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.pending[key]--
		f.mu.Unlock()
	}()
	if !try && entered != nil {
		entered <- key
	}
	if !try && gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for {
		f.mu.Lock()
		if f.fail != nil {
			err := f.fail
			f.mu.Unlock()
			return nil, err
		}
		if f.held[key] == nil {
			if f.maxReserve > 0 {
				n = min(n, f.maxReserve)
			}
			tok := f.tokens[key] + 1
			f.tokens[key] = tok + n - 1
			l := &fakeLease{f: f, key: key, token: tok, n: n, done: make(chan struct{})}
			f.held[key] = l
			f.acquired = append(f.acquired, fakeAcq{key, tok, n})
			f.mu.Unlock()
			return l, nil
		}
		if try {
			f.mu.Unlock()
			return nil, mutex.ErrLocked
		}
		ch := f.freed[key]
		if ch == nil {
			ch = make(chan struct{})
			f.freed[key] = ch
		}
		f.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// lose ends the lease held on key as lost and frees the key.
func (f *fake) lose(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l := f.held[key]; l != nil {
		l.endLocked(mutex.ErrLost)
	}
}

// expireUnseen makes the lease held on key lost as a paused process
// finds it on resuming: Err reports the loss at once, but Done is not
// closed yet (the timer that closes it has not run), and the key is free
// for others.
func (f *fake) expireUnseen(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l := f.held[key]; l != nil {
		l.unseen = true
		delete(f.held, key)
	}
}

// heldKeys returns the keys held now.
func (f *fake) heldKeys() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ks []string
	for k := range f.held {
		ks = append(ks, k)
	}
	return ks
}

type fakeLease struct {
	f      *fake
	key    string
	token  uint64
	n      uint64 // tokens reserved
	done   chan struct{}
	err    error // guarded by f.mu
	unseen bool  // lost, Done not closed yet (see expireUnseen); guarded by f.mu
}

// endLocked ends l and frees its key. f.mu is held.
func (l *fakeLease) endLocked(err error) bool {
	if l.err != nil {
		return false
	}
	l.err = err
	close(l.done)
	l.f.calls["Unlock"]++
	if l.f.held[l.key] == l {
		delete(l.f.held, l.key)
		if ch := l.f.freed[l.key]; ch != nil {
			close(ch)
			delete(l.f.freed, l.key)
		}
	}
	return true
}

func (l *fakeLease) Unlock() error {
	l.f.mu.Lock()
	hold := l.f.unlockHold
	l.f.mu.Unlock()
	if hold != nil {
		hold()
	}
	l.f.mu.Lock()
	defer l.f.mu.Unlock()
	if l.unseen && l.err == nil {
		l.endLocked(fmt.Errorf("fake: %w: expired while paused", mutex.ErrLost))
		return l.err
	}
	if l.endLocked(mutex.ErrUnlocked) {
		return nil
	}
	return l.err
}

func (l *fakeLease) Done() <-chan struct{} { return l.done }
func (l *fakeLease) Token() uint64         { return l.token }
func (l *fakeLease) Reserved() uint64      { return l.n }
func (l *fakeLease) Err() error {
	l.f.mu.Lock()
	defer l.f.mu.Unlock()
	if l.err == nil && l.unseen {
		return fmt.Errorf("fake: %w: expired while paused", mutex.ErrLost)
	}
	return l.err
}

// plain hides the TokenReserver methods of a remote.
type plain struct{ mutex.Keyed[string] }
