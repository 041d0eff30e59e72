package hybrid

import (
	"context"
	"sync"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// cohort is the remote side of one key: the remote lease that the local
// holders of the key share, passed from one to the next with the key's
// entry. It lives in the entry's Value.
//
// Its state is private to the methods of this file, each of which is one
// transition under mu: the holder of the entry calls share, detach,
// begin, install, adopt, isFresh, plan, yieldAfter, requeued and
// takeTicket; Close calls shutdown; a lease asks ifOpen and isClosed.
// An [RWMutex]'s cohort (rwCohort, in rwcohort.go) is this one, for its
// writers, with its readers' transitions beside these, under the same
// mu. No other code reads or writes its fields.
type cohort struct {
	mu        sync.Mutex
	remote    mutex.Lease   // the cohort's remote lease, or nil
	closed    bool          // Close took the remote lease away
	next      uint64        // token of the next local holder of remote
	end       uint64        // one past the last token reserved with remote
	notBefore time.Time     // after a bound release: contend not before
	ticket    remote.Ticket // the remote waiter queued by a requeue, for the next holder
	// While the holder acquires the remote lease: cancel stops it, and
	// contending is closed when the acquisition has ended.
	cancel     context.CancelFunc
	contending chan struct{}
}

// share takes the next token of the cohort's remote lease if the lease is
// still held and has a token left: a local handoff.
func (c *cohort) share() (r mutex.Lease, token uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.remote == nil || c.next >= c.end || ended(c.remote) {
		return nil, 0, false
	}
	token = c.next
	c.next++
	return c.remote, token, true
}

// detach takes the cohort's remote lease, if any, away from it.
func (c *cohort) detach() mutex.Lease {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.remote
	c.remote = nil
	return r
}

// takeTicket takes the cohort's requeue ticket, if any, away from it.
func (c *cohort) takeTicket() remote.Ticket {
	c.mu.Lock()
	defer c.mu.Unlock()
	tk := c.ticket
	c.ticket = nil
	return tk
}

// hasTicket reports whether a requeue left a ticket for the next holder.
func (c *cohort) hasTicket() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ticket != nil
}

// begin starts the acquisition of a remote lease, which cancel stops: it
// takes from the cohort the requeue ticket (if any) and, unless a Lock
// (not try) will wait on that ticket, the time not to contend before
// (zero: at once); or it returns closed if Close came first (then
// nothing began).
func (c *cohort) begin(cancel context.CancelFunc, try bool) (tk remote.Ticket, notBefore time.Time, closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, time.Time{}, true
	}
	tk, notBefore = c.beginLocked(cancel, try)
	return tk, notBefore, false
}

// beginLocked is begin once c is known open. c.mu is held.
func (c *cohort) beginLocked(cancel context.CancelFunc, try bool) (tk remote.Ticket, notBefore time.Time) {
	c.cancel, c.contending = cancel, make(chan struct{})
	tk, c.ticket = c.ticket, nil
	if tk == nil || try {
		notBefore, c.notBefore = c.notBefore, time.Time{}
	}
	return tk, notBefore
}

// install ends the acquisition that begin started: unless it failed (err)
// or Close came meanwhile (closed), r becomes the cohort's remote lease,
// with reserved tokens from its own. The caller closes contending once
// it has released whatever Close must not find held.
func (c *cohort) install(r mutex.Lease, reserved uint64, err error) (closed bool, contending chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	closed = c.closed
	if err == nil && !closed {
		c.adoptLocked(r, reserved)
	}
	return closed, c.endLocked()
}

// endLocked ends the acquisition under way, returning its contending
// channel for the caller to close. c.mu is held.
func (c *cohort) endLocked() (contending chan struct{}) {
	contending = c.contending
	c.cancel, c.contending = nil, nil
	return contending
}

// adopt makes r, with reserved tokens from its own, the cohort's remote
// lease, unless Close came first (closed). It is install for a lease
// taken without begin (LockAll's, of keys that were free).
func (c *cohort) adopt(r mutex.Lease, reserved uint64) (closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return true
	}
	c.adoptLocked(r, reserved)
	return false
}

// adoptLocked makes r the cohort's remote lease. c.mu is held.
func (c *cohort) adoptLocked(r mutex.Lease, reserved uint64) {
	c.remote = r
	c.next = r.Token() + 1
	c.end = r.Token() + reserved
}

// isFresh reports whether the cohort has nothing from a previous holder:
// no remote lease, requeue ticket or yield, and is not closed.
func (c *cohort) isFresh() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.remote == nil && c.ticket == nil && c.notBefore.IsZero() && !c.closed
}

// plan says what the end of a holding does with the remote lease r: live
// if it is still held (not lost, not taken by Close), handOff if it also
// has a token left for the next local holder.
func (c *cohort) plan(lost bool) (r mutex.Lease, live, handOff bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r = c.remote
	live = !lost && !c.closed && r != nil && !ended(r)
	return r, live, live && c.next < c.end
}

// yieldAfter makes the next contention of the cohort wait until t.
func (c *cohort) yieldAfter(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notBefore = t
}

// requeued records the end of a requeue of r: r is no longer the
// cohort's, and its ticket tk (if err is nil) is the next holder's,
// unless Close came first (closed: the caller cancels tk).
func (c *cohort) requeued(r mutex.Lease, tk remote.Ticket, err error) (closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.remote == r {
		c.remote = nil
	}
	if err == nil && !c.closed {
		c.ticket = tk
	}
	return c.closed
}

// seized is what Close takes from the cohorts: remote leases to release,
// requeue tickets to cancel, and the channels of the acquisitions under
// way, closed when they have ended.
type seized struct {
	remotes    []mutex.Lease
	tickets    []remote.Ticket
	contenders []chan struct{}
}

// shutdown marks the cohort closed for Close and moves what it holds to
// s: its remote lease and requeue ticket, if any, and, if an acquisition
// is under way, cancels it and adds the channel closed when it ended.
func (c *cohort) shutdown(s *seized) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shutdownLocked(s)
}

// shutdownLocked is shutdown. c.mu is held.
func (c *cohort) shutdownLocked(s *seized) {
	c.closed = true
	if c.remote != nil {
		s.remotes = append(s.remotes, c.remote)
		c.remote = nil
	}
	if c.ticket != nil {
		s.tickets = append(s.tickets, c.ticket)
		c.ticket = nil
	}
	if c.cancel != nil {
		c.cancel()
		s.contenders = append(s.contenders, c.contending)
	}
}

// isClosed reports whether Close took the cohort's remote lease away.
func (c *cohort) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// ifOpen runs f, unless the cohort is closed, under mu: Close, which
// marks it closed under mu before it waits for the lease watchers, then
// either counts what f started or f never ran. It reports whether f ran.
func (c *cohort) ifOpen(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	f()
	return true
}

// ended reports whether the lease r has ended (lost, or released). It
// reads Err, which the contract makes nil exactly while the lease is
// held, rather than Done, which may make a channel.
func ended(r mutex.Lease) bool { return r.Err() != nil }
