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
// turn. The per-key state lives in the entries of the same sharded table
// mutex/local uses: no lock is shared by every key.
//
// # Taking turns with other processes
//
// Over a distributed mutex, a process that reaches its bound with local
// goroutines still waiting releases and requeues in one step: the release
// hands the lock to the next process in the key's queue in Redis and puts
// this process back at the end of that queue, in the same script. The
// next local holder then waits for that turn. Processes are so served in
// strict rotation, each for up to bound+1 critical sections, and a turn
// costs one Redis round trip. A remote that cannot requeue is released
// and locked again; after a release forced by the bound, the next local
// head then yields briefly (twice a moving average of the release
// latency; [WithReleaseYield]) so that a waiting process can take the key
// first.
//
// # Fencing tokens
//
// If the remote implements [mutex.TokenReserver] (or is a local.Mutex,
// which reserves tokens for hybrid only), the head acquires with
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
// closes, Err returns an error satisfying errors.Is(err, [mutex.ErrLost])
// that carries the remote's reason) and is never handed to a local
// waiter. Local exclusion holds until that holder calls Unlock, which
// returns the loss; the next local waiter then acquires the remote lease
// afresh. Goroutines of one process never overlap, whatever the remote
// does. A lease watches its remote lease only once Done or AfterDone is
// called, through the remote lease's AfterDone (no goroutine) if it has
// one, else with a goroutine.
//
// # Maximum hold
//
// To bound how long a hung holder keeps a key from other processes, give
// the remote its cap: [distributed.WithMaxHold] stops renewing the remote
// lease at that age, so it is lost at its next validity end, and the
// local holder's lease is lost with it, its error satisfying both
// errors.Is(err, [mutex.ErrLost]) and errors.Is(err,
// [distributed.ErrMaxHold]). The age counts from the remote acquisition,
// across the local handoffs of one turn (up to bound+1 critical sections,
// [WithMaxLocalHandoffs]): choose a maximum hold above bound+1 times the
// longest critical section expected, or a local holder that took the
// remote lease late in its turn loses it early. Local waiters of the
// hung holder's own process still wait for its Unlock (local exclusion
// never ends by itself); other processes get the key.
//
// # Close
//
// [Mutex.Close] makes later Locks fail with [mutex.ErrClosed], wakes every
// local waiter with an error satisfying errors.Is(err, mutex.ErrClosed),
// cancels remote contention in progress, and releases every remote lease
// the Mutex holds, in parallel; a local holder's lease ends then as lost
// (Err satisfies both ErrLost and ErrClosed). Close closes the remote only
// with [WithOwnedRemote]; otherwise the caller owns it.
//
// # Readers and writers
//
// [RWMutex], made by [NewRW] over a remote [mutex.RWKeyed], is the
// read-write form. Goroutines of one process queue per key in FIFO order,
// consecutive readers together, and a local writer that waits blocks the
// local readers that come after it. Local readers that hold a key
// together share one remote read lease: only the first sends a remote
// command, the others cost none while it is held, and each carries its
// token. A remote read lease serves at most bound+1 local readers
// ([WithMaxLocalHandoffs]); the next one takes a new remote read lease,
// which over a FIFO remote waits behind any writer queued remotely, so a
// process's stream of readers cannot starve another process's writer. A
// local writer waits until the process's readers have left and their
// remote read leases are released, then shares the write lease of the
// local writer before it, or acquires one (reserving bound+1 tokens with
// LockN, and requeuing at the bound, as [Mutex] does). The loss of a
// remote lease ends every local lease that shares it, as described under
// Lost leases: Err reports it at once, and Done, AfterDone and Unlock
// behave as a Mutex lease's.
//
// [distributed.WithMaxHold]: https://pkg.go.dev/github.com/keyedmutex/keyedmutex/mutex/distributed#WithMaxHold
// [distributed.ErrMaxHold]: https://pkg.go.dev/github.com/keyedmutex/keyedmutex/mutex/distributed#ErrMaxHold
package hybrid
