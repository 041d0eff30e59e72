package reliability

// What a user sees of a slow, paused or restarted Redis (no orphaned
// locks, no false lease losses, no tokens that go backwards, a prompt
// Close), against a real redis-server: each test checks the promise
// rather than the mechanism. Timing bounds derive from the configured
// values (the TTL, the unlock timeout) and are generous: they tell
// "promptly" from "after the TTL", never a fast machine from a slow one.
// The bursts of keys and NaN keys need no Redis: they are tested in
// mutex/local, mutex/hybrid and mutex/distributed.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/faulttest"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/logtest"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/keyedmutex/keyedmutex/mutex/hybrid"
	"github.com/redis/go-redis/v9"
)

// fixture is one redis-server for a test of this file, an admin client
// that talks to it directly, a prefix of its own, and what every mutex
// made by it logged.
type fixture struct {
	srv     *redistest.Server
	admin   *redis.Client
	prefix  string
	reports logtest.Recorder
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{srv: redistest.Start(t), prefix: fmt.Sprintf("i11-%d:", seq.Add(1))}
	f.admin = f.srv.Client(t)
	return f
}

// client returns a new client of the server (a process of its own),
// adjusted by opts if not nil, closed at cleanup.
func (f *fixture) client(t *testing.T, opts func(*redis.Options), hooks ...redis.Hook) *redis.Client {
	t.Helper()
	return f.clientAt(t, f.srv.Addr(), opts, hooks...)
}

func (f *fixture) clientAt(t *testing.T, addr string, opts func(*redis.Options), hooks ...redis.Hook) *redis.Client {
	t.Helper()
	o := &redis.Options{Addr: addr}
	if opts != nil {
		opts(o)
	}
	c := redis.NewClient(o)
	for _, h := range hooks {
		c.AddHook(h)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dist returns a distributed mutex on c with the fixture's prefix and
// logger, closed at cleanup (before c: cleanups run last in, first out).
func (f *fixture) dist(t *testing.T, c *redis.Client, opts ...distributed.Option) *distributed.Mutex[string] {
	t.Helper()
	d, err := distributed.New[string](c, append([]distributed.Option{
		distributed.WithPrefix(f.prefix), distributed.WithLogger(slog.New(&f.reports)),
	}, opts...)...)
	if err != nil {
		t.Fatalf("distributed.New = %v", err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Logf("distributed Close: %v", err)
		}
	})
	return d
}

// hybridOver returns a hybrid mutex over d, closed at cleanup.
func (f *fixture) hybridOver(t *testing.T, d *distributed.Mutex[string], opts ...hybrid.Option) *hybrid.Mutex[string] {
	t.Helper()
	logger := slog.New(&f.reports)
	h, err := hybrid.New[string](d, append([]hybrid.Option{
		hybrid.WithLogger(logger),
	}, opts...)...)
	if err != nil {
		t.Fatalf("hybrid.New = %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Logf("hybrid Close: %v", err)
		}
	})
	return h
}

// mutex returns a mutex of kind (pubsub or hyb) on a new client.
func (f *fixture) mutex(t *testing.T, kind string, opts func(*redis.Options), dopts ...distributed.Option) mutex.Keyed[string] {
	t.Helper()
	d := f.dist(t, f.client(t, opts), dopts...)
	if kind == hyb {
		return f.hybridOver(t, d)
	}
	return d
}

// lockKey and queueKey are the Redis names of key (protocol v2, see
// mutex/distributed/doc.go), for keys without '%' or '}'.
func (f *fixture) lockKey(key string) string  { return f.prefix + "{" + key + "}" }
func (f *fixture) queueKey(key string) string { return f.prefix + "q:{" + key + "}" }

// state describes key in Redis: its lock value and PTTL, and its queue
// length. held is false when the lock is absent or a free marker.
func (f *fixture) state(key string) (held bool, desc string) {
	ctx := context.Background()
	v, err := f.admin.Get(ctx, f.lockKey(key)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		v = "<absent>"
	case err != nil:
		return true, fmt.Sprintf("GET: %v", err)
	}
	pttl := f.admin.PTTL(ctx, f.lockKey(key)).Val()
	queued := f.admin.ZCard(ctx, f.queueKey(key)).Val()
	held = v != "<absent>" && !strings.HasPrefix(v, "~")
	return held || queued != 0, fmt.Sprintf("lock %q (PTTL %v), %d queued", v, pttl, queued)
}

// waitFree polls until nobody holds key and nobody is queued for it, and
// fails t if that takes longer than within.
func (f *fixture) waitFree(t *testing.T, key string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		busy, desc := f.state(key)
		if !busy {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Errorf("key %q still held or queued %v later: %s; want it free", key, within, desc)
			return time.Since(start)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// warm takes and releases a lock on m, so that its connections, scripts
// and Pub/Sub mode are set up before a fault.
func warm(t *testing.T, m mutex.Keyed[string]) {
	t.Helper()
	l, err := m.Lock(ctxFor(t, 10*time.Second), "warm")
	if err != nil {
		t.Fatalf("Lock(warm) = %v", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatalf("Unlock(warm) = %v", err)
	}
}

// noWrappedNil fails t if text carries a fmt verb error such as
// "%!w(<nil>)": an error that wrapped nil.
func noWrappedNil(t *testing.T, what, text string) {
	t.Helper()
	if strings.Contains(text, "%!") {
		t.Errorf("%s = %q; want no %%! (a bad fmt verb or a wrapped nil error)", what, text)
	}
}

// checkReports applies noWrappedNil to everything the fixture's mutexes
// logged.
func (f *fixture) checkReports(t *testing.T) {
	t.Helper()
	for _, r := range f.reports.All() {
		noWrappedNil(t, "logged", r.Text)
	}
}

// defaultTTL is the distributed mutex's default TTL, which
// TestShortDeadlines, TestPausedShortLock and TestRetriedAcquire keep:
// "promptly" there means well under it.
const defaultTTL = distributed.DefaultTTL

// TestShortDeadlines: with
// ContextTimeoutEnabled, many Locks of a free key with deadlines of
// 20-320µs, some of which fail. A failed Lock must not leave the lock
// held by an owner nobody knows, nor a queue entry: soon afterwards the
// key is free, and a Lock from another client returns well under the
// TTL. A hybrid head's Lock takes the same path.
func TestShortDeadlines(t *testing.T) {
	forKinds(t, []string{pubsub, hyb}, func(t *testing.T, kind string) {
		leakcheck.Register(t)
		f := newFixture(t)
		m := f.mutex(t, kind, ctxTimeouts)
		warm(t, m)
		const goroutines, each = 4, 400
		key := "short"
		var ok, failed atomic.Int64
		var mu sync.Mutex
		odd := map[string]int{} // errors other than the ctx's
		var wg sync.WaitGroup
		for range goroutines {
			wg.Go(func() {
				for range each {
					d := 20*time.Microsecond + rand.N(301*time.Microsecond)
					ctx, cancel := context.WithTimeout(context.Background(), d)
					l, err := m.Lock(ctx, key)
					cancel()
					if err != nil {
						failed.Add(1)
						if !errors.Is(err, context.DeadlineExceeded) {
							mu.Lock()
							odd[err.Error()]++
							mu.Unlock()
						}
						continue
					}
					ok.Add(1)
					if err := l.Unlock(); err != nil {
						mu.Lock()
						odd["Unlock: "+err.Error()]++
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		for msg, n := range odd {
			t.Errorf("x%d: %s; want only errors satisfying errors.Is(err, context.DeadlineExceeded)", n, msg)
		}
		if failed.Load() == 0 {
			t.Fatalf("none of %d Locks failed: the deadlines were not short enough, the test proved nothing", ok.Load())
		}
		// Undoing a failed acquire happens in the background: give it a
		// fraction of the TTL, which is what it would otherwise cost.
		freed := f.waitFree(t, key, defaultTTL/4)
		other := f.mutex(t, pubsub, ctxTimeouts)
		start := time.Now()
		l, err := other.Lock(ctxFor(t, defaultTTL+5*time.Second), key)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("Lock from another client = %v after %v; want the lock", err, took)
		}
		if took > defaultTTL/4 {
			t.Errorf("Lock of the free key from another client took %v; want well under the TTL of %v (at most %v): a failed Lock left the key held", took, defaultTTL, defaultTTL/4)
		}
		if err := l.Unlock(); err != nil {
			t.Errorf("Unlock = %v", err)
		}
		t.Logf("%d Locks succeeded, %d failed; key free %v after the last, next Lock from another client took %v",
			ok.Load(), failed.Load(), freed.Round(time.Millisecond), took.Round(time.Millisecond))
		f.checkReports(t)
	})
}

// TestPausedShortLock: Redis stops for
// 500ms under a Lock whose ctx ends after 200ms. That Lock fails with its
// ctx error; when Redis resumes, its acquire runs and takes the lock for
// an owner nobody waits for any more, which must be released: the next
// Lock of the key from another client returns well under the TTL.
func TestPausedShortLock(t *testing.T) {
	forKinds(t, []string{pubsub, hyb}, func(t *testing.T, kind string) {
		leakcheck.Register(t)
		f := newFixture(t)
		a := f.mutex(t, kind, ctxTimeouts)
		b := f.mutex(t, pubsub, ctxTimeouts)
		warm(t, a)
		warm(t, b)
		const pause, lockCtx = 500 * time.Millisecond, 200 * time.Millisecond
		key := "paused"

		f.srv.Pause()
		defer f.srv.Resume()
		paused := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), lockCtx)
		l, err := a.Lock(ctx, key)
		cancel()
		if err == nil {
			l.Unlock()
			t.Fatalf("Lock with a %v ctx while Redis is paused = nil error; want its ctx error", lockCtx)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Lock with a %v ctx while Redis is paused = %v; want context.DeadlineExceeded", lockCtx, err)
		}
		if took := time.Since(paused); took > lockCtx+liveness {
			t.Errorf("Lock with a %v ctx returned after %v; want at most %v", lockCtx, took, lockCtx+liveness)
		}
		time.Sleep(time.Until(paused.Add(pause))) // the rest of the fault
		f.srv.Resume()
		resumed := time.Now()

		l, err = b.Lock(ctxFor(t, defaultTTL+5*time.Second), key)
		took := time.Since(resumed)
		if err != nil {
			t.Fatalf("Lock from another client after Redis resumed = %v after %v; want the lock", err, took)
		}
		if took > defaultTTL/4 {
			t.Errorf("Lock of the free key from another client returned %v after Redis resumed; want well under the TTL of %v (at most %v): the abandoned acquire's lock was not released", took, defaultTTL, defaultTTL/4)
		}
		if err := l.Unlock(); err != nil {
			t.Errorf("Unlock = %v", err)
		}
		t.Logf("next Lock from another client returned %v after Redis resumed", took.Round(time.Millisecond))
		f.waitFree(t, key, 5*time.Second)
		f.checkReports(t)
	})
}

// TestRetriedAcquire: with ReadTimeout 500ms, Redis
// stops for 700ms under a Lock of a fresh key. go-redis retries the
// timed-out acquire with the same owner id; the first one runs when Redis
// resumes and takes the lock, so the retry finds the lock held, by its
// own owner. The Lock must recognise it and return soon after Redis
// resumes, not wait out its own lock's TTL.
func TestRetriedAcquire(t *testing.T) {
	leakcheck.Register(t)
	f := newFixture(t)
	const readTimeout, pause = 500 * time.Millisecond, 700 * time.Millisecond
	m := f.mutex(t, pubsub, func(o *redis.Options) { o.ReadTimeout = readTimeout })
	warm(t, m)
	key := "fresh"

	f.srv.Pause()
	defer f.srv.Resume()
	paused := time.Now()
	type result struct {
		l   mutex.Lease
		err error
		at  time.Time
	}
	got := make(chan result, 1)
	ctx := ctxFor(t, 30*time.Second)
	go func() {
		l, err := m.Lock(ctx, key)
		got <- result{l, err, time.Now()}
	}()
	time.Sleep(time.Until(paused.Add(pause))) // the fault
	f.srv.Resume()
	resumed := time.Now()

	var r result
	select {
	case r = <-got:
	case <-time.After(defaultTTL + 10*time.Second):
		t.Fatalf("Lock still waiting %v after Redis resumed", defaultTTL+10*time.Second)
	}
	if r.err != nil {
		t.Fatalf("Lock(30s ctx) across a %v pause = %v; want the lock", pause, r.err)
	}
	after := r.at.Sub(resumed)
	if after > defaultTTL/4 {
		t.Errorf("Lock returned %v after Redis resumed; want well under the TTL of %v (at most %v): it waited out its own lock", after, defaultTTL, defaultTTL/4)
	}
	if err := r.l.Err(); err != nil {
		t.Errorf("Err() of the new lease = %v; want nil", err)
	}
	if held, desc := f.state(key); !held {
		t.Errorf("key after Lock: %s; want it held", desc)
	}
	if err := r.l.Unlock(); err != nil {
		t.Errorf("Unlock = %v; want nil", err)
	}
	t.Logf("Lock returned %v after Redis resumed (%v after it was called)", after.Round(time.Millisecond), r.at.Sub(paused).Round(time.Millisecond))
	f.waitFree(t, key, 5*time.Second)
	f.checkReports(t)
}

// TestSlowAcquireNotLost: PoolSize 1 and a
// BLPOP on the same client hold up a Lock for most of its TTL of 1.5s.
// Redis sets the lock's TTL when the acquire runs, so the lease is sound:
// its first renewal must leave before its validity (counted from the
// acquire's start) runs out. For 2s after Lock returns, Done stays open,
// Err is nil and Redis keeps the key with a positive PTTL.
func TestSlowAcquireNotLost(t *testing.T) {
	leakcheck.Register(t)
	f := newFixture(t)
	const ttl = 1500 * time.Millisecond
	block := ttl * 4 / 5 // past 2/3 of the TTL, short of all of it
	c := f.client(t, func(o *redis.Options) { o.PoolSize = 1 })
	m := f.dist(t, c, distributed.WithTTL(ttl))
	warm(t, m)
	key := "slow"

	blpop := make(chan error, 1)
	go func() {
		blpop <- c.BLPop(context.Background(), block, f.prefix+"nothing").Err()
	}()
	// Wait until the BLPOP holds the client's one connection.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(f.admin.ClientList(context.Background()).Val(), "cmd=blpop") {
		if time.Now().After(deadline) {
			t.Fatal("no BLPOP in CLIENT LIST after 10s")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	l, err := m.Lock(ctxFor(t, 10*time.Second), key)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("Lock behind a BLPOP = %v after %v; want the lock", err, took)
	}
	if err := <-blpop; !errors.Is(err, redis.Nil) {
		t.Errorf("BLPOP = %v; want redis.Nil (timed out)", err)
	}
	if took < ttl*2/3 {
		t.Logf("Lock took only %v (< 2/3 of the TTL %v): the probe is weaker than intended", took, ttl)
	}
	watched := time.Now()
	for time.Since(watched) < 2*time.Second {
		select {
		case <-l.Done():
			held, desc := f.state(key)
			t.Fatalf("lease lost %v after Lock returned (Lock took %v, TTL %v): %v; Redis: %s (held: %v); want it held",
				time.Since(watched).Round(time.Millisecond), took.Round(time.Millisecond), ttl, l.Err(), desc, held)
		default:
		}
		if pttl := f.admin.PTTL(context.Background(), f.lockKey(key)).Val(); pttl <= 0 {
			t.Fatalf("PTTL of the lock key = %v %v after Lock returned; want > 0 (renewed)", pttl, time.Since(watched).Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := l.Err(); err != nil {
		t.Errorf("Err() = %v; want nil", err)
	}
	if err := l.Unlock(); err != nil {
		t.Errorf("Unlock = %v; want nil", err)
	}
	t.Logf("Lock took %v behind a %v BLPOP (TTL %v); held 2s after without a loss", took.Round(time.Millisecond), block, ttl)
	f.checkReports(t)
}

// TestManyLeasesNoFalseLoss: 150 leases
// with a TTL of 300ms, taken at once and held 1.5s (5 TTLs), on one
// Mutex. Nothing fails, so none may be lost; and no error or report
// reads "%!" (an error that wrapped nil).
func TestManyLeasesNoFalseLoss(t *testing.T) {
	leakcheck.Register(t)
	f := newFixture(t)
	const ttl, n = 300 * time.Millisecond, 150
	hold := 5 * ttl
	m := f.dist(t, f.client(t, nil), distributed.WithTTL(ttl))
	warm(t, m)
	leases := make([]mutex.Lease, n)
	errs := make([]error, n)
	ctx := ctxFor(t, 10*time.Second)
	var wg sync.WaitGroup
	for i := range leases {
		wg.Go(func() { leases[i], errs[i] = m.Lock(ctx, fmt.Sprintf("many%d", i)) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Lock(many%d) = %v", i, err)
		}
	}
	// Hold them; note each loss when it happens, with Redis's view.
	var mu sync.Mutex
	var losses []string
	stop := make(chan struct{})
	for i, l := range leases {
		wg.Go(func() {
			select {
			case <-l.Done():
				_, desc := f.state(fmt.Sprintf("many%d", i))
				mu.Lock()
				losses = append(losses, fmt.Sprintf("many%d: %v (Redis then: %s)", i, l.Err(), desc))
				mu.Unlock()
			case <-stop:
			}
		})
	}
	time.Sleep(hold) // the leases are held: the workload
	close(stop)
	wg.Wait()
	for _, s := range losses {
		t.Errorf("lease lost while held with nothing wrong: %s", s)
		noWrappedNil(t, "loss", s)
	}
	for i, l := range leases {
		err := l.Unlock()
		switch {
		case err == nil:
		case errors.Is(err, mutex.ErrLost):
			noWrappedNil(t, "Unlock", err.Error())
		default:
			t.Errorf("Unlock(many%d) = %v; want nil", i, err)
		}
	}
	t.Logf("%d leases (TTL %v) held %v: %d lost", n, ttl, hold, len(losses))
	f.checkReports(t)
}

// TestLossMessages: the errors of leases
// lost by validity (Redis paused past the TTL, renewals unanswered) and
// whatever the Mutex logs about them read cleanly, with no "%!" of an
// error that wrapped nil.
func TestLossMessages(t *testing.T) {
	leakcheck.Register(t)
	f := newFixture(t)
	const ttl = 300 * time.Millisecond
	m := f.dist(t, f.client(t, ctxTimeouts), distributed.WithTTL(ttl), distributed.WithUnlockTimeout(ttl))
	warm(t, m)
	var leases []mutex.Lease
	for i := range 3 {
		l, err := m.Lock(ctxFor(t, 10*time.Second), fmt.Sprintf("msg%d", i))
		if err != nil {
			t.Fatalf("Lock = %v", err)
		}
		leases = append(leases, l)
	}
	f.srv.Pause()
	defer f.srv.Resume()
	for _, l := range leases {
		select {
		case <-l.Done():
		case <-time.After(ttl + 10*time.Second):
			t.Fatalf("lease not lost %v into a pause of Redis; TTL %v", ttl+10*time.Second, ttl)
		}
		if err := l.Err(); !errors.Is(err, mutex.ErrLost) {
			t.Errorf("Err() = %v; want ErrLost", err)
		} else {
			noWrappedNil(t, "Err()", err.Error())
		}
	}
	f.srv.Resume()
	for _, l := range leases {
		if err := l.Unlock(); !errors.Is(err, mutex.ErrLost) {
			t.Errorf("Unlock of a lost lease = %v; want ErrLost", err)
		} else {
			noWrappedNil(t, "Unlock", err.Error())
		}
	}
	f.checkReports(t)
	t.Logf("loss: %v", leases[0].Err())
}

// TestTokensAfterRestart: a reservation of
// 1<<20 tokens, Unlock, then a SIGKILL and restart of a redis-server
// without persistence. The next token must exceed every token the
// reservation held, Token()+Reserved()-1: fencing tokens never go
// backwards.
func TestTokensAfterRestart(t *testing.T) {
	leakcheck.Register(t)
	f := newFixture(t)
	m := f.dist(t, f.client(t, nil))
	key := "a"
	ctx := ctxFor(t, 30*time.Second)
	warm(t, m)
	// A first lease leaves a free marker to reserve after; then the block.
	l, err := m.Lock(ctx, key)
	if err != nil {
		t.Fatalf("Lock = %v", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatalf("Unlock = %v", err)
	}
	r, err := m.LockN(ctx, key, 1<<20)
	if err != nil {
		t.Fatalf("LockN(1<<20) = %v", err)
	}
	last := r.Token() + r.Reserved() - 1
	if err := r.Unlock(); err != nil {
		t.Fatalf("Unlock = %v", err)
	}
	f.srv.Kill()
	f.srv.Restart()
	next := lockAfterRestart(t, m, key)
	if next <= last {
		t.Errorf("token after restart = %d; want > %d, the last token reserved before it (%d below)", next, last, last-next)
	}
	t.Logf("LockN(1<<20) reserved %d tokens (%d..%d); first token after restart %d", r.Reserved(), r.Token(), last, next)
}

// lockAfterRestart locks key on m, retrying while the client reconnects,
// and returns the lease's token after unlocking it.
func lockAfterRestart(t *testing.T, m mutex.Keyed[string], key string) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := m.Lock(ctxFor(t, 5*time.Second), key)
		if err == nil {
			tok := l.Token()
			if err := l.Unlock(); err != nil {
				t.Errorf("Unlock after restart = %v", err)
			}
			return tok
		}
		if time.Now().After(deadline) {
			t.Fatalf("Lock after restart still failing after 10s: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHybridTokensAfterRestart: a hybrid
// mutex reserving blocks of 1001 tokens (WithMaxLocalHandoffs(1000)),
// Lock and Unlock as fast as it goes for 2s; then a restart of Redis
// without persistence. The next token, from the hybrid mutex or from
// another process, must exceed the largest token issued before.
func TestHybridTokensAfterRestart(t *testing.T) {
	for _, goroutines := range []int{1, 4} {
		t.Run(fmt.Sprintf("goroutines=%d", goroutines), func(t *testing.T) {
			leakcheck.Register(t)
			f := newFixture(t)
			d := f.dist(t, f.client(t, nil))
			h := f.hybridOver(t, d, hybrid.WithMaxLocalHandoffs(1000))
			other := f.dist(t, f.client(t, nil))
			key := "hot"
			var mu sync.Mutex
			var maxTok, locks uint64
			var failures []string
			until := time.Now().Add(runFor(2 * time.Second))
			var wg sync.WaitGroup
			for range goroutines {
				wg.Go(func() {
					for time.Now().Before(until) {
						l, err := h.Lock(context.Background(), key)
						if err != nil {
							mu.Lock()
							failures = append(failures, err.Error())
							mu.Unlock()
							return
						}
						mu.Lock()
						if tok := l.Token(); tok <= maxTok {
							failures = append(failures, fmt.Sprintf("token %d after %d: not increasing", tok, maxTok))
						} else {
							maxTok = tok
						}
						locks++
						mu.Unlock()
						if err := l.Unlock(); err != nil {
							mu.Lock()
							failures = append(failures, "Unlock: "+err.Error())
							mu.Unlock()
							return
						}
					}
				})
			}
			wg.Wait()
			for _, s := range failures {
				t.Errorf("before the restart: %s", s)
			}
			redisNow := f.admin.Time(context.Background()).Val()
			f.srv.Kill()
			f.srv.Restart()
			next := lockAfterRestart(t, h, key)
			if next <= maxTok {
				t.Errorf("hybrid: token after restart = %d; want > %d, the largest issued before it (%d below)", next, maxTok, maxTok-next)
			}
			nextOther := lockAfterRestart(t, other, key)
			if nextOther <= maxTok {
				t.Errorf("another process: token after restart = %d; want > %d, the largest issued before it (%d below)", nextOther, maxTok, maxTok-nextOther)
			}
			ahead := time.Duration(int64(maxTok)-redisNow.UnixMicro()) * time.Microsecond
			t.Logf("%d Locks; largest token %d (%v ahead of Redis TIME at the end); after restart: hybrid %d, other %d",
				locks, maxTok, ahead, next, nextOther)
		})
	}
}

// TestHybridCloseParallel: hybrid.Close with Redis
// paused and 8 keys held must release the 8 remote leases in parallel,
// each bounded by the unlock timeout (1s): Close returns in about 1s,
// not 8s.
func TestHybridCloseParallel(t *testing.T) {
	leakcheck.Register(t)
	f := newFixture(t)
	const unlockTimeout, keys = time.Second, 8
	d := f.dist(t, f.client(t, nil), distributed.WithUnlockTimeout(unlockTimeout))
	h := f.hybridOver(t, d)
	var leases []mutex.Lease
	for i := range keys {
		l, err := h.Lock(ctxFor(t, 10*time.Second), fmt.Sprintf("close%d", i))
		if err != nil {
			t.Fatalf("Lock = %v", err)
		}
		leases = append(leases, l)
	}
	f.srv.Pause()
	defer f.srv.Resume()
	start := time.Now()
	err := h.Close()
	took := time.Since(start)
	f.srv.Resume()
	if bound := 2*unlockTimeout + liveness; took > bound {
		t.Errorf("hybrid Close with Redis paused and %d keys held took %v; want about the unlock timeout %v (at most %v), as the remote leases are released in parallel", keys, took, unlockTimeout, bound)
	}
	for _, l := range leases {
		if err := l.Err(); !errors.Is(err, mutex.ErrLost) || !errors.Is(err, mutex.ErrClosed) {
			t.Errorf("Err() of a lease ended by Close = %v; want ErrLost and ErrClosed", err)
		}
	}
	t.Logf("hybrid Close took %v with Redis paused, %d keys held, unlock timeout %v; Close = %v", took.Round(time.Millisecond), keys, unlockTimeout, err)
}

// TestCloseWithLockInFlight: distributed.Close with
// Redis paused and a Lock(context.Background()) in flight (on a free key,
// on a held key while it is queued, on a held key whose first attempt is
// stuck) returns within the unlock timeout plus a margin, and the Lock
// returns an error satisfying errors.Is(err, mutex.ErrClosed).
func TestCloseWithLockInFlight(t *testing.T) {
	for _, tc := range []struct {
		name   string
		held   bool // another process holds the key
		queued bool // the Lock queued before Redis was paused
	}{
		{"free", false, false},
		{"held/queued", true, true},
		{"held/stuck", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakcheck.Register(t)
			f := newFixture(t)
			const unlockTimeout = time.Second
			var cnt redistest.Counter
			m := f.dist(t, f.client(t, nil, &cnt), distributed.WithUnlockTimeout(unlockTimeout))
			holder := f.dist(t, f.client(t, nil))
			warm(t, m)
			key := "inflight"
			var hl mutex.Lease
			if tc.held {
				var err error
				if hl, err = holder.Lock(ctxFor(t, 10*time.Second), key); err != nil {
					t.Fatalf("holder Lock = %v", err)
				}
			}
			type result struct {
				l   mutex.Lease
				err error
			}
			got := make(chan result, 1)
			lock := func() {
				go func() {
					l, err := m.Lock(context.Background(), key)
					got <- result{l, err}
				}()
			}
			before := cnt.All.Load()
			if tc.queued {
				lock()
				deadline := time.Now().Add(10 * time.Second)
				for f.admin.ZCard(context.Background(), f.queueKey(key)).Val() != 1 {
					if time.Now().After(deadline) {
						t.Fatal("the Lock did not queue in 10s")
					}
					time.Sleep(time.Millisecond)
				}
				f.srv.Pause()
			} else {
				f.srv.Pause()
				lock()
				deadline := time.Now().Add(10 * time.Second)
				for cnt.All.Load() == before {
					if time.Now().After(deadline) {
						t.Fatal("the Lock sent no command in 10s")
					}
					time.Sleep(time.Millisecond)
				}
			}
			defer f.srv.Resume()
			start := time.Now()
			err := m.Close()
			took := time.Since(start)
			bound := unlockTimeout + liveness
			if took > bound {
				t.Errorf("Close with Redis paused and a Lock in flight took %v; want at most the unlock timeout %v + %v", took, unlockTimeout, liveness)
			}
			var r result
			select {
			case r = <-got:
			case <-time.After(bound):
				f.srv.Resume()
				r = <-got
				t.Errorf("the Lock in flight had not returned %v after Close returned; it returned %v once Redis resumed", bound, r.err)
			}
			switch {
			case r.err == nil:
				r.l.Unlock()
				t.Errorf("the Lock in flight at Close = a lease; want an error satisfying errors.Is(err, mutex.ErrClosed)")
			case !errors.Is(r.err, mutex.ErrClosed):
				t.Errorf("the Lock in flight at Close = %v; want an error satisfying errors.Is(err, mutex.ErrClosed)", r.err)
			}
			f.srv.Resume()
			if hl != nil {
				if err := hl.Unlock(); err != nil {
					t.Errorf("holder Unlock = %v", err)
				}
			}
			f.waitFree(t, key, defaultTTL)
			t.Logf("Close took %v (= %v); the Lock in flight returned %v", took.Round(time.Millisecond), err, r.err)
		})
	}
}

// point is a key type with no default encoding.
type point struct{ x, y int }

// lockAsync runs l.Lock() in a goroutine and sends "locked", or
// "panic: ..." if it panicked.
func lockAsync(l sync.Locker) <-chan string {
	out := make(chan string, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				out <- fmt.Sprintf("panic: %v", r)
			}
		}()
		l.Lock()
		out <- "locked"
	}()
	return out
}

// TestLockerPanics: the sync.Locker adapter
// of a key that can never be locked (empty; of a type with no encoding)
// panics with an error naming the problem, on distributed and on hybrid
// over distributed, instead of retrying forever.
func TestLockerPanics(t *testing.T) {
	leakcheck.Register(t)
	f := newFixture(t)
	d := f.dist(t, f.client(t, nil))
	h := f.hybridOver(t, f.dist(t, f.client(t, nil)))
	da, err := distributed.New[any](f.client(t, nil), distributed.WithPrefix(f.prefix), distributed.WithLogger(slog.New(&f.reports)))
	if err != nil {
		t.Fatalf("distributed.New[any] = %v", err)
	}
	t.Cleanup(func() { da.Close() })
	for _, tc := range []struct {
		name string
		l    sync.Locker
		want []string
	}{
		{"distributed/empty", d.Locker(""), []string{"invalid key", "empty key"}},
		{"hybrid/empty", h.Locker(""), []string{"invalid key", "empty key"}},
		{"distributed/no encoder", da.Locker(point{1, 2}), []string{"invalid key", "WithKeyEncoder"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			select {
			case got = <-lockAsync(tc.l):
			case <-time.After(10 * time.Second):
				t.Fatalf("Locker.Lock() still blocked after 10s; want a panic naming %q", tc.want)
			}
			if !strings.HasPrefix(got, "panic: ") {
				t.Fatalf("Locker.Lock() %s; want a panic naming %q", got, tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("Locker.Lock() %s; want a panic naming %q", got, w)
				}
			}
			t.Logf("Locker.Lock() %s", got)
		})
	}
}

// TestLockerRetriesRedisDown: with Redis
// down, which can heal, the sync.Locker adapter keeps retrying, reporting
// each failure, and does not panic; it takes the lock once Redis is back.
func TestLockerRetriesRedisDown(t *testing.T) {
	leakcheck.Register(t)
	f := newFixture(t)
	dlog, dreports := logtest.New()
	d, err := distributed.New[string](f.client(t, nil), distributed.WithPrefix(f.prefix), distributed.WithLogger(dlog))
	if err != nil {
		t.Fatalf("distributed.New = %v", err)
	}
	t.Cleanup(func() { d.Close() })
	hlog, hybridLogged := logtest.New()
	h, err := hybrid.New[string](f.dist(t, f.client(t, nil)), hybrid.WithLogger(hlog))
	if err != nil {
		t.Fatalf("hybrid.New = %v", err)
	}
	t.Cleanup(func() { h.Close() })
	warm(t, d)
	warm(t, h)
	lockers := []struct {
		name     string
		l        sync.Locker
		reported func() int64
	}{
		{"distributed", d.Locker("down"), func() int64 { return lockerRetries(dreports) }},
		{"hybrid", h.Locker("down-h"), func() int64 { return int64(hybridLogged.Len()) }},
	}

	f.srv.Kill()
	outs := make([]<-chan string, len(lockers))
	for i, lk := range lockers {
		outs[i] = lockAsync(lk.l)
	}
	// Each reports failures and goes on retrying while Redis is down.
	deadline := time.Now().Add(10 * time.Second)
	for _, lk := range lockers {
		for lk.reported() < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d failures reported in 10s with Redis down; want the Locker to retry and report", lk.name, lk.reported())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i, lk := range lockers {
		select {
		case s := <-outs[i]:
			t.Fatalf("%s: Locker.Lock() with Redis down %s; want it to keep retrying", lk.name, s)
		default:
		}
	}
	f.srv.Restart()
	for i, lk := range lockers {
		select {
		case s := <-outs[i]:
			if s != "locked" {
				t.Errorf("%s: Locker.Lock() after Redis came back %s; want locked", lk.name, s)
				continue
			}
			lk.l.Unlock()
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Locker.Lock() still retrying 10s after Redis came back", lk.name)
		}
		t.Logf("%s: %d failures reported while Redis was down", lk.name, lk.reported())
	}
}

// lockerRetries counts the Locker's retry reports among r's records.
func lockerRetries(r *logtest.Recorder) int64 {
	var n int64
	for _, rec := range r.All() {
		if strings.Contains(rec.Text, "Locker") {
			n++
		}
	}
	return n
}

// warmRenewal holds a lease on m until Redis shows it renewed, so that
// the renewal script is in the server's script cache: a first renewal
// would otherwise cost a second round trip (EVALSHA, NOSCRIPT, EVAL).
func (f *fixture) warmRenewal(t *testing.T, m mutex.Keyed[string]) {
	t.Helper()
	l, err := m.Lock(ctxFor(t, 10*time.Second), "warm-renewal")
	if err != nil {
		t.Fatalf("Lock(warm-renewal) = %v", err)
	}
	defer l.Unlock()
	ctx := context.Background()
	// A renewal resets the key's TTL: its PTTL, which falls as time
	// passes, goes up.
	last := f.admin.PTTL(ctx, f.lockKey("warm-renewal")).Val()
	deadline := time.Now().Add(10 * time.Second)
	for {
		pttl := f.admin.PTTL(ctx, f.lockKey("warm-renewal")).Val()
		if pttl > last {
			break
		}
		last = pttl
		if time.Now().After(deadline) {
			t.Fatalf("lease not renewed in 10s: PTTL never rose (last %v)", last)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLostLeaseReleased: a lease
// declared lost by its validity while Redis still holds the key for it
// must not leave the key held: Unlock returns ErrLost and still releases
// the key by compare-and-delete, so that others need not wait out the
// rest of its TTL in Redis.
//
// Pausing Redis cannot make that state (its clock runs on, and the key
// expires when it resumes), so the proxy delays this client's bytes in
// one direction instead:
//
//   - "late renewal reply": replies are delayed past 2/3 of the TTL. The
//     renewal sent at TTL/3 runs at once and extends the key to about
//     TTL/3+TTL, but its reply comes after the validity (TTL) has run out.
//     The loss itself may release the key; either way it must be free
//     when Unlock returns.
//   - "delayed acquire, no renewal": WithoutRenewal, and requests are
//     delayed by TTL/2 while Lock runs, so Redis sets the key's TTL half
//     a TTL after the instant the lease's validity counts from. The lease
//     is lost at TTL (a loss without renewal releases nothing) while
//     Redis holds the key until 3/2 TTL: only Unlock can free it sooner.
func TestLostLeaseReleased(t *testing.T) {
	const ttl = 3 * time.Second
	for _, tc := range []struct {
		name      string
		opts      []distributed.Option
		before    func(p *faulttest.Proxy) // set before Lock
		after     func(p *faulttest.Proxy) // set after Lock
		heldUntil time.Duration            // when Redis would expire the key, after Lock was called, at the earliest
	}{
		{
			name:      "late renewal reply",
			after:     func(p *faulttest.Proxy) { p.SetLatency(0, ttl*5/6, faulttest.Commands) },
			heldUntil: ttl + ttl/4, // renewals may leave up to a tick (TTL/12) early
		},
		{
			name:      "delayed acquire, no renewal",
			opts:      []distributed.Option{distributed.WithoutRenewal()},
			before:    func(p *faulttest.Proxy) { p.SetLatency(ttl/2, 0, faulttest.Commands) },
			heldUntil: ttl + ttl/2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leakcheck.Register(t)
			f := newFixture(t)
			p := faulttest.NewProxy(t, f.srv.Addr())
			c := f.clientAt(t, p.Addr(), func(o *redis.Options) { o.ReadTimeout = 2 * ttl })
			m := f.dist(t, c, append([]distributed.Option{distributed.WithTTL(ttl), distributed.WithUnlockTimeout(ttl / 10)}, tc.opts...)...)
			warm(t, m)
			if tc.after != nil {
				f.warmRenewal(t, m)
			}
			key := "late"
			if tc.before != nil {
				tc.before(p)
			}
			locked := time.Now()
			l, err := m.Lock(ctxFor(t, 10*time.Second), key)
			if err != nil {
				t.Fatalf("Lock = %v", err)
			}
			if tc.after != nil {
				tc.after(p)
			}
			select {
			case <-l.Done():
			case <-time.After(ttl + 10*time.Second):
				t.Fatalf("lease not lost %v after Lock (TTL %v)", ttl+10*time.Second, ttl)
			}
			lostAfter := time.Since(locked)
			if held, desc := f.state(key); held {
				t.Logf("lost while Redis still held the key: %s", desc)
			}
			p.SetLatency(0, 0)
			err = l.Unlock()
			unlocked := time.Since(locked)
			if !errors.Is(err, mutex.ErrLost) {
				t.Errorf("Unlock of the lost lease = %v; want ErrLost", err)
			}
			if err := l.Err(); !errors.Is(err, mutex.ErrLost) {
				t.Errorf("Err() = %v; want ErrLost", err)
			}
			// Until heldUntil the key is the lease's in Redis unless
			// released: by now it must be gone (a release deletes it) or
			// a free marker, not the holding.
			v, gerr := f.admin.Get(context.Background(), f.lockKey(key)).Result()
			checked := time.Since(locked)
			switch {
			case checked > tc.heldUntil:
				t.Logf("inconclusive: checked %v after Lock, when the key may have expired anyway", checked)
			case errors.Is(gerr, redis.Nil):
				v = "<released>"
			case gerr != nil:
				t.Fatalf("GET = %v", gerr)
			case !strings.HasPrefix(v, "~"):
				t.Errorf("lock key = %q (PTTL %v) %v after Lock, when Unlock of the lost lease had returned; want it released: the lease's holding is still there",
					v, f.admin.PTTL(context.Background(), f.lockKey(key)).Val(), checked)
			}
			t.Logf("lost %v after Lock (TTL %v), Unlock returned %v after Lock with %v; lock key then %q",
				lostAfter.Round(time.Millisecond), ttl, unlocked.Round(time.Millisecond), err, v)
			f.checkReports(t)
		})
	}
}

// TestUnlockRacesExpiry: with
// WithoutRenewal and a short TTL, Unlock races the expiry of the lease,
// many times. The two must agree: Unlock nil means Err() is ErrUnlocked
// (not lost); Unlock ErrLost means Err() says lost.
func TestUnlockRacesExpiry(t *testing.T) {
	leakcheck.Register(t)
	f := newFixture(t)
	const ttl = 20 * time.Millisecond
	m := f.dist(t, f.client(t, nil), distributed.WithTTL(ttl), distributed.WithoutRenewal())
	warm(t, m)
	counts := map[string]int{}
	for i := range iterations(300) {
		l, err := m.Lock(ctxFor(t, 10*time.Second), "race")
		if err != nil {
			t.Fatalf("Lock = %v", err)
		}
		// Hold for about the TTL, so that Unlock lands on either side of
		// the expiry.
		time.Sleep(ttl - 3*time.Millisecond + rand.N(6*time.Millisecond))
		uerr := l.Unlock()
		lerr := l.Err()
		switch {
		case uerr == nil:
			counts["nil"]++
			if !errors.Is(lerr, mutex.ErrUnlocked) || errors.Is(lerr, mutex.ErrLost) {
				t.Errorf("iteration %d: Unlock = nil but Err() = %v; want ErrUnlocked", i, lerr)
			}
		case errors.Is(uerr, mutex.ErrLost):
			counts["ErrLost"]++
			if !errors.Is(lerr, mutex.ErrLost) {
				t.Errorf("iteration %d: Unlock = %v but Err() = %v; want ErrLost", i, uerr, lerr)
			}
		default:
			counts["other"]++
			t.Errorf("iteration %d: Unlock = %v; want nil or ErrLost", i, uerr)
		}
		select {
		case <-l.Done():
		default:
			t.Errorf("iteration %d: Done() open after Unlock", i)
		}
	}
	t.Logf("Unlock racing a %v expiry: %v", ttl, counts)
	if counts["nil"] == 0 || counts["ErrLost"] == 0 {
		t.Logf("only one side of the race was seen: %v", counts)
	}
}
