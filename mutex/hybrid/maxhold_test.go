package hybrid

import (
	"errors"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
)

// TestDistributedMaxHold: a remote lease that reaches its maximum hold is
// lost, and the local holder's lease with it, carrying ErrMaxHold; local
// exclusion holds until that holder's Unlock, and the next local waiter
// then acquires the remote lease afresh.
func TestDistributedMaxHold(t *testing.T) {
	leakcheck.Register(t)
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			// A maximum hold below TTL/3: the remote lease is never
			// renewed, so it is lost at its TTL, whatever the load.
			m := process(t, b, uniquePrefix(t), []distributed.Option{
				distributed.WithTTL(300 * time.Millisecond), distributed.WithMaxHold(50 * time.Millisecond)})
			key := keyedtest.Key(t)
			a := mustLock(t, m, key)
			got := lockQueued(t, m, key)
			select {
			case <-a.Done():
			case <-time.After(wait):
				t.Fatal("Done() not closed after the remote lease's maximum hold")
			}
			isMaxHold := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, mutex.ErrLost) || !errors.Is(err, distributed.ErrMaxHold) {
					t.Errorf("%s = %v; want an error satisfying ErrLost and distributed.ErrMaxHold", what, err)
				}
			}
			isMaxHold("Err()", a.Err())
			queued(t, m, key, 1) // still excluded locally
			isMaxHold("Unlock()", a.Unlock())
			l := <-got
			if l == nil {
				t.FailNow()
			}
			if l.Token() <= a.Token() {
				t.Errorf("Token() = %d; want > %d", l.Token(), a.Token())
			}
			if err := l.Unlock(); err != nil && !errors.Is(err, distributed.ErrMaxHold) {
				t.Errorf("Unlock() = %v; want nil, or a loss at the maximum hold", err)
			}
		})
	}
}
