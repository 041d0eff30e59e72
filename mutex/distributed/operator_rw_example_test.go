package distributed_test

import (
	"context"
	"fmt"

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
