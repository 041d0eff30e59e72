// Package rlocker is the state shared by the read-side [sync.Locker]
// adapters of one [mutex.RWKeyed] (its RLocker method), as
// [lockutil.LockerSet] is for the write side: a key may have many read
// holdings at once, so the set keeps a list of leases per key, and an
// RLocker's Unlock ends any one of them, as [sync.RWMutex.RUnlock] does.
package rlocker

import (
	"context"
	"fmt"
	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"sync"

	"github.com/keyedmutex/keyedmutex/mutex"
)

// Set holds the read leases that the RLockers of one RWKeyed took. The
// zero value is ready to use. A Set must not be copied after first use.
type Set[K comparable] struct {
	mu   sync.Mutex // guards held
	held map[K][]mutex.Lease
}

// Locker returns a [sync.Locker] whose Lock takes a read lease of key from
// m, as the Lock of [lockutil.LockerSet.Locker] takes a write lease, with the
// same rules: it retries errors that can heal (reporting each to onError,
// which may be nil), panics on [mutex.ErrInvalidKey], and blocks for good
// on [mutex.ErrClosed]. Its Unlock releases one read lease of key taken
// through this Set, and panics if there is none, like
// [sync.RWMutex.RUnlock]; errors of the lease's Unlock go to onError.
func (s *Set[K]) Locker(m mutex.RWKeyed[K], key K, onError func(key K, err error)) sync.Locker {
	return &locker[K]{set: s, m: m, key: key, onError: onError}
}

type locker[K comparable] struct {
	set     *Set[K]
	m       mutex.RWKeyed[K]
	key     K
	onError func(K, error)
}

func (l *locker[K]) Lock() {
	// The retry rules are LockerSet's: run its Lock over RLock, through
	// a LockerSet of our own, and keep the lease it took.
	r := &reader[K]{m: l.m}
	var once lockutil.LockerSet[K]
	once.Locker(r, l.key, l.onError).Lock()
	l.set.mu.Lock()
	if l.set.held == nil {
		l.set.held = make(map[K][]mutex.Lease)
	}
	l.set.held[l.key] = append(l.set.held[l.key], r.lease)
	l.set.mu.Unlock()
}

func (l *locker[K]) Unlock() {
	l.set.mu.Lock()
	leases := l.set.held[l.key]
	var lease mutex.Lease
	if n := len(leases); n > 0 {
		lease = leases[n-1]
		leases[n-1] = nil
		if n == 1 {
			delete(l.set.held, l.key)
		} else {
			l.set.held[l.key] = leases[:n-1]
		}
	}
	l.set.mu.Unlock()
	if lease == nil {
		panic(fmt.Sprintf("mutex: RLocker(%v).Unlock of a key not read-locked", l.key))
	}
	if err := lease.Unlock(); err != nil && l.onError != nil {
		l.onError(l.key, err)
	}
}

// reader is a [mutex.Keyed] whose Lock is m's RLock; it keeps the last
// lease it returned.
type reader[K comparable] struct {
	m     mutex.RWKeyed[K]
	lease mutex.Lease
}

func (r *reader[K]) Lock(ctx context.Context, key K) (mutex.Lease, error) {
	l, err := r.m.RLock(ctx, key)
	if err == nil {
		r.lease = l
	}
	return l, err
}

func (r *reader[K]) TryLock(ctx context.Context, key K) (mutex.Lease, error) {
	return r.m.TryRLock(ctx, key)
}

func (r *reader[K]) Locker(key K) sync.Locker { return r.m.RLocker(key) }
