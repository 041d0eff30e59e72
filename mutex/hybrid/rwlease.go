package hybrid

import (
	"github.com/keyedmutex/keyedmutex/internal/keylock"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// rwLease is one local holding of a key of an RWMutex: a writer's share
// of the cohort's remote write lease, or a reader's share of the run's
// remote read lease. Its Token is the fencing token: a writer's own, from
// the block its remote write lease reserved; a reader's is its remote
// read lease's. A lost remote read lease ends every local read lease of
// its run.
type rwLease[K comparable] struct {
	holding[K]
	e     *keylock.RWEntry[K, rwCohort] // ours while not unlocked
	share *readShare                    // a reader's remote read lease and its count; nil for a writer
}

// newLease returns a local lease of e on the remote lease r with token:
// a writer's (s is nil), or a reader's share of s.
func (m *RWMutex[K]) newLease(e *keylock.RWEntry[K, rwCohort], s *readShare, r mutex.Lease, token uint64) *rwLease[K] {
	l := &rwLease[K]{e: e, share: s}
	l.core, l.c, l.key, l.remote, l.token = &m.core, &e.Value.cohort, e.Key(), r, token
	return l
}

// Unlock ends the holding. A writer hands the remote write lease to the
// next local writer, or releases it; a reader leaves its run, and the
// last reader of the run releases the run's remote read lease. It
// returns the loss of the remote lease, if it was lost while held.
func (l *rwLease[K]) Unlock() error {
	lost, again := l.beginUnlock()
	if again != nil {
		return again
	}
	var err error
	if l.share == nil {
		err = l.core.release(rwWriter[K]{l.e}, &l.e.Value.cohort, lost != nil)
	} else {
		err = leaveRead(l.e, l.share)
	}
	return l.endUnlock(lost, err)
}
