package distributed

import (
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
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
