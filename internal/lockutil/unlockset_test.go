package lockutil_test

import (
	"errors"
	"testing"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// TestUnlockParallel: every lease is unlocked, and each error is
// returned at its lease's position.
func TestUnlockParallel(t *testing.T) {
	if errs := lockutil.UnlockParallel(nil); len(errs) != 0 {
		t.Errorf("UnlockParallel(nil) = %v; want no errors", errs)
	}
	ls := make([]*keyedtest.FakeLease, 5)
	leases := make([]mutex.Lease, len(ls))
	for i := range ls {
		ls[i] = keyedtest.NewFakeLease()
		leases[i] = ls[i]
	}
	ls[3].End(mutex.ErrLost) // its Unlock returns the loss
	errs := lockutil.UnlockParallel(leases)
	if len(errs) != len(leases) {
		t.Fatalf("%d errors for %d leases", len(errs), len(leases))
	}
	for i, err := range errs {
		if i == 3 {
			if !errors.Is(err, mutex.ErrLost) {
				t.Errorf("errs[3] = %v; want ErrLost", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("errs[%d] = %v; want nil", i, err)
		}
		if got := ls[i].Err(); !errors.Is(got, mutex.ErrUnlocked) {
			t.Errorf("lease %d: Err() = %v after UnlockParallel; want ErrUnlocked", i, got)
		}
	}
}
