package hybrid_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/hybrid"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

// Readers of one process share one remote read lease: eight of them
// holding a key together cost one remote RLock. The remote here is a
// local.RWMutex standing for a distributed one, so that the example
// runs without Redis.
func ExampleRWMutex() {
	var remote countingRW
	h, err := hybrid.NewRW[string](&remote)
	if err != nil {
		panic(err)
	}
	defer h.Close()
	ctx := context.Background()

	var (
		wg      sync.WaitGroup
		holding sync.WaitGroup
		tokens  = make([]uint64, 8)
	)
	holding.Add(len(tokens))
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := h.RLock(ctx, "config")
			if err != nil {
				panic(err)
			}
			tokens[i] = r.Token()
			holding.Done()
			holding.Wait() // all eight hold at once
			r.Unlock()
		}()
	}
	wg.Wait()
	same := true
	for _, tok := range tokens {
		same = same && tok == tokens[0]
	}
	fmt.Println("remote RLocks:", remote.rlocks(), "same token:", same)

	w, err := h.Lock(ctx, "config")
	if err != nil {
		panic(err)
	}
	fmt.Println("writer token above the readers':", w.Token() > tokens[0])
	w.Unlock()
	// Output:
	// remote RLocks: 1 same token: true
	// writer token above the readers': true
}

// countingRW is a local.RWMutex that counts its RLocks.
type countingRW struct {
	local.RWMutex[string]
	mu sync.Mutex
	n  int
}

func (c *countingRW) RLock(ctx context.Context, key string) (mutex.Lease, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.RWMutex.RLock(ctx, key)
}

func (c *countingRW) rlocks() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
