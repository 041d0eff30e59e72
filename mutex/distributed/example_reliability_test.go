package distributed_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/keyedmutex/keyedmutex/mutex/distributed"
)

// A Mutex on a Redis whose eviction policy cannot be read or changed (a
// managed service, say), whose operator accepts the risk that Redis
// evicts a held lock: the first Lock then sends no INFO.
func ExampleWithoutEvictionCheck() {
	rdb, stop := startRedis()
	defer stop()
	m, err := distributed.New[string](rdb,
		distributed.WithoutEvictionCheck(),
		distributed.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		panic(err)
	}
	defer m.Close()

	lease, err := m.Lock(context.Background(), "order-17")
	if err != nil {
		panic(err)
	}
	fmt.Println("locked:", lease.Token() > 0)
	lease.Unlock()
	// Output:
	// locked: true
}

// A released key reads as free: no TTL (nobody holds it), and nothing
// left in Redis (a free marker, when there is one, is reported apart:
// LastToken and MarkerTTL).
func ExampleInfo_released() {
	rdb, stop := startRedis()
	defer stop()
	m, err := distributed.New[string](rdb)
	if err != nil {
		panic(err)
	}
	defer m.Close()

	ctx := context.Background()
	lease, _ := m.Lock(ctx, "invoice-9")
	lease.Unlock()
	info, err := m.Inspect(ctx, "invoice-9")
	if err != nil {
		panic(err)
	}
	fmt.Println("held:", info.Held, "TTL:", info.TTL)
	fmt.Println("nothing left:", info.LastToken == 0 && info.MarkerTTL == 0)
	// Output:
	// held: false TTL: 0s
	// nothing left: true
}
