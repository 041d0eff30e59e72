package mutex_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

// Do is the recommended way to run a critical section: it locks, runs the
// function under a context that ends if the lease is lost, and always
// unlocks, returning the function's error joined with Unlock's.
func ExampleDo() {
	var m local.Mutex[string] // any mutex.Keyed works the same way
	ctx := context.Background()
	stock := map[string]int{"sku-1": 3}

	errSoldOut := errors.New("sold out")
	reserve := func(sku string) error {
		return mutex.Do(ctx, &m, sku, func(ctx context.Context) error {
			if stock[sku] == 0 {
				return errSoldOut
			}
			stock[sku]--
			return nil
		})
	}
	for range 4 {
		fmt.Println(reserve("sku-1"))
	}
	// Output:
	// <nil>
	// <nil>
	// <nil>
	// sold out
}
