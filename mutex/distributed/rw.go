package distributed

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"github.com/keyedmutex/keyedmutex/internal/rlocker"
	"strings"
	"sync"

	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

// Compile-time checks of the contract.
var (
	_ mutex.RWKeyed[string]       = (*RWMutex[string])(nil)
	_ mutex.TokenReserver[string] = (*RWMutex[string])(nil)
	_ remote.Lease                = (*lease)(nil)
)

// The scripts of an RWMutex: rwlib.lua holds what rwacquire.lua and
// rwrelease.lua share beyond lib.lua; both are spliced in after the fast
// paths, as for the Mutex's scripts.
var (
	//go:embed rwlib.lua
	rwLibLua string
	//go:embed rwacquire.lua
	rwAcquireLua string
	//go:embed rwrelease.lua
	rwReleaseLua string
	//go:embed rwrenew.lua
	rwRenewLua string
)

func newRWScripts(ttlMs int64, prefix string) scripts {
	head := fmt.Sprintf("local TTL, P = %d, %d\n", ttlMs, len(prefix))
	splice := func(s string) string { return head + strings.Replace(s, "--@lib\n", libLua+rwLibLua, 1) }
	return scripts{
		acquire: redis.NewScript(splice(rwAcquireLua)),
		release: redis.NewScript(splice(rwReleaseLua)),
		renew:   redis.NewScript(head + rwRenewLua),
	}
}

// rwNamesFor derives the Redis names of an RWMutex's key: the same hash
// tag as a Mutex's (see namesFor), other names, so that a Mutex and an
// RWMutex of the same key are different locks.
func rwNamesFor(prefix, encoded string) names {
	tag := escapeTag(encoded)
	return names{
		lock:    prefix + "rw:{" + tag + "}",
		queue:   prefix + "rwq:{" + tag + "}",
		readers: prefix + "rwr:{" + tag + "}",
		grants:  prefix + "rwgrant:{" + tag + "}:",
	}
}

// namesFor returns the names of an encoded key: a Mutex's or an
// RWMutex's.
func (c *core) namesFor(enc string) names {
	if c.rw {
		return rwNamesFor(c.cfg.prefix, enc)
	}
	return namesFor(c.cfg.prefix, enc)
}

// namesOfChannel returns the names of the key whose grant channel of
// this Mutex or RWMutex is channel.
func (c *core) namesOfChannel(channel string) (names, bool) {
	if !c.rw {
		return namesOfChannel(c.cfg.prefix, channel, c.id)
	}
	const open = "rwgrant:{"
	grants, ok := strings.CutSuffix(channel, c.id)
	if !ok || !strings.HasPrefix(grants, c.cfg.prefix+open) || !strings.HasSuffix(grants, "}:") {
		return names{}, false
	}
	tag := grants[len(c.cfg.prefix)+len(open) : len(grants)-len("}:")]
	p := c.cfg.prefix
	return names{lock: p + "rw:{" + tag + "}", queue: p + "rwq:{" + tag + "}", readers: p + "rwr:{" + tag + "}", grants: grants}, true
}

// keys are the KEYS of an acquire or release script.
func (nm names) keys() []string {
	if nm.readers == "" {
		return []string{nm.lock, nm.queue}
	}
	return []string{nm.lock, nm.queue, nm.readers}
}

// renewKeys are the KEYS of a renew script.
func (nm names) renewKeys() []string {
	if nm.readers == "" {
		return []string{nm.lock}
	}
	return []string{nm.lock, nm.readers}
}

// RWMutex is a keyed reader/writer mutex held in Redis: for each key,
// any number of readers or one writer, in any process that uses the same
// Redis (or Redis Cluster) and prefix. It implements [mutex.RWKeyed]:
// waiters queue in Redis in FIFO order, consecutive readers at the head
// of the queue are admitted together, and a waiting writer holds back
// every reader that comes after it. See "Read-write locks" in the package
// documentation for the protocol.
//
// An RWMutex and a [Mutex] of the same key are different locks: they
// use different Redis names.
//
// Read and write leases are leases like a Mutex's: renewed while held
// (in the same batched renewals), lost and reported the same way, with
// fencing tokens (see [mutex.RWKeyed] for the rule they follow). The
// write side also reserves blocks of tokens ([RWMutex.LockN]).
//
// An RWMutex is created by [NewRW]; the zero value is not usable. It is
// safe for concurrent use and must not be copied.
type RWMutex[K comparable] struct {
	*core
	encode   func(K) (string, error)
	lockers  lockutil.LockerSet[K]
	rlockers rlocker.Set[K]
}

// NewRW returns an RWMutex whose locks live in the Redis behind client,
// with the options of [New] (which apply to both sides: the TTL,
// renewal, poll interval, label, prefix...), except [WithSpin]: a
// spinning waiter does not queue, so a writer could be starved by a
// stream of readers; NewRW refuses it. client is as for New.
func NewRW[K comparable](client redis.UniversalClient, opts ...Option) (*RWMutex[K], error) {
	var encode func(K) (string, error)
	c, err := newCore("NewRW", client, opts, true, func(cfg *config) (err error) {
		if cfg.spin != 0 {
			return errors.New("distributed: NewRW: WithSpin is not supported: readers and writers wait in the key's queue, in order, so that a writer is not starved by readers")
		}
		encode, err = encoderFor[K](cfg.encoder)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &RWMutex[K]{core: c, encode: encode}, nil
}

// Lock blocks until the caller holds the write lock for key (alone), ctx
// is done, the RWMutex is closed or Redis fails, as [Mutex.Lock].
func (m *RWMutex[K]) Lock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "Lock", key, 1, false)
}

// TryLock takes the write lock for key only if nobody holds it (no reader
// either) and nobody waits for it; otherwise it returns an error
// satisfying errors.Is(err, mutex.ErrLocked). It never queues.
func (m *RWMutex[K]) TryLock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "TryLock", key, 1, true)
}

// LockN is Lock for a write lease that reserves up to n consecutive
// fencing tokens, as [Mutex.LockN].
func (m *RWMutex[K]) LockN(ctx context.Context, key K, n uint64) (mutex.Reservation, error) {
	if err := checkN("LockN", n); err != nil {
		return nil, err
	}
	return reservation(m.lock(ctx, "LockN", key, n, false))
}

// TryLockN is TryLock for a write lease that reserves up to n
// consecutive fencing tokens, as [Mutex.LockN].
func (m *RWMutex[K]) TryLockN(ctx context.Context, key K, n uint64) (mutex.Reservation, error) {
	if err := checkN("TryLockN", n); err != nil {
		return nil, err
	}
	return reservation(m.lock(ctx, "TryLockN", key, n, true))
}

// RLock blocks until the caller holds the read lock for key, ctx is
// done, the RWMutex is closed or Redis fails. It is admitted at once if
// no writer holds the key and nobody waits; otherwise it waits its turn
// in the queue, behind every writer that queued before it.
func (m *RWMutex[K]) RLock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "RLock", key, 0, false)
}

// TryRLock takes the read lock for key only if no writer holds it and
// nobody waits for it; otherwise it returns an error satisfying
// errors.Is(err, mutex.ErrLocked). It never queues.
func (m *RWMutex[K]) TryRLock(ctx context.Context, key K) (mutex.Lease, error) {
	return m.lock(ctx, "TryRLock", key, 0, true)
}

// Locker returns a [sync.Locker] whose Lock and Unlock take and release
// the write lock for key, as [Mutex.Locker].
func (m *RWMutex[K]) Locker(key K) sync.Locker {
	if m.core == nil {
		panic(errRWNotNew)
	}
	return m.lockers.Locker(m, key, func(k K, err error) {
		m.logger().Warn("keyedmutex: Locker: Lock failed, retrying", "err", err)
	})
}

// RLocker returns a [sync.Locker] whose Lock and Unlock take and release
// the read lock for key, as [Mutex.Locker] does for a Mutex's lock.
func (m *RWMutex[K]) RLocker(key K) sync.Locker {
	if m.core == nil {
		panic(errRWNotNew)
	}
	return m.rlockers.Locker(m, key, func(k K, err error) {
		m.logger().Warn("keyedmutex: RLocker: RLock failed, retrying", "err", err)
	})
}

// Close releases every read and write lease still held and ends every
// pending call, as [Mutex.Close].
func (m *RWMutex[K]) Close() error {
	if m.core == nil {
		return errRWNotNew
	}
	return m.core.close()
}

var errRWNotNew = errors.New("distributed: RWMutex not created by NewRW (the zero value is not usable): use NewRW")

func checkN(op string, n uint64) error {
	if n < 1 || n > MaxReserve {
		return fmt.Errorf("distributed: %s: n = %d; want 1 <= n <= %d", op, n, MaxReserve)
	}
	return nil
}

// lock runs one acquire: n = 0 for a reader, else a writer's tokens.
func (m *RWMutex[K]) lock(ctx context.Context, op string, key K, n uint64, try bool) (mutex.Lease, error) {
	if m.core == nil {
		return nil, errRWNotNew
	}
	enc, err := m.encode(key)
	if err == nil {
		err = checkEncoded(enc)
	}
	if err != nil {
		return nil, fmt.Errorf("distributed: %s: %w: %w", op, mutex.ErrInvalidKey, err)
	}
	l, err := m.core.lockEncoded(ctx, op, enc, n, try)
	if err != nil {
		return nil, err
	}
	return l, nil
}
