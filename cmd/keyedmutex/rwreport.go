package main

import (
	"fmt"
	"strings"

	"github.com/keyedmutex/keyedmutex/mutex/distributed"
)

// printRWReport prints one key's read-write lock (an RWMutex's), for a
// person: its writer or its readers, and its queue with each waiter's
// kind.
func (o *options) printRWReport(r distributed.KeyReport) {
	w := o.stdout
	fmt.Fprintf(w, "%s\n", show(r.Key))
	fmt.Fprintf(w, "  kind      read-write lock (RWMutex)\n")
	fmt.Fprintf(w, "  writer    %s\n", show(r.LockKey))
	if r.Err != nil {
		fmt.Fprintf(w, "  error     %v\n", o.explain(r.Err))
		return
	}
	switch {
	case r.Held:
		fmt.Fprintf(w, "  holder    writer %s  owner %s  ttl %s\n", labelOrDash(r.Label), show(r.Owner), fmtTTL(r.TTL))
	case r.Foreign:
		fmt.Fprintf(w, "  holder    (not keyedmutex's)  ttl %s: the writer key holds %q, a value keyedmutex did not write; it blocks every Lock and RLock of the key\n", fmtTTL(r.TTL), r.Value)
		fmt.Fprintf(w, "  clear     %s\n", o.delHint(r.LockKey))
	case len(r.Readers) > 0:
		fmt.Fprintf(w, "  holder    %d reader(s) (a reader's label is not stored)\n", len(r.Readers))
		for i, rd := range r.Readers {
			fmt.Fprintf(w, "    %d  reader %s  owner %s  ttl %s\n", i+1, labelOrDash(rd.Label), show(rd.Owner), fmtTTL(rd.TTL))
		}
	case r.Waiters > 0:
		fmt.Fprintf(w, "  holder    none (the holders' leases expired; the next waiter's poll serves the queue)\n")
	default:
		fmt.Fprintf(w, "  holder    none: not locked\n")
	}
	fmt.Fprintf(w, "  waiters   %d\n", len(r.Queue))
	for i, q := range r.Queue {
		dead := ""
		if q.Dead {
			dead = "  (dead: its waiter stopped refreshing it)"
		}
		fmt.Fprintf(w, "    %d  %s %s  waited %s  owner %s%s\n", i+1, waiterKind(q), labelOrDash(q.Label), fmtDur(q.Waited), show(q.Owner), dead)
	}
}

// waiterKind names a read-write lock's waiter: reader or writer.
func waiterKind(q distributed.QueuedWaiter) string {
	if q.Reader {
		return "reader"
	}
	return "writer"
}

// prefixOf returns the prefix of head, the part of a lock's Redis name
// before its '{': head without the kind's own part ("q:" of a Mutex's
// queue, "rw:", "rwr:", "rwq:" of an RWMutex's names), which
// ParseKeyName then checks.
func prefixOf(head string) string {
	for _, part := range []string{"rwq:", "rwr:", "rw:", "q:"} {
		if p, ok := strings.CutSuffix(head, part); ok {
			return p
		}
	}
	return head
}
