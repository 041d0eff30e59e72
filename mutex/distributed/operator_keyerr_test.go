package distributed

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
)

// TestInspectKeysWrongTypeOthersRead: a key whose lock holds another type
// gets its own Err; the other keys are read and reported, by InspectKeys
// and by ListKeys.
func TestInspectKeysWrongTypeOthersRead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ctx := ctxT(t, time.Minute)
		client := e.client(t)
		m := e.newMutex(t, WithLabel("good"))
		base := keyedtest.Key(t)
		good, bad := base+"-good", base+"-bad"
		l, err := m.Lock(ctx, good)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Unlock()
		nm := namesFor(DefaultPrefix, bad)
		if err := client.RPush(ctx, nm.lock, "x").Err(); err != nil {
			t.Fatal(err)
		}
		defer client.Del(context.Background(), nm.lock)

		rs, err := InspectKeys(ctx, client, DefaultPrefix, bad, good)
		if !errors.Is(err, ErrWrongType) || len(rs) != 2 {
			t.Fatalf("InspectKeys(bad, good) = %+v, %v; want both reports and ErrWrongType", rs, err)
		}
		if !errors.Is(rs[0].Err, ErrWrongType) || rs[0].Key != bad || rs[0].LockKey != nm.lock {
			t.Errorf("report of %s = %+v; want its own ErrWrongType", bad, rs[0])
		}
		if rs[1].Err != nil || !rs[1].Held || rs[1].Label != "good" {
			t.Errorf("report of %s = %+v; want held by good", good, rs[1])
		}
		ls, err := ListKeys(ctx, client, DefaultPrefix, base+"-*")
		if !errors.Is(err, ErrWrongType) || len(ls) != 2 || ls[0].Key != good || !ls[0].Held || ls[1].Key != bad || !errors.Is(ls[1].Err, ErrWrongType) {
			t.Errorf("ListKeys = %+v, %v; want %s held, then %s with ErrWrongType", ls, err, good, bad)
		}
	})
}
