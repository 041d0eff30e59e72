package hybrid

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/logtest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

func newRWT(t *testing.T, remote mutex.RWKeyed[string], opts ...Option) *RWMutex[string] {
	t.Helper()
	opts = append([]Option{WithLogger(logtest.Fail(t))}, opts...)
	m, err := NewRW(remote, opts...)
	if err != nil {
		t.Fatalf("NewRW() = %v; want nil", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close() = %v; want nil", err)
		}
	})
	return m
}

// rwQueued returns how many goroutines of m wait locally for key.
func rwQueued(m mutex.RWKeyed[string], key string) int {
	_, n := m.(*RWMutex[string]).t.Len(key)
	return n
}

func TestRWConformance(t *testing.T) {
	leakcheck.Register(t)
	for _, tc := range []struct {
		name   string
		remote func() mutex.RWKeyed[string]
		opts   []Option
	}{
		{"local", func() mutex.RWKeyed[string] { return new(local.RWMutex[string]) }, nil},
		{"local/bound=0", func() mutex.RWKeyed[string] { return new(local.RWMutex[string]) }, []Option{WithMaxLocalHandoffs(0)}},
		{"local/bound=1", func() mutex.RWKeyed[string] { return new(local.RWMutex[string]) }, []Option{WithMaxLocalHandoffs(1)}},
		{"fake", func() mutex.RWKeyed[string] { return newRWFake() }, nil},
		{"fake/plain", func() mutex.RWKeyed[string] { return rwPlain{newRWFake()} }, nil},
		{"fake/requeue/bound=1", func() mutex.RWKeyed[string] { return rwRequeuer{newRWFake()} }, []Option{WithMaxLocalHandoffs(1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			remote := tc.remote()
			newM := func(t *testing.T) *RWMutex[string] { return newRWT(t, remote, tc.opts...) }
			keyedtest.RunRW(t, keyedtest.RWConfig{
				New:               func(t *testing.T) mutex.RWKeyed[string] { return newM(t) },
				Instances:         3,
				Queued:            rwQueued,
				ReadersPastWriter: -1,
			})
			keyedtest.Run(t, keyedtest.Config{
				New:       func(t *testing.T) mutex.Keyed[string] { return newM(t) },
				Instances: 3,
			})
		})
	}
}

// TestRWReadersShareRemoteLease: local readers that hold a key together
// share one remote read lease, and their leases carry its token.
func TestRWReadersShareRemoteLease(t *testing.T) {
	leakcheck.Register(t)
	f := newRWFake()
	m := newRWT(t, f)
	ctx := ctxT(t)
	const n = 8
	leases := make([]mutex.Lease, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := m.RLock(ctx, "k")
			leases[i] = l
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("RLock = %v", err)
		}
	}
	if got := f.count("RLock") + f.count("TryRLock"); got != 1 {
		t.Errorf("%d remote read acquisitions for %d local readers holding at once; want 1", got, n)
	}
	if got := f.held("k"); got != 1 {
		t.Errorf("%d remote leases held; want 1", got)
	}
	for _, l := range leases[1:] {
		if l.Token() != leases[0].Token() {
			t.Errorf("reader tokens %d and %d; want the shared remote lease's, equal", l.Token(), leases[0].Token())
		}
	}
	for i, l := range leases {
		if err := l.Unlock(); err != nil {
			t.Fatalf("Unlock() = %v", err)
		}
		if want := 1; i < n-1 && f.held("k") != want {
			t.Fatalf("after %d of %d Unlocks: %d remote leases held; want %d", i+1, n, f.held("k"), want)
		}
	}
	if got := f.held("k"); got != 0 {
		t.Errorf("after the last reader's Unlock: %d remote leases held; want 0", got)
	}
	if got := f.count("Unlock"); got != 1 {
		t.Errorf("%d remote Unlocks; want 1", got)
	}
}

// TestRWReadBound: a remote read lease serves at most bound+1 local
// readers; the next one takes a new remote read lease (which, over a
// FIFO remote, waits behind a remote writer) while the first still
// serves the readers that hold it.
func TestRWReadBound(t *testing.T) {
	leakcheck.Register(t)
	f := newRWFake()
	const bound = 3
	m := newRWT(t, f, WithMaxLocalHandoffs(bound))
	ctx := ctxT(t)
	var all []mutex.Lease
	for i := range 2 * (bound + 1) {
		l, err := m.RLock(ctx, "k")
		if err != nil {
			t.Fatalf("RLock %d = %v", i, err)
		}
		if i > 0 && (i%(bound+1) == 0) == (l.Token() == all[i-1].Token()) {
			t.Errorf("reader %d: token %d, previous %d; want a new remote lease every %d readers", i, l.Token(), all[i-1].Token(), bound+1)
		}
		all = append(all, l)
	}
	if got := f.count("RLock"); got != 2 {
		t.Errorf("%d remote RLocks for %d readers holding at once; want 2 (bound %d)", got, len(all), bound)
	}
	if got := f.held("k"); got != 2 {
		t.Errorf("%d remote leases held; want 2", got)
	}
	for _, l := range all {
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.held("k"); got != 0 {
		t.Errorf("%d remote leases held after every Unlock; want 0", got)
	}
}

type result1 struct {
	l   mutex.Lease
	err error
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRWReadLeaseLost: the loss of the shared remote read lease ends
// every local read lease of the run; the next reader acquires afresh.
func TestRWReadLeaseLost(t *testing.T) {
	leakcheck.Register(t)
	f := newRWFake()
	m := newRWT(t, f)
	ctx := ctxT(t)
	a, err := m.RLock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.RLock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	doneA := a.Done()
	f.lose("k")
	select {
	case <-doneA:
	case <-time.After(wait):
		t.Fatal("Done() of a local reader not closed after the remote loss")
	}
	for i, l := range []mutex.Lease{a, b} {
		if err := l.Err(); !errors.Is(err, mutex.ErrLost) {
			t.Errorf("reader %d: Err() = %v; want ErrLost", i, err)
		}
	}
	if err := a.Unlock(); !errors.Is(err, mutex.ErrLost) {
		t.Errorf("Unlock() of a lost reader = %v; want ErrLost", err)
	}
	c, err := m.RLock(ctx, "k") // b still holds locally: joins, and acquires afresh
	if err != nil {
		t.Fatal(err)
	}
	if c.Err() != nil {
		t.Errorf("new reader Err() = %v; want nil", c.Err())
	}
	if got := f.count("RLock"); got != 2 {
		t.Errorf("%d remote RLocks; want 2", got)
	}
	if err := b.Unlock(); !errors.Is(err, mutex.ErrLost) {
		t.Errorf("Unlock() of a lost reader = %v; want ErrLost", err)
	}
	if err := c.Unlock(); err != nil {
		t.Errorf("Unlock() = %v; want nil", err)
	}
	if got := f.held("k"); got != 0 {
		t.Errorf("%d remote leases held; want 0", got)
	}
}

// TestRWWriterWaitsForLocalReaders: a local writer does not contend
// remotely while the process's readers hold; it gets the key after
// them, and readers that ask after it wait for it.
func TestRWWriterWaitsForLocalReaders(t *testing.T) {
	leakcheck.Register(t)
	f := newRWFake()
	m := newRWT(t, f)
	ctx := ctxT(t)
	r, err := m.RLock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	w := make(chan result1, 1)
	go func() {
		l, err := m.Lock(ctx, "k")
		w <- result1{l, err}
	}()
	waitFor(t, func() bool { return rwQueued(m, "k") == 1 })
	if _, err := m.TryRLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryRLock with a local writer waiting = %v; want ErrLocked", err)
	}
	if got := f.count("LockN") + f.count("Lock"); got != 0 {
		t.Errorf("%d remote write acquisitions while local readers hold; want 0", got)
	}
	if err := r.Unlock(); err != nil {
		t.Fatal(err)
	}
	wl := <-w
	if wl.err != nil {
		t.Fatal(wl.err)
	}
	if wl.l.Token() <= r.Token() {
		t.Errorf("writer token %d; want > %d, the reader's", wl.l.Token(), r.Token())
	}
	if got := f.count("LockN"); got != 1 {
		t.Errorf("%d remote LockN; want 1", got)
	}
	if err := wl.l.Unlock(); err != nil {
		t.Fatal(err)
	}
}

// TestRWWriterHandoffBound: local writers pass one remote write lease on
// for up to bound+1 holdings, with increasing tokens.
func TestRWWriterHandoffBound(t *testing.T) {
	leakcheck.Register(t)
	f := newRWFake()
	const bound, writers = 2, 7
	m := newRWT(t, f, WithMaxLocalHandoffs(bound), WithReleaseYield(0))
	ctx := ctxT(t)
	first, err := m.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	var (
		order []uint64 // tokens in the order of the holdings
		errs  = make(chan error, writers)
	)
	for i := range writers {
		go func() {
			l, err := m.Lock(ctx, "k")
			if err == nil {
				order = append(order, l.Token()) // under the lock
				err = l.Unlock()
			}
			errs <- err
		}()
		waitFor(t, func() bool { return rwQueued(m, "k") == i+1 })
	}
	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	last := first.Token()
	for _, tok := range order {
		if tok <= last {
			t.Errorf("writer token %d after %d; want increasing", tok, last)
		}
		last = tok
	}
	want := (writers + 1 + bound) / (bound + 1)
	if n := f.count("LockN"); n != want {
		t.Errorf("%d remote LockN for %d writers in a row; want %d (bound %d)", n, writers+1, want, bound)
	}
}

// TestRWNewErrors: NewRW refuses a nil remote and an observer.
func TestRWNewErrors(t *testing.T) {
	var nilRW *local.RWMutex[string]
	for _, tc := range []struct {
		name string
		r    mutex.RWKeyed[string]
		opts []Option
	}{
		{"nil", nil, nil},
		{"nil pointer", nilRW, nil},
		{"observer", new(local.RWMutex[string]), []Option{WithObserver(&keyedtest.Recorder{})}},
		{"negative bound", new(local.RWMutex[string]), []Option{WithMaxLocalHandoffs(-1)}},
		{"owned without Close", new(local.RWMutex[string]), []Option{WithOwnedRemote()}},
	} {
		if m, err := NewRW(tc.r, tc.opts...); err == nil {
			m.Close()
			t.Errorf("NewRW(%s) = nil error; want one", tc.name)
		}
	}
	var zero RWMutex[string]
	if _, err := zero.RLock(context.Background(), "k"); err == nil {
		t.Error("RLock on the zero RWMutex = nil error; want one naming NewRW")
	}
}

// TestRWCancelWhileContending: a reader that gives up while it acquires
// the remote read lease for the local readers passes that on to one of
// the readers that wait for it; a writer that gives up while it
// acquires the remote write lease lets the local readers behind it in.
func TestRWCancelWhileContending(t *testing.T) {
	leakcheck.Register(t)
	for _, first := range []string{"reader", "writer"} {
		t.Run(first, func(t *testing.T) {
			f := newRWFake()
			m := newRWT(t, f)
			ctx := ctxT(t)
			outside, err := f.inner.Lock(ctx, "k") // another process writes
			if err != nil {
				t.Fatal(err)
			}
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			a := make(chan result1, 1)
			go func() {
				var l mutex.Lease
				var err error
				if first == "writer" {
					l, err = m.Lock(cctx, "k")
				} else {
					l, err = m.RLock(cctx, "k")
				}
				a <- result1{l, err}
			}()
			// It contends remotely once the remote saw its call.
			waitFor(t, func() bool { return f.count("RLock")+f.count("LockN") == 1 })
			b := make(chan result1, 1)
			go func() {
				l, err := m.RLock(ctx, "k")
				b <- result1{l, err}
			}()
			if first == "writer" {
				waitFor(t, func() bool { return rwQueued(m, "k") == 1 })
			}
			// A second reader joins the first's acquisition if it comes
			// before the cancel, or acquires itself after it: either way
			// it must get in once the other process is done.
			cancel()
			if r := <-a; !errors.Is(r.err, context.Canceled) {
				t.Fatalf("%s cancelled while contending = %v; want Canceled", first, r.err)
			}
			select {
			case r := <-b:
				t.Fatalf("reader got %v while another process writes", r.err)
			default:
			}
			if err := outside.Unlock(); err != nil {
				t.Fatal(err)
			}
			r := <-b
			if r.err != nil {
				t.Fatalf("reader after the %s gave up = %v; want a lease", first, r.err)
			}
			if err := r.l.Unlock(); err != nil {
				t.Fatal(err)
			}
			if n := f.held("k"); n != 0 {
				t.Errorf("%d remote leases held; want 0", n)
			}
		})
	}
}

// TestRWRequeue: at the bound, with a local writer next, a remote write
// lease that can requeue hands the key to the writer another process
// queued, and this process's next writer waits for the requeued turn.
func TestRWRequeue(t *testing.T) {
	leakcheck.Register(t)
	f := rwRequeuer{newRWFake()}
	a := newRWT(t, f, WithMaxLocalHandoffs(1))
	b := newRWT(t, f, WithMaxLocalHandoffs(1))
	ctx := ctxT(t)
	first, err := a.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		order []string
		errs  = make(chan error, 4)
	)
	lock := func(m *RWMutex[string], name string) {
		l, err := m.Lock(ctx, "k")
		if err == nil {
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			err = l.Unlock()
		}
		errs <- err
	}
	for i := range 3 {
		go lock(a, fmt.Sprintf("a%d", i+2))
		waitFor(t, func() bool { return rwQueued(a, "k") == i+1 })
	}
	go lock(b, "b")
	waitFor(t, func() bool { return f.count("LockN") == 2 }) // b waits remotely
	if err := first.Unlock(); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := f.count("Requeue"); n == 0 {
		t.Errorf("no Requeue at the bound with a local writer next; want one")
	}
	if want := []string{"a2", "b", "a3", "a4"}; fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("order of the writers = %v; want %v (b's turn after a's bound)", order, want)
	}
	if n := f.held("k"); n != 0 {
		t.Errorf("%d remote leases held; want 0", n)
	}
}
