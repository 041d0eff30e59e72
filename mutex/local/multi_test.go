package local

import (
	"testing"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/mutex"
)

func TestMultiConformance(t *testing.T) {
	leakcheck.Register(t)
	keyedtest.RunMulti(t, keyedtest.Config{
		New: func(t *testing.T) mutex.Keyed[string] {
			m := new(Mutex[string])
			t.Cleanup(func() { checkEmpty(t, m) })
			return m
		},
		Goroutines: 16,
	})
}
