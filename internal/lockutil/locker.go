package lockutil

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyname"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// LockerSet is the state shared by the [sync.Locker] adapters of one
// [mutex.Keyed]: the lease each locked key holds. Implementations keep one
// LockerSet and return [LockerSet.Locker] from their Locker method, so
// that m.Locker(k).Lock() in one place and m.Locker(k).Unlock() in another
// behave like one [sync.Mutex].
//
// The zero value is ready to use. A LockerSet must not be copied after
// first use.
type LockerSet[K comparable] struct {
	mu   sync.Mutex // guards held
	held map[K]mutex.Lease
}

// Locker returns a [sync.Locker] for key backed by m.
//
// Its Lock blocks until it holds the lock: it retries errors from m
// that can heal (Redis unreachable, say) with a capped exponential
// backoff, reporting each to onError, which may be nil. It cannot return
// an error, so for the two that retrying cannot heal:
//
//   - [mutex.ErrInvalidKey] (a programming error) panics, with the error;
//   - [mutex.ErrClosed] (m was closed, as in a graceful shutdown that closes m
//     while a goroutine still locks) is reported to onError once, and
//     Lock then blocks until the process ends, as Lock of a sync.Mutex
//     that nobody will unlock does: a panic there would crash the
//     process in the middle of its shutdown, and returning would claim
//     a lock that is not held. A shutdown that must hear about it, or
//     that closes m while the process goes on, uses m.Lock with a ctx,
//     which returns an error satisfying errors.Is(err, mutex.ErrClosed).
//
// Its Unlock panics if key is not locked through a Locker of this set,
// like [sync.Mutex.Unlock]. Errors from the lease's Unlock, [mutex.ErrLost]
// included, go to onError; they do not panic.
func (s *LockerSet[K]) Locker(m mutex.Keyed[K], key K, onError func(key K, err error)) sync.Locker {
	return &locker[K]{set: s, m: m, key: key, onError: onError}
}

type locker[K comparable] struct {
	set     *LockerSet[K]
	m       mutex.Keyed[K]
	key     K
	onError func(K, error)
}

// Backoff bounds for retrying backend errors in the Locker adapter.
const (
	lockerMinBackoff = time.Millisecond
	lockerMaxBackoff = time.Second
)

// park blocks the goroutine of a Locker's Lock on a closed Keyed until the
// process ends. Tests replace it.
var park = func() { select {} }

func (l *locker[K]) Lock() {
	backoff := lockerMinBackoff
	for {
		lease, err := l.m.Lock(context.Background(), l.key)
		if err == nil {
			l.set.mu.Lock()
			if l.set.held == nil {
				l.set.held = make(map[K]mutex.Lease)
			}
			l.set.held[l.key] = lease
			l.set.mu.Unlock()
			return
		}
		if errors.Is(err, mutex.ErrInvalidKey) {
			panic(fmt.Sprintf("mutex: Locker(%s).Lock cannot succeed: %v", keyname.Quote(l.key), err))
		}
		if errors.Is(err, mutex.ErrClosed) {
			if l.onError != nil {
				l.onError(l.key, fmt.Errorf("mutex: Locker(%s).Lock blocks until the process ends: %w", keyname.Quote(l.key), err))
			}
			park()
			runtime.Goexit() // only if a test's park returned
		}
		if l.onError != nil {
			l.onError(l.key, err)
		}
		// Full jitter keeps many blocked adapters from retrying in step.
		time.Sleep(backoff/2 + rand.N(backoff/2+1))
		backoff = min(2*backoff, lockerMaxBackoff)
	}
}

func (l *locker[K]) Unlock() {
	l.set.mu.Lock()
	lease, ok := l.set.held[l.key]
	if ok {
		delete(l.set.held, l.key)
	}
	l.set.mu.Unlock()
	if !ok {
		panic(fmt.Sprintf("mutex: Locker(%s).Unlock of unlocked key", keyname.Quote(l.key)))
	}
	if err := lease.Unlock(); err != nil && l.onError != nil {
		l.onError(l.key, err)
	}
}
