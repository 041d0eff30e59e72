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

// ListKeys finds every held or queued key under a prefix, longest wait
// first, by SCAN on every master.
func ExampleListKeys() {
	rdb, stop := startRedis()
	defer stop()
	m, _ := distributed.New[string](rdb, distributed.WithLabel("worker-7"))
	defer m.Close()
	ctx := context.Background()
	for _, k := range []string{"order-17", "order-18", "invoice-9"} {
		l, _ := m.Lock(ctx, k)
		defer l.Unlock()
	}
	rs, err := distributed.ListKeys(ctx, rdb, distributed.DefaultPrefix, "order-*")
	if err != nil {
		panic(err)
	}
	for _, r := range rs {
		fmt.Println(r.Key, r.Label, len(r.Queue))
	}
	// Output:
	// order-17 worker-7 0
	// order-18 worker-7 0
}
