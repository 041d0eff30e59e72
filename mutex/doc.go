// Package mutex is the contract every keyed mutex of this module meets.
//
// A [Keyed] is a family of mutexes, one per key: locking "order-17" does
// not block a caller that locks "order-18". Each successful Lock or
// TryLock returns a [Lease], one holding of one key's lock, that the holder
// releases with [Lease.Unlock]. Three implementations exist:
//
//   - [github.com/keyedmutex/keyedmutex/mutex/local]: goroutines of one process.
//   - [github.com/keyedmutex/keyedmutex/mutex/distributed]: processes that
//     share a Redis server or Redis Cluster.
//   - [github.com/keyedmutex/keyedmutex/mutex/hybrid]: local coalescing in
//     front of a distributed mutex, for hot keys.
//
// A lease held in Redis can be lost (the server forgot it, or it expired
// while the holder could not renew it). Loss closes [Lease.Done]; code that
// must stop when the lock is gone runs under the context returned by
// [WithLease]. Where a lost lease could let two holders write one resource,
// pass [Lease.Token] to the resource and have it reject tokens lower than
// one it has already seen (a fencing token).
//
// [LockAll], [TryLockAll] and [DoAll] lock several keys at once (a
// transfer between two accounts) with one [LeaseSet]. Every caller takes
// the keys of a set one at a time in one global order, whatever order it
// names them in, so callers that lock overlapping sets cannot deadlock:
// the Redis mutex orders by encoded key, the hybrid mutex as its remote,
// and any other Keyed by [SortKeys] (or its own [Orderer]). A LockAll that
// waits keeps the keys before the one it waits for and its place in that
// key's queue; it never releases to retry.
//
// Every implementation's Locker method adapts it to [sync.Locker] per
// key, for code written against a sync.Mutex.
package mutex
