package mutex

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"reflect"
	"slices"
	"sync"
)

// ErrNoKeys is returned by [LockAll], [TryLockAll] and [DoAll] for an
// empty set of keys. An empty set is refused rather than "locked" with a
// lease that holds nothing: it is almost always a bug of the caller (a
// filter that kept no key), and a lease of nothing would hide it.
var ErrNoKeys = errors.New("mutex: no keys to lock (an empty set)")

// Orderer is implemented by a [Keyed] that defines the global order in
// which [LockAll] takes keys. Every caller that locks several keys of the
// same locks, in any process, must take them in one order, or two of them
// can each hold a key the other waits for: a deadlock.
//
// LockOrder returns the distinct keys of keys, in lock order, as a new
// slice. Keys that the implementation locks with one lock (two values
// that encode to the same Redis key, say) count as one: the first of
// them is kept. An invalid key is an error naming it, satisfying
// errors.Is(err, [ErrInvalidKey]); nothing is locked by LockOrder.
type Orderer[K comparable] interface {
	LockOrder(keys []K) ([]K, error)
}

// SetLocker is implemented by a [Keyed] that has its own way to lock
// several keys (the Redis mutex takes free keys of one server with one
// script). [LockAll] and [TryLockAll] call it with the result of the
// Keyed's [Orderer] (or of [SortKeys] if it has none): distinct, valid
// keys in lock order.
//
// LockSet returns one lease per key, in the order of keys, or an error
// and nothing held: a LockSet whose ctx ends releases what it took and
// leaves no queue entry behind. It must take keys in the given order,
// never wait for a key while it holds a later one, and keep its place in
// the queue of the key it waits for (no release and retry). TryLockSet
// takes every key or none, never waits, and returns an error satisfying
// errors.Is(err, [ErrLocked]) naming a key that was held.
type SetLocker[K comparable] interface {
	LockSet(ctx context.Context, keys []K) ([]Lease, error)
	TryLockSet(ctx context.Context, keys []K) ([]Lease, error)
}

// SetUnlocker is implemented by a [Keyed] that releases the leases of a
// set its own way: the Redis mutex releases them together, in about one
// round trip. UnlockSet unlocks every lease (leases from one LockAll of
// this Keyed) and returns each one's error, by position.
// [LeaseSet.Unlock] uses it; without it, it unlocks the leases one by
// one, in the reverse of the lock order.
type SetUnlocker interface {
	UnlockSet(leases []Lease) []error
}

// LockAll locks every key of keys on m and returns one [LeaseSet] for
// them all, or an error and nothing held. It blocks until it holds every
// key, ctx is done, or the backend fails; on ctx end the error satisfies
// errors.Is(err, ctx.Err()) and whatever it had taken is released. If
// the lease of a key taken first is found lost by the time the last key
// is taken (a Redis restart while LockAll waited), LockAll releases
// everything and returns an error satisfying errors.Is(err, [ErrLost]):
// retry it.
//
// Duplicate keys are collapsed. An empty set is refused with
// [ErrNoKeys]; an invalid key with an error naming it (satisfying
// errors.Is(err, [ErrInvalidKey])) before any key is taken.
//
// Keys are taken one at a time in the global lock order of m: its
// [Orderer] if it implements one, else the order of [SortKeys]. So
// callers that lock overlapping sets, in any order of their own, cannot
// deadlock one another. A LockAll that waits holds the keys before the
// one it waits for and keeps its place in that key's queue (FIFO): it
// never gives keys back to retry, so it cannot livelock either. If m
// implements [SetLocker], LockAll uses it (fewer round trips).
func LockAll[K comparable](ctx context.Context, m Keyed[K], keys ...K) (*LeaseSet[K], error) {
	return lockAll(ctx, m, keys, false)
}

// TryLockAll is LockAll that does not wait: it takes every key if none is
// held now, else nothing, and returns an error satisfying
// errors.Is(err, [ErrLocked]) that names a held key.
func TryLockAll[K comparable](ctx context.Context, m Keyed[K], keys ...K) (*LeaseSet[K], error) {
	return lockAll(ctx, m, keys, true)
}

func lockAll[K comparable](ctx context.Context, m Keyed[K], keys []K, try bool) (*LeaseSet[K], error) {
	op := "LockAll"
	if try {
		op = "TryLockAll"
	}
	switch {
	case ctx == nil:
		return nil, fmt.Errorf("mutex: %s: nil context.Context (use context.Background())", op)
	case m == nil:
		return nil, fmt.Errorf("mutex: %s: nil Keyed", op)
	case len(keys) == 0:
		return nil, fmt.Errorf("mutex: %s: %w", op, ErrNoKeys)
	}
	var (
		order []K
		err   error
	)
	if o, ok := m.(Orderer[K]); ok {
		order, err = o.LockOrder(keys)
	} else {
		order, err = SortKeys(keys)
	}
	if err != nil {
		return nil, fmt.Errorf("mutex: %s: %w", op, err)
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("mutex: %s: %w", op, ErrNoKeys)
	}
	var leases []Lease
	if s, ok := m.(SetLocker[K]); ok {
		if try {
			leases, err = s.TryLockSet(ctx, order)
		} else {
			leases, err = s.LockSet(ctx, order)
		}
	} else {
		leases, err = LockInOrder(ctx, m, order, try)
	}
	if err != nil {
		return nil, err
	}
	if len(leases) != len(order) {
		errs := releaseLeases(order, leases)
		return nil, errors.Join(fmt.Errorf("mutex: %s: %T returned %d leases for %d keys", op, m, len(leases), len(order)), errs)
	}
	for i, l := range leases {
		// A lease taken first may have been lost while LockAll waited for
		// a later key: then the set was never held as a whole.
		if lerr := l.Err(); lerr != nil {
			return nil, errors.Join(fmt.Errorf("mutex: %s: the lease of %v ended while waiting for the other keys: %w", op, order[i], lerr), releaseLeases(order, leases))
		}
	}
	return newLeaseSet(m, order, leases), nil
}

// LockInOrder is the plain way to lock a set: it locks (or, with try,
// try-locks) keys one at a time, in the order given, with m's Lock or
// TryLock. If one fails it releases, last first, what it took, and
// returns that error. keys must be distinct and in m's lock order;
// [LockAll] is the call that makes them so. A [SetLocker] may use it for
// the keys it has no faster way to take.
func LockInOrder[K comparable](ctx context.Context, m Keyed[K], keys []K, try bool) ([]Lease, error) {
	leases := make([]Lease, 0, len(keys))
	for _, k := range keys {
		var (
			l   Lease
			err error
		)
		if try {
			l, err = m.TryLock(ctx, k)
		} else {
			l, err = m.Lock(ctx, k)
		}
		if err != nil {
			return nil, errors.Join(err, releaseLeases(keys, leases))
		}
		leases = append(leases, l)
	}
	return leases, nil
}

// releaseLeases unlocks leases (of keys[i] each), last first, and joins
// their errors.
func releaseLeases[K comparable](keys []K, leases []Lease) error {
	var errs []error
	for i := len(leases) - 1; i >= 0; i-- {
		if err := leases[i].Unlock(); err != nil {
			errs = append(errs, fmt.Errorf("mutex: release %v: %w", keys[i], err))
		}
	}
	return errors.Join(errs...)
}

// DoAll is [Do] for a set of keys: it locks keys with [LockAll], runs f
// under a context that is cancelled, with cause [ErrLost], if any key's
// lease is lost meanwhile, and always unlocks every key, even if f
// panics. It returns f's error joined with the Unlock's; if the keys
// could not be taken, that error, and f does not run.
func DoAll[K comparable](ctx context.Context, m Keyed[K], keys []K, f func(ctx context.Context) error) error {
	if f == nil {
		return errors.New("mutex: DoAll: nil function")
	}
	return DoAllLeases(ctx, m, keys, func(ctx context.Context, _ *LeaseSet[K]) error { return f(ctx) })
}

// DoAllLeases is DoAll for a function that needs the leases (their
// fencing tokens).
func DoAllLeases[K comparable](ctx context.Context, m Keyed[K], keys []K, f func(ctx context.Context, s *LeaseSet[K]) error) (err error) {
	if f == nil {
		return errors.New("mutex: DoAll: nil function")
	}
	s, err := LockAll(ctx, m, keys...)
	if err != nil {
		return err
	}
	lctx, cancel := s.WithContext(ctx)
	defer func() {
		cancel()
		if uerr := s.Unlock(); uerr != nil {
			err = errors.Join(err, fmt.Errorf("mutex: DoAll: %w", uerr))
		}
	}()
	return f(lctx, s)
}

// A LeaseSet is one holding of a set of keys, returned by [LockAll] and
// [TryLockAll]: one [Lease] per key. It is safe for concurrent use.
type LeaseSet[K comparable] struct {
	keys      []K
	leases    []Lease
	unlockSet SetUnlocker // nil: one by one

	mu       sync.Mutex
	unlocked bool
	done     chan struct{} // made by the first Done
	stop     chan struct{} // ends the watcher Done started
}

func newLeaseSet[K comparable](m Keyed[K], keys []K, leases []Lease) *LeaseSet[K] {
	s := &LeaseSet[K]{keys: keys, leases: leases}
	if u, ok := m.(SetUnlocker); ok && len(leases) > 1 {
		s.unlockSet = u
	}
	return s
}

// Keys returns the keys of the set, distinct, in the order they were
// locked (the lock order).
func (s *LeaseSet[K]) Keys() []K { return slices.Clone(s.keys) }

// Lease returns the lease of key, or nil if key is not in the set (a
// duplicate that the lock order collapsed into another key is not).
func (s *LeaseSet[K]) Lease(key K) Lease {
	for i, k := range s.keys {
		if k == key {
			return s.leases[i]
		}
	}
	return nil
}

// Token returns the fencing token of key's lease, and false if key is not
// in the set.
func (s *LeaseSet[K]) Token(key K) (uint64, bool) {
	if l := s.Lease(key); l != nil {
		return l.Token(), true
	}
	return 0, false
}

// Unlock releases every key, in the reverse of the lock order, and
// returns their errors joined, each naming its key (one satisfying
// errors.Is(err, [ErrLost]) for a lease lost while held). A second call
// returns [ErrUnlocked].
func (s *LeaseSet[K]) Unlock() error {
	s.mu.Lock()
	if s.unlocked {
		s.mu.Unlock()
		return ErrUnlocked
	}
	s.unlocked = true
	if s.stop != nil {
		close(s.stop)
	}
	s.mu.Unlock()
	var err error
	if s.unlockSet != nil {
		errs := s.unlockSet.UnlockSet(s.leases)
		for i, e := range errs {
			if e != nil && i < len(s.keys) {
				errs[i] = fmt.Errorf("mutex: release %v: %w", s.keys[i], e)
			}
		}
		err = errors.Join(errs...)
	} else {
		err = releaseLeases(s.keys, s.leases)
	}
	s.mu.Lock()
	if s.done != nil {
		select {
		case <-s.done:
		default:
			close(s.done)
		}
	}
	s.mu.Unlock()
	return err
}

// Err is nil while every key is held; then an error satisfying
// errors.Is(err, [ErrLost]) that names the first key (in lock order)
// whose lease was lost, or, after Unlock, [ErrUnlocked].
func (s *LeaseSet[K]) Err() error {
	for i, l := range s.leases {
		if err := l.Err(); err != nil && !errors.Is(err, ErrUnlocked) {
			return fmt.Errorf("mutex: key %v: %w", s.keys[i], err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unlocked {
		return ErrUnlocked
	}
	return nil
}

// Done returns a channel that is closed when the set ends: at Unlock, or
// when any key's lease is lost (Err then names the key).
func (s *LeaseSet[K]) Done() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return s.done
	}
	s.done = make(chan struct{})
	if s.unlocked {
		close(s.done)
		return s.done
	}
	s.stop = make(chan struct{})
	cases := make([]reflect.SelectCase, 0, len(s.leases)+1)
	cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(s.stop)})
	for _, l := range s.leases {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(l.Done())})
	}
	done, stop := s.done, s.stop
	go func() {
		if i, _, _ := reflect.Select(cases); i == 0 {
			return // Unlock closes done
		}
		s.mu.Lock()
		select {
		case <-stop: // Unlock began: it closes done
		default:
			close(done)
		}
		s.mu.Unlock()
	}()
	return s.done
}

// WithContext is [WithLease] for the set: it returns a copy of parent
// that is cancelled, with cause [ErrLost], when any key's lease is lost,
// and plainly when the set is unlocked or cancel is called.
func (s *LeaseSet[K]) WithContext(parent context.Context) (context.Context, context.CancelFunc) {
	return WithLease(parent, setLease[K]{s})
}

// setLease shows a LeaseSet to WithLease, which reads only Done and Err.
type setLease[K comparable] struct{ s *LeaseSet[K] }

func (l setLease[K]) Unlock() error         { return l.s.Unlock() }
func (l setLease[K]) Done() <-chan struct{} { return l.s.Done() }
func (l setLease[K]) Err() error            { return l.s.Err() }
func (l setLease[K]) Token() uint64         { return 0 }

// SortKeys returns the distinct keys of keys in the default lock order,
// the one [LockAll] uses for a [Keyed] without an [Orderer]:
//
//   - strings sort by their bytes, integers and floating-point numbers by
//     value (keys whose type has one of these kinds, named types
//     included), in that order of kinds: the same order in every process;
//   - keys of any other comparable type (structs, arrays, pointers,
//     interfaces holding them) sort by a hash of their value
//     ([maphash.Comparable]) with a seed fixed for the process: an order
//     that every goroutine of the process shares, and that differs
//     between processes. A Keyed shared across processes with such keys
//     must implement Orderer (the Redis mutex does: it orders by the
//     encoded key).
//
// Two distinct values that compare equal on all of this (the same string
// under two named types, with K an interface; or a hash collision) are
// ordered by their type name, then by a second hash, then by their %#v
// form; if even that ties, SortKeys refuses the pair with an error
// naming both, rather than risk a deadlock. A NaN key is refused with
// [ErrInvalidKey]: it is not equal to itself, so it can never be
// unlocked.
func SortKeys[K comparable](keys []K) ([]K, error) {
	out := make([]K, 0, len(keys))
	seen := make(map[K]struct{}, len(keys))
	for _, k := range keys {
		if k != k {
			return nil, fmt.Errorf("%w: %v is not equal to itself (a NaN)", ErrInvalidKey, k)
		}
		if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		out = append(out, k)
	}
	var tie error
	slices.SortFunc(out, func(a, b K) int {
		c := compareKeys(a, b)
		if c == 0 && a != b && tie == nil {
			tie = fmt.Errorf("mutex: keys %#v and %#v cannot be ordered (they tie on every rule of SortKeys); lock them with an Orderer", a, b)
		}
		return c
	})
	if tie != nil {
		return nil, tie
	}
	return out, nil
}

// seeds of the hash order: fixed for the process.
var seed1, seed2 = maphash.MakeSeed(), maphash.MakeSeed()

// kind classes of the default order.
const (
	classString = iota
	classInt
	classUint
	classFloat
	classOther
)

func classOf(v reflect.Value) int {
	switch v.Kind() {
	case reflect.String:
		return classString
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return classInt
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return classUint
	case reflect.Float32, reflect.Float64:
		return classFloat
	}
	return classOther
}

func compareKeys[K comparable](a, b K) int {
	if a == b {
		return 0
	}
	// The common key types without reflection (by K itself, not by the
	// dynamic type of an interface K).
	switch pa := any(&a).(type) {
	case *string:
		return cmp.Compare(*pa, *any(&b).(*string))
	case *int:
		return cmp.Compare(*pa, *any(&b).(*int))
	case *int64:
		return cmp.Compare(*pa, *any(&b).(*int64))
	case *uint64:
		return cmp.Compare(*pa, *any(&b).(*uint64))
	}
	va, vb := reflect.ValueOf(any(a)), reflect.ValueOf(any(b))
	ca, cb := classOf(va), classOf(vb)
	if c := cmp.Compare(ca, cb); c != 0 {
		return c
	}
	var c int
	switch ca {
	case classString:
		c = cmp.Compare(va.String(), vb.String())
	case classInt:
		c = cmp.Compare(va.Int(), vb.Int())
	case classUint:
		c = cmp.Compare(va.Uint(), vb.Uint())
	case classFloat:
		c = cmp.Compare(va.Float(), vb.Float())
	default:
		c = cmp.Compare(maphash.Comparable(seed1, a), maphash.Comparable(seed1, b))
	}
	if c != 0 {
		return c
	}
	if c := cmp.Compare(typeName(va), typeName(vb)); c != 0 {
		return c
	}
	if c := cmp.Compare(maphash.Comparable(seed2, a), maphash.Comparable(seed2, b)); c != 0 {
		return c
	}
	return cmp.Compare(fmt.Sprintf("%#v", a), fmt.Sprintf("%#v", b))
}

func typeName(v reflect.Value) string {
	if !v.IsValid() {
		return "" // a nil interface
	}
	return v.Type().String()
}
