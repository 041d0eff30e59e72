package distributed

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keyedtest"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/logtest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

func TestConformance(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		for _, s := range strategies {
			t.Run(s.name, func(t *testing.T) {
				keyedtest.Run(t, keyedtest.Config{
					New: func(t *testing.T) mutex.Keyed[string] {
						return e.newMutex(t, s.opts...)
					},
					Observed: func(t *testing.T, o mutex.Observer) mutex.Keyed[string] {
						return e.newMutex(t, append(s.opts, WithObserver(o))...)
					},
					Instances: 3,
				})
			})
		}
	})
}

// TestRedisCounter increments a counter in Redis with a non-atomic GET
// and SET under the lock, from several instances with separate clients.
// Any overlap of critical sections loses an increment.
func TestRedisCounter(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		for _, s := range strategies {
			t.Run(s.name, func(t *testing.T) {
				const instances, goroutines, iterations = 3, 4, 25
				key := keyedtest.Key(t)
				admin := e.client(t)
				ctx := ctxT(t, 2*time.Minute)
				var wg sync.WaitGroup
				errs := make(chan error, instances*goroutines)
				for i := 0; i < instances; i++ {
					c := e.client(t)
					m := newMutexOn(t, c, s.opts...)
					for g := 0; g < goroutines; g++ {
						wg.Go(func() {
							for it := 0; it < iterations; it++ {
								l, err := m.Lock(ctx, key)
								if err != nil {
									errs <- err
									return
								}
								v, err := c.Get(ctx, "counter:"+key).Int()
								if err != nil && err.Error() != "redis: nil" {
									errs <- err
								}
								if err := c.Set(ctx, "counter:"+key, v+1, 0).Err(); err != nil {
									errs <- err
								}
								if err := l.Unlock(); err != nil {
									errs <- err
									return
								}
							}
						})
					}
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					t.Error(err)
				}
				got, err := admin.Get(ctx, "counter:"+key).Int()
				if want := instances * goroutines * iterations; err != nil || got != want {
					t.Errorf("counter = %d, %v; want %d", got, err, want)
				}
			})
		}
	})
}

func TestTokenOrderAcrossInstances(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		ms := []*Mutex[string]{e.newMutex(t), e.newMutex(t), e.newMutex(t, WithSpin(time.Millisecond))}
		ctx := ctxT(t, time.Minute)
		key := keyedtest.Key(t)
		var next uint64 // every token must be >= next
		for i := 0; i < 30; i++ {
			n := uint64(1 + i%4)
			l, err := ms[i%len(ms)].LockN(ctx, key, n)
			if err != nil {
				t.Fatalf("LockN(%d) = %v", n, err)
			}
			if l.Token() < next {
				t.Errorf("lock %d: Token() = %d; want >= %d (after the previous block)", i, l.Token(), next)
			}
			next = l.Token() + n
			if err := l.Unlock(); err != nil {
				t.Fatalf("Unlock() = %v", err)
			}
		}
	})
}

func TestLeaseLoss(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		admin := e.client(t)
		check := func(t *testing.T, l mutex.Lease) {
			t.Helper()
			if err := l.Unlock(); !errors.Is(err, mutex.ErrLost) {
				t.Errorf("Unlock() = %v; want ErrLost", err)
			}
			if err := l.Err(); !errors.Is(err, mutex.ErrLost) {
				t.Errorf("Err() = %v; want ErrLost", err)
			}
			if err := l.Unlock(); !errors.Is(err, mutex.ErrLost) {
				t.Errorf("second Unlock() = %v; want ErrLost", err)
			}
		}
		t.Run("deleted/renewal", func(t *testing.T) {
			logger, reported := logtest.New()
			m := e.newMutex(t, WithTTL(300*time.Millisecond), WithLogger(logger))
			key := keyedtest.Key(t)
			l, err := m.Lock(ctxT(t, 10*time.Second), key)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := mutex.WithLease(context.Background(), l)
			defer cancel()
			admin.Del(context.Background(), m.names(t, key).lock)
			waitDone(t, l.Done(), "lease whose key was deleted")
			<-ctx.Done()
			if cause := context.Cause(ctx); !errors.Is(cause, mutex.ErrLost) {
				t.Errorf("WithLease cause = %v; want ErrLost", cause)
			}
			if err := firstErr(t, reported); !errors.Is(err, mutex.ErrLost) {
				t.Errorf("logged %v; want ErrLost", err)
			}
			check(t, l)
		})
		t.Run("deleted/unlock", func(t *testing.T) {
			m := e.newMutex(t, WithoutRenewal())
			key := keyedtest.Key(t)
			l, err := m.Lock(ctxT(t, 10*time.Second), key)
			if err != nil {
				t.Fatal(err)
			}
			admin.Del(context.Background(), m.names(t, key).lock)
			check(t, l)
		})
		t.Run("taken-over", func(t *testing.T) {
			m := e.newMutex(t, WithoutRenewal())
			key := keyedtest.Key(t)
			l, err := m.Lock(ctxT(t, 10*time.Second), key)
			if err != nil {
				t.Fatal(err)
			}
			admin.Set(context.Background(), m.names(t, key).lock, "someone-else", 0)
			check(t, l)
			if v := admin.Get(context.Background(), m.names(t, key).lock).Val(); v != "someone-else" {
				t.Errorf("the new owner's key = %q after the lost Unlock; want it untouched", v)
			}
		})
		t.Run("expired", func(t *testing.T) {
			m := e.newMutex(t, WithoutRenewal(), WithTTL(200*time.Millisecond))
			key := keyedtest.Key(t)
			l, err := m.Lock(ctxT(t, 10*time.Second), key)
			if err != nil {
				t.Fatal(err)
			}
			if e.mr != nil {
				e.mr.FastForward(time.Second)
				if e.mr.Exists(m.names(t, key).lock) {
					t.Fatal("lock key exists after FastForward past its TTL")
				}
			}
			ctx, cancel := mutex.WithLease(context.Background(), l)
			defer cancel()
			waitDone(t, l.Done(), "lease past its TTL without renewal")
			<-ctx.Done()
			if cause := context.Cause(ctx); !errors.Is(cause, mutex.ErrLost) {
				t.Errorf("WithLease cause = %v; want ErrLost", cause)
			}
			check(t, l)
		})
	})
}

// checkNothingHeld fails t unless every key under prefix is a free marker
// with an expiry (they live a few ms): no lock held, no queue left.
func checkNothingHeld(t *testing.T, admin *redis.Client, prefix string) {
	t.Helper()
	bg := context.Background()
	keys, err := admin.Keys(bg, prefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		v, err := admin.Get(bg, k).Result()
		switch {
		case errors.Is(err, redis.Nil):
			// A free marker that expired since KEYS: they live a few ms.
		case !strings.HasPrefix(k, prefix+"{") || !strings.HasPrefix(v, "~"):
			t.Errorf("key %q = %q left; want only free markers", k, v)
		case admin.PTTL(bg, k).Val() == -1:
			t.Errorf("free marker %q has no expiry; want one", k)
		}
	}
}

// firstErr waits for the first record with an error logged to r.
func firstErr(t *testing.T, r *logtest.Recorder) error {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, rec := range r.All() {
			if rec.Err != nil {
				return rec.Err
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no error logged after 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// channel returns m's grant channel of key.
func (m *Mutex[K]) channel(t *testing.T, key K) string {
	t.Helper()
	return m.names(t, key).channel(m.id)
}

// names returns the Redis names of key in m.
func (m *Mutex[K]) names(t *testing.T, key K) names {
	t.Helper()
	enc, err := m.encode(key)
	if err != nil {
		t.Fatal(err)
	}
	return namesFor(m.cfg.prefix, enc)
}

// TestRenewal holds a lock across five renewals (more than one TTL) on a
// real server, where keys expire in real time. It counts the renewals
// rather than sleeping for some TTLs, so a slow machine only makes it
// take longer: each renewal has two thirds of a 1s TTL of slack.
func TestRenewal(t *testing.T) {
	leakcheck.Register(t)
	e := backends[1].start(t)
	admin := e.client(t)
	const ttl = time.Second
	var cmds counter
	m := newMutexOn(t, e.client(t, &cmds), WithTTL(ttl))
	key := keyedtest.Key(t)
	l, err := m.Lock(ctxT(t, 10*time.Second), key)
	if err != nil {
		t.Fatal(err)
	}
	start, scripts := time.Now(), cmds.Scripts.Load()
	eventually(t, "five renewals", func() bool {
		select {
		case <-l.Done():
			t.Fatalf("lease ended while renewed: %v", l.Err())
		default:
		}
		return cmds.Scripts.Load()-scripts >= 5
	})
	if held := time.Since(start); held < ttl {
		t.Errorf("five renewals took %v; want more than the TTL of %v (renewal every TTL/3)", held, ttl)
	}
	ctx := context.Background()
	lock := m.names(t, key).lock
	if pttl := admin.PTTL(ctx, lock).Val(); pttl <= 0 {
		t.Errorf("PTTL after five renewals = %v; want > 0", pttl)
	}
	if v := admin.Get(ctx, lock).Val(); v != l.(*lease).val || !strings.HasSuffix(v, " "+m.cfg.label) {
		t.Errorf("lock value = %q; want the lease's holding %q, with its label %q", v, l.(*lease).val, m.cfg.label)
	}
	if err := l.Err(); err != nil {
		t.Errorf("Err() = %v; want nil", err)
	}
	if err := l.Unlock(); err != nil {
		t.Errorf("Unlock() = %v; want nil", err)
	}
	if n := admin.Exists(ctx, lock).Val(); n != 0 {
		t.Errorf("lock key exists after Unlock (%q); want nothing left", admin.Get(ctx, lock).Val())
	}
}

// TestRestartKeepsTokensIncreasing restarts a redis-server without
// persistence: the fence counter is gone, the server clock floors tokens.
func TestRestartKeepsTokensIncreasing(t *testing.T) {
	leakcheck.Register(t)
	e := backends[1].start(t)
	m := e.newMutex(t)
	key := keyedtest.Key(t)
	ctx := ctxT(t, time.Minute)
	var last uint64
	for i := 0; i < 5; i++ {
		l, err := m.LockN(ctx, key, 3)
		if err != nil {
			t.Fatal(err)
		}
		last = l.Token() + 2
		l.Unlock()
	}
	e.srv.Kill()
	e.srv.Restart()
	var l mutex.Lease
	eventually(t, "Lock after restart", func() bool {
		var err error
		l, err = m.Lock(ctx, key)
		return err == nil
	})
	defer l.Unlock()
	if l.Token() <= last {
		t.Errorf("Token() after restart = %d; want > %d", l.Token(), last)
	}
}

// TestPubSubKilled kills the Pub/Sub connection while a waiter sleeps
// with a poll bound of a minute: it still gets the lock promptly once it
// is released.
func TestPubSubKilled(t *testing.T) {
	leakcheck.Register(t)
	e := backends[1].start(t)
	admin := e.client(t)
	holder := e.newMutex(t)
	waiter := e.newMutex(t, WithPollInterval(time.Minute))
	key := keyedtest.Key(t)
	ctx := ctxT(t, time.Minute)
	l, err := holder.Lock(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		l, err := waiter.Lock(ctx, key)
		if err == nil {
			err = l.Unlock()
		}
		got <- err
	}()
	channel := waiter.channel(t, key)
	eventually(t, "waiter subscribed", func() bool { return numsub(t, admin, channel) == 1 })
	if err := admin.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL TYPE pubsub: %v", err)
	}
	if err := l.Unlock(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Errorf("waiter: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("waiter did not get the lock within 20s of the release (poll bound 1m)")
	}
}

// TestGlobKeys: keys with glob characters neither block nor wake others.
func TestGlobKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		admin := e.client(t)
		var cmds counter
		waiterClient := e.client(t, &cmds)
		m := e.newMutex(t)
		waiter := newMutexOn(t, waiterClient, WithPollInterval(time.Minute))
		ctx := ctxT(t, time.Minute)
		base := keyedtest.Key(t)
		plain := base + "ab"
		globs := []string{base + "a*", base + "a?", base + "[a]b", base + "*", base + "a[b]"}
		l, err := m.Lock(ctx, plain)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan error, 1)
		go func() {
			l, err := waiter.Lock(ctx, plain)
			if err == nil {
				err = l.Unlock()
			}
			got <- err
		}()
		eventually(t, "waiter subscribed", func() bool { return numsub(t, admin, waiter.channel(t, plain)) == 1 })
		// The waiter tried, subscribed, queued, and sleeps.
		eventually(t, "waiter asleep", func() bool { return cmds.Scripts.Load() == 2 })
		before := cmds.Scripts.Load()
		for _, g := range globs {
			gl, err := m.TryLock(ctx, g)
			if err != nil {
				t.Fatalf("TryLock(%q) while %q held = %v; want nil", g, plain, err)
			}
			if err := gl.Unlock(); err != nil {
				t.Fatal(err)
			}
		}
		// The glob keys' releases found nobody queued and published
		// nothing; this one hands the lock to the waiter, whose grant
		// needs no command of its own.
		if err := l.Unlock(); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatalf("waiter: %v", err)
		}
		// The waiter's release only.
		if n := cmds.Scripts.Load() - before; n != 1 {
			t.Errorf("waiter sent %d commands after the glob keys were released; want 1 (its release)", n)
		}
	})
}

// TestCloseLeavesNothing closes a Mutex with leases held and waiters
// waiting: they end with ErrClosed, and no goroutine, subscription or
// lock key remains.
func TestCloseLeavesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		for _, s := range strategies {
			t.Run(s.name, func(t *testing.T) {
				admin := e.client(t)
				prefix := "close-" + strings.ReplaceAll(t.Name(), "/", "-") + ":"
				m, err := New[string](e.client(t), append(s.opts, WithPrefix(prefix))...)
				if err != nil {
					t.Fatal(err)
				}
				ctx := ctxT(t, time.Minute)
				var leases []mutex.Lease
				for i := 0; i < 3; i++ {
					l, err := m.Lock(ctx, strconv.Itoa(i))
					if err != nil {
						t.Fatal(err)
					}
					leases = append(leases, l)
				}
				waiting := make(chan error, 3)
				for i := 0; i < 3; i++ {
					go func() {
						_, err := m.Lock(ctx, "0")
						waiting <- err
					}()
				}
				if s.opts == nil {
					eventually(t, "waiters subscribed", func() bool { return numsub(t, admin, m.channel(t, "0")) > 0 })
				}
				if err := m.Close(); err != nil {
					t.Errorf("Close() = %v; want nil", err)
				}
				if err := m.Close(); err != nil {
					t.Errorf("second Close() = %v; want nil", err)
				}
				for i := 0; i < 3; i++ {
					if err := <-waiting; !errors.Is(err, mutex.ErrClosed) {
						t.Errorf("pending Lock after Close = %v; want ErrClosed", err)
					}
				}
				for i, l := range leases {
					select {
					case <-l.Done():
					default:
						t.Errorf("lease %d: Done() open after Close", i)
					}
					if err := l.Err(); !errors.Is(err, mutex.ErrLost) || !errors.Is(err, mutex.ErrClosed) {
						t.Errorf("lease %d: Err() = %v; want ErrLost and ErrClosed", i, err)
					}
				}
				if _, err := m.Lock(ctx, "x"); !errors.Is(err, mutex.ErrClosed) {
					t.Errorf("Lock after Close = %v; want ErrClosed", err)
				}
				if _, err := m.TryLock(ctx, "x"); !errors.Is(err, mutex.ErrClosed) {
					t.Errorf("TryLock after Close = %v; want ErrClosed", err)
				}
				eventually(t, "no subscription left", func() bool { return numsub(t, admin, m.channel(t, "0")) == 0 })
				checkNothingHeld(t, admin, prefix)
			})
		}
	})
}

func TestBadConfig(t *testing.T) {
	e := backends[0].start(t)
	c := e.client(t)
	tests := []struct {
		name string
		opts []Option
		want string // in the error
	}{
		{"TTL 0", []Option{WithTTL(0)}, "WithTTL(0s)"},
		{"TTL negative", []Option{WithTTL(-time.Second)}, "WithTTL(-1s)"},
		{"TTL 500µs", []Option{WithTTL(500 * time.Microsecond)}, "WithTTL(500µs)"},
		{"spin 0", []Option{WithSpin(0)}, "WithSpin(0s)"},
		{"prefix {", []Option{WithPrefix("app{x:")}, "'{' or '}'"},
		{"prefix }", []Option{WithPrefix("app}:")}, "'{' or '}'"},
		{"poll 0", []Option{WithPollInterval(0)}, "WithPollInterval"},
		{"unlock timeout 0", []Option{WithUnlockTimeout(0)}, "WithUnlockTimeout"},
		{"encoder type", []Option{WithKeyEncoder(func(int) (string, error) { return "", nil })}, "WithKeyEncoder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New[string](c, tt.opts...)
			if err == nil {
				m.Close()
				t.Fatalf("New() = nil error; want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New() = %v; want an error containing %q", err, tt.want)
			}
		})
	}
	t.Run("nil client", func(t *testing.T) {
		if _, err := New[string](nil); err == nil || !strings.Contains(err.Error(), "nil Redis client") {
			t.Errorf("New(nil) = %v; want a nil client error", err)
		}
		var rc *redisClient
		if _, err := New[string](rc); err == nil || !strings.Contains(err.Error(), "nil Redis client") {
			t.Errorf("New((*redis.Client)(nil)) = %v; want a nil client error", err)
		}
	})
}

func TestBadKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.newMutex(t)
		admin := e.client(t)
		ctx := ctxT(t, time.Minute)
		wrongType := keyedtest.Key(t)
		admin.LPush(ctx, m.names(t, wrongType).lock, "x")
		tests := []struct {
			name   string
			key    string
			want   string
			wantIs error
		}{
			{"empty", "", "empty key", nil},
			{"1MB", strings.Repeat("k", 1<<20), "65536", nil},
			{"WRONGTYPE", wrongType, "WRONGTYPE", ErrWrongType},
		}
		for _, tt := range tests {
			for _, op := range []string{"Lock", "TryLock"} {
				t.Run(tt.name+"/"+op, func(t *testing.T) {
					f := m.Lock
					if op == "TryLock" {
						f = m.TryLock
					}
					l, err := f(ctx, tt.key)
					if err == nil {
						l.Unlock()
						t.Fatalf("%s() = nil error; want one containing %q", op, tt.want)
					}
					if !strings.Contains(err.Error(), tt.want) || (tt.wantIs != nil && !errors.Is(err, tt.wantIs)) {
						t.Errorf("%s() = %v; want an error containing %q", op, err, tt.want)
					}
					if len(err.Error()) > 1000 {
						t.Errorf("error message is %d bytes long; want the key shortened", len(err.Error()))
					}
				})
			}
		}
		if _, err := m.LockN(ctx, "k", 0); err == nil {
			t.Error("LockN(n=0) = nil error; want one")
		}
		// Awkward but valid keys work.
		for _, key := range []string{"}", "{", "{}", "%7D", "%", "a}b{c", "\xff\xfe", "*", "?", "[", strings.Repeat("x", MaxKeyLen)} {
			l, err := m.TryLock(ctx, key)
			if err != nil {
				t.Errorf("TryLock(%q) = %v; want nil", key, err)
				continue
			}
			if err := l.Unlock(); err != nil {
				t.Errorf("Unlock(%q) = %v; want nil", key, err)
			}
		}
	})
}

// TestForeignValues: keys of the lock that hold something this library
// did not write give errors that say so and name the key, and a foreign
// string is put back, not lost.
func TestForeignValues(t *testing.T) {
	forEachBackend(t, func(t *testing.T, e *env) {
		m := e.newMutex(t)
		admin := e.client(t)
		ctx := ctxT(t, time.Minute)

		foreign := keyedtest.Key(t) + "-string"
		lock := m.names(t, foreign).lock
		admin.Set(ctx, lock, "precious", time.Hour)
		_, err := m.TryLock(ctx, foreign)
		if !errors.Is(err, mutex.ErrLocked) || !strings.Contains(err.Error(), "did not write") || !strings.Contains(err.Error(), lock) {
			t.Errorf("TryLock of a foreign string = %v; want ErrLocked saying the value is not the library's, naming %s", err, lock)
		}
		if v, err := admin.Get(ctx, lock).Result(); v != "precious" {
			t.Errorf("foreign value after TryLock = %q, %v; want it put back", v, err)
		}
		if ttl := admin.PTTL(ctx, lock).Val(); ttl <= 0 {
			t.Errorf("foreign value's TTL after TryLock = %v; want a TTL (it is waited out like a lease)", ttl)
		}
		info, err := m.Inspect(ctx, foreign)
		if err != nil || !info.Foreign || info.Value != "precious" {
			t.Errorf("Inspect of a foreign string = %+v, %v; want Foreign with its value", info, err)
		}

		// A marker no token can reach (2^53 and above: a double's exact
		// range) is not the library's either: no token is issued from it.
		for i, v := range []string{"~99999999999999999999", "~9007199254740993"} {
			key := fmt.Sprintf("%s-marker-%d", keyedtest.Key(t), i)
			admin.Set(ctx, m.names(t, key).lock, v, time.Hour)
			if _, err := m.TryLock(ctx, key); !errors.Is(err, mutex.ErrLocked) || !strings.Contains(err.Error(), "did not write") {
				t.Errorf("TryLock of marker %q = %v; want ErrLocked saying the value is not the library's", v, err)
			}
		}

		// The multi-token path reads before it writes: it keeps a
		// foreign value's expiry, and gives one without expiry the lease
		// TTL, so that it cannot block the key forever.
		forever := keyedtest.Key(t) + "-forever"
		admin.Set(ctx, m.names(t, forever).lock, "precious", 0)
		if _, err := m.TryLockN(ctx, forever, 17); !errors.Is(err, mutex.ErrLocked) || !strings.Contains(err.Error(), "did not write") {
			t.Errorf("TryLockN of a foreign string = %v; want ErrLocked saying the value is not the library's", err)
		}
		if ttl := admin.PTTL(ctx, m.names(t, forever).lock).Val(); ttl <= 0 {
			t.Errorf("foreign value's TTL after TryLockN = %v; want the lease TTL", ttl)
		}
		for _, v := range []string{"~abc", "~", "~12 34", "~99999999999999999999"} {
			key := keyedtest.Key(t) + "-odd"
			admin.Set(ctx, m.names(t, key).lock, v, time.Hour)
			if info, err := m.Inspect(ctx, key); err != nil || !info.Foreign {
				t.Errorf("Inspect of %q = %+v, %v; want Foreign", v, info, err)
			}
			admin.Del(ctx, m.names(t, key).lock)
		}

		list := keyedtest.Key(t) + "-list"
		admin.LPush(ctx, m.names(t, list).lock, "x")
		if _, err := m.Inspect(ctx, list); !errors.Is(err, ErrWrongType) {
			t.Errorf("Inspect of a lock key holding a list = %v; want ErrWrongType", err)
		}

		badQueue := keyedtest.Key(t) + "-queue"
		queue := m.names(t, badQueue).queue
		admin.Set(ctx, queue, "x", 0)
		if _, err := m.Inspect(ctx, badQueue); !errors.Is(err, ErrWrongType) {
			t.Errorf("Inspect with a string at the queue key = %v; want ErrWrongType", err)
		}
		for _, op := range []string{"Lock", "TryLock"} {
			f := m.Lock
			if op == "TryLock" {
				f = m.TryLock
			}
			l, err := f(ctx, badQueue)
			if err == nil {
				l.Unlock()
				t.Fatalf("%s with a string at the queue key = nil error; want ErrWrongType", op)
			}
			if !errors.Is(err, ErrWrongType) || !strings.Contains(err.Error(), queue) {
				t.Errorf("%s with a string at the queue key = %v; want ErrWrongType naming %s", op, err, queue)
			}
		}

		// The queue key overwritten while the lock is held with waiters
		// flagged: Unlock cannot serve the queue, and says why.
		held := keyedtest.Key(t) + "-held"
		l, err := m.Lock(ctx, held)
		if err != nil {
			t.Fatal(err)
		}
		admin.Append(ctx, m.names(t, held).lock, "*")
		admin.HSet(ctx, m.names(t, held).queue, "f", "v")
		if err := l.Unlock(); !errors.Is(err, ErrWrongType) {
			t.Errorf("Unlock with a hash at the queue key = %v; want ErrWrongType", err)
		}
	})
}

// TestRedisDown covers a Redis that cannot be reached at Lock, at Unlock
// and at renewal: each a clear error (or a lost lease), never a hang.
func TestRedisDown(t *testing.T) {
	leakcheck.Register(t)
	t.Run("Lock/closed port", func(t *testing.T) {
		c := redisClientFor(t, closedAddr(t))
		for _, s := range strategies {
			m := newMutexOn(t, c, s.opts...)
			ctx := ctxT(t, 30*time.Second)
			if _, err := m.Lock(ctx, "k"); err == nil || ctx.Err() != nil {
				t.Errorf("%s: Lock with Redis down = %v (ctx %v); want a prompt error", s.name, err, ctx.Err())
			}
		}
	})
	forEachBackend(t, func(t *testing.T, e *env) {
		stop := func() {
			if e.mr != nil {
				e.mr.Close()
			} else {
				e.srv.Kill()
			}
		}
		t.Run("Unlock", func(t *testing.T) {
			m := e.newMutex(t, WithUnlockTimeout(2*time.Second))
			l, err := m.Lock(ctxT(t, 10*time.Second), "k")
			if err != nil {
				t.Fatal(err)
			}
			stop()
			err = l.Unlock()
			if err == nil || !strings.Contains(err.Error(), "expires when its TTL") {
				t.Errorf("Unlock with Redis down = %v; want an error saying the key expires", err)
			}
			select {
			case <-l.Done():
			default:
				t.Error("Done() open after a failed Unlock")
			}
		})
	})
	forEachBackend(t, func(t *testing.T, e *env) {
		logger, reported := logtest.New()
		m := e.newMutex(t, WithTTL(300*time.Millisecond), WithLogger(logger))
		l, err := m.Lock(ctxT(t, 10*time.Second), "k")
		if err != nil {
			t.Fatal(err)
		}
		if e.mr != nil {
			e.mr.Close()
		} else {
			e.srv.Kill()
		}
		waitDone(t, l.Done(), "lease while Redis is down")
		if err := l.Err(); !errors.Is(err, mutex.ErrLost) {
			t.Errorf("Err() = %v; want ErrLost", err)
		}
		if err := l.Unlock(); !errors.Is(err, mutex.ErrLost) {
			t.Errorf("Unlock() = %v; want ErrLost", err)
		}
		if err := firstErr(t, reported); err == nil {
			t.Error("no error logged")
		}
	})
}

func TestKeyEncoding(t *testing.T) {
	type name string
	type id int32
	type point struct{ x, y int }
	tests := []struct {
		key  any
		want string
		err  string
	}{
		{"a", "a", ""},
		{name("n"), "n", ""},
		{id(-7), "-7", ""},
		{uint8(200), "200", ""},
		{true, "true", ""},
		{time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), "2026-01-02T03:04:05Z", ""},
		{point{1, 2}, "", "WithKeyEncoder"},
		{1.5, "", "float64"},
	}
	for _, tt := range tests {
		got, err := defaultEncode(tt.key)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("encode(%#v) = %q, %v; want an error containing %q", tt.key, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("encode(%#v) = %q, %v; want %q", tt.key, got, err, tt.want)
		}
	}
	// New refuses a key type with no encoding, naming it, and
	// WithKeyEncoder fixes it.
	e := backends[0].start(t)
	if m, err := New[point](e.client(t)); err == nil || !strings.Contains(err.Error(), "distributed.point") || !strings.Contains(err.Error(), "WithKeyEncoder") {
		if m != nil {
			m.Close()
		}
		t.Errorf("New[point]() = %v; want an error naming the type and WithKeyEncoder", err)
	}
	// An interface key type may hold encodable values: the dynamic type
	// decides at Lock.
	ma, err := New[any](e.client(t))
	if err != nil {
		t.Fatalf("New[any]() = %v; want nil", err)
	}
	defer ma.Close()
	if _, err := ma.Lock(context.Background(), point{1, 2}); !errors.Is(err, mutex.ErrInvalidKey) || !strings.Contains(err.Error(), "distributed.point") {
		t.Errorf("Lock(any(point)) = %v; want ErrInvalidKey naming the type", err)
	}
	m2, err := New[point](e.client(t), WithKeyEncoder(func(p point) (string, error) { return fmt.Sprintf("%d,%d", p.x, p.y), nil }))
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	l, err := m2.Lock(context.Background(), point{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if !e.mr.Exists(DefaultPrefix + "{1,2}") {
		t.Errorf("lock key %q missing; keys: %v", DefaultPrefix+"{1,2}", e.mr.Keys())
	}
	l.Unlock()
}
