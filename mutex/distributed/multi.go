package distributed

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

var (
	_ remote.PrefixLocker[string] = (*Mutex[string])(nil)
	_ mutex.Orderer[string]       = (*Mutex[string])(nil)
	_ mutex.SetLocker[string]     = (*Mutex[string])(nil)
	_ mutex.SetUnlocker           = (*Mutex[string])(nil)
)

//go:embed acquireall.lua
var acquireAllLua string

// acquireAllScripts caches acquireall.lua per TTL and prefix length
// (written into its text, as for the other scripts).
var acquireAllScripts sync.Map // [2]int64 -> *redis.Script

func (c *core) acquireAllScript() *redis.Script {
	k := [2]int64{c.ttlMs, int64(len(c.cfg.prefix))}
	if s, ok := acquireAllScripts.Load(k); ok {
		return s.(*redis.Script)
	}
	s, _ := acquireAllScripts.LoadOrStore(k, redis.NewScript(fmt.Sprintf("local TTL, P = %d, %d\n", c.ttlMs, len(c.cfg.prefix))+acquireAllLua))
	return s.(*redis.Script)
}

// LockOrder returns the distinct keys of keys in the lock order of every
// Mutex: by the bytes of the encoded key (the default encoding, or that
// of [WithKeyEncoder]), the same in every process that shares the Redis.
// Two keys that encode to the same string are one lock, and count once
// (the first is kept). A key that cannot be encoded, or is empty or
// longer than [MaxKeyLen] encoded, is an error naming it, satisfying
// errors.Is(err, [mutex.ErrInvalidKey]). See [mutex.LockAll].
func (m *Mutex[K]) LockOrder(keys []K) ([]K, error) {
	if m.core == nil {
		return nil, errNotNew
	}
	return lockOrder(m.encode, keys)
}

// LockOrder is [Mutex.LockOrder] for an RWMutex: the same order (the
// bytes of the encoded key), so [mutex.LockAll] of write locks takes the
// keys of a set in one order in every process.
func (m *RWMutex[K]) LockOrder(keys []K) ([]K, error) {
	if m.core == nil {
		return nil, errRWNotNew
	}
	return lockOrder(m.encode, keys)
}

// lockOrder sorts the distinct keys of keys by their encoding, refusing
// a key that cannot be locked.
func lockOrder[K comparable](encode func(K) (string, error), keys []K) ([]K, error) {
	encs, err := encodeAll(encode, keys)
	if err != nil {
		return nil, err
	}
	type kv struct {
		key K
		enc string
	}
	all := make([]kv, len(keys))
	for i := range keys {
		all[i] = kv{keys[i], encs[i]}
	}
	slices.SortStableFunc(all, func(a, b kv) int { return strings.Compare(a.enc, b.enc) })
	out := make([]K, 0, len(all))
	for i, x := range all {
		if i > 0 && x.enc == all[i-1].enc {
			continue
		}
		out = append(out, x.key)
	}
	return out, nil
}

func encodeAll[K comparable](encode func(K) (string, error), keys []K) ([]string, error) {
	encs := make([]string, len(keys))
	for i, k := range keys {
		enc, err := encode(k)
		if err == nil {
			err = checkEncoded(enc)
		}
		if err != nil {
			return nil, fmt.Errorf("distributed: LockAll: key %v: %w: %w", k, mutex.ErrInvalidKey, err)
		}
		encs[i] = enc
	}
	return encs, nil
}

// LockSet locks keys, which must be distinct and in lock order
// ([Mutex.LockOrder]); use [mutex.LockAll], which makes them so. Keys of
// one Redis server (of one hash slot, in a Cluster) that are free and
// have nobody queued are taken together, by one script in one round
// trip; at the first key that is held, LockSet queues the usual way,
// keeping the keys before it, and goes on once it is served. On error,
// ctx end included, it releases what it took and leaves no queue entry.
func (m *Mutex[K]) LockSet(ctx context.Context, keys []K) ([]mutex.Lease, error) {
	return m.lockSet(ctx, keys, false)
}

// TryLockSet is LockSet that does not wait: every key or none, and an
// error satisfying errors.Is(err, [mutex.ErrLocked]) naming a held key.
func (m *Mutex[K]) TryLockSet(ctx context.Context, keys []K) ([]mutex.Lease, error) {
	return m.lockSet(ctx, keys, true)
}

// UnlockSet releases the leases of a set at once: their release calls
// leave together, so a set costs about one round trip to release, not one
// per key. It returns each lease's error, by position.
func (m *Mutex[K]) UnlockSet(leases []mutex.Lease) []error {
	return lockutil.UnlockParallel(leases)
}

func (m *Mutex[K]) lockSet(ctx context.Context, keys []K, try bool) ([]mutex.Lease, error) {
	if m.core == nil {
		return nil, errNotNew
	}
	op := "LockAll"
	if try {
		op = "TryLockAll"
	}
	if ctx == nil {
		return nil, fmt.Errorf("distributed: %s: nil context.Context (use context.Background())", op)
	}
	encs, err := encodeAll(m.encode, keys)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("distributed: %s: %w", op, err)
	}
	c := m.core
	c.checkServers(ctx)
	leases := make([]mutex.Lease, 0, len(keys))
	fail := func(err error) ([]mutex.Lease, error) {
		return nil, errors.Join(err, releaseTaken(encs, leases))
	}
	_, cluster := c.client.(*redis.ClusterClient)
	for i := 0; i < len(encs); {
		j := i + 1
		for j < len(encs) && (!cluster || slotOf(escapeTag(encs[j])) == slotOf(escapeTag(encs[i]))) {
			j++
		}
		if j-i >= 2 {
			got, err := c.acquireRun(ctx, op, encs[i:j], 1)
			if err != nil {
				return fail(err)
			}
			for _, l := range got {
				leases = append(leases, l)
			}
			i += len(got)
			if i == j {
				continue
			}
		}
		// encs[i] is held, queued for or not free in some other way (or
		// alone in its slot): lock it the usual way, queueing there if
		// it is held. If the script has just found it busy, a Lock that
		// waits on Pub/Sub skips the try and queues at once.
		var l *lease
		if j-i >= 2 && !try && c.cfg.spin == 0 {
			l, err = c.lockQueued(ctx, op, encs[i])
		} else {
			l, err = c.lockEncoded(ctx, op, encs[i], 1, try)
		}
		if err != nil {
			return fail(err)
		}
		leases = append(leases, l)
		i++
	}
	return leases, nil
}

// lockQueued is lockEncoded for a waiting Lock on Pub/Sub that knows the
// key is busy: it subscribes and runs acquire.lua in wait mode at once
// (which takes the key if it was freed meanwhile, else queues), without
// the uncontended try first.
func (c *core) lockQueued(ctx context.Context, op, enc string) (*lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, opErr(op, enc, err)
	}
	if !c.enter() {
		return nil, opErr(op, enc, mutex.ErrClosed)
	}
	defer c.calls.Done()
	w := &waiter{c: c, ctx: ctx, op: op, enc: enc, nm: namesFor(c.cfg.prefix, enc), owner: newID(16), n: 1}
	start := time.Now()
	l, err := w.queue(ctx)
	l, err = c.settle(ctx, op, w, l, err)
	if c.cfg.obs != nil {
		c.observe(ctx, mutex.LockDone, enc, mutex.Event{Op: op, Outcome: lockutil.OutcomeOf(ctx, err),
			Wait: time.Since(start), Waited: w.waited, Err: err})
	}
	return l, err
}

// queue subscribes the waiter (or joins its Mutex's subscription of the
// key) and waits in the key's queue.
func (w *waiter) queue(ctx context.Context) (*lease, error) {
	if w.sub = w.c.hub.Join(w.nm.channel(w.c.id), w.owner); w.sub == nil {
		if err := w.subscribe(ctx); err != nil {
			return nil, err
		}
	}
	return w.wait(ctx, false, 0)
}

// TryLockPrefixN takes, in the order given, the keys that are free and
// have nobody queued, up to the first that is not, each with a lease that
// reserves up to n tokens (as [Mutex.LockN]); it never waits. keys must
// be distinct and in lock order. mutex/hybrid's LockAll uses it.
func (m *Mutex[K]) TryLockPrefixN(ctx context.Context, keys []K, n uint64) ([]mutex.Reservation, error) {
	if m.core == nil {
		return nil, errNotNew
	}
	if ctx == nil {
		return nil, errors.New("distributed: TryLockPrefixN: nil context.Context (use context.Background())")
	}
	if n < 1 || n > MaxReserve {
		return nil, fmt.Errorf("distributed: TryLockPrefixN: n = %d; want 1 <= n <= %d", n, MaxReserve)
	}
	encs, err := encodeAll(m.encode, keys)
	if err != nil {
		return nil, err
	}
	if len(encs) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("distributed: TryLockPrefixN: %w", err)
	}
	// One script: a Cluster's keys are taken up to the first of another
	// slot.
	j := 1
	if _, cluster := m.client.(*redis.ClusterClient); cluster {
		for j < len(encs) && slotOf(escapeTag(encs[j])) == slotOf(escapeTag(encs[0])) {
			j++
		}
	} else {
		j = len(encs)
	}
	m.checkServers(ctx)
	got, err := m.acquireRun(ctx, "LockAll", encs[:j], n)
	if err != nil {
		return nil, err
	}
	out := make([]mutex.Reservation, len(got))
	for i, l := range got {
		out[i] = l
	}
	return out, nil
}

// releaseTaken unlocks the leases a failed LockSet took (of encs[i]
// each), and joins their errors.
func releaseTaken(encs []string, leases []mutex.Lease) error {
	var errs []error
	for i, err := range lockutil.UnlockParallel(leases) {
		if err != nil {
			errs = append(errs, fmt.Errorf("distributed: release %s: %w", encs[i], err))
		}
	}
	return errors.Join(errs...)
}

// acquireRun runs acquireall.lua once on encs (keys of one server or
// slot, in lock order): it returns the leases of the free prefix it took,
// possibly none.
func (c *core) acquireRun(ctx context.Context, op string, encs []string, n uint64) ([]*lease, error) {
	if !c.enter() {
		return nil, opErr(op, encs[0], mutex.ErrClosed)
	}
	defer c.calls.Done()
	nms := make([]names, len(encs))
	owners := make([]string, len(encs))
	keys := make([]string, 0, 2*len(encs))
	args := make([]any, len(encs))
	for i, enc := range encs {
		nms[i] = namesFor(c.cfg.prefix, enc)
		owners[i] = newID(16)
		keys = append(keys, nms[i].lock, nms[i].queue)
		args[i] = holderID(owners[i], c.cfg.label)
	}
	// undo releases the first n locks (all if n < 0: unknown).
	undo := func(n int) {
		if n < 0 || n > len(encs) {
			n = len(encs)
		}
		for i := 0; i < n; i++ {
			c.abort(nms[i], owners[i], "")
		}
	}
	start := time.Now()
	res, err := c.exec.doRetrying(ctx, c.closing, func() *call {
		return &call{
			script: c.acquireAllScript(),
			keys:   keys,
			args:   args,
			abandon: func(res any, err error) {
				n, _, perr := parseAcquireAll(res)
				if err != nil || perr != nil {
					n = -1
				}
				undo(n)
			},
		}
	})
	if err == nil {
		c.plainOK()
	}
	var (
		count int
		now   uint64
	)
	if err == nil {
		count, now, err = parseAcquireAll(res)
		if err != nil {
			undo(-1)
		}
	}
	if err != nil {
		if isWrongType(err) {
			err = wrongType(nms[0], err)
		}
		return nil, opErr(op, encs[0], c.lockErr(ctx, err))
	}
	out := make([]*lease, 0, count)
	// Tokens as attemptPlain issues them: from the clock, up to maxAhead
	// ahead of it (each key's release then leaves its free marker).
	g := grant{first: now, top: now + min(n, maxAhead) - 1, ttlMs: c.ttlMs, clock: now}
	for i := 0; i < count; i++ {
		l := newLease(c, encs[i], nms[i], owners[i], g, start)
		if !l.got.Before(l.validUntil) {
			// The reply came after the leases' validity: they may be
			// others' by now. Release them and report none taken; the
			// caller locks the first key the usual way.
			undo(count)
			for _, l := range out {
				c.forget(l)
			}
			c.observe(ctx, mutex.Late, encs[0], mutex.Event{Op: op})
			return nil, nil
		}
		if !c.register(l) {
			l.endClosed()
			undo(count)
			for _, l := range out {
				c.forget(l)
			}
			return nil, opErr(op, encs[i], mutex.ErrClosed)
		}
		out = append(out, l)
	}
	for _, l := range out {
		if c.cfg.obs != nil {
			l.since = time.Now()
			c.observe(ctx, mutex.LockDone, l.enc, mutex.Event{Op: op, Outcome: mutex.Acquired, Wait: time.Since(start)})
		}
		l.start()
	}
	return out, nil
}

// parseAcquireAll parses acquireall.lua's reply {count, now}.
func parseAcquireAll(res any) (int, uint64, error) {
	a, ok := res.([]any)
	if ok && len(a) == 2 {
		n, ok1 := a[0].(int64)
		now, ok2 := a[1].(int64)
		if ok1 && ok2 && n >= 0 && now > 0 {
			return int(n), uint64(now), nil
		}
	}
	return 0, 0, fmt.Errorf("acquireall: unexpected reply %v", res)
}

// slotOf is the Redis Cluster hash slot of a hash tag: CRC16 (XMODEM)
// modulo 16384.
func slotOf(tag string) uint16 {
	var crc uint16
	for i := 0; i < len(tag); i++ {
		crc ^= uint16(tag[i]) << 8
		for b := 0; b < 8; b++ {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc % 16384
}
