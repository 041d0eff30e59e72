package distributed

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
)

// TestInspect: an operator sees the holder's label, token, acquisition
// time and remaining TTL, and the queue's length; then the free marker.
func TestInspect(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := ctxT(t, time.Minute)
		m := e.newMutex(t, WithLabel("worker-7"))
		waiter := e.newMutex(t)
		key := keyedtest.Key(t)
		info, err := m.Inspect(ctx, key)
		if err != nil || info.Held || info.Waiters != 0 {
			t.Fatalf("Inspect(never locked) = %+v, %v; want not held, no waiters", info, err)
		}
		l, err := m.Lock(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		go func() {
			l, err := waiter.Lock(ctx, key)
			if err == nil {
				err = l.Unlock()
			}
			got <- err
		}()
		eventually(t, "one waiter queued", func() bool {
			info, err = m.Inspect(ctx, key)
			return err == nil && info.Waiters == 1
		})
		if !info.Held || info.Label != "worker-7" || info.Owner != l.(*lease).owner || info.Foreign {
			t.Errorf("Inspect(held) = %+v; want held by %s, label worker-7", info, l.(*lease).owner)
		}
		if info.TTL <= 0 || info.TTL > DefaultTTL {
			t.Errorf("Inspect(held).TTL = %v; want in (0, %v]", info.TTL, DefaultTTL)
		}
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		info, err = m.Inspect(ctx, key)
		if err != nil || info.Held || info.Waiters != 0 || info.LastToken != 0 || info.TTL != 0 {
			t.Errorf("Inspect(released) = %+v, %v; want free, no waiters, nothing left", info, err)
		}
	})
}

func TestLabels(t *testing.T) {
	want := ":" + strconv.Itoa(os.Getpid())
	if l := defaultLabel(); !strings.HasSuffix(l, want) || checkLabel(l) != nil {
		t.Errorf("defaultLabel() = %q; want host%s, a valid label", l, want)
	}
	for _, bad := range []string{"a b", "star*", "tab\t", strings.Repeat("x", MaxLabelLen+1), "é"} {
		if err := WithLabel(bad)(&config{}); err == nil {
			t.Errorf("WithLabel(%q) = nil error; want one", bad)
		}
	}
	for _, good := range []string{"", "worker-7", "10.0.0.1:8080/pod-abc", strings.Repeat("x", MaxLabelLen)} {
		if err := WithLabel(good)(&config{}); err != nil {
			t.Errorf("WithLabel(%q) = %v; want nil", good, err)
		}
	}
}
