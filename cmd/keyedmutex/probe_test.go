package main

import (
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
