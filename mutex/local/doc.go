// Package local is the in-process keyed mutex: one [sync.Mutex]-like lock
// per key, for the goroutines of one process.
//
//	var m local.Mutex[string] // zero value ready
//
//	lease, err := m.Lock(ctx, "order-17")
//	if err != nil {
//		return err // ctx ended while waiting
//	}
//	defer lease.Unlock()
//
// # Memory
//
// A key costs memory while some goroutine holds or waits for its lock
// (about 180 bytes with its lease, for string keys), and for a while
// after, in a bounded cache: each Mutex keeps up to 2,048 idle keys
// (their entries and the key values) where a later Lock finds them
// without taking any internal lock, evicting one when its place is
// needed by another key. Beyond that, an entry is deleted when its last
// holder or waiter leaves, so locking a million distinct keys one after
// another, or holding them all at once and then unlocking them, leaves
// the heap where it started, but for that cache. Entries live in 64
// shards, chosen by a hash of the key.
//
// # Speed and allocations
//
// Locking a free key whose entry is cached is one atomic compare-and-swap
// on that entry, and so is unlocking it when nobody waits: goroutines
// that lock different keys share no memory that either writes.
//
//   - [Mutex.Locker] allocates nothing per Lock and Unlock (the Locker
//     itself is allocated once, by the call to Locker: keep it). It locks
//     and unlocks the key itself, with no lease, and remembers the key's
//     entry, so it does not even hash the key again. Without an observer
//     this is the fastest path, about twice a [sync.Mutex].
//   - Lock and TryLock return a new [mutex.Lease] each time (the
//     reservations that a hybrid Mutex over a local one asks for allocate
//     one more object, with their block size). A lease cannot be
//     recycled, because a later second Unlock on it must still return
//     [mutex.ErrUnlocked] rather than unlock someone else's holding, and
//     Done and Err must keep answering for it. A key's first lease is an
//     allocation of its own (32 bytes); a key locked again while its
//     entry is cached gets its leases 16 at a time, one 512-byte
//     allocation per 16 Locks. A lease you keep keeps its block of 16
//     alive.
//
// An observer set with [WithObserver] costs two reads of the monotonic
// clock and two Observe calls per Lock+Unlock (a Lock that waits reads
// the clock once more, and reports a Waiting event); a Lock that takes
// the key without waiting reports a Wait of 0. Without one, no Event is
// built and the clock is never read. With an observer, a Locker goes
// through Lock and the lease's Unlock, so that the observer sees them.
//
// # Fairness
//
// Waiters of a key are served in FIFO order: Unlock hands the lock
// directly to the longest waiting goroutine, and a newcomer never takes a
// lock that has waiters. No waiter starves. A handoff to a queued waiter
// costs a goroutine wake-up, so a newcomer that finds the key held and
// nobody queued first polls it for a short bounded time (when GOMAXPROCS
// > 1), yielding the processor a few times, and takes the lock if it
// comes free meanwhile, before it queues: short critical sections then
// pass the lock without parking. A poller takes the lock only when it is
// free with nobody queued, so it never overtakes a queued waiter. A
// [sync.Mutex] lets every newcomer barge, which is faster still on a hot
// lock but can starve a waiter for up to 1ms.
//
// # Cancellation
//
// A waiter whose ctx ends leaves the queue and returns an error that
// satisfies errors.Is(err, ctx.Err()). If the lock was handed to it in the
// same instant, it passes the lock on to the next waiter (or frees it)
// before returning, so a handoff is never lost.
//
// # Fencing tokens
//
// Every lease carries a token strictly greater than every token issued
// earlier for the same key by the same Mutex, even when the key's entry
// was deleted and created again in between: tokens come from a counter
// per shard, and a key always maps to the same shard within a process.
// Local leases are never lost: [mutex.Lease.Done] closes only on Unlock.
//
// # Readers and writers
//
// [RWMutex] is the keyed [sync.RWMutex], a [mutex.RWKeyed]: per key, any
// number of readers (RLock, TryRLock, RLocker) or one writer (Lock,
// TryLock, Locker). Its zero value is ready, like Mutex's. Waiters are
// served in arrival order, consecutive readers at the head together, so a
// waiting writer blocks later readers and is never starved; a waiter
// whose ctx ends gives its turn back. Every lease, read or write, gets a
// token above every earlier one, so a writer's token is above the readers'
// before it and a reader's above the writers' before it. Its operations
// take the key's shard lock (one of 64) once: a little slower than
// Mutex's lock-free fast path, which RWMutex does not share. Use it when
// reads of a key are many and long enough for holding them together to
// matter; otherwise Mutex is cheaper.
package local
