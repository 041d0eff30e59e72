package hybrid

import (
	"context"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// rwCohort is the remote side of one key of an [RWMutex]: the remote
// write lease that local writers pass on (the cohort of a [Mutex], with
// its transitions), and the remote read leases that local readers share.
// Readers use it together, so the readers' state is guarded by the
// cohort's mu too, and changed only by the transitions of this file:
// join, installRead, addOwn, leave and shutdownAll.
type rwCohort struct {
	cohort
	run    *readShare   // the remote read lease new local readers join, or nil
	shares []*readShare // every remote read lease local readers hold
}

// readShare is one remote read lease and the local readers that share it.
// Its counts are guarded by the cohort's mu.
type readShare struct {
	remote mutex.Lease
	refs   int // local readers holding it now
	served int // local readers it has served
}

// joinStep is what join decided for a local reader.
type joinStep int

const (
	joinClosed  joinStep = iota // Close came first
	joinShared                  // the reader joined the run's read lease
	joinWait                    // wait for the acquisition in progress, then join again
	joinOwn                     // a TryRLock beside an acquisition in progress: take one of its own
	joinContend                 // acquire the run's read lease: the acquisition began
)

// readTurn is join's decision, with what the reader needs to act on it.
type readTurn struct {
	step  joinStep
	share *readShare      // joinShared: the read lease joined
	wait  chan struct{}   // joinWait: closed when the acquisition has ended
	ctx   context.Context // joinContend: the acquisition's, which cancel ends
	// joinContend: a requeue ticket left for a writer (the reader cancels
	// it) and the time not to contend before.
	cancel    context.CancelFunc
	tk        remote.Ticket
	notBefore time.Time
}

// join lets a local reader (the caller holds the entry as one) share the
// run's remote read lease if it is live and has served fewer than
// perRead readers, or wait for an acquisition in progress (a TryRLock
// takes a lease of its own instead), or begin the acquisition of a new
// one, with a ctx derived from caller, as [cohort.begin] does.
func (c *rwCohort) join(caller context.Context, perRead int, try bool) readTurn {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.run
	switch {
	case c.closed:
		return readTurn{step: joinClosed}
	case s != nil && s.served < perRead && !ended(s.remote):
		s.refs++
		s.served++
		return readTurn{step: joinShared, share: s}
	case c.contending != nil && try:
		return readTurn{step: joinOwn}
	case c.contending != nil:
		return readTurn{step: joinWait, wait: c.contending}
	}
	ctx, cancel := context.WithCancel(caller)
	tk, notBefore := c.beginLocked(cancel, true)
	return readTurn{step: joinContend, ctx: ctx, cancel: cancel, tk: tk, notBefore: notBefore}
}

// installRead ends the acquisition that join began: unless it failed
// (err) or Close came meanwhile (closed), r becomes the run's read lease,
// held by the caller (s). The caller closes contending once it has
// released whatever Close must not find held.
func (c *rwCohort) installRead(r mutex.Lease, err error) (s *readShare, closed bool, contending chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	closed = c.closed
	if err == nil && !closed {
		s = &readShare{remote: r, refs: 1, served: 1}
		c.run = s
		c.shares = append(c.shares, s)
	}
	return s, closed, c.endLocked()
}

// addOwn records r, a remote read lease a reader took for itself beside
// an acquisition in progress, held by that reader (s), unless Close came
// first (closed).
func (c *rwCohort) addOwn(r mutex.Lease) (s *readShare, closed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, true
	}
	s = &readShare{remote: r, refs: 1, served: 1}
	c.shares = append(c.shares, s)
	return s, false
}

// leave ends a local reader's share of s. The last reader of s takes it
// from the cohort and gets its remote read lease to release (nil: still
// shared, or Close released it).
func (c *rwCohort) leave(s *readShare) mutex.Lease {
	c.mu.Lock()
	defer c.mu.Unlock()
	s.refs--
	if s.refs > 0 {
		return nil
	}
	c.drop(s)
	if c.closed {
		return nil
	}
	return s.remote
}

// drop removes s from c.shares. c.mu is held.
func (c *rwCohort) drop(s *readShare) {
	for i, x := range c.shares {
		if x == s {
			c.shares[i] = c.shares[len(c.shares)-1]
			c.shares[len(c.shares)-1] = nil
			c.shares = c.shares[:len(c.shares)-1]
			break
		}
	}
	if c.run == s {
		c.run = nil
	}
}

// shutdownAll is [cohort.shutdown] for Close, in the same step taking
// the readers' remote read leases too (after the write lease, if any).
func (c *rwCohort) shutdownAll(s *seized) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shutdownLocked(s)
	for _, sh := range c.shares {
		s.remotes = append(s.remotes, sh.remote)
	}
	c.run, c.shares = nil, nil
}
