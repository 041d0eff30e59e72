package mutex

import (
	"context"
	"time"
)

// An Observer is told what a [Keyed] does: how long callers wait, how
// their Locks end, how long leases are held, how they are lost, and, for
// the Redis-backed implementations, the events that explain performance
// (queueing, grants, local handoffs, notices, polls, reconnects). Every
// implementation of this module takes one through an option named
// WithObserver; without one, the hot paths do no more than a nil check.
//
// Observe is called synchronously, on the goroutine of the operation
// (Lock, Unlock) or of the background work (renewal, the Pub/Sub reader):
// it must be fast and must not block or call the Keyed. It may be called
// concurrently. ctx is the caller's context for the events of a Lock or
// TryLock (for tracing), and context.Background() for the others.
type Observer interface {
	Observe(ctx context.Context, e Event)
}

// Event is one thing a Keyed did. Which fields are set depends on Kind.
type Event struct {
	Kind    EventKind
	Backend string // "local", "distributed" or "hybrid"
	// Key is the key as the backend names it (the encoded key for Redis,
	// fmt's %v otherwise). Keys are often user IDs: an observer should
	// not record them unless its user asked for it. It is computed only
	// when an Observer is set.
	Key string
	// Op is "Lock" or "TryLock" for the events of one (Waiting, Queued,
	// LockDone).
	Op      string
	Outcome Outcome
	// Wait is, for LockDone, the time from the call to its return.
	Wait time.Duration
	// Hold is, for Unlocked and Lost, the time the lease was held.
	Hold time.Duration
	// Waited is, for LockDone, whether the call had to wait (it emitted
	// Waiting first).
	Waited bool
	// Err is the error of a failed or lost outcome, or a reconnect's cause.
	Err error
}

// EventKind says what an Event reports.
type EventKind uint8

// The kinds of Event.
const (
	// LockDone ends every Lock and TryLock: Outcome, Wait, Waited, Err.
	LockDone EventKind = iota + 1
	// Waiting: a Lock could not take the lock at once and waits. Every
	// Waiting is followed by a LockDone with Waited set.
	Waiting
	// Unlocked ends a lease by Unlock: Outcome Released, LostLease if the
	// lease had been lost, or Failed if the release could not be made;
	// Hold; Err.
	Unlocked
	// Lost: a lease was found lost while held (before its Unlock): Hold,
	// Err says why.
	Lost
	// Renewed: a lease renewal: Outcome Acquired (extended) or Failed
	// (Err; it is retried until the lease's validity ends).
	Renewed
	// Queued: a distributed Lock joined the key's queue in Redis.
	Queued
	// Granted: a distributed Lock was handed the lock by the holder's
	// release (it did not take it itself).
	Granted
	// Notice: a grant message reached the waiter it names.
	Notice
	// PollWake: a queued waiter woke at its poll bound, with no message.
	PollWake
	// Reconnect: the shared Pub/Sub connection was lost and rebuilt;
	// waiters re-check. Err is the cause.
	Reconnect
	// LocalHandoff: a hybrid lease passed the remote lease to the next
	// local holder, with no remote command.
	LocalHandoff
	// RemoteAcquired: a hybrid head acquired the remote lease for its
	// cohort.
	RemoteAcquired
	// Late: a distributed Lock got the lock, but its reply or grant came
	// after the lease's validity had run out (a slow network or server, a
	// paused process); it released it and went on waiting. Also: a grant
	// reached the waiter after a later check had found it still waiting
	// (the grant expired meanwhile); it was ignored.
	Late
)

var kindNames = [...]string{
	LockDone: "lock_done", Waiting: "waiting", Unlocked: "unlocked", Lost: "lost",
	Renewed: "renewed", Queued: "queued", Granted: "granted", Notice: "notice",
	PollWake: "poll_wake", Reconnect: "reconnect", LocalHandoff: "local_handoff",
	RemoteAcquired: "remote_acquired", Late: "late",
}

func (k EventKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// Outcome is how a Lock, TryLock, Unlock or renewal ended.
type Outcome uint8

// The outcomes.
const (
	// Acquired: the lock is held (Lock, TryLock), or a renewal extended it.
	Acquired Outcome = iota + 1
	// Locked: TryLock found the key held.
	Locked
	// Canceled: the caller's ctx ended first.
	Canceled
	// Closed: the Keyed was closed.
	Closed
	// Failed: the backend failed (Redis unreachable, a bad key, ...).
	Failed
	// Released: Unlock released the lease.
	Released
	// LostLease: the lease was lost.
	LostLease
)

var outcomeNames = [...]string{
	Acquired: "acquired", Locked: "locked", Canceled: "canceled", Closed: "closed",
	Failed: "failed", Released: "released", LostLease: "lost",
}

func (o Outcome) String() string {
	if int(o) < len(outcomeNames) && outcomeNames[o] != "" {
		return outcomeNames[o]
	}
	return "unknown"
}
