package hybrid

import (
	"context"
	"sync"

	"github.com/keyedmutex/keyedmutex/internal/keylock"
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
	for _, k := range keys {
		if keylock.EmptyKey(k) {
			return nil, lockErr("LockAll", k, errEmptyKey)
		}
	}
	if o, ok := m.remote.(mutex.Orderer[K]); ok {
		return o.LockOrder(keys)
	}
	return mutex.SortKeys(keys)
}

// LockSet locks keys, distinct and in lock order ([Mutex.LockOrder]),
// one at a time, each as Lock does: behind the goroutines of this
// process that asked for it earlier, then sharing or taking the key's
// remote lease. Use [mutex.LockAll], which orders the keys. Each key's
// lease holds the key locally and its remote lease until the set is
// unlocked as a whole: no key of a set passes to another local holder
// before. A LockSet whose ctx ends releases what it took.
func (m *Mutex[K]) LockSet(ctx context.Context, keys []K) ([]mutex.Lease, error) {
	if m.remote == nil {
		return nil, errNotNew
	}
	return mutex.LockInOrder(ctx, m, keys, false)
}

// TryLockSet is LockSet with TryLock: every key or none.
func (m *Mutex[K]) TryLockSet(ctx context.Context, keys []K) ([]mutex.Lease, error) {
	if m.remote == nil {
		return nil, errNotNew
	}
	return mutex.LockInOrder(ctx, m, keys, true)
}

// UnlockSet unlocks the leases of a set together: the remote releases
// that are due leave at once, rather than one after another.
func (m *Mutex[K]) UnlockSet(leases []mutex.Lease) []error {
	errs := make([]error, len(leases))
	if len(leases) == 0 {
		return errs
	}
	var wg sync.WaitGroup
	for i, l := range leases[1:] {
		wg.Go(func() { errs[i+1] = l.Unlock() })
	}
	errs[0] = leases[0].Unlock()
	wg.Wait()
	return errs
}
