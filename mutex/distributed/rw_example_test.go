package distributed_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
)

// Readers of a key hold it together, in any number of processes; a
// writer holds it alone, and a writer that waits holds back the readers
// that come after it.
func ExampleNewRW() {
	rdb, stop := startRedis()
	defer stop()
	a, err := distributed.NewRW[string](rdb) // one per process
	if err != nil {
		panic(err)
	}
	defer a.Close()
	b, _ := distributed.NewRW[string](rdb) // another process, say
	defer b.Close()

	ctx := context.Background()
	r1, _ := a.RLock(ctx, "config")
	r2, err := b.RLock(ctx, "config")
	fmt.Println("two readers at once:", err == nil)
	_, err = b.TryLock(ctx, "config")
	fmt.Println("a writer while they read:", errors.Is(err, mutex.ErrLocked))
	r1.Unlock()
	r2.Unlock()

	w, _ := b.Lock(ctx, "config")
	_, err = a.TryRLock(ctx, "config")
	fmt.Println("a reader while the writer writes:", errors.Is(err, mutex.ErrLocked))
	w.Unlock()

	r3, _ := a.RLock(ctx, "config")
	fmt.Println("the reader's token is above the writer's:", r3.Token() > w.Token())
	r3.Unlock()
	// Output:
	// two readers at once: true
	// a writer while they read: true
	// a reader while the writer writes: true
	// the reader's token is above the writer's: true
}
