// Package lockutil is what the three keyed mutexes of this module (local,
// distributed, hybrid) share in their implementations: the [sync.Locker]
// adapter ([LockerSet]), the classification of outcomes for an observer,
// the nil checks of their entry points, the default logger and the set of
// functions a lease runs when it ends ([Callbacks]). It is not part of
// the public contract, which is package mutex.
package lockutil

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyname"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// KeyError is the one form of an error about a key, in every package:
// "pkg: op key: cause", the user's key quoted if it is a string
// (shortened if long), as fmt's %v otherwise.
func KeyError(pkg, op string, key any, err error) error {
	return fmt.Errorf("%s: %s %s: %w", pkg, op, keyname.Quote(key), err)
}

// Logger returns l, or [slog.Default] (looked up now) if l is nil: the
// default of every WithLogger option of the module.
func Logger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.Default()
}

// ErrNilContext is the cause every entry point gives for a nil ctx.
var ErrNilContext = errors.New("nil context.Context (use context.Background())")

// IsNilPointer reports whether v is a typed nil pointer in an interface
// (a nil *redis.Client passed as a redis.UniversalClient, say), which a
// plain v == nil check misses.
func IsNilPointer(v any) bool {
	rv := reflect.ValueOf(v)
	return rv.Kind() == reflect.Pointer && rv.IsNil()
}

// OutcomeOf classifies the error of a Lock or TryLock (nil: Acquired).
func OutcomeOf(ctx context.Context, err error) mutex.Outcome {
	switch {
	case err == nil:
		return mutex.Acquired
	case errors.Is(err, mutex.ErrLocked):
		return mutex.Locked
	case errors.Is(err, mutex.ErrClosed):
		return mutex.Closed
	case ctx != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return mutex.Canceled
	}
	return mutex.Failed
}

// UnlockOutcome classifies the error of an Unlock for an Unlocked event:
// Released (nil), LostLease, or Failed (the release could not be made).
// report is false for a second Unlock (ErrUnlocked), which ends nothing.
func UnlockOutcome(err error) (o mutex.Outcome, report bool) {
	switch {
	case err == nil:
		return mutex.Released, true
	case errors.Is(err, mutex.ErrUnlocked):
		return 0, false
	case errors.Is(err, mutex.ErrLost):
		return mutex.LostLease, true
	}
	return mutex.Failed, true
}

// LockDone is the LockDone event of a Lock or TryLock (op) that returned
// err after wait; Backend and Key are the caller's to set.
func LockDone(ctx context.Context, op string, wait time.Duration, waited bool, err error) mutex.Event {
	return mutex.Event{Kind: mutex.LockDone, Op: op, Outcome: OutcomeOf(ctx, err), Wait: wait, Waited: waited, Err: err}
}

// Unlocked is the Unlocked event of an Unlock that returned err after a
// holding of hold; report is false for a second Unlock, which ends
// nothing and is not told. Backend and Key are the caller's to set.
func Unlocked(hold time.Duration, err error) (e mutex.Event, report bool) {
	o, report := UnlockOutcome(err)
	return mutex.Event{Kind: mutex.Unlocked, Outcome: o, Hold: hold, Err: err}, report
}

// Callbacks is the set of functions a lease's AfterDone registered, to run
// when the lease ends. It does no locking: the lease guards it with its
// own lock. The zero value is an empty set.
type Callbacks struct {
	m map[*func()]struct{}
}

// Add registers f and returns its handle for Remove.
func (c *Callbacks) Add(f func()) *func() {
	if c.m == nil {
		c.m = make(map[*func()]struct{})
	}
	p := &f
	c.m[p] = struct{}{}
	return p
}

// Remove unregisters the function of handle p and reports whether it was
// registered (false: it was started, or removed, already).
func (c *Callbacks) Remove(p *func()) bool {
	if _, ok := c.m[p]; !ok {
		return false
	}
	delete(c.m, p)
	return true
}

// Take empties the set and returns what it held, for Start after the
// lease's lock is released.
func (c *Callbacks) Take() Callbacks {
	t := *c
	c.m = nil
	return t
}

// Start runs every function of the set, each in its own goroutine.
func (c Callbacks) Start() {
	for f := range c.m {
		go (*f)()
	}
}
