package keylock

// Waiter states, guarded by the shard's mu.
const (
	waiting = iota
	granted // the lock was handed to this waiter
	failed  // the waiter was dequeued with an error in err
)

// waiter is a goroutine queued for a key. state, tok and err are written
// under the shard lock before ready is closed, and read after.
type waiter[K comparable, V any] struct {
	ready      chan struct{} // closed when state leaves waiting
	n          uint64        // tokens to issue on grant
	tok        uint64        // the first token issued, once granted
	state      int
	err        error
	prev, next *waiter[K, V]
}

// queue is the FIFO of one key's waiters: an intrusive doubly linked
// list, so push, pop and the removal of a cancelled waiter are O(1) and
// allocate nothing. All of it is guarded by the shard's mu.
type queue[K comparable, V any] struct {
	head, tail *waiter[K, V]
}

func (q *queue[K, V]) empty() bool { return q.head == nil }

func (q *queue[K, V]) push(w *waiter[K, V]) {
	w.prev = q.tail
	if q.tail != nil {
		q.tail.next = w
	} else {
		q.head = w
	}
	q.tail = w
}

func (q *queue[K, V]) remove(w *waiter[K, V]) {
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

func (q *queue[K, V]) len() int {
	n := 0
	for w := q.head; w != nil; w = w.next {
		n++
	}
	return n
}
