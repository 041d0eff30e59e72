package faulttest

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
)

// History records every holding of every lock in a run and checks the
// invariants of a keyed mutex over them (see [History.Check]).
//
// The recorded interval of a holding lies inside the real one: acquired
// is taken after Lock returns and released before Unlock is called. So
// an overlap in the record is an overlap in fact.
//
// A History is safe for concurrent use. Create it with [NewHistory].
type History struct {
	ttl   time.Duration
	bound time.Duration

	mu         sync.Mutex // guards the fields below
	holds      []*Hold
	faults     []window
	violations []string
	errSamples map[string]int // Lock errors other than ctx, by message shape

	locks, lockErrs, ctxErrs atomic.Int64
}

type window struct {
	name       string
	start, end time.Time // end zero: still on
	splitBrain bool      // see SplitBrain
}

// NewHistory returns a History for leases of length ttl (an overlap
// involving a lost lease is excused up to ttl after a fault ended) and a
// liveness bound: every Lock must return within bound of its ctx ending.
func NewHistory(ttl, bound time.Duration) *History {
	return &History{ttl: ttl, bound: bound}
}

// Hold is one recorded holding of a lock.
type Hold struct {
	h        *History
	Key      string
	Instance int
	Token    uint64
	Lease    mutex.Lease

	mu       sync.Mutex // guards the fields below
	acquired time.Time
	released time.Time // Unlock called
	returned time.Time // Unlock returned
	lost     bool
	lostErr  error // the lease's Err when it was found lost
	rejected int   // fenced writes rejected while this hold was not known lost
	early    bool  // taken before it was recorded (see TakenEarlier)
}

// TakenEarlier records that the hold's lease was taken some time before
// the hold was recorded: one key of a set (mutex.LockAll), taken while
// the set waited for its other keys. If that lease was lost meanwhile
// (near a fault), another holder may have held the key in between, with
// a greater token; the token order is then excused for this hold, as its
// loss is.
func (hd *Hold) TakenEarlier() {
	hd.mu.Lock()
	hd.early = true
	hd.mu.Unlock()
}

// Fault records that a fault named name begins now; the returned func
// records its end. Overlaps of a lost lease with another holding are
// excused only near a fault.
func (h *History) Fault(name string) (end func()) {
	h.mu.Lock()
	h.faults = append(h.faults, window{name: name, start: time.Now()})
	i := len(h.faults) - 1
	h.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			h.faults[i].end = time.Now()
			h.mu.Unlock()
		})
	}
}

// SplitBrain records that a fault begins now during which two holders of
// one key may overlap with neither told of a loss: a failover with
// asynchronous replication, where the old master goes on taking writes
// until it is demoted (Sentinel's documented split brain; fencing tokens
// are what protect a resource then). Overlaps, and fenced writes rejected
// for a holder not told of a loss, are excused near it; tokens must still
// increase, except that a hold of one instance may follow another's with
// a smaller token if the fenced resource refused its writes (the two
// masters' tokens need not interleave in order, and refusing the stale
// side is what fencing promises). The returned func records its end.
func (h *History) SplitBrain(name string) (end func()) {
	end = h.Fault(name)
	h.mu.Lock()
	h.faults[len(h.faults)-1].splitBrain = true
	h.mu.Unlock()
	return end
}

// Violation records a violation found by the test itself.
func (h *History) Violation(format string, args ...any) {
	h.mu.Lock()
	h.violations = append(h.violations, fmt.Sprintf(format, args...))
	h.mu.Unlock()
}

// Lock calls m.Lock(ctx, key) for instance and records the result: on
// success a Hold, which the caller must end with [Hold.Unlock]. It
// checks liveness: Lock must return within the bound after ctx ends.
func (h *History) Lock(ctx context.Context, m mutex.Keyed[string], instance int, key string) (*Hold, error) {
	var doneAt atomic.Int64
	stop := context.AfterFunc(ctx, func() { doneAt.Store(time.Now().UnixNano()) })
	lease, err := m.Lock(ctx, key)
	end := time.Now()
	stop()
	h.checkLiveness(ctx, key, end, doneAt.Load(), err)
	return h.record(instance, key, lease, err, end)
}

// Record records the outcome of a Lock or TryLock made by the caller,
// returning a Hold on success.
func (h *History) Record(instance int, key string, lease mutex.Lease, err error) (*Hold, error) {
	return h.record(instance, key, lease, err, time.Now())
}

func (h *History) record(instance int, key string, lease mutex.Lease, err error, at time.Time) (*Hold, error) {
	if err != nil {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			h.ctxErrs.Add(1)
		} else {
			h.lockErrs.Add(1)
			h.mu.Lock()
			if h.errSamples == nil {
				h.errSamples = make(map[string]int)
			}
			if msg := shape(err); h.errSamples[msg] > 0 || len(h.errSamples) < 10 {
				h.errSamples[msg]++
			}
			h.mu.Unlock()
		}
		return nil, err
	}
	h.locks.Add(1)
	hd := &Hold{h: h, Key: key, Instance: instance, Token: lease.Token(), Lease: lease, acquired: at}
	h.mu.Lock()
	h.holds = append(h.holds, hd)
	h.mu.Unlock()
	return hd, nil
}

func (h *History) checkLiveness(ctx context.Context, key string, end time.Time, doneAt int64, err error) {
	if dl, ok := ctx.Deadline(); ok && end.After(dl.Add(h.bound)) {
		h.Violation("liveness: Lock(%q) returned %v after its ctx deadline (bound %v, err %v)", key, end.Sub(dl), h.bound, err)
		return
	}
	if doneAt != 0 {
		if late := end.Sub(time.Unix(0, doneAt)); late > h.bound {
			h.Violation("liveness: Lock(%q) returned %v after its ctx was cancelled (bound %v, err %v)", key, late, h.bound, err)
		}
	}
}

// Write writes the hold's token to f for the hold's key. A rejection is
// recorded: at check time it is a violation unless the hold was lost.
func (hd *Hold) Write(f *Fenced) error {
	err := f.Write(hd.Key, hd.Token)
	if err != nil {
		hd.mu.Lock()
		hd.rejected++
		hd.mu.Unlock()
	}
	return err
}

// MarkLost records that the holder learned, some other way than Unlock,
// that its lease was lost.
func (hd *Hold) MarkLost() {
	err := hd.Lease.Err()
	hd.mu.Lock()
	hd.lost = true
	if hd.lostErr == nil {
		hd.lostErr = err
	}
	hd.mu.Unlock()
}

// Unlock records the release time and unlocks the lease. ErrLost, from
// Unlock or from Lease.Err, marks the hold lost.
func (hd *Hold) Unlock() error {
	hd.mu.Lock()
	hd.released = time.Now()
	hd.mu.Unlock()
	err := hd.Lease.Unlock()
	hd.mu.Lock()
	hd.returned = time.Now()
	hd.mu.Unlock()
	if errors.Is(err, mutex.ErrLost) || errors.Is(hd.Lease.Err(), mutex.ErrLost) {
		hd.MarkLost()
	}
	return err
}

// Lost reports whether the hold is known lost.
func (hd *Hold) Lost() bool {
	hd.mu.Lock()
	defer hd.mu.Unlock()
	return hd.lost
}

var addrRE = regexp.MustCompile(`\d+\.\d+\.\d+\.\d+:\d+`)

// shape shortens an error message to what tells errors apart: no
// addresses or ports.
func shape(err error) string {
	s := addrRE.ReplaceAllString(err.Error(), "ADDR")
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// LockErrors returns up to 10 kinds of Lock errors seen (other than ctx
// errors), with their counts.
func (h *History) LockErrors() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.errSamples))
	for k, v := range h.errSamples {
		out[k] = v
	}
	return out
}

// Acquisition is one successful Lock recorded in a History.
type Acquisition struct {
	Key      string
	Instance int
	Token    uint64
	At       time.Time // when Lock returned
}

// Acquisitions returns every successful Lock recorded so far, in the
// order they returned: what a test reads to measure how long a fault kept
// locks from being taken.
func (h *History) Acquisitions() []Acquisition {
	h.mu.Lock()
	out := make([]Acquisition, 0, len(h.holds))
	for _, hd := range h.holds {
		out = append(out, Acquisition{Key: hd.Key, Instance: hd.Instance, Token: hd.Token, At: hd.acquired})
	}
	h.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// Stats are the figures of a run.
type Stats struct {
	Acquisitions int64 // successful Locks
	LockErrors   int64 // Locks that failed other than by their ctx
	CtxErrors    int64 // Locks ended by their ctx
	Lost         int   // holds that learned they lost their lease
	Faults       int   // faults recorded with Fault
	Violations   int   // found by Check (call it first)
}

func (s Stats) String() string {
	return fmt.Sprintf("acquisitions=%d lock-errors=%d ctx-errors=%d lost=%d faults=%d violations=%d",
		s.Acquisitions, s.LockErrors, s.CtxErrors, s.Lost, s.Faults, s.Violations)
}

// Stats returns the figures so far.
func (h *History) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	lost := 0
	for _, hd := range h.holds {
		if hd.Lost() {
			lost++
		}
	}
	return Stats{
		Acquisitions: h.locks.Load(),
		LockErrors:   h.lockErrs.Load(),
		CtxErrors:    h.ctxErrs.Load(),
		Lost:         lost,
		Faults:       len(h.faults),
		Violations:   len(h.violations),
	}
}

// Check checks the recorded holdings and returns every violation found,
// together with those recorded before (liveness, [History.Violation]):
//
//   - every hold was unlocked;
//   - two holds of one key overlap only if one of them was lost near a
//     fault (within ttl after it ended);
//   - a hold is lost only near a fault;
//   - of two holds of one key, one after the other, the later has the
//     greater token (near a split brain, or its fenced writes were
//     refused);
//   - a fenced write was rejected only for a hold that was lost.
//
// Call it once, after every hold has been unlocked.
func (h *History) Check() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	byKey := make(map[string][]*Hold)
	for _, hd := range h.holds {
		byKey[hd.Key] = append(byKey[hd.Key], hd)
	}
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	// A hold is near a fault if the fault began before the hold's Unlock
	// returned (the loss may be found by the release itself) and ended at
	// most ttl before the hold began.
	near := func(hd *Hold, splitOnly bool) bool {
		end := hd.returned
		if end.IsZero() {
			end = now
		}
		for _, f := range h.faults {
			if splitOnly && !f.splitBrain {
				continue
			}
			fend := f.end
			if fend.IsZero() {
				fend = now
			}
			if hd.acquired.Before(fend.Add(h.ttl)) && f.start.Before(end) {
				return true
			}
		}
		return false
	}
	nearFault := func(hd *Hold) bool { return near(hd, false) }
	nearSplit := func(hd *Hold) bool { return near(hd, true) }
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		hs := byKey[key]
		sort.Slice(hs, func(i, j int) bool { return hs[i].acquired.Before(hs[j].acquired) })
		for i, a := range hs {
			aEnd := a.released
			if aEnd.IsZero() {
				add("hold of %q (instance %d, token %d) never unlocked", key, a.Instance, a.Token)
				aEnd = now
			}
			if a.lost && !nearFault(a) {
				add("lease of %q (instance %d, token %d) held from +%v to +%v lost with no fault near it (last fault %s): %v",
					key, a.Instance, a.Token, a.acquired.Sub(h.start()), aEnd.Sub(h.start()), h.lastFaultBefore(aEnd), a.lostErr)
			}
			if a.rejected > 0 && !a.lost && !nearSplit(a) {
				add("fencing: %d writes of %q (instance %d, token %d) rejected while its lease was not lost", a.rejected, key, a.Instance, a.Token)
			}
			nextSeen := false
			for _, b := range hs[i+1:] {
				if !b.acquired.Before(aEnd) {
					// b follows a: its token must be greater. One check per
					// hold suffices: tokens of later holds are checked
					// against b in turn.
					if !nextSeen {
						nextSeen = true
						// Across a split brain the two masters' tokens need
						// not interleave in order (a hybrid cohort spends a
						// block reserved from one master while the other
						// issues tokens); what fencing promises then is that
						// the stale side's writes are refused, so the
						// inversion is excused only if b's were.
						excused := (nearSplit(a) || nearSplit(b)) && a.Instance != b.Instance && b.rejected > 0 ||
							b.early && b.lost && nearFault(b)
						if b.Token <= a.Token && !excused {
							add("fencing: %q token %d (instance %d) after token %d (instance %d): not increasing", key, b.Token, b.Instance, a.Token, a.Instance)
						}
					}
					break
				}
				if (a.lost && nearFault(a)) || (b.lost && nearFault(b)) || nearSplit(a) || nearSplit(b) {
					continue
				}
				add("mutual exclusion: %q held by instance %d (token %d) from +%v to +%v and by instance %d (token %d) from +%v",
					key, a.Instance, a.Token, a.acquired.Sub(h.start()), aEnd.Sub(h.start()), b.Instance, b.Token, b.acquired.Sub(h.start()))
			}
		}
	}
	out = append(h.violations, out...)
	h.violations = out
	return out
}

// lastFaultBefore describes the last fault that started before t.
func (h *History) lastFaultBefore(t time.Time) string {
	var last *window
	for i := range h.faults {
		if h.faults[i].start.Before(t) {
			last = &h.faults[i]
		}
	}
	if last == nil {
		return "none"
	}
	if last.end.IsZero() {
		return fmt.Sprintf("%s from +%v, not ended", last.name, last.start.Sub(h.start()))
	}
	return fmt.Sprintf("%s from +%v to +%v", last.name, last.start.Sub(h.start()), last.end.Sub(h.start()))
}

// start is the time of the first hold, for readable messages.
func (h *History) start() time.Time {
	var t time.Time
	for _, hd := range h.holds {
		if t.IsZero() || hd.acquired.Before(t) {
			t = hd.acquired
		}
	}
	return t
}

// ErrStale is returned by [Fenced.Write] for a token lower than one the
// resource has accepted.
var ErrStale = errors.New("faulttest: stale fencing token")

// Fenced is a resource guarded by fencing tokens, as a storage service
// that checks them would be: per key, it accepts a write only if its
// token is at least the highest it has accepted.
//
// The zero value is ready to use; a Fenced must not be copied after first
// use. It is safe for concurrent use.
type Fenced struct {
	mu       sync.Mutex // guards max
	max      map[string]uint64
	accepted atomic.Int64
	rejected atomic.Int64
}

// Write writes token for key, or returns an error wrapping [ErrStale].
func (f *Fenced) Write(key string, token uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.max == nil {
		f.max = make(map[string]uint64)
	}
	if m := f.max[key]; token < m {
		f.rejected.Add(1)
		return fmt.Errorf("write %q with token %d, highest accepted %d: %w", key, token, m, ErrStale)
	}
	f.max[key] = token
	f.accepted.Add(1)
	return nil
}

// Accepted and Rejected count the writes.
func (f *Fenced) Accepted() int64 { return f.accepted.Load() }

// Rejected counts the writes rejected as stale.
func (f *Fenced) Rejected() int64 { return f.rejected.Load() }
