package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
)

// TestClusterStalledMaster: with one master of a Cluster stalled, inspect
// and release of a key on another master work (the stalled one is named
// on stderr), every time.
func TestClusterStalledMaster(t *testing.T) {
	cl := redistest.StartCluster(t, 3, 0)
	cc := cl.Client(t)
	ctx := ctxT(t)
	addr := "-addr=" + strings.Join(cl.Addrs(), ",")
	byMaster := map[string]string{}
	for i := 0; len(byMaster) < 2; i++ {
		k := fmt.Sprintf("p%d", i)
		byMaster[cl.MasterOf("keyedmutex:{"+k+"}")] = k
	}
	var stalled, healthy string
	for a, k := range byMaster {
		if stalled == "" {
			stalled = a
		} else {
			healthy = k
		}
	}
	m := newMutex(t, cc, distributed.WithLabel("h"))
	l, err := m.Lock(ctx, healthy)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	node := cl.Node(stalled)
	node.Pause()
	defer node.Resume()
	// Each run's keyless commands go round robin to a master: several
	// runs, all of which must succeed.
	for i := range 3 {
		r := km(t, "", addr, "-cluster", "-timeout=1s", "inspect", healthy)
		r.want(t, 0, fmt.Sprintf("inspect #%d of %s with master %s stalled", i, healthy, stalled))
		if !strings.Contains(r.stdout, "holder    h ") || !strings.Contains(r.stderr, stalled) {
			t.Errorf("inspect with a stalled master: stdout %q, stderr %q; want held by h, and %s named", r.stdout, r.stderr, stalled)
		}
	}
	km(t, "", addr, "-cluster", "-timeout=1s", "release", healthy, "-holder", "h", "-yes").want(t, 0, "release with another master stalled")
	node.Resume()
}

// TestWrongTypeKeyAlone: a key whose lock is a list is reported with its
// error, the other keys are listed and inspected, and the exit code is 1.
func TestWrongTypeKeyAlone(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := ctxT(t)
	addr := "-addr=" + srv.Addr()
	m := newMutex(t, c, distributed.WithLabel("good-holder"))
	l, err := m.Lock(ctx, "good")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if err := c.RPush(ctx, "keyedmutex:{bad}", "x").Err(); err != nil {
		t.Fatal(err)
	}
	r := km(t, "", addr, "list")
	r.want(t, 1, "list with a WRONGTYPE key")
	if !strings.Contains(r.stdout, "good-holder") || !strings.Contains(r.stdout, "bad ") || !strings.Contains(r.stderr, "WRONGTYPE") || !strings.Contains(r.stderr, "keyedmutex:{bad}") {
		t.Errorf("list with a WRONGTYPE key: stdout %q, stderr %q; want good listed, bad listed with its WRONGTYPE error", r.stdout, r.stderr)
	}
	r = km(t, "", addr, "list", "-json")
	r.want(t, 1, "list -json with a WRONGTYPE key")
	var keys []jsonKey
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || len(keys) != 2 || keys[0].Key != "good" || keys[0].State != "held" ||
		keys[1].Key != "bad" || keys[1].State != "error" || !strings.Contains(keys[1].Error, "WRONGTYPE") {
		t.Errorf("list -json = %+v, %v; want good held, then bad with state error\n%s", keys, err, r.stdout)
	}
	r = km(t, "", addr, "inspect", "-json", "bad", "good")
	r.want(t, 1, "inspect -json of a WRONGTYPE key and a held one")
	keys = nil
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || len(keys) != 2 || keys[0].State != "error" || keys[1].State != "held" {
		t.Errorf("inspect -json bad good = %+v, %v; want bad error, good held\n%s", keys, err, r.stdout)
	}
	r = km(t, "", addr, "inspect", "bad", "good")
	r.want(t, 1, "inspect of a WRONGTYPE key and a held one")
	if !strings.Contains(r.stdout, "holder    good-holder") || !strings.Contains(r.stdout, "error     ") {
		t.Errorf("inspect bad good: stdout %q; want bad's error and good's holder", r.stdout)
	}
}
