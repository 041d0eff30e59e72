package distributed

import (
	"fmt"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// TestClusterMulti runs the multi-key conformance suite on a Redis
// Cluster of 3 masters (keys of a set live in different slots, on
// different masters), and checks that two keys of one hash slot are
// taken by one script.
func TestClusterMulti(t *testing.T) {
	leakcheck.Register(t)
	c := redistest.StartCluster(t, 3, 0)
	prefix := fmt.Sprintf("cm%d:", time.Now().UnixNano())
	newM := func(t *testing.T) *Mutex[string] {
		m, err := New[string](c.Client(t), WithPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	keyedtest.RunMulti(t, keyedtest.Config{
		New:        func(t *testing.T) mutex.Keyed[string] { return newM(t) },
		Instances:  3,
		Goroutines: 4,
	})
	t.Run("SameSlotOneScript", func(t *testing.T) {
		// Two keys whose hash tags share a slot (found by trying).
		bySlot := map[uint16]string{}
		var a, b string
		for i := 0; a == ""; i++ {
			k := fmt.Sprintf("%s/%d", t.Name(), i)
			s := slotOf(escapeTag(k))
			if other, ok := bySlot[s]; ok {
				a, b = other, k
			}
			bySlot[s] = k
		}
		cc := c.Client(t)
		cnt := &counter{}
		cc.AddHook(cnt)
		m, err := New[string](cc, WithPrefix(prefix))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		ctx := ctxT(t, 30*time.Second)
		for round := 0; round < 2; round++ { // the first loads the script
			before := cnt.Scripts.Load()
			s, err := mutex.LockAll(ctx, m, a, b)
			if err != nil {
				t.Fatalf("LockAll(%q, %q) of one slot = %v", a, b, err)
			}
			if got := cnt.Scripts.Load() - before; round == 1 && got != 1 {
				t.Errorf("LockAll of two free keys of one slot ran %d scripts; want 1", got)
			}
			if err := s.Unlock(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
