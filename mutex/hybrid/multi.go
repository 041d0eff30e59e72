package hybrid

import (
	"context"
	"errors"
	"fmt"
	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keylock"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
)

var (
	_ mutex.Orderer[string]   = (*Mutex[string])(nil)
	_ mutex.SetLocker[string] = (*Mutex[string])(nil)
	_ mutex.SetUnlocker       = (*Mutex[string])(nil)
)

// LockOrder returns the distinct keys of keys in the lock order of the
// remote mutex, so that hybrid Mutexes in different processes, and
// callers of the remote itself, take keys in one order: the remote's
// [mutex.Orderer] if it has one (the Redis mutex orders by encoded key),
// else [mutex.SortKeys]. The empty key is refused, as by Lock. See
// [mutex.LockAll].
func (m *Mutex[K]) LockOrder(keys []K) ([]K, error) {
	if m.remote == nil {
		return nil, errNotNew
	}
	return remoteOrder(m.remote, keys)
}

// LockOrder returns the distinct keys of keys in the lock order of the
// remote read-write mutex, as [Mutex.LockOrder] does for a Mutex: the
// remote's [mutex.Orderer] if it has one (the Redis RWMutex orders by
// encoded key), else [mutex.SortKeys]. [mutex.LockAll] of write locks on
// hybrid RWMutexes in different processes thus takes keys in one order.
func (m *RWMutex[K]) LockOrder(keys []K) ([]K, error) {
	if m.remote == nil {
		return nil, errNotNew
	}
	return remoteOrder(m.remote, keys)
}

// remoteOrder is the lock order of keys on remote (a Mutex's or an
// RWMutex's): its own if it is a [mutex.Orderer], else [mutex.SortKeys];
// the empty key is refused first.
func remoteOrder[K comparable](remote any, keys []K) ([]K, error) {
	for _, k := range keys {
		if keylock.EmptyKey(k) {
			return nil, lockErr("LockAll", k, errEmptyKey)
		}
	}
	if o, ok := remote.(mutex.Orderer[K]); ok {
		return o.LockOrder(keys)
	}
	return mutex.SortKeys(keys)
}

// LockSet locks keys, distinct and in lock order ([Mutex.LockOrder]).
// The leading keys that no goroutine of this process holds or waits for
// and whose remote locks are free are taken at once, their remote leases
// in one step if the remote can (the Redis mutex: one round trip); the
// others one at a time, each as Lock does: behind the goroutines of this
// process that asked for it earlier, then sharing or taking the key's
// remote lease. Use [mutex.LockAll], which orders the keys. Each key's
// lease holds the key locally and its remote lease until the set is
// unlocked as a whole: no key of a set passes to another local holder
// before. A LockSet whose ctx ends releases what it took.
func (m *Mutex[K]) LockSet(ctx context.Context, keys []K) ([]mutex.Lease, error) {
	return m.lockSet(ctx, keys, false)
}

func (m *Mutex[K]) lockSet(ctx context.Context, keys []K, try bool) ([]mutex.Lease, error) {
	if m.remote == nil {
		return nil, errNotNew
	}
	if ctx == nil {
		return nil, lockErr("LockAll", keys[0], lockutil.ErrNilContext)
	}
	var pre []mutex.Lease
	if p, ok := m.remote.(remote.PrefixLocker[K]); ok && len(keys) > 1 {
		var err error
		if pre, err = m.takeFree(ctx, p, keys); err != nil {
			return nil, err
		}
	}
	rest, err := mutex.LockInOrder(ctx, m, keys[len(pre):], try)
	if err != nil {
		for i := len(pre) - 1; i >= 0; i-- {
			if uerr := pre[i].Unlock(); uerr != nil {
				err = errors.Join(err, fmt.Errorf("hybrid: release %v: %w", keys[i], uerr))
			}
		}
		return nil, err
	}
	return append(pre, rest...), nil
}

// takeFree takes, without waiting, the leading keys of keys that no
// goroutine of this process holds or waits for and whose remote locks are
// free, the remote ones in one step (p's TryLockPrefixN: one round trip
// for the lot on one Redis server), and returns their leases: possibly
// none. It waits for nothing, so it holds nothing while waiting; LockSet
// then locks the rest in order, as Lock does.
func (m *Mutex[K]) takeFree(ctx context.Context, p remote.PrefixLocker[K], keys []K) ([]mutex.Lease, error) {
	ents := make([]*keylock.Entry[K, cohort], 0, len(keys))
	giveBack := func(from int) {
		for _, e := range ents[from:] {
			m.release(e, &e.Value, false)
		}
	}
	for _, k := range keys {
		e, _, err := m.t.TryLock(ctx, k, 0)
		if err != nil {
			break
		}
		if !e.Value.isFresh() {
			m.release(e, &e.Value, false)
			break
		}
		ents = append(ents, e)
	}
	if len(ents) < 2 {
		giveBack(0)
		return nil, nil
	}
	start := time.Now()
	rs, err := p.TryLockPrefixN(ctx, keys[:len(ents)], m.block)
	if err != nil {
		giveBack(0)
		return nil, lockErr("LockAll", keys[0], err)
	}
	out := make([]mutex.Lease, 0, len(rs))
	var closedErr error
	for i, r := range rs {
		e := ents[i]
		if e.Value.adopt(r, max(1, min(r.Reserved(), m.block))) {
			// Close came first: it expects no remote lease left.
			_ = r.Unlock()
			e.Unlock()
			closedErr = lockErr("LockAll", keys[i], mutex.ErrClosed)
			continue
		}
		l := m.newLease(e, r, r.Token())
		if m.obs != nil {
			m.observe(ctx, mutex.RemoteAcquired, keys[i], mutex.Event{})
			m.observe(ctx, mutex.LockDone, keys[i], mutex.Event{Op: "LockAll", Outcome: mutex.Acquired, Wait: time.Since(start)})
			l.since = time.Now()
		}
		out = append(out, l)
	}
	giveBack(len(rs))
	if closedErr != nil {
		for i := len(out) - 1; i >= 0; i-- {
			_ = out[i].Unlock()
		}
		return nil, closedErr
	}
	return out, nil
}

// TryLockSet is LockSet with TryLock: every key or none.
func (m *Mutex[K]) TryLockSet(ctx context.Context, keys []K) ([]mutex.Lease, error) {
	return m.lockSet(ctx, keys, true)
}

// UnlockSet unlocks the leases of a set together: the remote releases
// that are due leave at once, rather than one after another.
func (m *Mutex[K]) UnlockSet(leases []mutex.Lease) []error {
	return lockutil.UnlockParallel(leases)
}
