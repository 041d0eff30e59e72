package distributed_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/redis/go-redis/v9"
)

// startRedis stands in for a real Redis server.
func startRedis() (*redis.Client, func()) {
	s, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	return rdb, func() { rdb.Close(); s.Close() }
}

func Example() {
	rdb, stop := startRedis()
	defer stop()

	m, err := distributed.New[string](rdb)
	if err != nil {
		panic(err)
	}
	defer m.Close()

	ctx := context.Background()
	lease, err := m.Lock(ctx, "order-17")
	if err != nil {
		panic(err)
	}
	fmt.Println("locked order-17, token > 0:", lease.Token() > 0)
	if err := lease.Unlock(); err != nil {
		panic(err)
	}
	fmt.Println("unlocked:", lease.Err())
	// Output:
	// locked order-17, token > 0: true
	// unlocked: mutex: lease already unlocked
}

func ExampleMutex_TryLock() {
	rdb, stop := startRedis()
	defer stop()
	a, _ := distributed.New[string](rdb) // two processes, say
	defer a.Close()
	b, _ := distributed.New[string](rdb)
	defer b.Close()

	ctx := context.Background()
	lease, err := a.TryLock(ctx, "report")
	if err != nil {
		panic(err)
	}
	_, err = b.TryLock(ctx, "report")
	fmt.Println("b:", errors.Is(err, mutex.ErrLocked))
	lease.Unlock()
	lease, err = b.TryLock(ctx, "report")
	fmt.Println("b after a's Unlock:", err)
	lease.Unlock()
	// Output:
	// b: true
	// b after a's Unlock: <nil>
}

// A job that must stop when it loses the lock runs under the context
// from mutex.WithLease.
func ExampleMutex_Lock_withLease() {
	s, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer s.Close()
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr()})
	defer rdb.Close()

	m, err := distributed.New[int](rdb, distributed.WithTTL(time.Second), distributed.WithPrefix("jobs:"))
	if err != nil {
		panic(err)
	}
	defer m.Close()

	lease, err := m.Lock(context.Background(), 42)
	if err != nil {
		panic(err)
	}
	ctx, cancel := mutex.WithLease(context.Background(), lease)
	defer cancel()

	s.Del("jobs:{42}") // someone deletes the lock: the next renewal notices
	<-ctx.Done()
	fmt.Println("cause:", context.Cause(ctx))
	fmt.Println("Unlock:", errors.Is(lease.Unlock(), mutex.ErrLost))
	// Output:
	// cause: mutex: lease lost
	// Unlock: true
}

// An operator paged for a stuck key sees who holds it, for how long
// more, and how many wait.
func ExampleMutex_Inspect() {
	rdb, stop := startRedis()
	defer stop()
	m, err := distributed.New[string](rdb, distributed.WithLabel("billing-7"))
	if err != nil {
		panic(err)
	}
	defer m.Close()

	ctx := context.Background()
	lease, _ := m.Lock(ctx, "invoice-9")
	info, err := m.Inspect(ctx, "invoice-9")
	if err != nil {
		panic(err)
	}
	fmt.Println("held:", info.Held, "by", info.Label)
	fmt.Println("TTL within 10s:", info.TTL > 0 && info.TTL <= 10*time.Second)
	fmt.Println("waiters:", info.Waiters)
	lease.Unlock()
	info, _ = m.Inspect(ctx, "invoice-9")
	fmt.Println("held after Unlock:", info.Held)
	// Output:
	// held: true by billing-7
	// TTL within 10s: true
	// waiters: 0
	// held after Unlock: false
}
