package hybrid

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestZeroValue: a Mutex not made by New fails with a message that says
// to use New, instead of a nil dereference.
func TestZeroValue(t *testing.T) {
	var m Mutex[string]
	ctx := context.Background()
	for name, f := range map[string]func() error{
		"Lock":    func() error { _, err := m.Lock(ctx, "k1"); return err },
		"TryLock": func() error { _, err := m.TryLock(ctx, "k2"); return err },
		"Locker": func() (err error) {
			defer func() { err = fmt.Errorf("panic: %v", recover()) }()
			m.Locker("k3").Lock()
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
