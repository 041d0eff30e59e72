package distributed

import (
	"context"
	crand "crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sync"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

// Compile-time checks of the contract.
var (
	_ mutex.Keyed[string]         = (*Mutex[string])(nil)
	_ mutex.TokenReserver[string] = (*Mutex[string])(nil)
	_ mutex.Lease                 = (*lease)(nil)
)

// ErrWrongType is returned by Lock and TryLock when the key Redis would
// hold the lock in exists with another type than a string (something
// else wrote it), which no release would ever free.
var ErrWrongType = errors.New("distributed: lock key holds a non-lock value (WRONGTYPE)")

// MaxReserve is the largest number of fencing tokens one lease may
// reserve with [Mutex.LockN].
const MaxReserve = 1 << 30

var (
	//go:embed acquire.lua
	acquireLua    string
	acquireScript = redis.NewScript(acquireLua)

	//go:embed release.lua
	releaseLua    string
	releaseScript = redis.NewScript(releaseLua)

	//go:embed renew.lua
	renewLua    string
	renewScript = redis.NewScript(renewLua)
)

// Mutex is a keyed mutex held in Redis: one lock per key, shared by every
// Mutex that uses the same Redis (or Redis Cluster) and prefix, in any
// process. Each lock is a Redis key with a TTL; see the package
// documentation for the protocol.
//
// A Mutex is created by [New]; the zero value is not usable. It is safe
// for concurrent use and must not be copied. For any key, the Unlock of a
// lease synchronizes before the Lock or TryLock that next returns a
// lease for the same key, in any process, as long as the lease was not
// lost ([mutex.ErrLost]) before its Unlock.
type Mutex[K comparable] struct {
	*core
	encode  func(K) (string, error)
	lockers mutex.LockerSet[K]
}

// core is the part of a Mutex that does not depend on the key type.
type core struct {
	client redis.UniversalClient
	cfg    config
	ttlMs  int64 // cfg.ttl in whole milliseconds, as sent to Redis
	hub    hubRef

	closeCtx    context.Context // cancelled, cause ErrClosed, by Close
	cancelClose context.CancelCauseFunc
	closeOnce   sync.Once
	closeErr    error

	mu     sync.Mutex // guards closed, leases and calls.Add
	closed bool
	leases map[*lease]struct{} // leases held, released by Close
	calls  sync.WaitGroup      // Lock calls in flight
}

// New returns a Mutex whose locks live in the Redis behind client: a
// *redis.Client, a *redis.ClusterClient (every Redis name of one lock
// shares one hash tag, so one slot) or a *redis.Ring whose shards never
// move. client must not be nil. The Mutex does not own the client: close
// the Mutex before the client.
func New[K comparable](client redis.UniversalClient, opts ...Option) (*Mutex[K], error) {
	if client == nil {
		return nil, errors.New("distributed: New: nil Redis client")
	}
	if v := reflect.ValueOf(client); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil, fmt.Errorf("distributed: New: nil Redis client (%T)", client)
	}
	cfg := defaultConfig()
	for _, opt := range opts {
		if opt == nil {
			continue
		}
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	encode := defaultEncode[K]
	if cfg.encoder != nil {
		f, ok := cfg.encoder.(func(K) (string, error))
		if !ok {
			return nil, fmt.Errorf("distributed: New[%s]: WithKeyEncoder is for keys of another type (%T)",
				reflect.TypeFor[K](), cfg.encoder)
		}
		encode = f
	}
	// Redis takes whole milliseconds; validity must not outlast Redis's TTL.
	ttlMs := cfg.ttl.Milliseconds()
	cfg.ttl = time.Duration(ttlMs) * time.Millisecond
	c := &core{
		client: client,
		cfg:    cfg,
		ttlMs:  ttlMs,
		hub:    openHub(client, cfg.onError),
		leases: make(map[*lease]struct{}),
	}
	c.closeCtx, c.cancelClose = context.WithCancelCause(context.Background())
	return &Mutex[K]{core: c, encode: encode}, nil
}

// Lock blocks until the caller holds the lock for key, ctx is done, the
// Mutex is closed or Redis fails. On ctx end the error satisfies
// errors.Is(err, ctx.Err()); after Close, errors.Is(err, mutex.ErrClosed).
// Lock is LockN with n = 1.
func (m *Mutex[K]) Lock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "Lock", key, 1, false)
}

// TryLock takes the lock for key only if nobody holds it now; otherwise
// it returns an error satisfying errors.Is(err, mutex.ErrLocked). It
// costs one round trip.
func (m *Mutex[K]) TryLock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "TryLock", key, 1, true)
}

// LockN is Lock for a lease that reserves n consecutive fencing
// tokens, Token() to Token()+n-1 (see [mutex.TokenReserver]). n must be
// between 1 and [MaxReserve].
func (m *Mutex[K]) LockN(ctx context.Context, key K, n uint64) (mutex.Reservation, error) {
	return reservation(m.lock(ctx, "LockN", key, n, false))
}

// TryLockN is TryLock for a lease that reserves n consecutive fencing
// tokens, as LockN.
func (m *Mutex[K]) TryLockN(ctx context.Context, key K, n uint64) (mutex.Reservation, error) {
	return reservation(m.lock(ctx, "TryLockN", key, n, true))
}

func reservation(l mutex.Lease, err error) (mutex.Reservation, error) {
	if err != nil {
		return nil, err
	}
	return l.(*lease), nil
}

// Locker returns a [sync.Locker] for key, sharing state with every other
// Locker of m for the same key (see [mutex.LockerSet]). Its Lock retries
// Redis errors until it holds the lock, reporting each through
// [WithErrorHandler]; it panics if m is closed.
func (m *Mutex[K]) Locker(key K) sync.Locker {
	return m.lockers.Locker(m, key, func(k K, err error) {
		m.cfg.onError(fmt.Errorf("distributed: Locker: %w", err))
	})
}

func (m *Mutex[K]) lock(ctx context.Context, op string, key K, n uint64, try bool) (mutex.Lease, error) {
	if n < 1 || n > MaxReserve {
		return nil, fmt.Errorf("distributed: %s: n = %d; want 1 <= n <= %d", op, n, MaxReserve)
	}
	enc, err := m.encode(key)
	if err != nil {
		return nil, fmt.Errorf("distributed: %s: %w", op, err)
	}
	if err := checkEncoded(enc); err != nil {
		return nil, fmt.Errorf("distributed: %s: %w", op, err)
	}
	return m.core.lock(ctx, op, enc, n, try)
}

// describe quotes an encoded key for error messages, shortened if long.
func describe(enc string) string {
	const max = 64
	if len(enc) > max {
		return fmt.Sprintf("%q... (%d bytes)", enc[:max], len(enc))
	}
	return fmt.Sprintf("%q", enc)
}

func (c *core) lock(ctx context.Context, op, enc string, n uint64, try bool) (mutex.Lease, error) {
	if ctx == nil {
		return nil, fmt.Errorf("distributed: %s(%s): nil context.Context (use context.Background())", op, describe(enc))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("distributed: %s(%s): %w", op, describe(enc), err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, fmt.Errorf("distributed: %s(%s): %w", op, describe(enc), mutex.ErrClosed)
	}
	c.calls.Add(1)
	c.mu.Unlock()
	defer c.calls.Done()

	nm := namesFor(c.cfg.prefix, enc)
	var (
		l      *lease
		pttl   int64
		err    error
		joined subscription
	)
	if !try && c.cfg.spin == 0 {
		// Others of this process already wait on the key: join their
		// confirmed subscription first, and the wait's first attempt is
		// the only one (a hot key saves one command per Lock).
		joined = c.hub.Join(nm.channel)
	}
	if joined == nil {
		// The first attempt uses ctx as it is (one command, bounded by
		// the client's timeouts); only a wait needs a context that Close
		// cancels.
		l, pttl, err = c.acquire(ctx, nm, n)
	}
	lctx := ctx
	if joined != nil || (err == nil && l == nil) {
		if try {
			if pttl >= 0 {
				return nil, fmt.Errorf("distributed: %s(%s): %w (for up to %dms more)", op, describe(enc), mutex.ErrLocked, pttl)
			}
			return nil, fmt.Errorf("distributed: %s(%s): %w", op, describe(enc), mutex.ErrLocked)
		}
		var cancel context.CancelCauseFunc
		lctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		stop := context.AfterFunc(c.closeCtx, func() { cancel(mutex.ErrClosed) })
		defer stop()
		if c.cfg.spin > 0 {
			l, err = c.spinWait(lctx, nm, n)
		} else {
			l, err = c.pubsubWait(lctx, nm, n, joined)
		}
	}
	if err == nil {
		c.mu.Lock()
		if !c.closed {
			c.leases[l] = struct{}{}
			l.start()
			c.mu.Unlock()
			return l, nil
		}
		c.mu.Unlock()
		l.endClosed()
		err = mutex.ErrClosed
	}
	switch {
	case ctx.Err() != nil:
		if errors.Is(err, ctx.Err()) {
			return nil, fmt.Errorf("distributed: %s(%s): %w", op, describe(enc), err)
		}
		return nil, fmt.Errorf("distributed: %s(%s): %w (last error: %w)", op, describe(enc), ctx.Err(), err)
	case errors.Is(context.Cause(lctx), mutex.ErrClosed) || errors.Is(err, mutex.ErrClosed):
		return nil, fmt.Errorf("distributed: %s(%s): %w", op, describe(enc), mutex.ErrClosed)
	}
	return nil, fmt.Errorf("distributed: %s(%s): %w", op, describe(enc), err)
}

// spinWait retries every spin interval, ±50% jitter, until ctx ends.
func (c *core) spinWait(ctx context.Context, nm names, n uint64) (*lease, error) {
	t := time.NewTimer(0)
	<-t.C
	defer t.Stop()
	for {
		t.Reset(c.cfg.spin/2 + rand.N(c.cfg.spin+1))
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		l, _, err := c.acquire(ctx, nm, n)
		if err != nil || l != nil {
			return l, err
		}
	}
}

// pubsubWait subscribes to the key's release channel (returning once
// Redis confirmed it, so no later release can be missed), tries again,
// then sleeps until a wake, min(the holder's PTTL, the poll bound), or
// ctx, and loops. A wake it received but did not use (ctx ended, or
// Redis failed) is passed on to another waiter of this process.
//
// sub, if not nil, is a subscription already joined (see hubRef.Join).
func (c *core) pubsubWait(ctx context.Context, nm names, n uint64, sub subscription) (*lease, error) {
	var err error
	if sub == nil {
		sub, err = c.hub.Subscribe(ctx, nm.channel)
	}
	if err != nil {
		if isHubClosed(err) {
			return nil, mutex.ErrClosed
		}
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("subscribe to %s: %w", nm.channel, err)
	}
	woken := false // holding a wake not yet used by an acquire attempt
	defer func() {
		if woken {
			sub.Pass()
		}
		sub.Close()
	}()
	t := time.NewTimer(0)
	<-t.C
	defer t.Stop()
	for {
		l, pttl, err := c.acquire(ctx, nm, n)
		if err != nil {
			return nil, err
		}
		woken = false
		if l != nil {
			return l, nil
		}
		d := c.cfg.pollInterval
		if p := time.Duration(pttl) * time.Millisecond; pttl >= 0 && p < d {
			d = max(p, time.Millisecond) // -1: no expiry, wait the bound
		}
		t.Reset(d)
		select {
		case <-sub.C():
			woken = true
			if !t.Stop() {
				<-t.C
			}
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// acquire runs the acquire script once: it returns a lease, or the
// holder's PTTL in milliseconds (-1: no expiry).
func (c *core) acquire(ctx context.Context, nm names, n uint64) (*lease, int64, error) {
	start := time.Now()
	owner := newOwner()
	res, err := acquireScript.Run(ctx, c.client, []string{nm.lock, nm.fence}, owner, c.ttlMs, n).Int64Slice()
	if err != nil {
		c.failed(err)
		if redis.HasErrorPrefix(err, "WRONGTYPE") {
			return nil, 0, fmt.Errorf("%w: %w", ErrWrongType, err)
		}
		return nil, 0, fmt.Errorf("acquire: %w", err)
	}
	if len(res) != 2 {
		return nil, 0, fmt.Errorf("acquire: unexpected reply %v", res)
	}
	if res[0] != 1 {
		return nil, res[1], nil
	}
	return newLease(c, nm, owner, uint64(res[1]), n, start), 0, nil
}

// newOwner returns a random 128-bit owner id, one per lease.
func newOwner() string {
	var b [16]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Close releases every lease still held (in Redis; each ends with an Err
// satisfying both errors.Is(err, mutex.ErrLost) and errors.Is(err,
// mutex.ErrClosed)), makes pending and later Lock calls return an error
// satisfying errors.Is(err, mutex.ErrClosed), stops every background
// goroutine and drops the Mutex's reference to the shared Pub/Sub
// connection. It does not close the Redis client. Close is idempotent;
// it returns once all of this is done.
func (m *Mutex[K]) Close() error { return m.core.close() }

func (c *core) close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.cancelClose(mutex.ErrClosed)
		c.calls.Wait()
		c.mu.Lock()
		held := make([]*lease, 0, len(c.leases))
		for l := range c.leases {
			held = append(held, l)
		}
		c.mu.Unlock()
		var wg sync.WaitGroup
		for _, l := range held {
			wg.Go(l.endClosed)
		}
		wg.Wait()
		c.closeErr = c.hub.Close()
	})
	return c.closeErr
}

// failed is told about every error of a command to Redis. On a Redis
// Cluster, an error that is not a reply from the server (a dead or
// unreachable master, a timeout) makes the client reload its slot map:
// go-redis alone reloads it only on MOVED or periodically, so after a
// failover it would keep sending this slot's commands to the dead master.
// The reload is asynchronous and deduplicated by go-redis.
func (c *core) failed(err error) {
	cc, ok := c.client.(*redis.ClusterClient)
	if !ok || err == nil || errors.Is(err, context.Canceled) {
		return
	}
	var reply redis.Error
	if errors.As(err, &reply) && !redis.HasErrorPrefix(err, "CLUSTERDOWN") && !redis.HasErrorPrefix(err, "TRYAGAIN") {
		return // an answer from a live server: nothing moved
	}
	cc.ReloadState(context.Background())
}

func (c *core) forget(l *lease) {
	c.mu.Lock()
	delete(c.leases, l)
	c.mu.Unlock()
}
