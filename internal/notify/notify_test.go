package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// backend is a Redis server for a test: a client for the hub and one for
// the test's own commands.
type backend struct {
	real   bool // a real redis-server (commandstats, CLIENT KILL work)
	client *redis.Client
	admin  *redis.Client
}

// forEachBackend runs f on miniredis and on a real redis-server.
func forEachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	t.Helper()
	t.Run("miniredis", func(t *testing.T) {
		leakcheck.Register(t)
		m := miniredis.RunT(t)
		f(t, backend{client: newClient(t, m.Addr()), admin: newClient(t, m.Addr())})
	})
	t.Run("redis", func(t *testing.T) {
		leakcheck.Register(t)
		s := redistest.Start(t)
		f(t, backend{real: true, client: newClient(t, s.Addr()), admin: newClient(t, s.Addr())})
	})
}

func newClient(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

func openHub(t *testing.T, c redis.UniversalClient, opts ...Option) *Hub {
	t.Helper()
	h := Open(c, opts...)
	t.Cleanup(func() { h.Close() })
	return h
}

func subscribe(t *testing.T, h *Hub, channel string) *Subscription {
	t.Helper()
	s, err := h.Subscribe(context.Background(), channel)
	if err != nil {
		t.Fatalf("Subscribe(%q) = %v; want nil", channel, err)
	}
	t.Cleanup(s.Close)
	return s
}

// waitWake fails t unless s gets a wake within a generous deadline.
func waitWake(t *testing.T, s *Subscription, what string) {
	t.Helper()
	select {
	case <-s.C():
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no wake within 10s", what)
	}
}

// pending reports whether s has a wake waiting, and takes it.
func pending(s *Subscription) bool {
	select {
	case <-s.C():
		return true
	default:
		return false
	}
}

func numsub(t *testing.T, c *redis.Client, channel string) int64 {
	t.Helper()
	m, err := c.PubSubNumSub(context.Background(), channel).Result()
	if err != nil {
		t.Fatalf("PUBSUB NUMSUB = %v", err)
	}
	return m[channel]
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still false after 10s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// cmdCalls returns how often the server ran cmd (a real redis-server only).
func cmdCalls(t *testing.T, c *redis.Client, cmd string) int {
	t.Helper()
	stats, err := redistest.CommandStats(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	return int(stats[cmd])
}

func TestPublishAfterSubscribeIsReceived(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		h := openHub(t, b.client)
		ctx := context.Background()
		for i := range 100 {
			ch := fmt.Sprintf("confirm:{%d}", i)
			s := subscribe(t, h, ch)
			n, err := b.admin.Publish(ctx, ch, "x").Result()
			if err != nil || n != 1 {
				t.Fatalf("PUBLISH %s right after Subscribe = %d, %v; want 1 receiver", ch, n, err)
			}
			waitWake(t, s, "message published right after Subscribe")
			s.Close()
		}
	})
}

func TestRefcount(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		h := openHub(t, b.client)
		const ch = "refcount:{k}"
		s1 := subscribe(t, h, ch)
		s2 := subscribe(t, h, ch)
		if got := numsub(t, b.admin, ch); got != 1 {
			t.Errorf("NUMSUB with two subscriptions = %d; want 1", got)
		}
		if b.real {
			if got := cmdCalls(t, b.admin, "subscribe"); got != 1 {
				t.Errorf("SUBSCRIBE sent %d times for two subscriptions; want 1", got)
			}
		}
		s1.Close()
		s1.Close() // idempotent
		if got := numsub(t, b.admin, ch); got != 1 {
			t.Errorf("NUMSUB after one Close = %d; want 1", got)
		}
		if n, _ := b.admin.Publish(context.Background(), ch, "x").Result(); n != 1 {
			t.Errorf("PUBLISH after one Close reached %d; want 1", n)
		}
		waitWake(t, s2, "remaining subscription")
		s2.Close()
		eventually(t, "NUMSUB 0 and no channel entry after both Close", func() bool {
			h.mu.Lock()
			n := len(h.entries)
			h.mu.Unlock()
			return n == 0 && numsub(t, b.admin, ch) == 0
		})
	})
}

func TestWakeOne(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		h := openHub(t, b.client)
		ctx := context.Background()
		const ch = "wakeone:{k}"
		s1, s2, s3 := subscribe(t, h, ch), subscribe(t, h, ch), subscribe(t, h, ch)

		b.admin.Publish(ctx, ch, "1")
		waitWake(t, s1, "oldest subscription")
		if pending(s2) || pending(s3) {
			t.Fatal("one message woke more than one subscription")
		}

		s1.Pass() // s1 took the wake but gives up: the next one gets it
		if pending(s1) || !pending(s2) || pending(s3) {
			t.Fatal("Pass did not hand the wake to the oldest other subscription")
		}

		// s1 and then s2 get a wake they never receive; closing s2 passes
		// its wake on to the oldest without one pending: s3, not s1.
		b.admin.Publish(ctx, ch, "2")
		eventually(t, "s1 has a wake pending", func() bool { return len(s1.c) == 1 })
		b.admin.Publish(ctx, ch, "3")
		eventually(t, "s2 has a wake pending", func() bool { return len(s2.c) == 1 })
		s2.Close()
		if !pending(s3) {
			t.Fatal("Close with a pending wake did not pass it on to the oldest without one")
		}

		// With every subscription holding a wake, a message is dropped and
		// the reader does not block: a later message on another channel
		// still arrives.
		s4 := subscribe(t, h, ch)
		sync := subscribe(t, h, "wakeone:{sync}")
		b.admin.Publish(ctx, ch, "4")
		b.admin.Publish(ctx, ch, "5")
		b.admin.Publish(ctx, ch, "6")
		b.admin.Publish(ctx, "wakeone:{sync}", "x")
		waitWake(t, sync, "message after a dropped one")
		for i, s := range []*Subscription{s1, s3, s4} {
			if !pending(s) {
				t.Errorf("subscription %d has no wake after messages 4-6", i)
			}
		}
	})
}

func TestGlobCharactersAreExact(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		h := openHub(t, b.client)
		ctx := context.Background()
		names := []string{"g:{a*}", "g:{a?}", "g:{a[bc]}", "g:{ab}"}
		subs := map[string]*Subscription{}
		for _, n := range names {
			subs[n] = subscribe(t, h, n)
		}
		for _, target := range names {
			n, err := b.admin.Publish(ctx, target, "x").Result()
			if err != nil || n != 1 {
				t.Errorf("PUBLISH %q reached %d receivers, %v; want exactly 1", target, n, err)
			}
			// One reader, in order: once target's wake is in, any wrong
			// wake caused by the same message would be in too.
			waitWake(t, subs[target], target)
			for _, other := range names {
				if other != target && pending(subs[other]) {
					t.Errorf("PUBLISH %q woke the subscription of %q", target, other)
				}
			}
		}
	})
}

func TestCancelDuringSubscribeLeavesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		h := openHub(t, b.client)
		const ch = "cancel:{k}"
		ctx, cancel := context.WithCancel(context.Background())
		testHookSent = func(string) { cancel() } // after SUBSCRIBE left
		t.Cleanup(func() { testHookSent = nil })
		s, err := h.Subscribe(ctx, ch)
		testHookSent = nil
		if !errors.Is(err, context.Canceled) || s != nil {
			t.Fatalf("Subscribe with ctx cancelled in flight = %v, %v; want nil, context.Canceled", s, err)
		}
		if b.real {
			eventually(t, "UNSUBSCRIBE after the cancelled SUBSCRIBE", func() bool {
				return cmdCalls(t, b.admin, "subscribe") == 1 && cmdCalls(t, b.admin, "unsubscribe") == 1
			})
		}
		eventually(t, "NUMSUB 0 and no entry", func() bool {
			h.mu.Lock()
			n := len(h.entries)
			h.mu.Unlock()
			return n == 0 && numsub(t, b.admin, ch) == 0
		})

		// Already cancelled: nothing is sent at all.
		if _, err := h.Subscribe(ctx, ch); !errors.Is(err, context.Canceled) {
			t.Errorf("Subscribe(cancelled ctx) = %v; want context.Canceled", err)
		}
		// The channel still works afterwards.
		s = subscribe(t, h, ch)
		b.admin.Publish(context.Background(), ch, "x")
		waitWake(t, s, "subscription after a cancelled one")
	})
}

func TestReconnectWakesEverySubscription(t *testing.T) {
	leakcheck.Register(t)
	srv := redistest.Start(t)
	client, admin := newClient(t, srv.Addr()), newClient(t, srv.Addr())
	var mu sync.Mutex
	var reported []error
	h := openHub(t, client, WithErrorHandler(func(err error) {
		mu.Lock()
		reported = append(reported, err)
		mu.Unlock()
	}))
	ctx := context.Background()
	subs := []*Subscription{subscribe(t, h, "rc:{a}"), subscribe(t, h, "rc:{a}"), subscribe(t, h, "rc:{b}")}

	for round := range 3 {
		if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
			t.Fatalf("CLIENT KILL TYPE pubsub = %v", err)
		}
		for i, s := range subs {
			waitWake(t, s, fmt.Sprintf("round %d: subscription %d after CLIENT KILL", round, i))
		}
		// Resubscribed: a new message reaches a waiter again.
		if n, err := admin.Publish(ctx, "rc:{b}", "x").Result(); err != nil || n != 1 {
			t.Fatalf("round %d: PUBLISH after reconnect reached %d, %v; want 1", round, n, err)
		}
		waitWake(t, subs[2], "message after reconnect")
	}
	mu.Lock()
	n := len(reported)
	mu.Unlock()
	if n == 0 {
		t.Error("the error handler heard of no connection loss")
	}
}

func TestSubscribeWhileServerDownFails(t *testing.T) {
	leakcheck.Register(t)
	m := miniredis.RunT(t)
	client := newClient(t, m.Addr())
	h := openHub(t, client)
	m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s, err := h.Subscribe(ctx, "down:{k}"); err == nil || ctx.Err() != nil {
		t.Fatalf("Subscribe with the server down = %v, %v; want a connection error before ctx ends", s, err)
	}
}

func TestCloseLeavesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		h := Open(b.client)
		h2 := Open(b.client)
		if h2 != h {
			t.Fatal("Open of the same client returned another hub")
		}
		var subs []*Subscription
		for i := range 20 {
			s, err := h.Subscribe(context.Background(), fmt.Sprintf("close:{%d}", i%7))
			if err != nil {
				t.Fatalf("Subscribe = %v", err)
			}
			subs = append(subs, s)
		}
		if err := h.Close(); err != nil { // one reference left
			t.Fatalf("Close = %v", err)
		}
		if _, err := h2.Subscribe(context.Background(), "close:{x}"); err != nil {
			t.Fatalf("Subscribe with one reference left = %v; want nil", err)
		}
		if err := h2.Close(); err != nil {
			t.Fatalf("last Close = %v", err)
		}
		for i, s := range subs {
			if !pending(s) {
				t.Errorf("subscription %d got no wake from Hub.Close", i)
			}
			s.Close()
		}
		n, err := b.admin.PubSubNumSub(context.Background(), "close:{0}", "close:{6}", "close:{x}").Result()
		if err != nil {
			t.Fatal(err)
		}
		for ch, c := range n {
			if c != 0 {
				t.Errorf("NUMSUB %s after Close = %d; want 0", ch, c)
			}
		}
		if _, err := h.Subscribe(context.Background(), "close:{y}"); !errors.Is(err, ErrClosed) {
			t.Errorf("Subscribe after Close = %v; want ErrClosed", err)
		}
		if h3 := Open(b.client); h3 == h {
			t.Error("Open after the last Close returned the closed hub")
		} else {
			h3.Close()
		}
	})
}

func TestShardedIsFalseForPlainClient(t *testing.T) {
	m := miniredis.RunT(t)
	h := openHub(t, newClient(t, m.Addr()))
	if got, err := h.Sharded(context.Background()); got || err != nil {
		t.Errorf("Sharded() = %v, %v; want false, nil", got, err)
	}
}

// freezer is a TCP proxy that can go silent: while frozen it reads and
// drops everything in both directions, like a network that lost the peer
// without a reset.
type freezer struct {
	ln     net.Listener
	target string
	frozen atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, s)
			f.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); f.pipe(s, c) }()
			go func() { defer wg.Done(); f.pipe(c, s) }()
		}
	}()
	return f
}

func (f *freezer) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if f.frozen.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

func TestHealthCheckDetectsSilentConnection(t *testing.T) {
	leakcheck.Register(t)
	srv := redistest.Start(t)
	f := newFreezer(t, srv.Addr())
	client := redis.NewClient(&redis.Options{Addr: f.ln.Addr().String(), DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { client.Close() })
	admin := newClient(t, srv.Addr())
	lost := make(chan error, 100)
	h := openHub(t, client, WithHealthCheckInterval(50*time.Millisecond), WithErrorHandler(func(err error) {
		select {
		case lost <- err:
		default:
		}
	}))
	s := subscribe(t, h, "health:{k}")

	f.frozen.Store(true)
	select {
	case err := <-lost:
		if !strings.Contains(err.Error(), "lost") {
			t.Errorf("first error reported = %v; want a lost connection", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a silent connection was not detected within 10s")
	}
	f.frozen.Store(false)
	waitWake(t, s, "subscription after the silent connection was replaced")
	eventually(t, "the silent connection's subscription gone", func() bool { return numsub(t, admin, "health:{k}") == 1 })
	if n, err := admin.Publish(context.Background(), "health:{k}", "x").Result(); err != nil || n != 1 {
		t.Fatalf("PUBLISH after reconnect reached %d, %v; want 1", n, err)
	}
	waitWake(t, s, "message after reconnect")
}

func TestJoin(t *testing.T) {
	leakcheck.Register(t)
	mr := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { c.Close() })
	h := Open(c)
	t.Cleanup(func() { h.Close() })
	if s := h.Join("join-ch"); s != nil {
		s.Close()
		t.Fatal("Join(unsubscribed channel) = a subscription; want nil")
	}
	first, err := h.Subscribe(context.Background(), "join-ch")
	if err != nil {
		t.Fatalf("Subscribe = %v; want nil", err)
	}
	joined := h.Join("join-ch")
	if joined == nil {
		t.Fatal("Join(confirmed channel) = nil; want a subscription")
	}
	first.Close()
	// The channel stays subscribed for the joined subscription: a publish
	// reaches it.
	mr.Publish("join-ch", "x")
	select {
	case <-joined.C():
	case <-time.After(10 * time.Second):
		t.Fatal("joined subscription got no wake for a publish")
	}
	joined.Close()
}
