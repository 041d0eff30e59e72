package distributed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

// newRWOn returns an RWMutex on c, closed at cleanup.
func newRWOn(t testing.TB, c redis.UniversalClient, opts ...Option) *RWMutex[string] {
	t.Helper()
	m, err := NewRW[string](c, opts...)
	if err != nil {
		t.Fatalf("NewRW() = %v; want nil error", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close() = %v; want nil", err)
		}
	})
	return m
}

// rwEnv starts a real redis-server and returns its address and an admin
// client.
func rwEnv(t *testing.T) (*redistest.Server, *redis.Client) {
	t.Helper()
	leakcheck.Register(t)
	srv := redistest.Start(t)
	admin := srv.Client(t)
	return srv, admin
}

// rwProcess is one simulated process: its own client and RWMutex.
func rwProcess(t *testing.T, srv *redistest.Server, opts ...Option) *RWMutex[string] {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	return newRWOn(t, c, opts...)
}

func mustLease(t *testing.T, what string, l mutex.Lease, err error) mutex.Lease {
	t.Helper()
	if err != nil {
		t.Fatalf("%s = %v; want a lease", what, err)
	}
	return l
}

func mustUnlock(t *testing.T, what string, l mutex.Lease) {
	t.Helper()
	if err := l.Unlock(); err != nil {
		t.Fatalf("%s: Unlock() = %v; want nil", what, err)
	}
}

// acquireAsync runs lock in a goroutine and returns the outcome channel.
func acquireAsync(lock func() (mutex.Lease, error)) <-chan leaseResult {
	ch := make(chan leaseResult, 1)
	go func() {
		l, err := lock()
		ch <- leaseResult{l, err}
	}()
	return ch
}

type leaseResult struct {
	l   mutex.Lease
	err error
}

// queueLen is the number of entries in key's RW queue.
func queueLen(t *testing.T, admin *redis.Client, key string) int64 {
	t.Helper()
	return admin.ZCard(context.Background(), rwNamesFor(defaultPrefix(), key).queue).Val()
}

func defaultPrefix() string { return defaultConfig().prefix }

// waitQueued polls until key's queue has n entries.
func waitQueued(t *testing.T, admin *redis.Client, key string, n int64) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d entries queued for %s", n, key), func() bool { return queueLen(t, admin, key) == n })
}

func notYet(t *testing.T, ch <-chan leaseResult, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s returned (%v, %v) while it should wait", what, r.l, r.err)
	default:
	}
}

func await(t *testing.T, ch <-chan leaseResult, what string) mutex.Lease {
	t.Helper()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("%s = %v; want a lease", what, r.err)
		}
		return r.l
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no lease after 10s", what)
	}
	return nil
}

func TestRWReadersShareWriterExcludes(t *testing.T) {
	srv, admin := rwEnv(t)
	a, b := rwProcess(t, srv), rwProcess(t, srv)
	ctx := ctxT(t, 10*time.Second)

	r1, err := a.RLock(ctx, "k")
	r1 = mustLease(t, "a.RLock", r1, err)
	r2, err := b.TryRLock(ctx, "k")
	r2 = mustLease(t, "b.TryRLock while a reader holds", r2, err)
	r3, err := a.RLock(ctx, "k")
	r3 = mustLease(t, "a.RLock while two readers hold", r3, err)
	if _, err := b.TryLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryLock while readers hold = %v; want ErrLocked", err)
	}
	mustUnlock(t, "r1", r1)
	mustUnlock(t, "r2", r2)
	if _, err := b.TryLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryLock while one reader holds = %v; want ErrLocked", err)
	}
	mustUnlock(t, "r3", r3)
	w, err := b.TryLock(ctx, "k")
	w = mustLease(t, "TryLock of a free key", w, err)
	if _, err := a.TryRLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryRLock while a writer holds = %v; want ErrLocked", err)
	}
	if _, err := a.TryLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryLock while a writer holds = %v; want ErrLocked", err)
	}
	rd := acquireAsync(func() (mutex.Lease, error) { return a.RLock(ctx, "k") })
	waitQueued(t, admin, "k", 1)
	wr := acquireAsync(func() (mutex.Lease, error) { return a.Lock(ctx, "k") })
	waitQueued(t, admin, "k", 2)
	mustUnlock(t, "w", w)
	l := await(t, rd, "RLock queued behind a writer")
	mustUnlock(t, "reader after writer", l)
	l = await(t, wr, "Lock queued")
	mustUnlock(t, "writer after reader", l)
	if err := l.Unlock(); !errors.Is(err, mutex.ErrUnlocked) {
		t.Fatalf("second Unlock = %v; want ErrUnlocked", err)
	}
}

// A Mutex and an RWMutex of the same key are different locks.
func TestRWAndMutexAreDifferentLocks(t *testing.T) {
	srv, _ := rwEnv(t)
	rw := rwProcess(t, srv)
	m := newMutexOn(t, srv.Client(t))
	ctx := ctxT(t, 10*time.Second)
	l, err := m.Lock(ctx, "k")
	l = mustLease(t, "Mutex.Lock", l, err)
	defer l.Unlock()
	w, err := rw.TryLock(ctx, "k")
	w = mustLease(t, "RWMutex.TryLock of a key a Mutex holds", w, err)
	mustUnlock(t, "rw", w)
}

// FIFO: a writer that queues holds back every reader that comes after
// it (no writer starvation), and those readers are admitted together
// once it unlocks.
func TestRWFIFONoWriterStarvation(t *testing.T) {
	srv, admin := rwEnv(t)
	a, b := rwProcess(t, srv), rwProcess(t, srv)
	ctx := ctxT(t, 20*time.Second)
	r0, err := a.RLock(ctx, "k")
	r0 = mustLease(t, "RLock", r0, err)
	w := acquireAsync(func() (mutex.Lease, error) { return b.Lock(ctx, "k") })
	waitQueued(t, admin, "k", 1)
	if _, err := a.TryRLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryRLock behind a queued writer = %v; want ErrLocked", err)
	}
	var readers []<-chan leaseResult
	for i := range 4 {
		m := a
		if i%2 == 1 {
			m = b
		}
		readers = append(readers, acquireAsync(func() (mutex.Lease, error) { return m.RLock(ctx, "k") }))
		waitQueued(t, admin, "k", int64(2+i))
	}
	for i, r := range readers {
		notYet(t, r, fmt.Sprintf("reader %d behind a queued writer", i))
	}
	notYet(t, w, "writer behind a reader")
	mustUnlock(t, "r0", r0)
	wl := await(t, w, "writer once the reader left")
	for i, r := range readers {
		notYet(t, r, fmt.Sprintf("reader %d while the writer holds", i))
	}
	mustUnlock(t, "writer", wl)
	var held []mutex.Lease
	for i, r := range readers {
		held = append(held, await(t, r, fmt.Sprintf("reader %d after the writer", i)))
	}
	// All four hold at once.
	for i, l := range held {
		if err := l.Err(); err != nil {
			t.Errorf("reader %d: Err() = %v while all should hold", i, err)
		}
	}
	for i, l := range held {
		mustUnlock(t, fmt.Sprintf("reader %d", i), l)
	}
	if n := queueLen(t, admin, "k"); n != 0 {
		t.Errorf("queue has %d entries after every waiter was served", n)
	}
	if keys := admin.Keys(context.Background(), "*").Val(); len(keys) != 0 {
		t.Errorf("keys left after every lease was released: %v", keys)
	}
}

// A release that admits a run of readers sends one grant message per
// waiting Mutex, not per reader.
func TestRWOneGrantPerMutex(t *testing.T) {
	srv, admin := rwEnv(t)
	x, a, b := rwProcess(t, srv), rwProcess(t, srv), rwProcess(t, srv)
	ctx := ctxT(t, 20*time.Second)
	w, err := x.Lock(ctx, "k")
	w = mustLease(t, "Lock", w, err)
	var readers []<-chan leaseResult
	for i := range 8 {
		m := a
		if i%3 == 2 {
			m = b
		}
		readers = append(readers, acquireAsync(func() (mutex.Lease, error) { return m.RLock(ctx, "k") }))
	}
	waitQueued(t, admin, "k", 8)
	if err := admin.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	mustUnlock(t, "writer", w)
	var held []mutex.Lease
	for i, r := range readers {
		held = append(held, await(t, r, fmt.Sprintf("reader %d", i)))
	}
	stats, err := redistest.CommandStats(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if got := stats["publish"] + stats["spublish"]; got != 2 {
		t.Errorf("grant messages for 8 readers of 2 Mutexes = %d; want 2 (stats %v)", got, stats)
	}
	toks := map[uint64]bool{}
	for _, l := range held {
		toks[l.Token()] = true
		mustUnlock(t, "reader", l)
	}
	if len(toks) != 1 {
		t.Errorf("readers admitted in one run have tokens %v; want one token", toks)
	}
}

// Cancelling a waiter at any point of the queue leaves no entry, and
// gives its turn to whoever is next: readers held back by a cancelled
// writer are admitted.
func TestRWCancelGivesTurnBack(t *testing.T) {
	srv, admin := rwEnv(t)
	a, b := rwProcess(t, srv), rwProcess(t, srv)
	ctx := ctxT(t, 20*time.Second)
	r0, err := a.RLock(ctx, "k")
	r0 = mustLease(t, "RLock", r0, err)

	wctx, cancelW := context.WithCancel(ctx)
	w := acquireAsync(func() (mutex.Lease, error) { return b.Lock(wctx, "k") })
	waitQueued(t, admin, "k", 1)
	rctx, cancelR := context.WithCancel(ctx)
	r1 := acquireAsync(func() (mutex.Lease, error) { return a.RLock(rctx, "k") })
	waitQueued(t, admin, "k", 2)
	r2 := acquireAsync(func() (mutex.Lease, error) { return b.RLock(ctx, "k") })
	waitQueued(t, admin, "k", 3)

	// A reader in the middle leaves.
	cancelR()
	if r := <-r1; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled RLock = %v, %v; want context.Canceled", r.l, r.err)
	}
	waitQueued(t, admin, "k", 2)
	notYet(t, r2, "reader behind a queued writer")
	// The writer at the head leaves: the reader behind it joins r0.
	cancelW()
	if r := <-w; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled Lock = %v, %v; want context.Canceled", r.l, r.err)
	}
	l2 := await(t, r2, "reader once the writer ahead of it left")
	waitQueued(t, admin, "k", 0)
	mustUnlock(t, "r0", r0)
	mustUnlock(t, "r2", l2)

	// A writer granted as its ctx ends releases the lock.
	for i := range 20 {
		hold, err := a.Lock(ctx, "k")
		hold = mustLease(t, "Lock", hold, err)
		cctx, cancel := context.WithCancel(ctx)
		got := acquireAsync(func() (mutex.Lease, error) { return b.RLock(cctx, "k") })
		waitQueued(t, admin, "k", 1)
		unlocked := make(chan error, 1)
		go func() { unlocked <- hold.Unlock() }()
		time.Sleep(time.Duration(i) * 50 * time.Microsecond) // vary the race; not a synchronisation
		cancel()
		if err := <-unlocked; err != nil {
			t.Fatalf("holder: Unlock() = %v", err)
		}
		if r := <-got; r.err == nil {
			mustUnlock(t, "granted reader", r.l)
		}
		eventually(t, "the key free after a cancel", func() bool {
			l, err := a.TryLock(ctx, "k")
			if err != nil {
				return false
			}
			mustUnlock(t, "probe", l)
			return true
		})
		if n := queueLen(t, admin, "k"); n != 0 {
			t.Fatalf("round %d: %d queue entries left after a cancel", i, n)
		}
	}
}

// A reader or writer that dies holding the lock, or queued, blocks the
// key no longer than the liveness rules say; a dead reader's share ends
// without ending the others'.
func TestRWDeadHolders(t *testing.T) {
	srv, admin := rwEnv(t)
	opts := []Option{WithTTL(600 * time.Millisecond), WithPollInterval(100 * time.Millisecond)}
	b := rwProcess(t, srv, opts...)
	ctx := ctxT(t, 20*time.Second)

	// A reader whose process dies (its client goes away: no renewal, no
	// release): its share expires at its TTL, and a writer gets in.
	for _, write := range []bool{false, true} {
		dc := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		dead := newRWOn(t, dc, append(opts, WithLogger(slog.New(slog.DiscardHandler)))...)
		lock := dead.RLock
		if write {
			lock = dead.Lock
		}
		l, err := lock(ctx, "k")
		l = mustLease(t, "lock of the process that dies", l, err)
		live, err := b.TryRLock(ctx, "k") // another reader
		if write {
			if !errors.Is(err, mutex.ErrLocked) {
				t.Fatalf("TryRLock while a writer holds = %v; want ErrLocked", err)
			}
			live = nil
		} else {
			live = mustLease(t, "second reader", live, err)
		}
		dc.Close() // the process is gone: its lease cannot be renewed
		start := time.Now()
		w := acquireAsync(func() (mutex.Lease, error) { return b.Lock(ctx, "k") })
		if live != nil {
			notYet(t, w, "writer while a live reader holds")
			eventually(t, "the dead reader's share expired", func() bool {
				return admin.ZCard(ctx, rwNamesFor(defaultPrefix(), "k").readers).Val() == 1
			})
			if err := live.Err(); err != nil {
				t.Fatalf("the live reader's lease ended with the dead one's: %v", err)
			}
			mustUnlock(t, "live reader", live)
		}
		wl := await(t, w, "writer after the dead holder")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("dead holder (write=%v) blocked the key %v", write, d)
		}
		mustUnlock(t, "writer", wl)
		<-l.Done()
	}
}

// Planted dead waiters at the head of the queue (a Mutex that no longer
// listens, an entry past its deadline) are skipped.
func TestRWDeadWaitersSkipped(t *testing.T) {
	srv, admin := rwEnv(t)
	a, b := rwProcess(t, srv), rwProcess(t, srv, WithPollInterval(30*time.Second))
	ctx := ctxT(t, 20*time.Second)
	nm := rwNamesFor(defaultPrefix(), "k")
	hold, err := a.Lock(ctx, "k")
	hold = mustLease(t, "Lock", hold, err)
	now := serverNow(t, admin)
	for i, e := range []string{
		fmt.Sprintf("%032x gone 0 600 P dead %d", 1, now.Add(time.Minute).UnixMilli()),      // reader of a Mutex that no longer listens
		fmt.Sprintf("%032x gone 1 600 P dead %d", 2, now.Add(time.Minute).UnixMilli()),      // writer of it
		fmt.Sprintf("%032x %s 0 600 P dead %d", 3, b.id, now.Add(-time.Second).UnixMilli()), // past its deadline
	} {
		if err := admin.ZAdd(ctx, nm.queue, redis.Z{Score: float64(i + 1), Member: e}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	w := acquireAsync(func() (mutex.Lease, error) { return b.Lock(ctx, "k") })
	waitQueued(t, admin, "k", 4)
	mustUnlock(t, "holder", hold)
	l := await(t, w, "writer behind dead waiters")
	mustUnlock(t, "writer", l)
	if n := queueLen(t, admin, "k"); n != 0 {
		t.Errorf("%d entries left", n)
	}
}

// A read lease whose share is gone in Redis is lost, and says so.
func TestRWReadLeaseLoss(t *testing.T) {
	srv, admin := rwEnv(t)
	a := rwProcess(t, srv, WithTTL(300*time.Millisecond))
	ctx := ctxT(t, 20*time.Second)
	r1, err := a.RLock(ctx, "k")
	r1 = mustLease(t, "RLock", r1, err)
	r2, err := a.RLock(ctx, "k")
	r2 = mustLease(t, "RLock", r2, err)
	owner := r1.(*lease).owner
	if n := admin.ZRem(ctx, rwNamesFor(defaultPrefix(), "k").readers, owner).Val(); n != 1 {
		t.Fatalf("ZREM of the share = %d", n)
	}
	waitDone(t, r1.Done(), "read lease whose share was removed")
	if err := r1.Err(); !errors.Is(err, mutex.ErrLost) {
		t.Fatalf("Err() = %v; want ErrLost", err)
	}
	if err := r1.Unlock(); !errors.Is(err, mutex.ErrLost) {
		t.Fatalf("Unlock() = %v; want ErrLost", err)
	}
	// Renewals of the other go on.
	time.Sleep(400 * time.Millisecond) // more than a TTL: a renewal had to succeed
	if err := r2.Err(); err != nil {
		t.Fatalf("the other reader: Err() = %v; want nil", err)
	}
	mustUnlock(t, "r2", r2)
}

// Fencing: a writer's token is above every earlier token, readers', and
// a reader's is between the writers around it, blocks of tokens
// (LockN) included.
func TestRWTokens(t *testing.T) {
	srv, _ := rwEnv(t)
	a, b := rwProcess(t, srv), rwProcess(t, srv)
	ctx := ctxT(t, 20*time.Second)
	var last uint64 // the greatest token so far
	write := func(m *RWMutex[string], n uint64) {
		t.Helper()
		l, err := m.LockN(ctx, "k", n)
		if err != nil {
			t.Fatal(err)
		}
		if l.Token() <= last {
			t.Fatalf("writer token %d not above %d", l.Token(), last)
		}
		last = l.Token() + l.Reserved() - 1
		mustUnlock(t, "writer", l)
	}
	read := func(k int) {
		t.Helper()
		var ls []mutex.Lease
		max := last
		for i := range k {
			m := a
			if i%2 == 1 {
				m = b
			}
			l, err := m.RLock(ctx, "k")
			l = mustLease(t, "RLock", l, err)
			if l.Token() <= last {
				t.Fatalf("reader token %d not above the last writer's %d", l.Token(), last)
			}
			max = maxU(max, l.Token())
			ls = append(ls, l)
		}
		for _, l := range ls {
			mustUnlock(t, "reader", l)
		}
		last = max
	}
	for range 20 {
		write(a, 1)
		read(3)
		write(b, 1000) // a block that runs ahead of the clock
		read(2)
		write(a, 500)
		write(b, 1)
	}
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// A waiter granted the lock that never claims it (its process paused
// just after its grant) holds the key no longer than its grant TTL: a
// reader's share, or a writer's holding, then expires, and the next
// waiter's poll serves the queue.
func TestRWGrantedButStalled(t *testing.T) {
	for _, reader := range []bool{true, false} {
		t.Run(fmt.Sprintf("reader=%v", reader), func(t *testing.T) {
			srv, admin := rwEnv(t)
			// The holder's lease is a minute long, the live waiter polls
			// every 200ms and gives up after 10s: when it gets the lock,
			// the rule served it, not the holder's expiry.
			a, b := rwProcess(t, srv, WithTTL(time.Minute)), rwProcess(t, srv, WithPollInterval(200*time.Millisecond))
			ctx := ctxT(t, 20*time.Second)
			nm := rwNamesFor(defaultPrefix(), "k")
			hold, err := a.Lock(ctx, "k")
			hold = mustLease(t, "Lock", hold, err)
			// A Mutex "stalled" listens on its channel (so the grant
			// reaches a subscriber) but never claims what it is granted.
			ps := admin.Subscribe(ctx, nm.channel("stalled"))
			defer ps.Close()
			if _, err := ps.Receive(ctx); err != nil {
				t.Fatal(err)
			}
			n := 1
			if reader {
				n = 0
			}
			e := fmt.Sprintf("%032x stalled %d 300 P paused %d", 7, n, serverNow(t, admin).Add(time.Minute).UnixMilli())
			if err := admin.ZAdd(ctx, nm.queue, redis.Z{Score: 1, Member: e}).Err(); err != nil {
				t.Fatal(err)
			}
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			w := acquireAsync(func() (mutex.Lease, error) { return b.Lock(wctx, "k") })
			waitQueued(t, admin, "k", 2)
			mustUnlock(t, "holder", hold)
			msg, err := ps.ReceiveMessage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%032x ", 7); msg.Payload[:len(want)] != want {
				t.Fatalf("grant %q; want one for the stalled waiter", msg.Payload)
			}
			owner := fmt.Sprintf("%032x", 7)
			if reader {
				if s, err := admin.ZScore(ctx, nm.readers, owner).Result(); err != nil || int64(s)-serverNow(t, admin).UnixMilli() > 300 {
					t.Errorf("the stalled reader's share: %v, %v; want one expiring within its grant TTL of 300ms", s, err)
				}
			} else if v, pttl := admin.Get(ctx, nm.lock).Val(), admin.PTTL(ctx, nm.lock).Val(); v != owner+" paused" || pttl > 300*time.Millisecond {
				t.Errorf("the writer key %q, TTL %v; want the stalled writer's for at most its grant TTL of 300ms", v, pttl)
			}
			notYet(t, w, "writer behind a granted waiter")
			l := await(t, w, "writer once the stalled grant expired")
			mustUnlock(t, "writer", l)
		})
	}
}

// Lockers, Close, and the errors of bad input.
func TestRWLockersCloseAndMisuse(t *testing.T) {
	srv, admin := rwEnv(t)
	a, b := rwProcess(t, srv), rwProcess(t, srv)
	ctx := ctxT(t, 20*time.Second)

	ra, rb := a.RLocker("k"), b.RLocker("k")
	ra.Lock()
	rb.Lock() // readers share
	if _, err := a.TryLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryLock while RLockers hold = %v; want ErrLocked", err)
	}
	ra.Unlock()
	rb.Unlock()
	wl := a.Locker("k")
	wl.Lock()
	if _, err := b.TryRLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryRLock while a Locker holds = %v; want ErrLocked", err)
	}
	wl.Unlock()

	if _, err := a.RLock(ctx, ""); !errors.Is(err, mutex.ErrInvalidKey) {
		t.Errorf("RLock of the empty key = %v; want ErrInvalidKey", err)
	}
	var nilCtx context.Context // the misuse under test
	if _, err := a.RLock(nilCtx, "k"); err == nil || !strings.Contains(err.Error(), "nil context") {
		t.Errorf("RLock(nil ctx) = %v; want an error naming the nil context", err)
	}
	for _, n := range []uint64{0, MaxReserve + 1} {
		if _, err := a.LockN(ctx, "k", n); err == nil || !strings.Contains(err.Error(), "n = ") {
			t.Errorf("LockN(n=%d) = %v; want an error naming n", n, err)
		}
	}
	if _, err := NewRW[string](nil); err == nil || !strings.Contains(err.Error(), "NewRW: nil Redis client") {
		t.Errorf("NewRW(nil) = %v; want an error naming the nil client", err)
	}
	var zero RWMutex[string]
	if _, err := zero.RLock(ctx, "k"); err == nil {
		t.Error("RLock of a zero RWMutex succeeded")
	}

	// LockN reserves a block; the writer lease watches its end.
	res, err := a.LockN(ctx, "k", 10)
	if err != nil {
		t.Fatal(err)
	}
	if res.Reserved() != 10 {
		t.Errorf("LockN(10).Reserved() = %d", res.Reserved())
	}
	ended := make(chan struct{})
	res.(interface{ AfterDone(func()) func() bool }).AfterDone(func() { close(ended) })
	mustUnlock(t, "LockN", res)
	waitDone(t, ended, "AfterDone of a write lease")

	// Close releases read and write leases and ends them as closed.
	r1, err := b.RLock(ctx, "k")
	r1 = mustLease(t, "RLock", r1, err)
	w1, err := b.Lock(ctx, "other")
	w1 = mustLease(t, "Lock", w1, err)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, l := range []mutex.Lease{r1, w1} {
		if err := l.Err(); !errors.Is(err, mutex.ErrLost) || !errors.Is(err, mutex.ErrClosed) {
			t.Errorf("lease after Close: Err() = %v; want ErrLost and ErrClosed", err)
		}
	}
	if _, err := b.RLock(ctx, "k"); !errors.Is(err, mutex.ErrClosed) {
		t.Errorf("RLock after Close = %v; want ErrClosed", err)
	}
	if keys := admin.Keys(ctx, "*").Val(); len(keys) != 0 {
		t.Errorf("keys left after Close released every lease: %v", keys)
	}
}

// A write lease requeues in one step: it hands the lock to the readers
// queued behind it and takes its place at the back; a read lease cannot
// (remote.ErrUnavailable, still held).
func TestRWRequeue(t *testing.T) {
	srv, admin := rwEnv(t)
	a, b := rwProcess(t, srv), rwProcess(t, srv)
	ctx := ctxT(t, 20*time.Second)

	// A Lock that waited: a's grant channel of the key is subscribed
	// (Requeue needs it; without, it is unavailable).
	r0, err := b.RLock(ctx, "k")
	r0 = mustLease(t, "RLock", r0, err)
	wa := acquireAsync(func() (mutex.Lease, error) { return a.Lock(ctx, "k") })
	waitQueued(t, admin, "k", 1)
	mustUnlock(t, "r0", r0)
	w := await(t, wa, "Lock")

	// Nobody queued: the new writer holds at once.
	tk, err := w.(remote.Lease).Requeue(1)
	if err != nil {
		t.Fatalf("Requeue with nobody queued = %v", err)
	}
	if !errors.Is(w.Err(), mutex.ErrUnlocked) {
		t.Errorf("requeued lease: Err() = %v; want ErrUnlocked", w.Err())
	}
	w2, err := tk.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if w2.Token() <= w.Token() {
		t.Errorf("requeued writer token %d not above %d", w2.Token(), w.Token())
	}

	// Readers queued: they get the lock, the new writer waits for them.
	r := acquireAsync(func() (mutex.Lease, error) { return b.RLock(ctx, "k") })
	waitQueued(t, admin, "k", 1)
	tk, err = w2.(remote.Lease).Requeue(1)
	if err != nil {
		t.Fatalf("Requeue with a reader queued = %v", err)
	}
	rl := await(t, r, "reader behind the requeued writer")
	waitQueued(t, admin, "k", 1) // the new writer
	got := make(chan leaseResult, 1)
	go func() {
		l, err := tk.Wait(ctx)
		got <- leaseResult{l, err}
	}()
	notYet(t, got, "requeued writer while a reader holds")
	if _, err := rl.(remote.Lease).Requeue(1); !errors.Is(err, remote.ErrUnavailable) {
		t.Errorf("Requeue of a read lease = %v; want ErrUnavailable", err)
	}
	if err := rl.Err(); err != nil {
		t.Errorf("read lease after a refused Requeue: Err() = %v; want nil", err)
	}
	mustUnlock(t, "reader", rl)
	l := await(t, got, "requeued writer once the reader left")
	mustUnlock(t, "requeued writer", l)
	if keys := admin.Keys(ctx, "*").Val(); len(keys) != 0 {
		t.Errorf("keys left: %v", keys)
	}
}

// Three processes of four goroutines take read and write locks of two
// keys at random, some with a ctx that ends while they wait: a writer is
// always alone, a reader never beside a writer, and a fenced store
// accepts every holder (a writer's token above every token it has seen,
// a reader's above the last writer's).
func TestRWStress(t *testing.T) {
	srv, admin := rwEnv(t)
	procs := []*RWMutex[string]{rwProcess(t, srv), rwProcess(t, srv), rwProcess(t, srv)}
	ctx := ctxT(t, time.Minute)
	type store struct {
		mu              sync.Mutex
		readers, writer int
		lastWrite, max  uint64
	}
	stores := map[string]*store{"x": {}, "y": {}}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for p, m := range procs {
		for g := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 60 {
					key := []string{"x", "y"}[(p+g+i)%2]
					read := (p*7+g*3+i)%3 != 0
					lctx, cancel := ctx, context.CancelFunc(func() {})
					if i%10 == 9 {
						lctx, cancel = context.WithTimeout(ctx, time.Duration(i%4)*time.Millisecond)
					}
					var l mutex.Lease
					var err error
					if read {
						l, err = m.RLock(lctx, key)
					} else {
						l, err = m.Lock(lctx, key)
					}
					cancel()
					if err != nil {
						if lctx.Err() != nil && errors.Is(err, lctx.Err()) {
							continue
						}
						errs <- err
						return
					}
					s := stores[key]
					s.mu.Lock()
					switch {
					case read && s.writer > 0, !read && (s.writer > 0 || s.readers > 0):
						errs <- fmt.Errorf("%s: exclusion broken (read=%v, readers %d, writer %d)", key, read, s.readers, s.writer)
					case read && l.Token() <= s.lastWrite:
						errs <- fmt.Errorf("%s: reader token %d not above the last writer's %d", key, l.Token(), s.lastWrite)
					case !read && l.Token() <= s.max:
						errs <- fmt.Errorf("%s: writer token %d not above %d", key, l.Token(), s.max)
					}
					if read {
						s.readers++
					} else {
						s.writer++
						s.lastWrite = l.Token()
					}
					s.max = maxU(s.max, l.Token())
					s.mu.Unlock()
					time.Sleep(100 * time.Microsecond) // a critical section, so that holders overlap
					s.mu.Lock()
					if read {
						s.readers--
					} else {
						s.writer--
					}
					s.mu.Unlock()
					if err := l.Unlock(); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	eventually(t, "no key left", func() bool { return len(admin.Keys(context.Background(), "*").Val()) == 0 })
}
