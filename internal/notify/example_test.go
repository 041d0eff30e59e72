package notify_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/keyedmutex/keyedmutex/internal/notify"
	"github.com/redis/go-redis/v9"
)

// A waiter subscribes to a key's release channel, re-checks the lock, and
// sleeps until a release notice (or its own timeout) wakes it.
func Example() {
	m, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()

	hub := notify.Open(rdb) // shared by every Open of rdb in the process
	defer hub.Close()

	ctx := context.Background()
	sub, err := hub.Subscribe(ctx, "release:{order-42}")
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	// Redis has confirmed the subscription: this notice cannot be missed.
	n, _ := rdb.Publish(ctx, "release:{order-42}", "").Result()
	<-sub.C()
	fmt.Println("receivers:", n)
	fmt.Println("woken")
	// Output:
	// receivers: 1
	// woken
}
