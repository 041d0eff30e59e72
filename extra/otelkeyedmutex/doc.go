// Package otelkeyedmutex reports what the mutexes of
// github.com/keyedmutex/keyedmutex do as OpenTelemetry metrics and spans:
// an [Observer] to pass to local.WithObserver, distributed.WithObserver
// and hybrid.WithObserver.
//
// It is a module of its own, as go-redis's extra/redisotel is, so that
// the keyedmutex module never depends on OpenTelemetry.
//
// # Instruments
//
// All instruments come from one Meter named by this package's import
// path. Their attributes are keyedmutex.backend ("local", "distributed",
// "hybrid") and, where listed, keyedmutex.op ("Lock", "TryLock"; a
// distributed Mutex under a hybrid one is called with "LockN" and
// "TryLockN"), keyedmutex.outcome and keyedmutex.handoff.kind. Keys are
// never recorded unless [WithKeyAttribute] is given.
//
//	keyedmutex.lock.wait.duration  histogram, s            backend, op, outcome
//	    time from a Lock or TryLock call to its return, every call
//	keyedmutex.lock.acquisitions   counter, {acquisition}  backend, op, outcome
//	    Lock and TryLock calls by how they ended: acquired, locked
//	    (TryLock on a held key), canceled (ctx ended), closed, failed
//	keyedmutex.lock.waiters        up-down counter, {waiter}  backend
//	    Lock calls waiting now: +1 when one starts to wait, -1 when it returns
//	keyedmutex.lock.hold.duration  histogram, s            backend, outcome
//	    time from Lock's return to Unlock, by Unlock's outcome: released,
//	    lost (the lease had been lost), failed (the release failed; the
//	    key expires at its TTL)
//	keyedmutex.lease.lost          counter, {lease}        backend
//	    leases found lost while held (the holder's Done closed then); a
//	    loss found only by Unlock is counted by the hold histogram with
//	    outcome lost
//	keyedmutex.lease.renewals      counter, {renewal}      backend, outcome (ok, failed)
//	keyedmutex.handoffs            counter, {handoff}      backend, handoff.kind
//	    how holders got the lock without taking it themselves: local (a
//	    hybrid cohort handoff, no Redis command) or remote (a hybrid
//	    head's remote acquisition; a distributed grant by the release)
//	keyedmutex.poll.wakeups        counter, {wakeup}       backend
//	    queued waiters that woke at their poll bound with no message
//	keyedmutex.notices             counter, {notice}       backend
//	    grant messages that reached their waiter
//	keyedmutex.reconnects          counter, {reconnect}    backend
//	    rebuilt Pub/Sub connections
//
// The wait and hold histograms have explicit bucket boundaries from 10µs
// to 10s, suited to lock waits; a View in the MeterProvider overrides
// them.
//
// # Spans
//
// A Lock that had to wait gets one span, "keyedmutex.Lock", a child of
// the span in the Lock's context, covering the wait (it is made when the
// Lock returns, with its start set back by the wait). Its attributes are
// those of the wait histogram; a Lock that did not acquire ends it with
// status Error. Uncontended Locks and TryLocks make no span.
//
// # Wiring
//
// An Observer sees one layer: for hybrid over distributed, give the same
// Observer to both (events carry their backend).
package otelkeyedmutex
