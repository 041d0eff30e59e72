package distributed_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
)

// InspectRWKeys shows an RWMutex's lock of a key: its writer, or its
// readers; the Mutex's lock of the same key is another lock.
func ExampleInspectRWKeys() {
	rdb, stop := startRedis()
	defer stop()
	m, _ := distributed.NewRW[string](rdb, distributed.WithLabel("reporter-3"))
	defer m.Close()
	ctx := context.Background()
	a, _ := m.RLock(ctx, "catalog")
	b, _ := m.RLock(ctx, "catalog")

	rs, _ := distributed.InspectRWKeys(ctx, rdb, distributed.DefaultPrefix, "catalog")
	fmt.Println(rs[0].Kind, rs[0].LockKey, "writer:", rs[0].Held, "readers:", len(rs[0].Readers))
	ms, _ := distributed.InspectKeys(ctx, rdb, distributed.DefaultPrefix, "catalog")
	fmt.Println(ms[0].Kind, "locked:", ms[0].Locked())
	_ = a.Unlock()
	_ = b.Unlock()
	// Output:
	// rw keyedmutex:rw:{catalog} writer: false readers: 2
	// mutex locked: false
}

// ForceReleaseRW breaks the writer of an RWMutex's lock by its label; the
// queued reader gets the lock as at a normal release.
func ExampleForceReleaseRW() {
	rdb, stop := startRedis()
	defer stop()
	w, _ := distributed.NewRW[string](rdb, distributed.WithLabel("stuck-writer"))
	defer w.Close()
	r, _ := distributed.NewRW[string](rdb, distributed.WithLabel("reader"))
	defer r.Close()
	ctx := context.Background()
	lease, _ := w.Lock(ctx, "catalog")
	read := make(chan error, 1)
	go func() {
		l, err := r.RLock(ctx, "catalog")
		if err == nil {
			err = l.Unlock()
		}
		read <- err
	}()
	for { // until the reader queues
		rs, _ := distributed.InspectRWKeys(ctx, rdb, distributed.DefaultPrefix, "catalog")
		if len(rs[0].Queue) == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}

	res, err := distributed.ForceReleaseRW(ctx, rdb, distributed.DefaultPrefix, "catalog", "stuck-writer")
	fmt.Println("released:", res.Before.Label, err)
	fmt.Println("reader:", <-read)
	fmt.Println("writer's Unlock lost:", errors.Is(lease.Unlock(), mutex.ErrLost))
	// Output:
	// released: stuck-writer <nil>
	// reader: <nil>
	// writer's Unlock lost: true
}
