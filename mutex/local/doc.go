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
// A key costs memory only while some goroutine holds or waits for its
// lock: each key's entry is reference-counted and deleted when the last
// holder or waiter leaves, so locking a million distinct keys one after
// another leaves the heap where it started. Entries live in 64 shards,
// chosen by a hash of the key, so goroutines locking different keys rarely
// meet on the same internal lock.
//
// # Fairness
//
// Waiters of a key are served in FIFO order: Unlock hands the lock
// directly to the longest waiting goroutine, and a newcomer never takes a
// lock that has waiters. No waiter starves. A handoff to a queued waiter
// costs a goroutine wake-up, so a newcomer that finds the key held and
// nobody queued first yields a few times (when GOMAXPROCS > 1), taking
// the lock if it comes free meanwhile, before it queues: short critical
// sections then pass the lock without parking. Only one goroutine per key
// does this at a time, and it never takes a lock that has queued waiters.
// A [sync.Mutex] lets every newcomer barge, which is faster still on a hot
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
package local
