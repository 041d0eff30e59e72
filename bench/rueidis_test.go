package bench

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
)

// TestRueidisRearm: the rueidislock adapter gives up a wait after its
// bound and waits again, without taking the key while another process
// holds it, and takes it once released.
func TestRueidisRearm(t *testing.T) {
	leakcheck.Register(t)
	tg := redisTarget(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prefix := rowPrefix()
	lockers, closeAll, err := rueidislockStrategy.procs(tg, prefix, 2)
	if err != nil {
		t.Fatalf("procs() = %v", err)
	}
	defer closeAll()
	admins := tg.admins()
	defer admins[0].Close()
	a, b := lockers[0], lockers[1].(rueidisLocker)
	b.rearm = 20 * time.Millisecond

	unlockA, err := a.Lock(ctx, "k")
	if err != nil {
		t.Fatalf("a.Lock() = %v", err)
	}
	var released atomic.Bool
	type outcome struct {
		unlock       func() error
		err          error
		afterRelease bool
	}
	done := make(chan outcome, 1)
	go func() {
		unlock, err := b.Lock(ctx, "k")
		done <- outcome{unlock, err, released.Load()}
	}()
	// Hold the key until b has given up two waits (poll: the count is
	// all the adapter exposes).
	for deadline := time.Now().Add(10 * time.Second); b.rearms() < 2; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("b restarted %d waits in 10s while a held the key; want 2", b.rearms())
		}
	}
	released.Store(true)
	if err := unlockA(); err != nil {
		t.Fatalf("a's unlock() = %v", err)
	}
	got := <-done
	if got.err != nil {
		t.Fatalf("b.Lock() = %v", got.err)
	}
	if !got.afterRelease {
		t.Error("b.Lock() returned while a held the key")
	}
	// b holds the key: one lock key under the prefix, gone after Unlock.
	if keys, err := admins[0].Keys(ctx, prefix+"*").Result(); err != nil || len(keys) != 1 {
		t.Errorf("keys while b holds = %q, %v; want one", keys, err)
	}
	if err := got.unlock(); err != nil {
		t.Errorf("b's unlock() = %v", err)
	}
	if keys, err := admins[0].Keys(ctx, prefix+"*").Result(); err != nil || len(keys) != 0 {
		t.Errorf("keys after b's unlock = %q, %v; want none", keys, err)
	}
}
