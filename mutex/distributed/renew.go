package distributed

import (
	"context"
	"sync"
	"time"
)

// renewer renews a Mutex's leases in batches: each lease is due at a time
// rounded down to a tick (TTL/12), and every lease due at one tick is
// renewed by one wake of one timer, its calls leaving together through
// the executor (one pipeline, a round trip or two for hundreds of
// leases). No goroutine and no timer exists per lease. Renewing up to a
// tick early costs nothing; late would.
type renewer struct {
	c    *core
	tick time.Duration

	mu      sync.Mutex         // guards the fields below
	due     map[int64][]*lease // by tick number
	at      map[*lease]int64   // the tick each scheduled lease is in
	timer   *time.Timer        // fires at the earliest tick, if any
	next    int64              // the tick timer is set for
	stopped bool               //
	running sync.WaitGroup     // fire calls in progress
}

// schedule makes l due for renewal at t (rounded down to a tick).
func (r *renewer) schedule(l *lease, t time.Time) {
	k := t.UnixNano() / int64(r.tick)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	if r.due == nil {
		r.due, r.at = map[int64][]*lease{}, map[*lease]int64{}
	}
	if old, ok := r.at[l]; ok {
		r.removeLocked(l, old)
	}
	r.due[k] = append(r.due[k], l)
	r.at[l] = k
	if r.timer == nil || k < r.next {
		r.next = k
		d := time.Until(time.Unix(0, k*int64(r.tick)))
		if r.timer == nil {
			r.timer = time.AfterFunc(d, r.fire)
		} else {
			r.timer.Reset(d)
		}
	}
}

// cancel removes l from the schedule.
func (r *renewer) cancel(l *lease) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if k, ok := r.at[l]; ok {
		r.removeLocked(l, k)
	}
}

func (r *renewer) removeLocked(l *lease, k int64) {
	delete(r.at, l)
	ls := r.due[k]
	for i, x := range ls {
		if x == l {
			ls[i] = ls[len(ls)-1]
			ls[len(ls)-1] = nil
			ls = ls[:len(ls)-1]
			break
		}
	}
	if len(ls) == 0 {
		delete(r.due, k)
	} else {
		r.due[k] = ls
	}
}

// fire renews every lease whose tick has come, then sets the timer for the
// next tick.
func (r *renewer) fire() {
	now := time.Now().UnixNano() / int64(r.tick)
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	r.running.Add(1)
	defer r.running.Done()
	var batch []*lease
	next := int64(-1)
	for k, ls := range r.due {
		if k > now {
			if next < 0 || k < next {
				next = k
			}
			continue
		}
		for _, l := range ls {
			delete(r.at, l)
			batch = append(batch, l)
		}
		delete(r.due, k)
	}
	if next >= 0 {
		r.next = next
		r.timer.Reset(time.Until(time.Unix(0, next*int64(r.tick))))
	} else {
		r.timer = nil
	}
	r.mu.Unlock()
	r.renew(batch)
}

// renew sends one renewal per lease of batch, all at once, and hands
// each result to its lease.
func (r *renewer) renew(batch []*lease) {
	calls := make([]*call, 0, len(batch))
	owners := make([]*lease, 0, len(batch))
	for _, l := range batch {
		l.mu.Lock()
		skip := l.ending || l.err != nil || l.renewing
		if !skip {
			l.renewing = true
		}
		valid := l.validUntil
		l.mu.Unlock()
		if skip {
			continue
		}
		if !time.Now().Before(valid) {
			l.mu.Lock()
			l.renewing = false
			l.mu.Unlock()
			l.expire()
			continue
		}
		calls = append(calls, &call{
			script: r.c.sc.renew,
			keys:   l.nm.renewKeys(),
			args:   []any{l.val},
		})
		owners = append(owners, l)
	}
	if len(calls) == 0 {
		return
	}
	sent := time.Now()
	r.c.exec.submit(calls...)
	// A renewal may wait no longer than the earliest validity among them;
	// one that outlives its lease's validity finds it lost.
	for i, c := range calls {
		l := owners[i]
		l.mu.Lock()
		valid := l.validUntil
		l.mu.Unlock()
		ctx, cancel := context.WithDeadline(context.Background(), valid)
		select {
		case <-c.done:
			cancel()
			l.renewed(sent, c.res, c.err)
		case <-ctx.Done():
			cancel()
			l.renewed(sent, nil, r.c.noReply(sent))
		}
	}
}

// stop ends the schedule and waits for renewals in progress.
func (r *renewer) stop() {
	r.mu.Lock()
	r.stopped = true
	if r.timer != nil {
		r.timer.Stop()
	}
	r.due, r.at = nil, nil
	r.mu.Unlock()
	r.running.Wait()
}
