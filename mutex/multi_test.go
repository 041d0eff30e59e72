package mutex_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/keyedmutex/keyedmutex/mutex"
)

func TestSortKeys(t *testing.T) {
	got, err := mutex.SortKeys([]string{"b", "a", "c", "a", "ab", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "ab", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("SortKeys(strings) = %v; want %v", got, want)
	}
	ints, err := mutex.SortKeys([]int{10, -3, 2, 10})
	if err != nil || !slices.Equal(ints, []int{-3, 2, 10}) {
		t.Errorf("SortKeys(ints) = %v, %v; want [-3 2 10]", ints, err)
	}
	type myString string
	mixed, err := mutex.SortKeys([]any{2.5, uint8(7), "b", -1, myString("a"), "a", 1})
	if err != nil {
		t.Fatal(err)
	}
	// Strings (by bytes, then type name on a tie), ints, uints, floats.
	if want := []any{myString("a"), "a", "b", -1, 1, uint8(7), 2.5}; !slices.Equal(mixed, want) {
		t.Errorf("SortKeys(mixed) = %v; want %v", mixed, want)
	}
	if _, err := mutex.SortKeys([]float64{1, math.NaN()}); !errors.Is(err, mutex.ErrInvalidKey) {
		t.Errorf("SortKeys with a NaN = %v; want ErrInvalidKey", err)
	}
}

// TestSortKeysHashed: keys without a natural order (structs, pointers)
// get one order whatever the order they are given in.
func TestSortKeysHashed(t *testing.T) {
	type pair struct{ a, b int }
	keys := make([]pair, 200)
	for i := range keys {
		keys[i] = pair{i, -i}
	}
	first, err := mutex.SortKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	slices.Reverse(keys)
	second, err := mutex.SortKeys(keys)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(first, second) || len(first) != len(keys) {
		t.Error("SortKeys of the same struct keys in another order gave another order")
	}
	var nilKey any
	if _, err := mutex.SortKeys([]any{nilKey, pair{1, 2}, new(int), "x"}); err != nil {
		t.Errorf("SortKeys with a nil interface key = %v", err)
	}
}

// sets is a Keyed of fake leases that fails Lock of the keys in fail.
type sets struct {
	mu     sync.Mutex
	leases map[string]*keyedtest.FakeLease
	fail   map[string]error
	locked []string
}

func newSets() *sets {
	return &sets{leases: map[string]*keyedtest.FakeLease{}, fail: map[string]error{}}
}

func (s *sets) Lock(ctx context.Context, key string) (mutex.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail[key]; err != nil {
		return nil, fmt.Errorf("lock %s: %w", key, err)
	}
	if l := s.leases[key]; l != nil && l.Err() == nil {
		return nil, fmt.Errorf("lock %s: %w", key, mutex.ErrLocked)
	}
	l := keyedtest.NewFakeLease()
	s.leases[key] = l
	s.locked = append(s.locked, key)
	return l, nil
}
func (s *sets) TryLock(ctx context.Context, key string) (mutex.Lease, error) { return s.Lock(ctx, key) }
func (s *sets) Locker(string) sync.Locker                                    { panic("unused") }

func (s *sets) held(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.leases[key]
	return l != nil && l.Err() == nil
}

func TestLockAllFallback(t *testing.T) {
	m := newSets()
	ctx := context.Background()
	set, err := mutex.LockAll(ctx, m, "c", "a", "b", "a")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(m.locked, want) || !slices.Equal(set.Keys(), want) {
		t.Errorf("locked %v, Keys() %v; want both %v (sorted, duplicates once)", m.locked, set.Keys(), want)
	}
	if err := set.Unlock(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c"} {
		if m.held(k) {
			t.Errorf("%s held after Unlock", k)
		}
	}
}

// TestLockAllReleasesOnFailure: a key that cannot be locked makes LockAll
// release the keys before it and return that key's error.
func TestLockAllReleasesOnFailure(t *testing.T) {
	m := newSets()
	boom := errors.New("backend down")
	m.fail["c"] = boom
	_, err := mutex.LockAll(context.Background(), m, "d", "c", "a", "b")
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "c") {
		t.Fatalf("LockAll = %v; want the error of c", err)
	}
	for _, k := range []string{"a", "b", "d"} {
		if m.held(k) {
			t.Errorf("%s held after a failed LockAll", k)
		}
	}
	if _, err := mutex.LockAll(context.Background(), nil, "a"); err == nil {
		t.Error("LockAll(nil Keyed) succeeded")
	}
}

// TestLeaseSetLost: the loss of one key's lease closes Done, cancels
// WithContext with cause ErrLost, and Err and Unlock name the key.
func TestLeaseSetLost(t *testing.T) {
	m := newSets()
	set, err := mutex.LockAll(context.Background(), m, "a", "b", "c")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := set.WithContext(context.Background())
	defer cancel()
	done := set.Done()
	m.mu.Lock()
	m.leases["b"].End(fmt.Errorf("expired: %w", mutex.ErrLost))
	m.mu.Unlock()
	<-done
	<-ctx.Done()
	if cause := context.Cause(ctx); !errors.Is(cause, mutex.ErrLost) {
		t.Errorf("cause = %v; want ErrLost", cause)
	}
	if err := set.Err(); !errors.Is(err, mutex.ErrLost) || !strings.Contains(err.Error(), "key b") {
		t.Errorf("Err() = %v; want ErrLost naming key b", err)
	}
	err = set.Unlock()
	if !errors.Is(err, mutex.ErrLost) || !strings.Contains(err.Error(), "b") {
		t.Errorf("Unlock() = %v; want ErrLost naming b", err)
	}
	if m.held("a") || m.held("c") {
		t.Error("the other keys are still held after Unlock")
	}
	if err := set.Unlock(); !errors.Is(err, mutex.ErrUnlocked) {
		t.Errorf("second Unlock = %v; want ErrUnlocked", err)
	}
}

// TestLeaseSetDoneAfterUnlock: Done called after Unlock is closed, and a
// watcher started before Unlock ends with it.
func TestLeaseSetDoneAfterUnlock(t *testing.T) {
	m := newSets()
	set, err := mutex.LockAll(context.Background(), m, "a", "b")
	if err != nil {
		t.Fatal(err)
	}
	done := set.Done()
	if err := set.Unlock(); err != nil {
		t.Fatal(err)
	}
	<-done
	<-set.Done()
	if err := set.Err(); !errors.Is(err, mutex.ErrUnlocked) {
		t.Errorf("Err() = %v; want ErrUnlocked", err)
	}
}
