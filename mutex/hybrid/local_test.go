package hybrid

import (
	"testing"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

// TestLocalConformance runs the suite with a local.Mutex as the remote:
// several hybrid instances over one local.Mutex stand for processes.
func TestLocalConformance(t *testing.T) {
	leakcheck.Register(t)
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"default", nil},
		{"bound=0", []Option{WithMaxLocalHandoffs(0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var remote local.Mutex[string]
			keyedtest.Run(t, keyedtest.Config{
				New:       func(t *testing.T) mutex.Keyed[string] { return newT(t, &remote, tc.opts...) },
				Instances: 3,
			})
		})
	}
}
