package distributed

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestZeroValue: a Mutex not made by New fails every call with a message
// that says to use New, instead of a nil dereference.
func TestZeroValue(t *testing.T) {
	var m Mutex[string]
	ctx := context.Background()
	for name, f := range map[string]func() error{
		"Lock":     func() error { _, err := m.Lock(ctx, "k"); return err },
		"TryLock":  func() error { _, err := m.TryLock(ctx, "k"); return err },
		"LockN":    func() error { _, err := m.LockN(ctx, "k", 2); return err },
		"TryLockN": func() error { _, err := m.TryLockN(ctx, "k", 2); return err },
		"Inspect":  func() error { _, err := m.Inspect(ctx, "k"); return err },
		"Close":    m.Close,
		"Locker": func() (err error) {
			defer func() { err = fmt.Errorf("panic: %v", recover()) }()
			m.Locker("k").Lock()
			return nil
		},
	} {
		err := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panic: %v", p)
				}
			}()
			return f()
		}()
		if err == nil || !strings.Contains(err.Error(), "New") {
			t.Errorf("%s on a zero Mutex = %v; want an error or panic that says to use New", name, err)
		}
	}
}

// TestRingRefused: New refuses a *redis.Ring with an error that names it
// and says what to use, instead of a panic at the first Lock that waits.
func TestRingRefused(t *testing.T) {
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1", "b": "127.0.0.1:2"}})
	defer ring.Close()
	m, err := New[string](ring)
	if err == nil {
		m.Close()
		t.Fatal("New(*redis.Ring) = nil error; want one")
	}
	if msg := err.Error(); !strings.Contains(msg, "Ring") || !strings.Contains(msg, "ClusterClient") {
		t.Errorf("New(*redis.Ring) = %v; want an error naming the Ring and what to use", err)
	}
}
