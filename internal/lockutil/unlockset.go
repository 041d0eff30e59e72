package lockutil

import (
	"sync"

	"github.com/keyedmutex/keyedmutex/mutex"
)

// UnlockParallel unlocks leases at once, each in its own goroutine but
// the first, and returns each Unlock's error by position: the UnlockSet
// of distributed and hybrid, whose releases are round trips that can
// leave together.
func UnlockParallel(leases []mutex.Lease) []error {
	errs := make([]error, len(leases))
	if len(leases) == 0 {
		return errs
	}
	var wg sync.WaitGroup
	for i, l := range leases[1:] {
		wg.Go(func() { errs[i+1] = l.Unlock() })
	}
	errs[0] = leases[0].Unlock()
	wg.Wait()
	return errs
}
