// Package hybrid puts local coalescing in front of any keyed mutex,
// normally a [github.com/keyedmutex/keyedmutex/mutex/distributed] one, for
// keys that many goroutines of one process lock at once.
//
// Goroutines of one process queue per key in FIFO order; only the head of
// the queue holds or contends for the remote lease, so a process sends at
// most one contender per key to the remote (to Redis). When a holder
// unlocks and another goroutine of the same process waits, the remote lease
// passes straight to it, with no remote command: lock cohorting (Dice,
// Marathe and Shavit, PPoPP 2012). After [WithMaxLocalHandoffs] handoffs in
// a row the remote lease is released so that other processes get their
// turn.
//
// # Fairness after a bound release
//
// Releasing the remote lease is not enough to let another process in: the
// releasing process's next local head is awake already, while heads of
// other processes still have to receive the release notice, so a plain
// race would let the releaser win the lease straight back. So after a
// release forced by the bound (with local waiters left), the next local
// head yields: it waits about two remote round trips (an exponentially
// weighted moving average of the measured release latency) before it
// contends. A process that waits for the key takes it in that window; if
// none does, the yield costs the releasing process that short delay once
// per cohort. [WithReleaseYield] fixes the delay instead. In
// BenchmarkHotKey the yield cuts the longest run of acquisitions by one
// process from hundreds (bound 16, no yield: the releaser won the key
// back over and over) to 34 (two cohorts; mostly when every other head
// was yielding too), and the Redis commands per acquisition by a quarter.
//
// # Fencing tokens
//
// If the remote implements [mutex.TokenReserver], the head acquires with
// LockN(ctx, key, bound+1) and the i-th local holder of that remote
// lease gets token first+i: tokens stay strictly increasing per key across
// local handoffs and remote acquisitions, with no arithmetic on the
// remote's token (which may be a timestamp with no spare bits). A remote
// that reserves fewer tokens than asked ([mutex.Reservation.Reserved])
// serves as many local holders as it reserved tokens. A remote
// that does not implement it cannot reserve tokens for local holders, so
// local handoffs are disabled for it: every holder acquires the remote
// lease itself (still one contender per process, in FIFO order) and gets
// the remote's own token.
//
// # Lost leases
//
// A lost remote lease ends the local holder's lease too ([mutex.Lease.Done]
// closes, Err returns [mutex.ErrLost]) and is never handed to a local
// waiter. Local exclusion holds until that holder calls Unlock, which
// returns ErrLost; the next local waiter then acquires the remote lease
// afresh. Goroutines of one process never overlap, whatever the remote
// does.
//
// # Close
//
// [Mutex.Close] makes later Locks fail with [mutex.ErrClosed], wakes every
// local waiter with an error satisfying errors.Is(err, mutex.ErrClosed),
// cancels remote contention in progress, and releases every remote lease
// the Mutex holds; a local holder's lease ends then as lost (Err satisfies
// both ErrLost and ErrClosed). Close does not close the remote mutex, which
// the caller owns.
package hybrid
