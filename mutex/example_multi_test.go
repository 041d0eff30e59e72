package mutex_test

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

// A transfer between two accounts locks both with DoAll. Every caller
// may name the accounts in its own order: DoAll takes them in the one
// order of the mutex, so two opposite transfers cannot deadlock.
func ExampleDoAll() {
	var m local.Mutex[string] // any mutex.Keyed works the same way
	ctx := context.Background()
	balance := map[string]int{"alice": 100, "bob": 100}

	errFunds := errors.New("insufficient funds")
	transfer := func(from, to string, amount int) error {
		return mutex.DoAll(ctx, &m, []string{from, to}, func(ctx context.Context) error {
			if balance[from] < amount {
				return errFunds
			}
			balance[from] -= amount
			balance[to] += amount
			return nil
		})
	}

	var wg sync.WaitGroup
	for i := range 100 {
		wg.Go(func() {
			if i%2 == 0 {
				_ = transfer("alice", "bob", 3)
			} else {
				_ = transfer("bob", "alice", 2)
			}
		})
	}
	wg.Wait()
	fmt.Println("total:", balance["alice"]+balance["bob"])
	fmt.Println(transfer("alice", "bob", 1000))
	// Output:
	// total: 200
	// insufficient funds
}

// LockAll returns one LeaseSet for the keys: Unlock releases them all,
// and each key's lease (its fencing token) is at hand.
func ExampleLockAll() {
	var m local.Mutex[string]
	set, err := mutex.LockAll(context.Background(), &m, "order-18", "order-17", "order-18")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer set.Unlock()
	fmt.Println(set.Keys()) // distinct, in lock order
	_, ok := set.Token("order-17")
	fmt.Println(ok)
	// Output:
	// [order-17 order-18]
	// true
}
