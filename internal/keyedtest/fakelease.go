package keyedtest

import (
	"sync"

	"github.com/keyedmutex/keyedmutex/mutex"
)

// FakeLease is a [mutex.Lease] that a test ends by hand, with End, or
// by Unlock. Its token is 1.
type FakeLease struct {
	once sync.Once
	done chan struct{}
	mu   sync.Mutex // guards err
	err  error
}

// NewFakeLease returns a held FakeLease.
func NewFakeLease() *FakeLease { return &FakeLease{done: make(chan struct{})} }

// End ends the lease with err and reports whether it did (false: it had
// ended already).
func (l *FakeLease) End(err error) bool {
	ended := false
	l.once.Do(func() {
		l.mu.Lock()
		l.err = err
		l.mu.Unlock()
		close(l.done)
		ended = true
	})
	return ended
}

// Unlock ends the lease with mutex.ErrUnlocked, or returns how it ended.
func (l *FakeLease) Unlock() error {
	if l.End(mutex.ErrUnlocked) {
		return nil
	}
	return l.Err()
}

// Done is closed when the lease ends.
func (l *FakeLease) Done() <-chan struct{} { return l.done }

// Err is nil while held, then what ended the lease.
func (l *FakeLease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Token returns 1.
func (l *FakeLease) Token() uint64 { return 1 }
