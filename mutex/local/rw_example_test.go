package local_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/keyedmutex/keyedmutex/mutex/local"
)

// Readers of a key hold it together; a writer holds it alone.
func ExampleRWMutex() {
	var (
		m      local.RWMutex[string] // zero value ready
		config = map[string]string{"color": "blue"}
		ctx    = context.Background()
	)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := m.RLock(ctx, "config")
			if err != nil {
				return
			}
			defer r.Unlock()
			_ = config["color"] // readers share the key
		}()
	}
	wg.Wait()

	w, err := m.Lock(ctx, "config")
	if err != nil {
		fmt.Println(err)
		return
	}
	config["color"] = "green" // the writer is alone
	w.Unlock()

	r, _ := m.RLock(ctx, "config")
	fmt.Println(config["color"], r.Token() > w.Token())
	r.Unlock()
	// Output: green true
}
