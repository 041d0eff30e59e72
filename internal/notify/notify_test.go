package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/logtest"
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
	h, err := Open(c, opts...)
	if err != nil {
		t.Fatalf("Open() = %v; want nil", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// subscribe subscribes id "w" to channel.
func subscribe(t *testing.T, h *Hub, channel string) *Subscription {
	t.Helper()
	return subscribeID(t, h, channel, "w")
}

func subscribeID(t *testing.T, h *Hub, channel, id string) *Subscription {
	t.Helper()
	s, err := h.Subscribe(context.Background(), channel, id)
	if err != nil {
		t.Fatalf("Subscribe(%q, %q) = %v; want nil", channel, id, err)
	}
	t.Cleanup(s.Close)
	return s
}

// entries returns the number of channels the hub of h keeps.
func entries(h *Hub) int {
	h.h.mu.Lock()
	defer h.h.mu.Unlock()
	return len(h.h.entries)
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
			n, err := b.admin.Publish(ctx, ch, "w grant "+fmt.Sprint(i)).Result()
			if err != nil || n != 1 {
				t.Fatalf("PUBLISH %s right after Subscribe = %d, %v; want 1 receiver", ch, n, err)
			}
			waitWake(t, s, "message published right after Subscribe")
			if got, ok := s.Message(); !ok || got != "grant "+fmt.Sprint(i) {
				t.Fatalf("Message() = %q, %v; want %q", got, ok, "grant "+fmt.Sprint(i))
			}
			s.Close()
		}
	})
}

func TestRefcountAndLinger(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		h := openHub(t, b.client)
		const ch = "refcount:{k}"
		s1 := subscribeID(t, h, ch, "a")
		s2 := subscribeID(t, h, ch, "b")
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
		if n, _ := b.admin.Publish(context.Background(), ch, "b x").Result(); n != 1 {
			t.Errorf("PUBLISH after one Close reached %d; want 1", n)
		}
		waitWake(t, s2, "remaining subscription")
		s2.Close()
		// The channel lingers: a waiter that comes back joins it with no
		// command.
		if got := numsub(t, b.admin, ch); got != 1 {
			t.Errorf("NUMSUB right after the last Close = %d; want 1 (lingering)", got)
		}
		s3 := h.Join(ch, "c")
		if s3 == nil {
			t.Fatal("Join(lingering channel) = nil; want a subscription")
		}
		b.admin.Publish(context.Background(), ch, "c x")
		waitWake(t, s3, "subscription joined while lingering")
		s3.Close()
		start := time.Now()
		eventually(t, "NUMSUB 0 and no channel entry after the linger", func() bool {
			return entries(h) == 0 && numsub(t, b.admin, ch) == 0
		})
		if d := time.Since(start); d < Linger/2 {
			t.Errorf("unsubscribed %v after the last Close; want about Linger (%v)", d, Linger)
		}
		if b.real {
			if got := cmdCalls(t, b.admin, "subscribe"); got != 1 {
				t.Errorf("SUBSCRIBE sent %d times in all; want 1 (the rejoin sent none)", got)
			}
		}
	})
}

// TestRouting: a message reaches only the subscription its id names, in
// order, and one for an id nobody has goes to the orphan handler.
func TestRouting(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		type orphan struct{ channel, id, payload string }
		orphans := make(chan orphan, 10)
		h := openHub(t, b.client, WithOrphanHandler(func(channel, id, payload string) {
			orphans <- orphan{channel, id, payload}
		}))
		ctx := context.Background()
		const ch = "route:{k}"
		sa, sb := subscribeID(t, h, ch, "a"), subscribeID(t, h, ch, "b")
		b.admin.Publish(ctx, ch, "b one")
		b.admin.Publish(ctx, ch, "b two")
		b.admin.Publish(ctx, ch, "gone three 3")
		waitWake(t, sb, "subscription b")
		var got []string
		eventually(t, "both messages for b", func() bool {
			for {
				m, ok := sb.Message()
				if !ok {
					return len(got) == 2
				}
				got = append(got, m)
			}
		})
		if got[0] != "one" || got[1] != "two" {
			t.Errorf("b received %q; want [one two]", got)
		}
		select {
		case o := <-orphans:
			if o != (orphan{ch, "gone", "three 3"}) {
				t.Errorf("orphan = %+v; want {%s gone three 3}", o, ch)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no orphan reported for id gone")
		}
		if pending(sa) {
			t.Error("subscription a woke for messages to b and to gone")
		}
		if m, ok := sa.Message(); ok {
			t.Errorf("a has message %q; want none", m)
		}
		// A closed subscription's messages are orphans too.
		sb.Close()
		b.admin.Publish(ctx, ch, "b late")
		select {
		case o := <-orphans:
			if o.id != "b" || o.payload != "late" {
				t.Errorf("orphan = %+v; want id b, payload late", o)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no orphan reported for a closed subscription")
		}
	})
}

func TestBadInput(t *testing.T) {
	m := miniredis.RunT(t)
	c := newClient(t, m.Addr())
	for _, tc := range []struct {
		opt  Option
		want string
	}{
		{WithLogger(nil), "WithLogger(nil)"},
		{WithHealthCheckInterval(0), "WithHealthCheckInterval(0s)"},
		{WithHealthCheckInterval(-time.Second), "must be positive"},
		{WithOrphanHandler(nil), "WithOrphanHandler(nil)"},
	} {
		if h, err := Open(c, tc.opt); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open() = %v, %v; want an error naming %q", h, err, tc.want)
		}
	}
	h := openHub(t, c)
	for _, id := range []string{"", "a b"} {
		if s, err := h.Subscribe(context.Background(), "bad:{k}", id); err == nil {
			s.Close()
			t.Errorf("Subscribe(id %q) = nil error; want one", id)
		}
	}
	s := subscribeID(t, h, "dup:{k}", "x")
	if s2, err := h.Subscribe(context.Background(), "dup:{k}", "x"); err == nil {
		s2.Close()
		t.Error("Subscribe of an id in use = nil error; want one")
	}
	if s2 := h.Join("dup:{k}", "x"); s2 != nil {
		t.Error("Join of an id in use = a subscription; want nil")
	}
	s.Close()
}

// TestReportsPerHandle: every open handle of a shared hub hears of a
// connection loss through its own logger; a closed one hears nothing.
func TestReportsPerHandle(t *testing.T) {
	leakcheck.Register(t)
	srv := redistest.Start(t)
	client, admin := newClient(t, srv.Addr()), newClient(t, srv.Addr())
	var r1, r2, r3 logtest.Recorder
	h1 := openHub(t, client, WithLogger(slog.New(&r1)))
	h2 := openHub(t, client, WithLogger(slog.New(&r2)))
	h3 := openHub(t, client, WithLogger(slog.New(&r3)))
	h3.Close()
	s := subscribe(t, h1, "reports:{k}")
	if err := admin.ClientKillByFilter(context.Background(), "TYPE", "pubsub").Err(); err != nil {
		t.Fatalf("CLIENT KILL TYPE pubsub = %v", err)
	}
	waitWake(t, s, "subscription after CLIENT KILL")
	eventually(t, "both open handles told", func() bool { return r1.Len() > 0 && r2.Len() > 0 })
	if !strings.Contains(r1.All()[0].Text, "lost") {
		t.Errorf("report = %q; want a lost connection", r1.All()[0].Text)
	}
	if n := r3.Len(); n != 0 {
		t.Errorf("closed handle got %d reports: %q; want none", n, r3.All())
	}
	_ = h2
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
			n, err := b.admin.Publish(ctx, target, "w x").Result()
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
		s, err := h.Subscribe(ctx, ch, "w")
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
			return entries(h) == 0 && numsub(t, b.admin, ch) == 0
		})

		// Already cancelled: nothing is sent at all.
		if _, err := h.Subscribe(ctx, ch, "w"); !errors.Is(err, context.Canceled) {
			t.Errorf("Subscribe(cancelled ctx) = %v; want context.Canceled", err)
		}
		// The channel still works afterwards.
		s = subscribe(t, h, ch)
		b.admin.Publish(context.Background(), ch, "w x")
		waitWake(t, s, "subscription after a cancelled one")
	})
}

func TestReconnectWakesEverySubscription(t *testing.T) {
	leakcheck.Register(t)
	srv := redistest.Start(t)
	client, admin := newClient(t, srv.Addr()), newClient(t, srv.Addr())
	var reported logtest.Recorder
	h := openHub(t, client, WithLogger(slog.New(&reported)))
	ctx := context.Background()
	subs := []*Subscription{subscribeID(t, h, "rc:{a}", "1"), subscribeID(t, h, "rc:{a}", "2"), subscribe(t, h, "rc:{b}")}

	for round := range 3 {
		if err := admin.ClientKillByFilter(ctx, "TYPE", "pubsub").Err(); err != nil {
			t.Fatalf("CLIENT KILL TYPE pubsub = %v", err)
		}
		for i, s := range subs {
			waitWake(t, s, fmt.Sprintf("round %d: subscription %d after CLIENT KILL", round, i))
		}
		// Resubscribed: a new message reaches a waiter again.
		if n, err := admin.Publish(ctx, "rc:{b}", "w x").Result(); err != nil || n != 1 {
			t.Fatalf("round %d: PUBLISH after reconnect reached %d, %v; want 1", round, n, err)
		}
		waitWake(t, subs[2], "message after reconnect")
	}
	if reported.Len() == 0 {
		t.Error("the logger heard of no connection loss")
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
	if s, err := h.Subscribe(ctx, "down:{k}", "w"); err == nil || ctx.Err() != nil {
		t.Fatalf("Subscribe with the server down = %v, %v; want a connection error before ctx ends", s, err)
	}
}

func TestCloseLeavesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		h, _ := Open(b.client)
		h2, _ := Open(b.client)
		if h2.h != h.h {
			t.Fatal("Open of the same client returned another hub")
		}
		var subs []*Subscription
		for i := range 20 {
			s, err := h.Subscribe(context.Background(), fmt.Sprintf("close:{%d}", i%7), fmt.Sprint(i))
			if err != nil {
				t.Fatalf("Subscribe = %v", err)
			}
			subs = append(subs, s)
		}
		if err := h.Close(); err != nil { // one reference left
			t.Fatalf("Close = %v", err)
		}
		if _, err := h2.Subscribe(context.Background(), "close:{x}", "w"); err != nil {
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
		if _, err := h.Subscribe(context.Background(), "close:{y}", "w"); !errors.Is(err, ErrClosed) {
			t.Errorf("Subscribe after Close = %v; want ErrClosed", err)
		}
		if h3, _ := Open(b.client); h3.h == h.h {
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
	var lost logtest.Recorder
	h := openHub(t, client, WithHealthCheckInterval(50*time.Millisecond), WithLogger(slog.New(&lost)))
	s := subscribe(t, h, "health:{k}")

	f.frozen.Store(true)
	eventually(t, "the silent connection reported lost", func() bool { return lost.Len() > 0 })
	if first := lost.All()[0].Text; !strings.Contains(first, "lost") {
		t.Errorf("first report = %q; want a lost connection", first)
	}
	f.frozen.Store(false)
	waitWake(t, s, "subscription after the silent connection was replaced")
	eventually(t, "the silent connection's subscription gone", func() bool { return numsub(t, admin, "health:{k}") == 1 })
	if n, err := admin.Publish(context.Background(), "health:{k}", "w x").Result(); err != nil || n != 1 {
		t.Fatalf("PUBLISH after reconnect reached %d, %v; want 1", n, err)
	}
	waitWake(t, s, "message after reconnect")
}

func TestJoin(t *testing.T) {
	leakcheck.Register(t)
	mr := miniredis.RunT(t)
	c := newClient(t, mr.Addr())
	h := openHub(t, c)
	if s := h.Join("join-ch", "j"); s != nil {
		s.Close()
		t.Fatal("Join(unsubscribed channel) = a subscription; want nil")
	}
	first := subscribeID(t, h, "join-ch", "f")
	joined := h.Join("join-ch", "j")
	if joined == nil {
		t.Fatal("Join(confirmed channel) = nil; want a subscription")
	}
	first.Close()
	// The channel stays subscribed for the joined subscription: a publish
	// reaches it.
	mr.Publish("join-ch", "j x")
	select {
	case <-joined.C():
	case <-time.After(10 * time.Second):
		t.Fatal("joined subscription got no wake for a publish")
	}
	if m, ok := joined.Message(); !ok || m != "x" {
		t.Errorf("Message() = %q, %v; want x", m, ok)
	}
	joined.Close()
}
