// Package keyedmutex is a family of keyed mutexes for Go: [sync.Mutex]
// semantics, one mutex per key (a user ID, an order number, a file path),
// for the goroutines of one process or for many processes that share a
// Redis server or a Redis Cluster. This package holds no code; it is the
// map. Pick one of three implementations of one contract,
// [github.com/keyedmutex/keyedmutex/mutex.Keyed]:
//
// # local: one process
//
// [github.com/keyedmutex/keyedmutex/mutex/local.Mutex] serves the
// goroutines of one process. Its zero value is ready, it costs memory only
// for keys that are held or waited for (and a bounded cache of idle
// ones), waiters are served in FIFO order, and an uncontended Lock+Unlock
// takes tens of nanoseconds and no network.
// Pick it whenever every contender for a key lives in one process: it
// cannot fail, and its leases are never lost.
//
// # distributed: many processes, one Redis
//
// [github.com/keyedmutex/keyedmutex/mutex/distributed.Mutex] keeps each
// lock in Redis as a key with a TTL, renewed while held. Contenders do
// not poll: they queue in Redis in FIFO order, and a release hands the
// lock straight to the first of them and tells it with a Pub/Sub grant
// (with a bounded poll as a safety net), so nobody barges in, processes
// are served in turn, and a waiter sends about one command per second
// however long it waits. A spin strategy, closer to the redsync and
// redislock libraries, is available as an option. Pick it when
// contenders for a key live in several processes or hosts and contention
// per key within one process is low.
//
// A lease held in Redis can be lost: the server restarted, or the holder
// could not renew before the TTL ran out. Loss closes
// [github.com/keyedmutex/keyedmutex/mutex.Lease.Done]; run work that must
// stop with the lock under
// [github.com/keyedmutex/keyedmutex/mutex.WithLease], and pass
// [github.com/keyedmutex/keyedmutex/mutex.Lease.Token] (a fencing token)
// to any resource that can reject writes from an older holder.
//
// # hybrid: many processes, hot keys
//
// [github.com/keyedmutex/keyedmutex/mutex/hybrid.Mutex] puts local FIFO
// coalescing in front of a distributed mutex: goroutines of one process
// queue locally per key, only the head of the queue talks to Redis, and
// on Unlock the remote lease passes straight to the next local waiter with
// no Redis command, up to a bound, after which the Redis lock goes to
// the next process in the Redis queue and this one queues again, so
// processes take turns. Pick it when many goroutines of each process
// contend for the same keys: it turns most handoffs into in-memory ones
// and spares Redis. Goroutines of one process never overlap, whatever
// Redis does.
//
// # Errors and logs
//
// Errors go to the caller, wrapping the sentinels of
// [github.com/keyedmutex/keyedmutex/mutex] (ErrLocked, ErrLost,
// ErrUnlocked, ErrClosed, ErrInvalidKey) for errors.Is, and name the
// key. What no caller can be told (a renewal that failed in the
// background, a release that failed at Close, a Pub/Sub connection lost)
// goes to the WithLogger of distributed and hybrid, a [log/slog.Logger]:
// [log/slog.Default] unless set, never nil (local has nothing to
// report). Metrics and traces go to WithObserver (the
// extra/otelkeyedmutex module implements it on OpenTelemetry).
//
// # Rules of thumb
//
//   - One process: local. Always.
//   - Several processes, keys rarely contended within a process:
//     distributed.
//   - Several processes, hot keys with many goroutines per process:
//     hybrid in front of distributed.
//   - Code written against [sync.Locker]: every implementation's
//     Locker(key) is a drop-in.
package keyedmutex
