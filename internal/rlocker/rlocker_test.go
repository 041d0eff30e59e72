package rlocker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/keyedmutex/keyedmutex/internal/rlocker"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

// TestLocker: RLockers of a set hold read leases together, any of them
// releases one, and an Unlock with none left panics naming the key.
func TestLocker(t *testing.T) {
	var (
		m   local.RWMutex[string]
		set rlocker.Set[string]
		ctx = context.Background()
	)
	set.Locker(&m, "k", nil).Lock()
	set.Locker(&m, "k", nil).Lock()
	if _, err := m.TryLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryLock with two read holdings = %v; want ErrLocked", err)
	}
	set.Locker(&m, "k", nil).Unlock()
	if _, err := m.TryLock(ctx, "k"); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryLock with one read holding = %v; want ErrLocked", err)
	}
	set.Locker(&m, "k", nil).Unlock()
	l, err := m.TryLock(ctx, "k")
	if err != nil {
		t.Fatalf("TryLock after both Unlocks = %v; want nil", err)
	}
	l.Unlock()
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "k") {
			t.Errorf("Unlock without a read holding panicked with %v; want a panic naming the key", r)
		}
	}()
	set.Locker(&m, "k", nil).Unlock()
}

// TestLockerInvalidKey: a key that can never be locked panics at Lock.
func TestLockerInvalidKey(t *testing.T) {
	var (
		m   local.RWMutex[string]
		set rlocker.Set[string]
	)
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "invalid key") {
			t.Errorf("Lock of the empty key panicked with %v; want a panic naming the invalid key", r)
		}
	}()
	set.Locker(&m, "", nil).Lock()
}
