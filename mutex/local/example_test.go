package local_test

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

func Example() {
	var m local.Mutex[string] // zero value ready
	ctx := context.Background()

	balance := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < 10; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lease, err := m.Lock(ctx, "account-42")
			if err != nil {
				fmt.Println(err)
				return
			}
			defer lease.Unlock()
			balance["account-42"] += 10 // one goroutine at a time per key
		}()
	}
	wg.Wait()

	// Other keys were never blocked; this one is free again.
	lease, _ := m.Lock(ctx, "account-42")
	fmt.Println("balance:", balance["account-42"])
	fmt.Println(lease.Unlock())
	fmt.Println(lease.Unlock())
	// Output:
	// balance: 100
	// <nil>
	// mutex: lease already unlocked
}

func ExampleMutex_TryLock() {
	var m local.Mutex[int]
	ctx := context.Background()

	held, _ := m.Lock(ctx, 17)
	if _, err := m.TryLock(ctx, 17); errors.Is(err, mutex.ErrLocked) {
		fmt.Println("order 17 is busy")
	}
	if other, err := m.TryLock(ctx, 18); err == nil {
		fmt.Println("order 18 is free")
		other.Unlock()
	}
	held.Unlock()
	if again, err := m.TryLock(ctx, 17); err == nil {
		fmt.Println("order 17 is free now")
		again.Unlock()
	}
	// Output:
	// order 17 is busy
	// order 18 is free
	// order 17 is free now
}

func ExampleMutex_Locker() {
	var m local.Mutex[string]

	// A drop-in for a sync.Mutex, per key: code written against
	// sync.Locker keeps working.
	var mu sync.Locker = m.Locker("/var/data/report.csv")
	mu.Lock()
	fmt.Println("writing the report")
	m.Locker("/var/data/report.csv").Unlock() // adapters of one key share state
	// Output:
	// writing the report
}

func ExampleMutex_Lock_cancel() {
	var m local.Mutex[string]
	held, _ := m.Lock(context.Background(), "k")
	defer held.Unlock()

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a caller that gave up
	_, err := m.Lock(ctx, "k")
	fmt.Println(errors.Is(err, context.Canceled))
	// Output:
	// true
}

// printer is a mutex.Observer that prints what it is told.
type printer struct{}

func (printer) Observe(_ context.Context, e mutex.Event) {
	switch e.Kind {
	case mutex.LockDone:
		fmt.Printf("%s %s: %v (waited %v)\n", e.Op, e.Key, e.Outcome, e.Waited)
	case mutex.Unlocked:
		fmt.Printf("Unlock %s: %v\n", e.Key, e.Outcome)
	}
}

// An observer sees every Lock, TryLock and Unlock: outcomes, wait and
// hold times (see the module extra/otelkeyedmutex for OpenTelemetry).
func ExampleWithObserver() {
	m, err := local.New[string](local.WithObserver(printer{}))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	l, _ := m.Lock(ctx, "k")
	m.TryLock(ctx, "k")
	l.Unlock()
	// Output:
	// Lock k: acquired (waited false)
	// TryLock k: locked (waited false)
	// Unlock k: released
}
