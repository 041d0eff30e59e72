package hybrid

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/logtest"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
)

// backend is a Redis shared by the "processes" of a test.
type backend struct {
	name   string
	client func(t *testing.T) *redis.Client // a new client (connection pool), closed at cleanup
	keys   func(t *testing.T) []string
}

func backends(t *testing.T) []backend {
	mr := miniredis.RunT(t)
	bs := []backend{{
		name: "miniredis",
		client: func(t *testing.T) *redis.Client {
			c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
			t.Cleanup(func() { c.Close() })
			return c
		},
		keys: func(t *testing.T) []string { return mr.Keys() },
	}}
	if redistest.Binary() == "" {
		if os.Getenv(redistest.RequireEnv) != "" {
			redistest.Need(t) // fails
		}
		t.Log("redis-server not on PATH: real-Redis cases skipped")
	} else {
		s := redistest.Start(t)
		bs = append(bs, backend{
			name:   "redis",
			client: func(t *testing.T) *redis.Client { return s.Client(t) },
			keys: func(t *testing.T) []string {
				c := s.Client(t)
				ks, err := c.Keys(context.Background(), "*").Result()
				if err != nil {
					t.Fatalf("KEYS * = %v", err)
				}
				return ks
			},
		})
	}
	return bs
}

// recorder records the token blocks of a distributed mutex's acquisitions.
type recorder struct {
	*distributed.Mutex[string]
	mu     sync.Mutex
	blocks []fakeAcq // guarded by mu
}

func (r *recorder) record(key string, l mutex.Lease, n uint64, err error) (mutex.Lease, error) {
	if err == nil {
		r.mu.Lock()
		r.blocks = append(r.blocks, fakeAcq{key, l.Token(), n})
		r.mu.Unlock()
	}
	return l, err
}

func (r *recorder) Lock(ctx context.Context, key string) (mutex.Lease, error) {
	l, err := r.Mutex.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	return r.recordN(key, l.(mutex.Reservation), nil)
}

func (r *recorder) TryLock(ctx context.Context, key string) (mutex.Lease, error) {
	l, err := r.Mutex.TryLock(ctx, key)
	if err != nil {
		return nil, err
	}
	return r.recordN(key, l.(mutex.Reservation), nil)
}

func (r *recorder) LockN(ctx context.Context, key string, n uint64) (mutex.Reservation, error) {
	l, err := r.Mutex.LockN(ctx, key, n)
	return r.recordN(key, l, err)
}

func (r *recorder) TryLockN(ctx context.Context, key string, n uint64) (mutex.Reservation, error) {
	l, err := r.Mutex.TryLockN(ctx, key, n)
	return r.recordN(key, l, err)
}

// recordN records a reservation's block: the tokens it actually holds;
// and, through the lease it returns, the blocks of the turns it requeues.
func (r *recorder) recordN(key string, l mutex.Reservation, err error) (mutex.Reservation, error) {
	if err != nil {
		return nil, err
	}
	r.record(key, l, l.Reserved(), nil)
	if rq, ok := l.(remote.Lease); ok {
		return recordedLease{rq, r, key}, nil
	}
	return l, nil
}

// recordedLease is a remote lease whose requeued turns are recorded.
type recordedLease struct {
	remote.Lease
	r   *recorder
	key string
}

func (l recordedLease) Requeue(n uint64) (remote.Ticket, error) {
	tk, err := l.Lease.Requeue(n)
	if err != nil {
		return nil, err
	}
	return recordedTicket{tk, l.r, l.key}, nil
}

type recordedTicket struct {
	remote.Ticket
	r   *recorder
	key string
}

func (t recordedTicket) Wait(ctx context.Context) (mutex.Reservation, error) {
	l, err := t.Ticket.Wait(ctx)
	return t.r.recordN(t.key, l, err)
}

// tlog writes a logger's lines to the test log.
type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Logf("distributed: %s", p)
	return len(p), nil
}

// newDistributed returns a distributed mutex with its own client.
func newDistributed(t *testing.T, b backend, prefix string, opts ...distributed.Option) *distributed.Mutex[string] {
	t.Helper()
	d, err := distributed.New[string](b.client(t), append([]distributed.Option{
		distributed.WithPrefix(prefix),
		distributed.WithLogger(slog.New(slog.NewTextHandler(tlog{t}, nil))),
	}, opts...)...)
	if err != nil {
		t.Fatalf("distributed.New() = %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// process is one hybrid instance with its own distributed mutex and
// client: a stand-in for one process.
func process(t *testing.T, b backend, prefix string, opts []distributed.Option, hopts ...Option) *Mutex[string] {
	t.Helper()
	return newT(t, newDistributed(t, b, prefix, opts...), hopts...)
}

// lockKeysLeft returns the keys under prefix that are not free markers:
// locks still held, and queues.
func lockKeysLeft(t *testing.T, b backend, prefix string) []string {
	c := b.client(t)
	var left []string
	for _, k := range b.keys(t) {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		v, err := c.Get(context.Background(), k).Result()
		if errors.Is(err, redis.Nil) {
			continue // a free marker that expired since the listing
		}
		if err != nil || !strings.HasPrefix(v, "~") {
			left = append(left, k)
		}
	}
	return left
}

var prefixSeq int

func uniquePrefix(t *testing.T) string {
	prefixSeq++
	return fmt.Sprintf("hybridtest%d:", prefixSeq)
}

func TestDistributedConformance(t *testing.T) {
	leakcheck.Register(t)
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			prefix := uniquePrefix(t)
			keyedtest.Run(t, keyedtest.Config{
				New: func(t *testing.T) mutex.Keyed[string] { return process(t, b, prefix, nil) },
				Observed: func(t *testing.T, o mutex.Observer) mutex.Keyed[string] {
					return process(t, b, prefix, nil, WithObserver(o))
				},
				Instances: 3,
			})
		})
	}
}

// TestDistributedProcesses: several hybrid instances, each with its own
// distributed mutex and client, increment a plain counter under one key.
// From the log of (instance, token) it checks mutual exclusion, strictly
// increasing tokens and the handoff bound: an instance's run of
// consecutive tokens (local handoffs of one remote lease) is at most
// bound+1 holders long.
func TestDistributedProcesses(t *testing.T) {
	leakcheck.Register(t)
	const instances, goroutines, iterations = 4, 6, 40
	for _, b := range backends(t) {
		for _, bound := range []int{0, 3, DefaultMaxLocalHandoffs} {
			t.Run(fmt.Sprintf("%s/bound=%d", b.name, bound), func(t *testing.T) {
				prefix := uniquePrefix(t)
				key := keyedtest.Key(t)
				ms := make([]*Mutex[string], instances)
				recs := make([]*recorder, instances)
				for i := range ms {
					recs[i] = &recorder{Mutex: newDistributed(t, b, prefix)}
					ms[i] = newT(t, recs[i], WithMaxLocalHandoffs(bound))
				}
				type entry struct {
					inst  int
					token uint64
				}
				var (
					counter int     // guarded by the keyed mutex only
					log     []entry // guarded by the keyed mutex only
					wg      sync.WaitGroup
				)
				errs := make(chan error, instances*goroutines)
				for i, m := range ms {
					for range goroutines {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for range iterations {
								l, err := m.Lock(context.Background(), key)
								if err != nil {
									errs <- err
									return
								}
								counter++
								log = append(log, entry{i, l.Token()})
								if err := l.Unlock(); err != nil {
									errs <- err
									return
								}
							}
						}()
					}
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Fatal(err)
				}
				if want := instances * goroutines * iterations; counter != want {
					t.Errorf("counter = %d; want %d", counter, want)
				}
				// Every holder's token lies in the token block of one remote
				// acquisition, and no block serves more than bound+1 holders.
				var blocks []fakeAcq
				for _, r := range recs {
					blocks = append(blocks, r.blocks...)
				}
				slices.SortFunc(blocks, func(a, b fakeAcq) int { return cmp.Compare(a.first, b.first) })
				served := make([]int, len(blocks))
				for j, e := range log {
					if j > 0 && e.token <= log[j-1].token {
						t.Fatalf("acquisition %d token %d; want > %d", j, e.token, log[j-1].token)
					}
					k, _ := slices.BinarySearchFunc(blocks, e.token, func(a fakeAcq, tok uint64) int {
						return cmp.Compare(a.first+a.n-1, tok)
					})
					if k == len(blocks) || e.token < blocks[k].first {
						t.Fatalf("acquisition %d token %d is in no remote block", j, e.token)
					}
					served[k]++
				}
				for k, n := range served {
					if n < 1 || n > bound+1 {
						t.Errorf("remote lease %d (token %d) served %d holders; want 1..%d", k, blocks[k].first, n, bound+1)
					}
				}
				t.Logf("%d acquisitions, %d remote acquisitions", len(log), len(blocks))
				for _, m := range ms {
					if err := m.Close(); err != nil {
						t.Errorf("Close() = %v", err)
					}
				}
				if left := lockKeysLeft(t, b, prefix); len(left) != 0 {
					t.Errorf("lock keys left in Redis: %q", left)
				}
			})
		}
	}
}

// TestDistributedLostLease deletes the lock key behind the holder's back;
// renewal notices, and the hybrid lease ends as lost.
func TestDistributedLostLease(t *testing.T) {
	leakcheck.Register(t)
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			prefix := uniquePrefix(t)
			m := process(t, b, prefix, []distributed.Option{distributed.WithTTL(300 * time.Millisecond)})
			key := keyedtest.Key(t)
			a := mustLock(t, m, key)
			got := lockQueued(t, m, key)
			left := lockKeysLeft(t, b, prefix)
			if len(left) != 1 {
				t.Fatalf("lock keys = %q; want 1", left)
			}
			if err := b.client(t).Del(context.Background(), left[0]).Err(); err != nil {
				t.Fatal(err)
			}
			select {
			case <-a.Done():
			case <-time.After(wait):
				t.Fatal("Done() not closed after the lock key was deleted")
			}
			if err := a.Err(); !errors.Is(err, mutex.ErrLost) {
				t.Errorf("Err() = %v; want ErrLost", err)
			}
			queued(t, m, key, 1) // still excluded locally
			if err := a.Unlock(); !errors.Is(err, mutex.ErrLost) {
				t.Errorf("Unlock() = %v; want ErrLost", err)
			}
			l := <-got
			if l == nil {
				t.FailNow()
			}
			if l.Token() <= a.Token() {
				t.Errorf("Token() = %d; want > %d", l.Token(), a.Token())
			}
			if err := l.Unlock(); err != nil {
				t.Errorf("Unlock() = %v", err)
			}
		})
	}
}

// TestDistributedClose closes an instance with a holder, local waiters and
// a head contending against another instance: no lock key of the closed
// instance is left, and every waiter gets ErrClosed.
func TestDistributedClose(t *testing.T) {
	leakcheck.Register(t)
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			prefix := uniquePrefix(t)
			m := process(t, b, prefix, nil)
			other := process(t, b, prefix, nil)
			held, contended := keyedtest.Key(t), keyedtest.Key(t)
			h := mustLock(t, m, held)
			o := mustLock(t, other, contended)
			errs := make(chan error, 3)
			lock := func(key string) {
				l, err := m.Lock(context.Background(), key)
				if err == nil {
					l.Unlock()
					err = errors.New("Lock succeeded")
				}
				errs <- err
			}
			go lock(held)
			go lock(contended)
			queued(t, m, held, 1)
			// the contended head is owned but has no remote lease yet
			go lock(contended)
			queued(t, m, contended, 1)
			if err := m.Close(); err != nil {
				t.Errorf("Close() = %v", err)
			}
			for range 3 {
				if err := <-errs; !errors.Is(err, mutex.ErrClosed) {
					t.Errorf("Lock() = %v; want ErrClosed", err)
				}
			}
			if err := h.Err(); !errors.Is(err, mutex.ErrLost) {
				t.Errorf("held lease Err() after Close = %v; want ErrLost", err)
			}
			h.Unlock()
			if err := o.Unlock(); err != nil {
				t.Errorf("other Unlock() = %v", err)
			}
			if left := lockKeysLeft(t, b, prefix); len(left) != 0 {
				t.Errorf("lock keys left: %q; want none", left)
			}
		})
	}
}

// TestDistributedCancelHead cancels the head while it waits for a lock
// held by another instance; the next local waiter takes over the
// contention and acquires once the other instance unlocks.
func TestDistributedCancelHead(t *testing.T) {
	leakcheck.Register(t)
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			prefix := uniquePrefix(t)
			m := process(t, b, prefix, nil)
			other := process(t, b, prefix, nil)
			key := keyedtest.Key(t)
			o := mustLock(t, other, key)
			hctx, cancel := context.WithCancel(context.Background())
			headErr := make(chan error, 1)
			go func() {
				l, err := m.Lock(hctx, key)
				if err == nil {
					l.Unlock()
				}
				headErr <- err
			}()
			owned(t, m, key) // the head contends
			got := make(chan error, 1)
			go func() {
				l, err := m.Lock(context.Background(), key)
				if err == nil {
					err = l.Unlock()
				}
				got <- err
			}()
			queued(t, m, key, 1)
			cancel()
			if err := <-headErr; !errors.Is(err, context.Canceled) {
				t.Errorf("head Lock() = %v; want Canceled", err)
			}
			if err := o.Unlock(); err != nil {
				t.Fatalf("other Unlock() = %v", err)
			}
			select {
			case err := <-got:
				if err != nil {
					t.Errorf("waiter Lock/Unlock = %v; want nil", err)
				}
			case <-time.After(wait):
				t.Fatal("waiter did not acquire after the head was cancelled (handoff lost)")
			}
			if left := lockKeysLeft(t, b, prefix); len(left) != 0 {
				t.Errorf("lock keys left: %q; want none", left)
			}
		})
	}
}

// gated is a distributed mutex whose leases stop, after a Requeue has
// ended them in Redis, until gate closes: the window in which the
// cohort still points at the ended lease.
type gated struct {
	*distributed.Mutex[string]
	requeued chan struct{} // receives once per Requeue done in Redis
	gate     chan struct{}
}

func (g *gated) Lock(ctx context.Context, key string) (mutex.Lease, error) {
	l, err := g.Mutex.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	return gatedLease{l.(remote.Lease), g}, nil
}

func (g *gated) LockN(ctx context.Context, key string, n uint64) (mutex.Reservation, error) {
	l, err := g.Mutex.LockN(ctx, key, n)
	if err != nil {
		return nil, err
	}
	return gatedLease{l.(remote.Lease), g}, nil
}

type gatedLease struct {
	remote.Lease
	g *gated
}

func (l gatedLease) Requeue(n uint64) (remote.Ticket, error) {
	tk, err := l.Lease.Requeue(n)
	l.g.requeued <- struct{}{}
	<-l.g.gate
	return tk, err
}

// TestCloseDuringRequeue: Close that finds a remote lease a requeue has
// just ended (the cohort still points at it) returns nil: nothing is left
// to release, and it is no error of Close's.
func TestCloseDuringRequeue(t *testing.T) {
	leakcheck.Register(t)
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			prefix := uniquePrefix(t)
			g := &gated{
				Mutex:    newDistributed(t, b, prefix),
				requeued: make(chan struct{}, 1),
				gate:     make(chan struct{}),
			}
			m, err := New[string](g, WithMaxLocalHandoffs(0), WithLogger(logtest.Fail(t)))
			if err != nil {
				t.Fatal(err)
			}
			key := keyedtest.Key(t)
			// A requeue needs the process subscribed to the key's
			// notices: take the key first while another process holds
			// it, so that it waits in Redis (the subscription lingers).
			od := newDistributed(t, b, prefix)
			other, err := od.Lock(context.Background(), key)
			if err != nil {
				t.Fatal(err)
			}
			first := make(chan mutex.Lease, 1)
			go func() {
				l, err := m.Lock(context.Background(), key)
				if err != nil {
					t.Errorf("first Lock() = %v", err)
				}
				first <- l
			}()
			for deadline := time.Now().Add(wait); ; {
				info, err := od.Inspect(context.Background(), key)
				if err != nil {
					t.Fatal(err)
				}
				if info.Waiters == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the first Lock did not queue in Redis")
				}
				time.Sleep(time.Millisecond)
			}
			if err := other.Unlock(); err != nil {
				t.Fatal(err)
			}
			a := <-first
			if a == nil {
				return
			}
			waiter := make(chan error, 1)
			go func() {
				l, err := m.Lock(context.Background(), key)
				if err == nil {
					l.Unlock()
				}
				waiter <- err
			}()
			queued(t, m, key, 1)
			unlocked := make(chan error, 1)
			go func() { unlocked <- a.Unlock() }() // bound 0, a waiter: requeue
			<-g.requeued
			// The cohort still points at the lease the requeue ended:
			// Close takes it from there.
			closed := make(chan error, 1)
			go func() { closed <- m.Close() }()
			var closeErr error
			select {
			case closeErr = <-closed: // it need not wait for the requeue
				close(g.gate)
			case <-time.After(wait):
				close(g.gate)
				closeErr = <-closed
			}
			if closeErr != nil {
				t.Errorf("Close() = %v; want nil", closeErr)
			}
			if err := <-unlocked; err != nil {
				t.Errorf("Unlock() = %v; want nil", err)
			}
			if err := <-waiter; err != nil && !errors.Is(err, mutex.ErrClosed) {
				t.Errorf("waiter's Lock() = %v; want nil or ErrClosed", err)
			}
		})
	}
}
