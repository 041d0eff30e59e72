package distributed

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// TestMaxHold: a lease of a Mutex WithMaxHold is renewed until its
// maximum hold, then lost when its validity runs out, with ErrMaxHold as
// the cause; the key is then free for others. A lease of a Mutex without
// it, taken at the same time, stays held.
func TestMaxHold(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		// A TTL of 1s, as in TestRenewal: a renewal (every TTL/3) may run
		// 600ms late on a loaded machine before a lease is lost for that.
		const ttl, maxHold = time.Second, 2 * time.Second
		rec := new(keyedtest.Recorder)
		capped := e.newMutex(t, WithTTL(ttl), WithMaxHold(maxHold), WithObserver(rec))
		plain := e.newMutex(t, WithTTL(ttl))
		other := e.newMutex(t, WithTTL(ttl))
		ctx := ctxT(t, time.Minute)
		key, control := keyedtest.Key(t), keyedtest.Key(t)

		c, err := plain.Lock(ctx, control)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		l, err := capped.Lock(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, l.Done(), "lease WithMaxHold")
		if held := time.Since(start); held <= maxHold {
			t.Errorf("lease lost %v after Lock began; want more than the maximum hold of %v", held, maxHold)
		}
		// Lost past maxHold > TTL: it was renewed, at least once.
		if n := len(rec.Events(mutex.Renewed, key)); n == 0 {
			t.Errorf("no Renewed event before the maximum hold; want renewals every TTL/3")
		}
		for _, ev := range rec.Events(mutex.Renewed, key) {
			if ev.Outcome != mutex.Acquired {
				t.Errorf("Renewed event %+v; want every renewal to succeed", ev)
			}
		}
		isMaxHold := func(what string, err error) {
			t.Helper()
			if !errors.Is(err, mutex.ErrLost) || !errors.Is(err, ErrMaxHold) {
				t.Errorf("%s = %v; want an error satisfying ErrLost and ErrMaxHold", what, err)
			}
		}
		isMaxHold("Err()", l.Err())
		if err := l.Err(); err != nil && !strings.Contains(err.Error(), maxHold.String()) {
			t.Errorf("Err() = %v; want it to name the maximum hold %v", err, maxHold)
		}
		var lost []mutex.Event // reported just after Done closes
		eventually(t, "a Lost event", func() bool {
			lost = rec.Events(mutex.Lost, key)
			return len(lost) > 0
		})
		if len(lost) != 1 {
			t.Fatalf("%d Lost events; want 1", len(lost))
		}
		isMaxHold("the Lost event's Err", lost[0].Err)

		// Released: another Mutex gets the key.
		o, err := other.Lock(ctx, key)
		if err != nil {
			t.Fatalf("Lock after the maximum hold = %v; want the key", err)
		}
		if o.Token() <= l.Token() {
			t.Errorf("next holder's token %d <= %d", o.Token(), l.Token())
		}
		isMaxHold("Unlock() of the lost lease", l.Unlock())
		if err := o.Unlock(); err != nil {
			t.Errorf("next holder's Unlock() = %v", err)
		}

		// Without WithMaxHold, the control lease, held longer, is held.
		if err := c.Err(); err != nil {
			t.Errorf("lease without WithMaxHold: Err() = %v after %v; want nil (renewed)", err, time.Since(start))
		}
		if err := c.Unlock(); err != nil {
			t.Errorf("lease without WithMaxHold: Unlock() = %v; want nil", err)
		}
	})
}

// TestMaxHoldBelowTTL: with a maximum hold below the first renewal (due
// at TTL/3), a lease is never renewed and lasts one TTL, lost with
// ErrMaxHold.
func TestMaxHoldBelowTTL(t *testing.T) {
	e := backends[0].start(t)
	const ttl = 100 * time.Millisecond
	rec := new(keyedtest.Recorder)
	m := e.newMutex(t, WithTTL(ttl), WithMaxHold(time.Millisecond), WithObserver(rec))
	key := keyedtest.Key(t)
	start := time.Now()
	l, err := m.Lock(ctxT(t, time.Minute), key)
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, l.Done(), "lease WithMaxHold(1ms)")
	if held := time.Since(start); held < ttl {
		t.Errorf("lost %v after Lock began; want at least the TTL of %v", held, ttl)
	}
	if n := len(rec.Events(mutex.Renewed, key)); n != 0 {
		t.Errorf("%d Renewed events; want none past the maximum hold", n)
	}
	if err := l.Unlock(); !errors.Is(err, mutex.ErrLost) || !errors.Is(err, ErrMaxHold) {
		t.Errorf("Unlock() = %v; want an error satisfying ErrLost and ErrMaxHold", err)
	}
}

func TestMaxHoldBadConfig(t *testing.T) {
	e := backends[0].start(t)
	m, err := New[string](e.client(t), WithMaxHold(-time.Second))
	if err == nil {
		m.Close()
		t.Fatal("New(WithMaxHold(-1s)) = nil error; want one")
	}
	if !strings.Contains(err.Error(), "WithMaxHold(-1s)") {
		t.Errorf("New(WithMaxHold(-1s)) = %v; want an error naming WithMaxHold(-1s)", err)
	}
	m = e.newMutex(t, WithMaxHold(0)) // 0: none
	if m.cfg.maxHold != 0 {
		t.Errorf("WithMaxHold(0): maxHold = %v; want 0", m.cfg.maxHold)
	}
}
