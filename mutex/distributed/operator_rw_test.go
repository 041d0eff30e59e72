package distributed

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/mutex"
)

// TestParseKeyNameRW: the names of an RWMutex's key parse back to the key,
// kind rw, with their part.
func TestParseKeyNameRW(t *testing.T) {
	for _, k := range []string{"a", "x}y", "50%", "{}"} {
		nm := rwNamesFor("p:", k)
		for part, name := range map[string]string{"writer": nm.lock, "queue": nm.queue, "readers": nm.readers} {
			got, kind, gpart, ok := ParseKeyName("p:", name)
			if !ok || got != k || kind != KindRW || gpart != part {
				t.Errorf("ParseKeyName(%q) = %q, %q, %q, %v; want %q, rw, %s", name, got, kind, gpart, ok, k, part)
			}
		}
	}
}

// TestInspectRWKeys: the operator API sees an RWMutex's readers, its
// writer and its queue in order with each waiter's kind, and ListKeys
// finds the key (as kind rw only: the Mutex of the same key is free).
func TestInspectRWKeys(t *testing.T) {
	srv, admin := rwEnv(t)
	ctx := ctxT(t, time.Minute)
	key := keyedtest.Key(t)
	r1m := rwProcess(t, srv, WithLabel("reader-1"))
	w2m := rwProcess(t, srv, WithLabel("writer-2"))
	r3m := rwProcess(t, srv, WithLabel("reader-3"))

	r1, err := r1m.RLock(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	w2got := make(chan error, 1)
	w2release := make(chan struct{})
	go func() {
		l, err := w2m.Lock(ctx, key)
		if err == nil {
			<-w2release
			err = l.Unlock()
		}
		w2got <- err
	}()
	inspect := func(want string, cond func(r KeyReport) bool) KeyReport {
		t.Helper()
		var r KeyReport
		eventually(t, want, func() bool {
			rs, err := InspectRWKeys(ctx, admin, DefaultPrefix, key)
			if err != nil || len(rs) != 1 {
				return false
			}
			r = rs[0]
			return cond(r)
		})
		return r
	}
	inspect("writer-2 queued", func(r KeyReport) bool { return len(r.Queue) == 1 })
	r3got := make(chan error, 1)
	go func() {
		l, err := r3m.RLock(ctx, key)
		if err == nil {
			err = l.Unlock()
		}
		r3got <- err
	}()
	r := inspect("reader-3 queued", func(r KeyReport) bool { return len(r.Queue) == 2 })
	nm := rwNamesFor(DefaultPrefix, key)
	if r.Kind != KindRW || r.Held || len(r.Readers) != 1 || r.Readers[0].TTL <= 0 || !r.Locked() ||
		r.LockKey != nm.lock || r.QueueKey != nm.queue || r.ReadersKey != nm.readers {
		t.Fatalf("InspectRWKeys = %+v; want one reader holding, kind rw, its names", r)
	}
	if q := r.Queue; q[0].Label != "writer-2" || q[0].Reader || q[1].Label != "reader-3" || !q[1].Reader || q[0].Dead || q[1].Dead {
		t.Fatalf("queue = %+v; want writer-2 (writer), reader-3 (reader)", q)
	}
	if rs, err := InspectKeys(ctx, admin, DefaultPrefix, key); err != nil || rs[0].Locked() || rs[0].Kind != KindMutex {
		t.Fatalf("InspectKeys (the Mutex of the key) = %+v, %v; want free", rs, err)
	}
	ls, err := ListKeys(ctx, admin, DefaultPrefix, key)
	if err != nil || len(ls) != 1 || ls[0].Kind != KindRW || len(ls[0].Readers) != 1 || len(ls[0].Queue) != 2 {
		t.Fatalf("ListKeys = %+v, %v; want the rw key", ls, err)
	}

	if err := r1.Unlock(); err != nil {
		t.Fatal(err)
	}
	r = inspect("writer-2 holds", func(r KeyReport) bool { return r.Held })
	if r.Label != "writer-2" || r.TTL <= 0 || len(r.Readers) != 0 || len(r.Queue) != 1 || !r.Queue[0].Reader {
		t.Fatalf("InspectRWKeys = %+v; want held by writer-2, reader-3 queued", r)
	}
	close(w2release)
	if err := <-w2got; err != nil {
		t.Fatal(err)
	}
	if err := <-r3got; err != nil {
		t.Fatal(err)
	}
	if ls, err := ListKeys(ctx, admin, DefaultPrefix, key); err != nil || len(ls) != 0 {
		t.Fatalf("ListKeys after every release = %+v, %v; want none", ls, err)
	}
}

// TestForceReleaseRW: a writer is released by label and the queued
// readers are granted as by a normal release; a reader's share by owner
// id; wrong holders and a free key are refused; the broken leases find
// their loss.
func TestForceReleaseRW(t *testing.T) {
	srv, admin := rwEnv(t)
	ctx := ctxT(t, time.Minute)
	key := keyedtest.Key(t)
	wm := rwProcess(t, srv, WithLabel("stuck-w"))
	rm := rwProcess(t, srv, WithLabel("reader-2"))

	if _, err := ForceReleaseRW(ctx, admin, DefaultPrefix, key, "stuck-w"); !errors.Is(err, ErrNotLocked) {
		t.Fatalf("ForceReleaseRW(free key) = %v; want ErrNotLocked", err)
	}
	wl, err := wm.Lock(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan mutex.Lease, 1)
	go func() {
		l, err := rm.RLock(ctx, key)
		if err != nil {
			t.Errorf("the queued RLock: %v", err)
		}
		got <- l
	}()
	eventually(t, "reader-2 queued", func() bool {
		rs, err := InspectRWKeys(ctx, admin, DefaultPrefix, key)
		return err == nil && len(rs[0].Queue) == 1
	})
	if _, err := ForceReleaseRW(ctx, admin, DefaultPrefix, key, "reader-2"); !errors.Is(err, ErrHeldByOther) {
		t.Fatalf("ForceReleaseRW(wrong holder) = %v; want ErrHeldByOther", err)
	}
	if _, err := ForceRelease(ctx, admin, DefaultPrefix, key, "stuck-w"); !errors.Is(err, ErrNotLocked) || !strings.Contains(err.Error(), "ForceReleaseRW") {
		t.Fatalf("ForceRelease (the Mutex) of a key an RWMutex writer holds = %v; want ErrNotLocked pointing at ForceReleaseRW", err)
	}
	res, err := ForceReleaseRW(ctx, admin, DefaultPrefix, key, "stuck-w")
	if err != nil {
		t.Fatal(err)
	}
	if res.Before.Label != "stuck-w" || res.After.Held || len(res.After.Readers) != 1 {
		t.Fatalf("ForceReleaseRW = %+v; want stuck-w before, reader-2 reading after", res)
	}
	rl := <-got
	if rl == nil {
		t.FailNow()
	}
	select {
	case <-wl.Done():
	case <-ctx.Done():
		t.Fatal("the writer's lease never found its loss")
	}
	if err := wl.Unlock(); !errors.Is(err, mutex.ErrLost) {
		t.Errorf("the writer's Unlock = %v; want ErrLost", err)
	}

	rs, err := InspectRWKeys(ctx, admin, DefaultPrefix, key)
	if err != nil || len(rs[0].Readers) != 1 {
		t.Fatalf("InspectRWKeys = %+v, %v; want one reader", rs, err)
	}
	if _, err := ForceReleaseRW(ctx, admin, DefaultPrefix, key, "nobody"); !errors.Is(err, ErrHeldByOther) {
		t.Fatalf("ForceReleaseRW(not a reader) = %v; want ErrHeldByOther", err)
	}
	if _, err := ForceReleaseRW(ctx, admin, DefaultPrefix, key, rs[0].Readers[0].Owner); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rl.Done():
	case <-ctx.Done():
		t.Fatal("the reader's lease never found its loss")
	}
	if err := rl.Unlock(); !errors.Is(err, mutex.ErrLost) {
		t.Errorf("the reader's Unlock = %v; want ErrLost", err)
	}
	if ls, err := ListKeys(ctx, admin, DefaultPrefix, key); err != nil || len(ls) != 0 {
		t.Fatalf("ListKeys after the releases = %+v, %v; want none", ls, err)
	}
}
