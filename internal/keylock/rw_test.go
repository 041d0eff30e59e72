package keylock

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

// rwWaitWaiters polls until key has n waiters queued in tb.
func rwWaitWaiters[K comparable, V any](t *testing.T, tb *RWTable[K, V], key K, n int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		_, got := tb.Len(key)
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiters(%v) = %d after %v; want %d", key, got, wait, n)
		}
		runtime.Gosched()
	}
}

type rwGot struct {
	e   *RWEntry[string, int]
	tok uint64
	err error
}

func goRW(tb *RWTable[string, int], ctx context.Context, key string, write bool) chan rwGot {
	ch := make(chan rwGot, 1)
	go func() {
		var g rwGot
		if write {
			g.e, g.tok, g.err = tb.Lock(ctx, key, 1, nil)
		} else {
			g.e, g.tok, g.err = tb.RLock(ctx, key, 1, nil)
		}
		ch <- g
	}()
	return ch
}

// TestRWHandOffOnlyToWriter: HandOff passes a write holding to a writer
// at the head, not to readers; Next tells which waits first.
func TestRWHandOffOnlyToWriter(t *testing.T) {
	var tb RWTable[string, int]
	ctx := context.Background()
	e, _, err := tb.Lock(ctx, "k", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if waiting, _ := e.Next(); waiting {
		t.Fatal("Next() = waiting with nobody queued")
	}
	r := goRW(&tb, ctx, "k", false)
	rwWaitWaiters(t, &tb, "k", 1)
	if waiting, writer := e.Next(); !waiting || writer {
		t.Fatalf("Next() = %v, %v; want a reader waiting", waiting, writer)
	}
	if e.HandOff() {
		t.Fatal("HandOff() to a reader = true; want false")
	}
	e.Value = 7 // passed on with the lock
	e.Unlock()
	g := <-r
	if g.err != nil || g.e.Value != 7 {
		t.Fatalf("RLock = %v, Value %d; want the entry with 7", g.err, g.e.Value)
	}
	w := goRW(&tb, ctx, "k", true)
	rwWaitWaiters(t, &tb, "k", 1)
	g.e.RUnlock()
	gw := <-w
	if gw.err != nil {
		t.Fatal(gw.err)
	}
	w2 := goRW(&tb, ctx, "k", true)
	rwWaitWaiters(t, &tb, "k", 1)
	if !gw.e.HandOff() {
		t.Fatal("HandOff() to a writer = false; want true")
	}
	g2 := <-w2
	if g2.err != nil || g2.tok <= gw.tok {
		t.Fatalf("handed-off Lock = %v, token %d; want nil and > %d", g2.err, g2.tok, gw.tok)
	}
	g2.e.Unlock()
	if n, _ := tb.Len(""); n != 0 {
		t.Errorf("%d entries left; want 0", n)
	}
}

// TestRWClose wakes queued readers and writers with Close's error and
// refuses later calls; holders keep their entries.
func TestRWClose(t *testing.T) {
	var tb RWTable[string, int]
	ctx := context.Background()
	e, _, err := tb.Lock(ctx, "k", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	waiters := []chan rwGot{goRW(&tb, ctx, "k", false), goRW(&tb, ctx, "k", true)}
	rwWaitWaiters(t, &tb, "k", 2)
	closed := errors.New("closed")
	tb.Close(closed)
	for i, ch := range waiters {
		if g := <-ch; !errors.Is(g.err, closed) || g.e != nil {
			t.Errorf("waiter %d after Close = %v; want the Close error", i, g.err)
		}
	}
	if _, _, err := tb.TryRLock(ctx, "other", 1); !errors.Is(err, closed) {
		t.Errorf("TryRLock after Close = %v; want the Close error", err)
	}
	e.Unlock()
	if n, _ := tb.Len(""); n != 0 {
		t.Errorf("%d entries left; want 0", n)
	}
}

// TestRWTokensAcrossEntries: tokens keep increasing when a key's entry is
// deleted and made again, and a block that would pass MaxToken fails
// without leaving the key held.
func TestRWTokensAcrossEntries(t *testing.T) {
	var tb RWTable[string, int]
	ctx := context.Background()
	var last uint64
	for i := range 10 {
		var (
			e   *RWEntry[string, int]
			tok uint64
			err error
		)
		if i%2 == 0 {
			e, tok, err = tb.Lock(ctx, "k", 3, nil)
		} else {
			e, tok, err = tb.RLock(ctx, "k", 1, nil)
		}
		if err != nil || tok <= last {
			t.Fatalf("lock %d = %v, token %d; want > %d", i, err, tok, last)
		}
		last = tok
		if i%2 == 0 {
			last += 2 // the block
			e.Unlock()
		} else {
			e.RUnlock()
		}
	}
	if _, _, err := tb.Lock(ctx, "k", MaxToken, nil); !errors.Is(err, ErrTokensExhausted) {
		t.Fatalf("Lock(MaxToken tokens) = %v; want ErrTokensExhausted", err)
	}
	e, _, err := tb.TryLock(ctx, "k", 1)
	if err != nil {
		t.Fatalf("TryLock after an exhausted block = %v; want nil (nothing left held)", err)
	}
	e.Unlock()
}

// TestRWGrantRacingCancel: a reader handed the lock as its ctx ends gets
// the entry and the error; its RUnlock lets the writer behind it in.
func TestRWGrantRacingCancel(t *testing.T) {
	var tb RWTable[string, int]
	holder, _, err := tb.Lock(context.Background(), "k", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := goRW(&tb, ctx, "k", false)
	rwWaitWaiters(t, &tb, "k", 1)
	w := goRW(&tb, context.Background(), "k", true)
	rwWaitWaiters(t, &tb, "k", 2)
	testHookCancelled = func() { holder.Unlock() }
	defer func() { testHookCancelled = nil }()
	cancel()
	g := <-r
	testHookCancelled = nil
	if g.e == nil || !errors.Is(g.err, context.Canceled) {
		t.Fatalf("RLock granted as ctx ended = %v, %v; want the entry and Canceled", g.e, g.err)
	}
	g.e.RUnlock()
	gw := <-w
	if gw.err != nil {
		t.Fatalf("Lock behind the given-back reader = %v", gw.err)
	}
	gw.e.Unlock()
}

// TestRWIdleBounded: after many distinct keys were locked and unlocked,
// each shard keeps at most its one idle entry, and that entry's tokens
// stay above the earlier ones when it is used again.
func TestRWIdleBounded(t *testing.T) {
	var tb RWTable[int, int]
	ctx := context.Background()
	last := map[int]uint64{}
	for round := range 2 {
		for k := range 1000 {
			e, tok, err := tb.Lock(ctx, k, 1, nil)
			if err != nil {
				t.Fatal(err)
			}
			if round > 0 && tok <= last[k] {
				t.Fatalf("key %d: token %d; want > %d", k, tok, last[k])
			}
			last[k] = tok
			e.Unlock()
		}
	}
	kept := 0
	for i := range tb.shards {
		kept += len(tb.shards[i].m)
	}
	if kept > numShards {
		t.Errorf("%d entries kept after every key was unlocked; want at most %d", kept, numShards)
	}
	if n, _ := tb.Len(0); n != 0 {
		t.Errorf("Len() = %d entries in use; want 0", n)
	}
}
