package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/redis/go-redis/v9"
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

// releaseRW breaks a hold of key's read-write lock r (an RWMutex's): the
// writer's, named by label or owner id, or a reader's share, named by
// owner id (a holding reader's label is not stored).
func (o *options) releaseRW(ctx context.Context, client redis.UniversalClient, r distributed.KeyReport) (int, error) {
	key := r.Key
	if r.Err != nil {
		return exitError, r.Err
	}
	var what string
	switch {
	case r.Foreign:
		what = ""
	case r.Held && (r.Label == o.holder || r.Owner == o.holder):
		what = fmt.Sprintf("the read-write lock of %s held by writer %s (owner %s, ttl %s)", show(key), labelOrDash(r.Label), show(r.Owner), fmtTTL(r.TTL))
	default:
		for _, rd := range r.Readers {
			if rd.Owner == o.holder {
				what = fmt.Sprintf("the share of reader %s in the read-write lock of %s (ttl %s)", show(rd.Owner), show(key), fmtTTL(rd.TTL))
			}
		}
	}
	if what == "" {
		var err error
		switch {
		case r.Foreign:
			err = fmt.Errorf("%q is not locked by keyedmutex: %s holds %q, a value keyedmutex did not write, which blocks every Lock and RLock of the key; nothing released. If no program of yours wrote it, %s", key, show(r.LockKey), r.Value, o.delHint(r.LockKey))
		case r.Held:
			err = fmt.Errorf("%q: its read-write lock is held by writer %s (owner %s), not by %s; nothing released", key, labelOrDash(r.Label), show(r.Owner), show(o.holder))
		case len(r.Readers) > 0:
			owners := make([]string, len(r.Readers))
			for i, rd := range r.Readers {
				owners[i] = show(rd.Owner)
			}
			err = fmt.Errorf("%q: its read-write lock is held by %d reader(s) (owners %s), not by %s; a reader is named by its owner id (a holding reader's label is not stored); nothing released", key, len(r.Readers), strings.Join(owners, ", "), show(o.holder))
		default:
			err = fmt.Errorf("%q: its read-write lock has no holder (no writer in %s, no reader in %s); nothing released", key, show(r.LockKey), show(r.ReadersKey))
		}
		if o.json {
			_ = o.printJSON(jsonRelease{Key: key, Released: false, Reason: err.Error(), Before: o.toJSON(r)})
		}
		return exitNothing, err
	}
	if !o.yes {
		prompt := fmt.Sprintf("Release %s? If that leaves it without holders, the head of its queue gets it; the holder finds its lease lost at its next renewal. [y/N] ", what)
		if ok, code := o.confirm(ctx, prompt); !ok {
			return code, nil
		}
	}
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	res, err := distributed.ForceReleaseRW(cctx, client, o.prefix, key, o.holder)
	cancel()
	if err != nil || o.json {
		return o.released(key, res, err)
	}
	now := "now free"
	switch a := res.After; {
	case a.Held:
		now = "now held by writer " + labelOrDash(a.Label) + " (owner " + show(a.Owner) + ")"
	case len(a.Readers) > 0:
		now = fmt.Sprintf("now held by %d reader(s)", len(a.Readers))
	case a.Locked():
		now = fmt.Sprintf("now without holder, %d waiting", len(a.Queue))
	}
	fmt.Fprintf(o.stdout, "released %s; %s\n", what, now)
	return exitOK, nil
}
