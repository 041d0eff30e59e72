package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/redis/go-redis/v9"
)

func newRW(t *testing.T, c redis.UniversalClient, opts ...distributed.Option) *distributed.RWMutex[string] {
	t.Helper()
	m, err := distributed.NewRW[string](c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// rwQueued waits until key's read-write lock has n waiters.
func rwQueued(t *testing.T, c redis.UniversalClient, key string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rs, err := distributed.InspectRWKeys(context.Background(), c, distributed.DefaultPrefix, key)
		if err == nil && len(rs[0].Queue) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %s: %d read-write waiters never queued (last: %+v, %v)", key, n, rs, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rwWatch runs watch -json on key and returns the channel of its lines.
func rwWatch(t *testing.T, ctx context.Context, addr, key string) <-chan jsonKey {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(ctx, binary(t), addr, "watch", "-json", "-interval=5ms", key)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan jsonKey, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var k jsonKey
			if err := json.Unmarshal(sc.Bytes(), &k); err != nil {
				k.State = "bad line: " + sc.Text()
			}
			lines <- k
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = cmd.Wait()
	})
	return lines
}

// TestRWInspectListWatch: inspect, list and watch show an RWMutex's
// readers, writer and queue with each waiter's kind; a plain key shows
// both kinds when both are locked, a Redis name only its own; release
// breaks a reader's share by owner id and a writer by label, and refuses
// a holder that does not hold (exit code 3).
func TestRWInspectListWatch(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := ctxT(t)
	addr := "-addr=" + srv.Addr()
	r1m := newRW(t, c, distributed.WithLabel("reader-1"))
	w2m := newRW(t, c, distributed.WithLabel("writer-2"))
	r3m := newRW(t, c, distributed.WithLabel("reader-3"))
	const key = "doc-1"

	lines := rwWatch(t, ctx, addr, key)
	// next returns the first line of the watch that satisfies ok.
	next := func(what string, ok func(k jsonKey) bool) jsonKey {
		t.Helper()
		for {
			select {
			case k, open := <-lines:
				if !open {
					t.Fatalf("watch ended before %s", what)
				}
				if ok(k) {
					return k
				}
			case <-ctx.Done():
				t.Fatalf("watch never showed %s", what)
			}
		}
	}
	next("the free key", func(k jsonKey) bool { return k.Kind == "mutex" && k.State == "free" })

	r1, err := r1m.RLock(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	w2 := make(chan lockResult, 1)
	go func() {
		l, err := w2m.Lock(ctx, key)
		w2 <- lockResult{l, err}
	}()
	rwQueued(t, c, key, 1)
	r3 := make(chan lockResult, 1)
	go func() {
		l, err := r3m.RLock(ctx, key)
		r3 <- lockResult{l, err}
	}()
	rwQueued(t, c, key, 2)

	r := km(t, "", addr, "inspect", key)
	r.want(t, 0, "inspect of a read-locked key")
	for _, s := range []string{"kind      read-write lock", "writer    keyedmutex:rw:{doc-1}", "holder    1 reader(s)", "1  reader -  owner ",
		"waiters   2", "1  writer writer-2  waited ", "2  reader reader-3  waited "} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("inspect %s: output lacks %q:\n%s", key, s, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "not locked") {
		t.Errorf("inspect %s: the free Mutex lock is shown beside the held read-write lock:\n%s", key, r.stdout)
	}
	var keys []jsonKey
	r = km(t, "", addr, "inspect", "-json", key)
	r.want(t, 0, "inspect -json of a read-locked key")
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil {
		t.Fatalf("inspect -json: %v\n%s", err, r.stdout)
	}
	if len(keys) != 1 || keys[0].Kind != "rw" || keys[0].State != "read" || keys[0].Holder != nil ||
		len(keys[0].Readers) != 1 || keys[0].Readers[0].TTLMs <= 0 || keys[0].ReadersKey != "keyedmutex:rwr:{doc-1}" ||
		len(keys[0].Waiters) != 2 || keys[0].Waiters[0].Kind != "writer" || keys[0].Waiters[0].Label != "writer-2" ||
		keys[0].Waiters[1].Kind != "reader" || keys[0].Waiters[1].Label != "reader-3" {
		t.Errorf("inspect -json = %+v; want kind rw read by one reader, writer-2 then reader-3 queued\n%s", keys, r.stdout)
	}
	next("the readers and the queue", func(k jsonKey) bool {
		return k.Kind == "rw" && k.State == "read" && len(k.Waiters) == 2 && k.Waiters[0].Kind == "writer" && k.Waiters[1].Kind == "reader"
	})

	// A Redis name chooses its kind: the Mutex's is free, the RWMutex's held.
	km(t, "", addr, "inspect", "keyedmutex:{doc-1}").want(t, 3, "inspect of the Mutex's name of a read-locked key")
	r = km(t, "", addr, "inspect", "keyedmutex:rwq:{doc-1}")
	r.want(t, 0, "inspect of the RWMutex's queue name")
	if !strings.Contains(r.stdout, "read-write lock") {
		t.Errorf("inspect keyedmutex:rwq:{doc-1}: want the read-write lock:\n%s", r.stdout)
	}

	r = km(t, "", addr, "list")
	r.want(t, 0, "list")
	ls := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(ls) != 2 || !strings.HasPrefix(ls[0], "KEY") || !strings.HasPrefix(ls[1], "doc-1 ") ||
		!strings.Contains(ls[1], " rw ") || !strings.Contains(ls[1], "1 reader(s)") {
		t.Errorf("list: want a header and doc-1 (rw, 1 reader):\n%s", r.stdout)
	}
	keys = nil
	r = km(t, "", addr, "list", "-json")
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || len(keys) != 1 || keys[0].Kind != "rw" || len(keys[0].Waiters) != 2 {
		t.Errorf("list -json = %+v, %v; want doc-1 kind rw with 2 waiters\n%s", keys, err, r.stdout)
	}

	// release names a writer by label, a reader by owner id.
	r = km(t, "", addr, "release", key, "-holder", "writer-2", "-yes")
	r.want(t, 3, "release of a queued writer")
	if !strings.Contains(r.stderr, "held by 1 reader(s)") || !strings.Contains(r.stderr, "owner id") {
		t.Errorf("release of a queued writer: stderr %q; want it to name the readers and say a reader is named by owner id", r.stderr)
	}

	// A Mutex of the same key is another lock: inspect shows both.
	mm := newMutex(t, c, distributed.WithLabel("m-holder"))
	lm, err := mm.Lock(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	keys = nil
	r = km(t, "", addr, "inspect", "-json", key)
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || len(keys) != 2 || keys[0].Kind != "mutex" || keys[0].Holder == nil ||
		keys[0].Holder.Label != "m-holder" || keys[1].Kind != "rw" {
		t.Errorf("inspect -json of a key locked by both kinds = %+v, %v; want the Mutex's then the RWMutex's\n%s", keys, err, r.stdout)
	}
	if err := lm.Unlock(); err != nil {
		t.Fatal(err)
	}

	rws, err := distributed.InspectRWKeys(ctx, c, distributed.DefaultPrefix, key)
	if err != nil || len(rws[0].Readers) != 1 {
		t.Fatalf("InspectRWKeys = %+v, %v; want one reader", rws, err)
	}
	r = km(t, "", addr, "release", key, "-holder", rws[0].Readers[0].Owner, "-yes")
	r.want(t, 0, "release of reader-1's share by owner id")
	if !strings.Contains(r.stdout, "released the share of reader") || !strings.Contains(r.stdout, "now held by writer writer-2") {
		t.Errorf("release of a reader: stdout %q; want the share released and writer-2 holding", r.stdout)
	}
	select {
	case <-r1.Done():
	case <-ctx.Done():
		t.Fatal("reader-1's lease never found its loss")
	}
	if err := r1.Unlock(); !errors.Is(err, mutex.ErrLost) {
		t.Fatalf("reader-1's Unlock after the release = %v; want ErrLost", err)
	}
	w := <-w2
	if w.err != nil {
		t.Fatal(w.err)
	}
	next("writer-2 holding", func(k jsonKey) bool {
		return k.Kind == "rw" && k.State == "held" && k.Holder != nil && k.Holder.Label == "writer-2" && len(k.Waiters) == 1 && k.Waiters[0].Kind == "reader"
	})
	r = km(t, "y\n", addr, "release", "keyedmutex:rw:{doc-1}", "-holder", "writer-2")
	r.want(t, 0, "release of writer-2 by label, confirmed")
	if !strings.Contains(r.stdout, "held by writer writer-2") || !strings.Contains(r.stdout, "now held by 1 reader(s)") || !strings.Contains(r.stderr, "[y/N]") {
		t.Errorf("release of writer-2: stdout %q stderr %q; want writer-2 released after the prompt, reader-3 granted", r.stdout, r.stderr)
	}
	if err := w.l.Unlock(); !errors.Is(err, mutex.ErrLost) {
		t.Fatalf("writer-2's Unlock after the release = %v; want ErrLost", err)
	}
	rd := <-r3
	if rd.err != nil {
		t.Fatal(rd.err)
	}
	unlock(t, rd.l)
	next("the free read-write lock", func(k jsonKey) bool { return k.Kind == "rw" && k.State == "free" })
	km(t, "", addr, "list").want(t, 3, "list after every release")
}

func unlock(t *testing.T, l mutex.Lease) {
	t.Helper()
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
}
