package keyedtest

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// HeapAlloc returns HeapAlloc after two GC cycles (sync.Pool keeps its
// contents for one).
func HeapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// CheckHeap fails t if the heap grew, from before to after (both
// [HeapAlloc]), by more than a leak-free run can explain. The bound is
// generous: the leaks it is for are tens of megabytes.
func CheckHeap(t testing.TB, what string, before, after uint64) {
	t.Helper()
	if limit := 2*before + 4<<20; after > limit {
		t.Errorf("%s: HeapAlloc = %d KiB after, %d KiB before; want at most %d KiB", what, after>>10, before>>10, limit>>10)
	}
}

// LockPanics fails t unless l.Lock() panics with a value whose text
// contains want (a sync.Locker has no error to return).
func LockPanics(t testing.TB, what string, l sync.Locker, want string) {
	t.Helper()
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), want) {
			t.Errorf("%s.Lock() panicked with %v; want a panic containing %q", what, r, want)
		}
	}()
	l.Lock()
}
