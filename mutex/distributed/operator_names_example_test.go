package distributed_test

import (
	"fmt"

	"github.com/keyedmutex/keyedmutex/mutex/distributed"
)

// The Redis name of a key's lock; a '}' in the key is percent-encoded.
func ExampleLockKeyName() {
	fmt.Println(distributed.LockKeyName(distributed.DefaultPrefix, "order-17"))
	fmt.Println(distributed.LockKeyName("svc:", "{pay-1}"))
	// Output:
	// keyedmutex:{order-17}
	// svc:{{pay-1%7D}
}
