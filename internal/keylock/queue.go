package keylock

import "sync"

// Waiter states, guarded by the shard's mu.
const (
	waiting = iota
	granted // the lock was handed to this waiter
	failed  // the waiter was dequeued with an error in err
)

// waiter is a goroutine queued for a key. state, tok and err are written
// under the shard lock before the one send on ready, and read after it.
// Waiters are pooled: ready is buffered, so the sender never blocks, and
// a waiter goes back to the pool only once that send has been received.
type waiter struct {
	ready      chan struct{} // one send when state leaves waiting
	n          uint64        // tokens to issue on grant
	hold       uint64        // the state bits of the holding to grant
	tok        uint64        // the first token issued, once granted
	state      int
	err        error
	prev, next *waiter
}

var waiters = sync.Pool{New: func() any { return &waiter{ready: make(chan struct{}, 1)} }}

func getWaiter(n, hold uint64) *waiter {
	w := waiters.Get().(*waiter)
	w.n, w.hold = n, hold
	return w
}

// putWaiter returns w, whose ready channel is empty, to the pool.
func putWaiter(w *waiter) {
	w.n, w.hold, w.tok, w.state, w.err = 0, 0, 0, waiting, nil
	waiters.Put(w)
}

// signal ends w's wait with the state (and tok or err) set. The shard's
// mu is held.
func (w *waiter) signal() { w.ready <- struct{}{} }

// queue is the FIFO of one key's waiters: an intrusive doubly linked
// list, so push, pop and the removal of a cancelled waiter are O(1) and
// allocate nothing. All of it is guarded by the shard's mu.
type queue struct {
	head, tail *waiter
}

func (q *queue) empty() bool { return q.head == nil }

func (q *queue) push(w *waiter) {
	w.prev = q.tail
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
}

func (q *queue) remove(w *waiter) {
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		q.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		q.tail = w.prev
	}
	w.prev, w.next = nil, nil
}

func (q *queue) len() int {
	n := 0
	for w := q.head; w != nil; w = w.next {
		n++
	}
	return n
}
