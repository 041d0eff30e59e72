package hybrid_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/keyedmutex/keyedmutex/mutex/hybrid"
)

// Many goroutines of one process increment a counter under one hot key.
// They queue locally; the Redis lease passes between them with no Redis
// command, up to 16 times in a row, and tokens keep increasing.
func Example() {
	rdb, stop := startRedis()
	defer stop()

	d, err := distributed.New[string](rdb, distributed.WithPrefix("app:locks:"))
	if err != nil {
		panic(err)
	}
	defer d.Close()
	h, err := hybrid.New[string](d, hybrid.WithMaxLocalHandoffs(16))
	if err != nil {
		panic(err)
	}
	defer h.Close()

	var (
		wg      sync.WaitGroup
		counter int
		last    uint64
		ordered = true
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				lease, err := h.Lock(context.Background(), "order-17")
				if err != nil {
					fmt.Println("lock:", err)
					return
				}
				counter++
				if lease.Token() <= last {
					ordered = false
				}
				last = lease.Token()
				if err := lease.Unlock(); err != nil {
					fmt.Println("unlock:", err)
				}
			}
		}()
	}
	wg.Wait()
	fmt.Println("counter:", counter)
	fmt.Println("tokens strictly increasing:", ordered)
	// Output:
	// counter: 80
	// tokens strictly increasing: true
}

// The usual stack, hybrid over distributed, built and closed in one step:
// with WithOwnedRemote, Close releases what the hybrid holds and then
// closes the distributed mutex too.
func ExampleWithOwnedRemote() {
	rdb, stop := startRedis()
	defer stop()

	d, err := distributed.New[string](rdb, distributed.WithPrefix("app:locks:"))
	if err != nil {
		panic(err)
	}
	h, err := hybrid.New[string](d, hybrid.WithOwnedRemote())
	if err != nil {
		d.Close()
		panic(err)
	}
	defer h.Close() // closes d too

	lease, err := h.Lock(context.Background(), "order-17")
	if err != nil {
		panic(err)
	}
	fmt.Println("token > 0:", lease.Token() > 0)
	fmt.Println(lease.Unlock())
	// Output:
	// token > 0: true
	// <nil>
}

// startRedis stands in for a real Redis server.
func startRedis() (*redis.Client, func()) {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	return rdb, func() { rdb.Close(); mr.Close() }
}
