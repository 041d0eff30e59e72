package notify_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/keyedmutex/keyedmutex/internal/notify"
	"github.com/redis/go-redis/v9"
)

// A waiter subscribes to its process's grant channel of a key, under its
// own id, re-checks the lock, and sleeps until a message addressed to it
// (or its own timeout) wakes it.
func Example() {
	m, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()

	hub, err := notify.Open(rdb) // one connection for every Open of rdb
	if err != nil {
		panic(err)
	}
	defer hub.Close()

	ctx := context.Background()
	sub, err := hub.Subscribe(ctx, "grant:{order-42}:p1", "waiter-7")
	if err != nil {
		panic(err)
	}
	defer sub.Close()
	// Redis has confirmed the subscription: this message cannot be missed.
	n, _ := rdb.Publish(ctx, "grant:{order-42}:p1", "waiter-7 token 1001").Result()
	<-sub.C()
	msg, _ := sub.Message()
	fmt.Println("receivers:", n)
	fmt.Println("message:", msg)
	// Output:
	// receivers: 1
	// message: token 1001
}
