package hybrid

import (
	"context"
	"fmt"
	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"sync"

	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

// rwFake is a remote read-write mutex for tests: a local.RWMutex that
// counts calls per method and can lose the leases it granted.
type rwFake struct {
	inner local.RWMutex[string]

	mu    sync.Mutex // guards the fields below
	calls map[string]int
	live  map[string]map[*rwFakeLease]bool // leases not ended, per key
}

func newRWFake() *rwFake {
	return &rwFake{calls: map[string]int{}, live: map[string]map[*rwFakeLease]bool{}}
}

var _ mutex.TokenReserver[string] = (*rwFake)(nil)

func (f *rwFake) Lock(ctx context.Context, key string) (mutex.Lease, error) {
	return f.wrap("Lock", key, 1, func() (mutex.Lease, error) { return f.inner.Lock(ctx, key) })
}
func (f *rwFake) TryLock(ctx context.Context, key string) (mutex.Lease, error) {
	return f.wrap("TryLock", key, 1, func() (mutex.Lease, error) { return f.inner.TryLock(ctx, key) })
}
func (f *rwFake) RLock(ctx context.Context, key string) (mutex.Lease, error) {
	return f.wrap("RLock", key, 1, func() (mutex.Lease, error) { return f.inner.RLock(ctx, key) })
}
func (f *rwFake) TryRLock(ctx context.Context, key string) (mutex.Lease, error) {
	return f.wrap("TryRLock", key, 1, func() (mutex.Lease, error) { return f.inner.TryRLock(ctx, key) })
}
func (f *rwFake) LockN(ctx context.Context, key string, n uint64) (mutex.Reservation, error) {
	l, err := f.wrap("LockN", key, n, func() (mutex.Lease, error) { return f.inner.LockN(ctx, key, n) })
	if err != nil {
		return nil, err
	}
	return l.(*rwFakeLease), nil
}
func (f *rwFake) TryLockN(ctx context.Context, key string, n uint64) (mutex.Reservation, error) {
	l, err := f.wrap("TryLockN", key, n, func() (mutex.Lease, error) { return f.inner.TryLockN(ctx, key, n) })
	if err != nil {
		return nil, err
	}
	return l.(*rwFakeLease), nil
}

var rwFakeLockers lockutil.LockerSet[string]

func (f *rwFake) Locker(key string) sync.Locker  { return rwFakeLockers.Locker(f, key, nil) }
func (f *rwFake) RLocker(key string) sync.Locker { return f.inner.RLocker(key) }

func (f *rwFake) wrap(method, key string, n uint64, acquire func() (mutex.Lease, error)) (mutex.Lease, error) {
	f.mu.Lock()
	f.calls[method]++
	f.mu.Unlock()
	in, err := acquire()
	if err != nil {
		return nil, err
	}
	l := &rwFakeLease{f: f, key: key, in: in, n: n, done: make(chan struct{})}
	f.mu.Lock()
	if f.live[key] == nil {
		f.live[key] = map[*rwFakeLease]bool{}
	}
	f.live[key][l] = true
	f.mu.Unlock()
	return l, nil
}

func (f *rwFake) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

// held returns how many leases of key are held now.
func (f *rwFake) held(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.live[key])
}

// lose ends every lease held on key as lost, and frees the key.
func (f *rwFake) lose(key string) {
	for _, l := range f.leasesOf(key) {
		l.end(fmt.Errorf("rwfake: %w: taken away", mutex.ErrLost))
	}
}

// leasesOf returns the leases held on key now.
func (f *rwFake) leasesOf(key string) []*rwFakeLease {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ls []*rwFakeLease
	for l := range f.live[key] {
		ls = append(ls, l)
	}
	return ls
}

type rwFakeLease struct {
	f    *rwFake
	key  string
	in   mutex.Lease
	n    uint64
	done chan struct{}

	mu  sync.Mutex // guards err
	err error
}

// end ends l with err, releasing the inner lease, and reports whether it
// was held.
func (l *rwFakeLease) end(err error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return false
	}
	l.err = err
	l.in.Unlock()
	close(l.done)
	l.f.mu.Lock()
	delete(l.f.live[l.key], l)
	if len(l.f.live[l.key]) == 0 {
		delete(l.f.live, l.key)
	}
	l.f.calls["Unlock"]++
	l.f.mu.Unlock()
	return true
}

func (l *rwFakeLease) Unlock() error {
	if l.end(mutex.ErrUnlocked) {
		return nil
	}
	return l.Err()
}

func (l *rwFakeLease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

func (l *rwFakeLease) Done() <-chan struct{} { return l.done }
func (l *rwFakeLease) Token() uint64         { return l.in.Token() }
func (l *rwFakeLease) Reserved() uint64      { return l.n }

// rwPlain hides the TokenReserver methods of a remote.
type rwPlain struct{ mutex.RWKeyed[string] }

// rwRequeuer is an rwFake whose write leases from LockN can requeue (a
// remote.Lease), as distributed's do: Requeue queues a new LockN waiter
// at the back of the inner queue, then releases.
type rwRequeuer struct{ *rwFake }

var _ remote.Lease = (*rqLease)(nil)

func (f rwRequeuer) LockN(ctx context.Context, key string, n uint64) (mutex.Reservation, error) {
	r, err := f.rwFake.LockN(ctx, key, n)
	if err != nil {
		return nil, err
	}
	return &rqLease{r.(*rwFakeLease)}, nil
}

func (f rwRequeuer) TryLockN(ctx context.Context, key string, n uint64) (mutex.Reservation, error) {
	r, err := f.rwFake.TryLockN(ctx, key, n)
	if err != nil {
		return nil, err
	}
	return &rqLease{r.(*rwFakeLease)}, nil
}

type rqLease struct{ *rwFakeLease }

func (l *rqLease) Requeue(n uint64) (remote.Ticket, error) {
	f := l.f
	if err := l.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	tk := &rqTicket{cancel: cancel, done: make(chan struct{})}
	started := make(chan struct{})
	go func() {
		defer close(tk.done)
		close(started)
		r, err := f.wrap("Requeue", l.key, n, func() (mutex.Lease, error) { return f.inner.LockN(ctx, l.key, n) })
		if err == nil {
			tk.r = &rqLease{r.(*rwFakeLease)}
		}
		tk.err = err
	}()
	<-started
	if err := l.Unlock(); err != nil {
		tk.Cancel()
		return nil, err
	}
	return tk, nil
}

type rqTicket struct {
	cancel context.CancelFunc
	done   chan struct{}
	r      *rqLease
	err    error

	mu    sync.Mutex // guards taken
	taken bool
}

func (t *rqTicket) Wait(ctx context.Context) (mutex.Reservation, error) {
	select {
	case <-t.done:
	case <-ctx.Done():
		t.Cancel()
		return nil, ctx.Err()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.taken || t.err != nil {
		return nil, fmt.Errorf("rwfake: ticket spent: %v", t.err)
	}
	t.taken = true
	return t.r, nil
}

func (t *rqTicket) Cancel() {
	t.cancel()
	<-t.done
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.taken && t.err == nil {
		t.taken = true
		t.r.Unlock()
	}
}
