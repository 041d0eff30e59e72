package distributed_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyedmutex/keyedmutex/mutex/distributed"
)

// An operator breaks the lock of a holder that hangs, by its label; a
// Mutex's holder is found with InspectKeys, from any process.
func ExampleForceRelease() {
	rdb, stop := startRedis()
	defer stop()
	m, _ := distributed.New[string](rdb, distributed.WithLabel("worker-7"))
	defer m.Close()
	ctx := context.Background()
	lease, _ := m.Lock(ctx, "order-17")

	rs, _ := distributed.InspectKeys(ctx, rdb, distributed.DefaultPrefix, "order-17")
	fmt.Println(rs[0].LockKey, "held by", rs[0].Label)

	_, err := distributed.ForceRelease(ctx, rdb, distributed.DefaultPrefix, "order-17", "worker-8")
	fmt.Println("wrong holder refused:", errors.Is(err, distributed.ErrHeldByOther))
	_, err = distributed.ForceRelease(ctx, rdb, distributed.DefaultPrefix, "order-17", "worker-7")
	fmt.Println("released:", err)
	rs, _ = distributed.InspectKeys(ctx, rdb, distributed.DefaultPrefix, "order-17")
	fmt.Println("locked:", rs[0].Locked())
	_ = lease.Unlock() // the lease was lost: its Unlock says so
	// Output:
	// keyedmutex:{order-17} held by worker-7
	// wrong holder refused: true
	// released: <nil>
	// locked: false
}
