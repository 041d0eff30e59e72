package distributed

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"github.com/keyedmutex/keyedmutex/internal/notify"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

// Compile-time checks of the contract.
var (
	_ mutex.Keyed[string]         = (*Mutex[string])(nil)
	_ mutex.TokenReserver[string] = (*Mutex[string])(nil)
	_ mutex.Reservation           = (*lease)(nil)
	_ remote.Lease                = (*lease)(nil)
	_ remote.Watcher              = (*lease)(nil)
)

// ErrWrongType is returned by Lock, TryLock and Inspect when a key of
// the lock exists with a type the library never writes: the lock key not
// a string and without expiry (which no release would ever free), or the
// queue key not a sorted set. Something else wrote it; the error names
// the keys.
var ErrWrongType = errors.New("distributed: a key of the lock holds a value of another type (WRONGTYPE)")

// isWrongType reports whether err is a WRONGTYPE reply, also one a
// script's redis.call raised (some servers, miniredis among them, wrap
// that in another error reply).
func isWrongType(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.Contains(re.Error(), "WRONGTYPE")
}

// wrongType is the error for a WRONGTYPE reply err about the keys of nm.
func wrongType(nm names, err error) error {
	return fmt.Errorf("%w: lock key %s (a string) or queue key %s (a sorted set): %w", ErrWrongType, nm.lock, nm.queue, err)
}

// MaxReserve is the largest number of fencing tokens one lease may
// reserve with [Mutex.LockN].
const MaxReserve = 1 << 30

// Mutex is a keyed mutex held in Redis: one lock per key, shared by every
// Mutex that uses the same Redis (or Redis Cluster) and prefix, in any
// process. Each lock is a Redis key with a TTL, and its waiters queue in
// Redis in FIFO order; see the package documentation for the protocol.
//
// A Mutex is created by [New]; the zero value is not usable. It is safe
// for concurrent use and must not be copied. For any key, the Unlock of a
// lease synchronizes before the Lock or TryLock that next returns a
// lease for the same key, in any process, as long as the lease was not
// lost ([mutex.ErrLost]) before its Unlock.
type Mutex[K comparable] struct {
	*core
	encode  func(K) (string, error)
	lockers lockutil.LockerSet[K]
}

// core is the part of a Mutex that does not depend on the key type.
type core struct {
	client  redis.UniversalClient
	cfg     config
	ttlMs   int64  // cfg.ttl in whole milliseconds, as sent to Redis
	grantMs int64  // TTL of a lock handed to a waiter: min(ttl, 3·poll)
	liveMs  int64  // a queue entry lives this long without a refresh: 3·poll
	id      string // names this Mutex's grant channels
	hub     *notify.Hub
	sc      scripts     // this Mutex's scripts (its TTL is written in them)
	single  bool        // client is a *redis.Client: one server, one connection per pipeline
	rw      bool        // the core of an RWMutex: its names and scripts (see rw.go)
	plain   atomic.Bool // single, and a script call succeeded: uncontended tries go plain
	exec    executor    // runs the Redis commands (pipelined, bounded in flight)
	renew   renewer
	check   serverCheck // the servers' settings, checked once
	// lastFail is the last transport error a command or the Pub/Sub
	// connection met, named by a loss whose renewal got no reply.
	lastFail atomic.Pointer[failure]

	closeCtx    context.Context // cancelled by Close
	cancelClose context.CancelFunc
	closing     <-chan struct{} // closeCtx.Done(): waiting calls give up
	closeOnce   sync.Once

	mu     sync.Mutex // guards closed, leases and calls.Add
	closed bool
	leases map[string]*lease // by owner id: the leases held, released by Close
	calls  sync.WaitGroup    // Lock calls in flight
}

// New returns a Mutex whose locks live in the Redis behind client: a
// *redis.Client, a *redis.ClusterClient (every Redis name of one lock
// shares one hash tag, so one slot) or a *redis.Client from
// redis.NewFailoverClient (Sentinel). A *redis.Ring is refused (its
// Pub/Sub cannot follow the shard of each grant channel): use a Mutex per
// server, or a Redis Cluster. client must not be nil. A key type that the default encoding
// cannot encode needs [WithKeyEncoder]. The Mutex does not own the
// client: close the Mutex before the client.
func New[K comparable](client redis.UniversalClient, opts ...Option) (*Mutex[K], error) {
	var encode func(K) (string, error)
	c, err := newCore("New", client, opts, false, func(cfg *config) (err error) {
		encode, err = encoderFor[K](cfg.encoder)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &Mutex[K]{core: c, encode: encode}, nil
}

// newCore is New without the key type: ctor names the constructor in
// errors; rw makes the core of an RWMutex (its names and scripts); check
// vets the configuration before anything is opened.
func newCore(ctor string, client redis.UniversalClient, opts []Option, rw bool, check func(*config) error) (*core, error) {
	if client == nil {
		return nil, fmt.Errorf("distributed: %s: nil Redis client", ctor)
	}
	if lockutil.IsNilPointer(client) {
		return nil, fmt.Errorf("distributed: %s: nil Redis client (%T)", ctor, client)
	}
	if _, ok := client.(*redis.Ring); ok {
		return nil, fmt.Errorf("distributed: %s: a *redis.Ring is not supported (its Pub/Sub cannot follow the shard of each grant channel): use a *redis.Client per Redis server, or a Redis Cluster through a *redis.ClusterClient", ctor)
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
	if err := check(&cfg); err != nil {
		return nil, err
	}
	// Redis takes whole milliseconds; validity must not outlast Redis's TTL.
	ttlMs := cfg.ttl.Milliseconds()
	cfg.ttl = time.Duration(ttlMs) * time.Millisecond
	liveMs := max(3*cfg.pollInterval.Milliseconds(), 1)
	c := &core{
		client:  client,
		cfg:     cfg,
		ttlMs:   ttlMs,
		grantMs: min(ttlMs, liveMs),
		liveMs:  liveMs,
		sc:      newScripts(ttlMs, cfg.prefix),
		single:  isSingle(client),
		rw:      rw,
		id:      newID(8),
		leases:  make(map[string]*lease),
	}
	c.closeCtx, c.cancelClose = context.WithCancel(context.Background())
	c.closing = c.closeCtx.Done()
	hubOpts := []notify.Option{notify.WithOrphanHandler(c.orphan), notify.WithReconnectHandler(func(cause error) {
		c.lastFail.Store(&failure{err: cause, at: time.Now()})
		c.observe(context.Background(), mutex.Reconnect, "", mutex.Event{Err: cause})
	})}
	if cfg.logger != nil {
		hubOpts = append(hubOpts, notify.WithLogger(cfg.logger))
	}
	if rw {
		c.sc, c.single = newRWScripts(ttlMs, cfg.prefix), false
	}
	var err error
	if c.hub, err = notify.Open(client, hubOpts...); err != nil {
		return nil, err
	}
	c.exec = executor{client: client, failed: c.transportFailed}
	c.renew = renewer{c: c, tick: max(cfg.ttl/12, time.Millisecond)}
	return c, nil
}

// isSingle reports whether client talks to one server: a *redis.Client
// (Sentinel's failover client is one). Through it, the commands of one
// pipeline run in order on one connection, so the TIME that issues a
// plain acquire's tokens runs after its SET (see attemptPlain).
func isSingle(client redis.UniversalClient) bool {
	_, ok := client.(*redis.Client)
	return ok
}

// plainOK is told that an acquire script ran: the client may run
// scripts (an ACL that forbids them fails the first Lock, not the first
// Unlock), so uncontended tries may go plain from now on.
func (c *core) plainOK() {
	if c.single && !c.plain.Load() {
		c.plain.Store(true)
	}
}

// encoderFor returns the key encoder: the one given to WithKeyEncoder,
// or the default one if K has a default encoding.
func encoderFor[K comparable](given any) (func(K) (string, error), error) {
	if given != nil {
		f, ok := given.(func(K) (string, error))
		if !ok {
			return nil, fmt.Errorf("distributed: New[%s]: WithKeyEncoder is for keys of another type (%T)",
				reflect.TypeFor[K](), given)
		}
		return f, nil
	}
	if t := reflect.TypeFor[K](); !defaultEncodable(t) {
		return nil, fmt.Errorf("distributed: New[%s]: no default encoding for keys of type %s: use WithKeyEncoder", t, t)
	}
	return defaultEncode[K], nil
}

// Lock blocks until the caller holds the lock for key, ctx is done, the
// Mutex is closed or Redis fails. On ctx end the error satisfies
// errors.Is(err, ctx.Err()); after Close, errors.Is(err, mutex.ErrClosed).
// Waiters are served in FIFO order, across processes.
func (m *Mutex[K]) Lock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "Lock", key, 1, false)
}

// TryLock takes the lock for key only if nobody holds it and nobody
// waits for it now; otherwise it returns an error satisfying
// errors.Is(err, mutex.ErrLocked). It never queues; it costs one round
// trip when it takes the lock, two when it does not (the second says
// why: the holder's remaining TTL, or a value the library did not write).
func (m *Mutex[K]) TryLock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "TryLock", key, 1, true)
}

// LockN is Lock for a lease that reserves up to n consecutive fencing
// tokens, Token() to Token()+Reserved()-1 (see [mutex.TokenReserver]):
// at most 1000, as a block starts at the Redis server's clock in
// microseconds and runs at most 1ms ahead of it. n must be between 1 and
// [MaxReserve].
func (m *Mutex[K]) LockN(ctx context.Context, key K, n uint64) (mutex.Reservation, error) {
	return reservation(m.lock(ctx, "LockN", key, n, false))
}

// TryLockN is TryLock for a lease that reserves up to n consecutive
// fencing tokens, as LockN.
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
// Locker of m for the same key. Its Lock retries Redis errors until it
// holds the lock, reporting each through [WithLogger]. On an invalid key
// it panics; after Close it reports [mutex.ErrClosed] to the logger and
// blocks until the process ends, as Lock of a sync.Mutex that nobody
// will unlock does (a panic would crash a process in the middle of its
// shutdown; use Lock with a ctx to get the error).
func (m *Mutex[K]) Locker(key K) sync.Locker {
	if m.core == nil {
		panic(errNotNew)
	}
	return m.lockers.Locker(m, key, func(k K, err error) {
		m.logger().Warn("keyedmutex: Locker: Lock failed, retrying", "err", err)
	})
}

func (m *Mutex[K]) lock(ctx context.Context, op string, key K, n uint64, try bool) (mutex.Lease, error) {
	if m.core == nil {
		return nil, errNotNew
	}
	if n < 1 || n > MaxReserve {
		return nil, fmt.Errorf("distributed: %s: n = %d; want 1 <= n <= %d", op, n, MaxReserve)
	}
	enc, err := m.encode(key)
	if err == nil {
		err = checkEncoded(enc)
	}
	if err != nil {
		return nil, lockutil.KeyError("distributed", op, key, fmt.Errorf("%w: %w", mutex.ErrInvalidKey, err))
	}
	l, err := m.core.lockEncoded(ctx, op, enc, n, try)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// errNotNew is the error of a Mutex that New did not make.
var errNotNew = errors.New("distributed: Mutex not created by New (the zero value is not usable): use New")

// opErr is the one error wrapper of this package (see
// [lockutil.KeyError]): the operation and the key, as encoded (for a
// string key, the user's key), then the cause.
func opErr(op, enc string, err error) error {
	return lockutil.KeyError("distributed", op, enc, err)
}

// newID returns n random bytes in hex.
func newID(n int) string {
	b := make([]byte, n)
	crand.Read(b)
	return hex.EncodeToString(b)
}

// Close releases every lease still held (in Redis; each ends with an Err
// satisfying both errors.Is(err, mutex.ErrLost) and errors.Is(err,
// mutex.ErrClosed)), makes pending and later Lock calls return an error
// satisfying errors.Is(err, mutex.ErrClosed) (a pending Lock leaves its
// queue entry and releases whatever it may have been granted), stops
// every background goroutine and drops the Mutex's reference to the
// shared Pub/Sub connection. It does not close the Redis client. Close
// returns within the unlock timeout ([WithUnlockTimeout]) even if Redis
// does not answer; releases that did not finish by then expire with
// their TTL. Other calls still in flight (a waiter that gave up leaving
// the queue) are waited for only while Redis answers: with nothing held
// and a Redis that does not answer, Close returns within a quarter
// second, and those calls end in the background within the client's
// timeouts. Close is idempotent.
func (m *Mutex[K]) Close() error {
	if m.core == nil {
		return errNotNew
	}
	return m.core.close()
}

func (c *core) close() error {
	c.closeOnce.Do(func() {
		// One deadline for all of it; a context's Done stays closed once
		// it passed (a timer's channel fires once).
		dctx, cancel := context.WithTimeout(context.Background(), c.cfg.unlockTimeout)
		defer cancel()
		deadline := dctx.Done()
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		c.cancelClose()
		waitOr(deadline, func() { c.calls.Wait() })
		c.mu.Lock()
		held := make([]*lease, 0, len(c.leases))
		for _, l := range c.leases {
			held = append(held, l)
		}
		c.mu.Unlock()
		c.releaseAll(held, deadline)
		c.renew.stop()
		// No orphan releases after this; Redis stalled, it may end
		// after Close returned (within notify's grace, a second).
		waitOr(deadline, func() { _ = c.hub.Close() })
		// The calls still in flight (a waiter leaving the queue, say)
		// are waited for while Redis answers them; with nothing held,
		// a Redis that does not answer costs Close no more than
		// closeStall.
		c.exec.drain(deadline, min(closeStall, c.cfg.unlockTimeout))
	})
	return nil
}

// closeStall is how long Close waits for background calls in flight while
// none of them finishes: Redis is then taken not to answer.
const closeStall = 250 * time.Millisecond

// releaseAll releases the leases for Close, all at once (the executor
// pipelines the calls), waiting for them until deadline.
func (c *core) releaseAll(held []*lease, deadline <-chan struct{}) {
	calls := make([]*call, len(held))
	var submit []*call
	for i, l := range held {
		if calls[i] = l.closeCall(); calls[i] != nil {
			submit = append(submit, calls[i])
		}
	}
	c.exec.submit(submit...)
	expired := false
	for i, l := range held {
		if calls[i] == nil {
			continue
		}
		if !expired {
			select {
			case <-calls[i].done:
			case <-deadline:
				expired = true
			}
		}
		l.closed(calls[i], !expired || isClosed(calls[i].done))
	}
}

// waitOr runs f in a goroutine and waits for it or for deadline.
func waitOr(deadline <-chan struct{}, f func()) {
	done := make(chan struct{})
	go func() {
		f()
		close(done)
	}()
	select {
	case <-done:
	case <-deadline:
	}
}

// enter registers a Lock call; false after Close.
func (c *core) enter() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.calls.Add(1)
	return true
}

// register records l as held, for Close and for the orphan handler; after
// Close it returns false.
func (c *core) register(l *lease) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.leases[l.owner] = l
	return true
}

func (c *core) forget(l *lease) {
	c.mu.Lock()
	if c.leases[l.owner] == l {
		delete(c.leases, l.owner)
	}
	c.mu.Unlock()
}

// holds reports whether owner is the owner id of a lease held here.
func (c *core) holds(owner string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leases[owner] != nil
}

// publishSharded reports whether grants to this Mutex are published
// with SPUBLISH (a Cluster with sharded pub/sub) rather than PUBLISH: its
// queue entries say so. The answer is cached once known.
func (c *core) publishSharded(ctx context.Context) (bool, error) {
	sharded, err := c.hub.Sharded(ctx) // cached by the hub after a success
	if err != nil {
		c.reloadSlotsOn(err)
		return false, err
	}
	return sharded, nil
}

// failure is a transport error and when it was seen.
type failure struct {
	err error
	at  time.Time
}

// transportFailed is told about every transport error of a command.
func (c *core) transportFailed(err error) {
	c.lastFail.Store(&failure{err: err, at: time.Now()})
	c.reloadSlotsOn(err)
}

// noReply is the error of a renewal sent at sent that got no reply before
// its lease's validity ended: it names the last transport error seen
// since a TTL before it, if any (the client may still be retrying a
// refused connection, say).
func (c *core) noReply(sent time.Time) error {
	if f := c.lastFail.Load(); f != nil && !f.at.Before(sent.Add(-c.cfg.ttl)) {
		return fmt.Errorf("no reply from Redis before the lease's validity ended (%w); the last transport error seen: %w", context.DeadlineExceeded, f.err)
	}
	return fmt.Errorf("no reply from Redis before the lease's validity ended: %w", context.DeadlineExceeded)
}

// reloadSlotsOn is told about every transport error of a command. On a
// Redis Cluster, an error that is not a reply from the server (a dead or
// unreachable master, a timeout) makes the client reload its slot map:
// go-redis alone reloads it only on MOVED or periodically, so after a
// failover it would keep sending this slot's commands to the dead master.
// The reload is asynchronous and deduplicated by go-redis.
func (c *core) reloadSlotsOn(err error) {
	cc, ok := c.client.(*redis.ClusterClient)
	if !ok || err == nil || errors.Is(err, context.Canceled) || isReply(err) {
		return
	}
	cc.ReloadState(context.Background())
}

// observe tells the observer, if any, about e.
func (c *core) observe(ctx context.Context, kind mutex.EventKind, enc string, e mutex.Event) {
	if c.cfg.obs == nil {
		return
	}
	e.Kind, e.Backend, e.Key = kind, "distributed", enc
	c.cfg.obs.Observe(ctx, e)
}

func (c *core) logger() *slog.Logger { return lockutil.Logger(c.cfg.logger) }
