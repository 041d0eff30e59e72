package hybrid

import (
	"testing"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

func TestMultiConformance(t *testing.T) {
	leakcheck.Register(t)
	t.Run("fake", func(t *testing.T) {
		f := newFake()
		keyedtest.RunMulti(t, keyedtest.Config{
			New:       func(t *testing.T) mutex.Keyed[string] { return newT(t, f) },
			Instances: 3,
		})
	})
	t.Run("local/bound=0", func(t *testing.T) {
		var remote local.Mutex[string]
		keyedtest.RunMulti(t, keyedtest.Config{
			New:       func(t *testing.T) mutex.Keyed[string] { return newT(t, &remote, WithMaxLocalHandoffs(0)) },
			Instances: 3,
		})
	})
}

func TestMultiDistributedConformance(t *testing.T) {
	leakcheck.Register(t)
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			prefix := uniquePrefix(t)
			keyedtest.RunMulti(t, keyedtest.Config{
				New:        func(t *testing.T) mutex.Keyed[string] { return process(t, b, prefix, nil) },
				Instances:  3,
				Goroutines: 4,
			})
		})
	}
}
