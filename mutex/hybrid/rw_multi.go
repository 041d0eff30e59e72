package hybrid

import (
	"github.com/keyedmutex/keyedmutex/internal/keylock"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// LockOrder returns the distinct keys of keys in the lock order of the
// remote read-write mutex, as [Mutex.LockOrder] does for a Mutex: the
// remote's [mutex.Orderer] if it has one (the Redis RWMutex orders by
// encoded key), else [mutex.SortKeys]. [mutex.LockAll] of write locks on
// hybrid RWMutexes in different processes thus takes keys in one order.
func (m *RWMutex[K]) LockOrder(keys []K) ([]K, error) {
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
