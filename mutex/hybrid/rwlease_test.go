package hybrid

import (
	"errors"
	"fmt"
	"testing"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// expireUnseen makes every lease held on key lost as a paused process
// finds it on resuming: Err reports the loss, but Done is not closed
// (nothing has seen it yet), and the key is free for others.
func (f *rwFake) expireUnseen(key string) {
	for _, l := range f.leasesOf(key) {
		l.mu.Lock()
		if l.err == nil {
			l.err = fmt.Errorf("rwfake: %w: expired", mutex.ErrLost)
			l.in.Unlock()
			f.mu.Lock()
			delete(f.live[key], l)
			if len(f.live[key]) == 0 {
				delete(f.live, key)
			}
			f.mu.Unlock()
		}
		l.mu.Unlock()
	}
}

// TestRWErrOnlyReads: the Err of an RWMutex lease reports the loss of
// its remote lease at once but only reads, as a Mutex lease's does: it
// does not end the lease (Done stays open until Unlock, or the watch of
// the remote lease, finds the loss).
func TestRWErrOnlyReads(t *testing.T) {
	leakcheck.Register(t)
	f := newRWFake()
	m := newRWT(t, f)
	ctx := ctxT(t)
	for _, write := range []bool{false, true} {
		var (
			l   mutex.Lease
			err error
		)
		if write {
			l, err = m.Lock(ctx, "k")
		} else {
			l, err = m.RLock(ctx, "k")
		}
		if err != nil {
			t.Fatal(err)
		}
		done := l.Done()
		f.expireUnseen("k")
		if err := l.Err(); !errors.Is(err, mutex.ErrLost) {
			t.Errorf("write %v: Err() = %v; want ErrLost", write, err)
		}
		select {
		case <-done:
			t.Errorf("write %v: Done() closed by Err(); want Err to only read", write)
		default:
		}
		if err := l.Unlock(); !errors.Is(err, mutex.ErrLost) {
			t.Errorf("write %v: Unlock() = %v; want ErrLost", write, err)
		}
		select {
		case <-done:
		default:
			t.Errorf("write %v: Done() not closed by Unlock()", write)
		}
	}
	if got := f.held("k"); got != 0 {
		t.Errorf("%d remote leases held; want 0", got)
	}
}

// TestRWAfterDone: an RWMutex lease runs its AfterDone functions when its
// remote lease is lost, so mutex.WithLease over it needs no goroutine.
func TestRWAfterDone(t *testing.T) {
	leakcheck.Register(t)
	f := newRWFake()
	m := newRWT(t, f)
	l, err := m.Lock(ctxT(t), "k")
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	l.(remote.Watcher).AfterDone(func() { close(ran) })
	checkLossEnds(t, l, ran, func() { f.lose("k") })
}
