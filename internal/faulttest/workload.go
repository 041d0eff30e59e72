package faulttest

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

// Workload is many goroutines over several instances locking a few keys,
// writing their token to a fenced resource inside the critical section,
// and recording everything in a History.
type Workload struct {
	// Instances stand for processes: each has its own Redis client.
	Instances []mutex.Keyed[string]
	// Keys are the keys locked, chosen at random for each Lock.
	Keys []string
	// Goroutines is the number of goroutines per instance. The default is 4.
	Goroutines int
	// MaxHold bounds the random time a goroutine holds a lock. The default
	// is 2ms.
	MaxHold time.Duration
	// LockTimeout is the ctx timeout of each Lock. The default is 2s.
	LockTimeout time.Duration
	// CancelOneIn, when positive, cancels about one Lock in CancelOneIn at
	// a random moment of its wait (up to 4×MaxHold). The default is 0.
	CancelOneIn int
	// Fenced is the resource written under the lock. Required.
	Fenced *Fenced
	// History records the holds. Required.
	History *History
	// Pause, if set, is called by each goroutine between its Locks, so that
	// a test can stop the workload at a point of its choosing. The default
	// is nil.
	Pause func()
}

// Run runs the workload for d, then waits for its goroutines. Meanwhile
// it calls faults, if not nil, on the calling goroutine (so that it may
// use tb.Fatal): faults injects faults until the time it is given, then
// returns. If the workload's goroutines do not all end within the lock
// timeout plus 30s after the run, some Lock hung: Run fails tb (with the
// stacks) and stops it.
func (w *Workload) Run(tb testing.TB, d time.Duration, faults func(until time.Time)) {
	tb.Helper()
	r := w.Start()
	stopAt := time.Now().Add(d)
	if faults != nil {
		faults(stopAt)
	}
	time.Sleep(time.Until(stopAt)) // the rest of the run
	r.Stop(tb)
}

// Running is a workload started with [Workload.Start].
type Running struct {
	w       *Workload
	stopped atomic.Bool
	done    chan struct{} // closed when every goroutine has ended
}

// Start starts the workload's goroutines and returns at once; they lock
// and unlock until [Running.Stop]. Several workloads may run at once
// (one per implementation, say) while the caller injects faults.
func (w *Workload) Start() *Running {
	if w.Goroutines == 0 {
		w.Goroutines = 4
	}
	if w.MaxHold == 0 {
		w.MaxHold = 2 * time.Millisecond
	}
	if w.LockTimeout == 0 {
		w.LockTimeout = 2 * time.Second
	}
	r := &Running{w: w, done: make(chan struct{})}
	var wg sync.WaitGroup
	for i, m := range w.Instances {
		for g := 0; g < w.Goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !r.stopped.Load() {
					if w.Pause != nil {
						w.Pause()
					}
					w.once(i, m)
				}
			}()
		}
	}
	go func() { wg.Wait(); close(r.done) }()
	return r
}

// Stop tells the workload's goroutines to stop after their current Lock
// and waits for them. If they do not all end within the lock timeout
// plus 30s, some Lock hung: Stop fails tb (with the stacks) and stops it.
// Call it from the test's goroutine.
func (r *Running) Stop(tb testing.TB) {
	tb.Helper()
	r.stopped.Store(true)
	select {
	case <-r.done:
	case <-time.After(r.w.LockTimeout + 30*time.Second):
		tb.Fatalf("workload goroutines still running %v after the end of the run: a Lock or Unlock hung\n%s",
			r.w.LockTimeout+30*time.Second, Stacks())
	}
}

func (w *Workload) once(instance int, m mutex.Keyed[string]) {
	key := w.Keys[rand.IntN(len(w.Keys))]
	ctx, cancel := context.WithTimeout(context.Background(), w.LockTimeout)
	defer cancel()
	if w.CancelOneIn > 0 && rand.IntN(w.CancelOneIn) == 0 {
		t := time.AfterFunc(rand.N(4*w.MaxHold+1), cancel)
		defer t.Stop()
	}
	hd, err := w.History.Lock(ctx, m, instance, key)
	if err != nil {
		if ctx.Err() == nil {
			// The backend failed (a fault): pace the retries a little.
			time.Sleep(time.Millisecond + rand.N(4*time.Millisecond))
		}
		return
	}
	w.write(hd)
	time.Sleep(rand.N(w.MaxHold + 1)) // the work done under the lock
	w.write(hd)
	if err := hd.Unlock(); err != nil && !errors.Is(err, mutex.ErrLost) {
		// A backend error on release is allowed (the key then expires);
		// anything else is not.
		if errors.Is(err, mutex.ErrUnlocked) {
			w.History.Violation("Unlock of %q (instance %d) = %v on its first call", key, instance, err)
		}
	}
}

// write writes the hold's token unless the holder knows its lease is lost,
// as a careful user would.
func (w *Workload) write(hd *Hold) {
	if errors.Is(hd.Lease.Err(), mutex.ErrLost) {
		hd.MarkLost()
		return
	}
	select {
	case <-hd.Lease.Done():
		if !errors.Is(hd.Lease.Err(), mutex.ErrLost) {
			w.History.Violation("lease of %q closed Done while held, Err = %v", hd.Key, hd.Lease.Err())
		}
		hd.MarkLost()
		return
	default:
	}
	_ = hd.Write(w.Fenced)
}

// CheckRedisClean fails tb unless, within wait, the server behind rdb has
// no lock key under prefix (fence counters, prefix+"fence:...", are not
// lock keys, but each must have an expiry) and no channel under prefix
// with a subscriber (PUBSUB CHANNELS and SHARDCHANNELS). A lock key
// without an expiry fails at once: it would never go away.
func CheckRedisClean(tb testing.TB, rdb redis.UniversalClient, prefix string, wait time.Duration) {
	tb.Helper()
	ctx := context.Background()
	pattern := globEscape(prefix) + "*"
	deadline := time.Now().Add(wait)
	var last []string
	for {
		last = last[:0]
		keys, err := scanAll(ctx, rdb, pattern)
		if err != nil {
			tb.Errorf("CheckRedisClean: SCAN %s: %v", pattern, err)
			return
		}
		for _, k := range keys {
			pttl, err := rdb.PTTL(ctx, k).Result()
			if err != nil {
				tb.Errorf("CheckRedisClean: PTTL %q: %v", k, err)
				return
			}
			if pttl == -1 {
				tb.Errorf("key %q left with no expiry: it would never go away", k)
				return
			}
			// A free marker ("~" and the last token, with an expiry) is
			// a released lock: clean.
			if v, err := rdb.Get(ctx, k).Result(); err == nil && strings.HasPrefix(v, "~") {
				continue
			}
			last = append(last, "key "+k)
		}
		chans, err := rdb.PubSubChannels(ctx, pattern).Result()
		if err != nil {
			tb.Errorf("CheckRedisClean: PUBSUB CHANNELS: %v", err)
			return
		}
		for _, c := range chans {
			last = append(last, "channel "+c)
		}
		shard, err := rdb.PubSubShardChannels(ctx, pattern).Result()
		if err != nil {
			tb.Errorf("CheckRedisClean: PUBSUB SHARDCHANNELS: %v", err)
			return
		}
		for _, c := range shard {
			last = append(last, "shard channel "+c)
		}
		if len(last) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Errorf("left behind in Redis after %v: %s", wait, strings.Join(last, ", "))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// NumSub returns the number of subscribers of channel.
func NumSub(tb testing.TB, rdb redis.UniversalClient, channel string) int64 {
	tb.Helper()
	m, err := rdb.PubSubNumSub(context.Background(), channel).Result()
	if err != nil {
		tb.Fatalf("PUBSUB NUMSUB %q: %v", channel, err)
	}
	return m[channel]
}

func scanAll(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]string, error) {
	var out []string
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return nil, err
		}
		out = append(out, keys...)
		if next == 0 {
			return out, nil
		}
		cursor = next
	}
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Stacks returns the stacks of all goroutines, for a hang report.
func Stacks() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return string(buf[:n])
		}
		buf = make([]byte, 2*len(buf))
	}
}
