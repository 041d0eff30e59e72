package distributed_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
)

// A holder that hangs keeps its key for a bounded time: renewal stops at
// the maximum hold, and the lease is lost when its validity runs out.
func ExampleWithMaxHold() {
	rdb, stop := startRedis()
	defer stop()
	m, err := distributed.New[string](rdb,
		distributed.WithTTL(time.Second),
		distributed.WithMaxHold(1500*time.Millisecond))
	if err != nil {
		panic(err)
	}
	defer m.Close()

	ctx := context.Background()
	lease, err := m.Lock(ctx, "nightly-export")
	if err != nil {
		panic(err)
	}
	<-lease.Done() // a hung job: it never calls Unlock in time
	fmt.Println("lost:", errors.Is(lease.Err(), mutex.ErrLost))
	fmt.Println("at its maximum hold:", errors.Is(lease.Err(), distributed.ErrMaxHold))

	next, err := m.Lock(ctx, "nightly-export") // the key is free again
	if err != nil {
		panic(err)
	}
	fmt.Println("next holder's token is greater:", next.Token() > lease.Token())
	next.Unlock()
	// Output:
	// lost: true
	// at its maximum hold: true
	// next holder's token is greater: true
}
