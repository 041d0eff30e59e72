package distributed

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// env is one Redis backend for a test: miniredis or a real redis-server.
type env struct {
	t    *testing.T
	addr string
	mr   *miniredis.Miniredis // nil on a real server
	srv  *redistest.Server    // nil on miniredis
}

// backends lists the backends every behavioural test runs on.
var backends = []struct {
	name  string
	start func(t *testing.T) *env
}{
	{"miniredis", func(t *testing.T) *env {
		mr := miniredis.RunT(t)
		return &env{t: t, addr: mr.Addr(), mr: mr}
	}},
	{"redis", func(t *testing.T) *env {
		srv := redistest.Start(t)
		return &env{t: t, addr: srv.Addr(), srv: srv}
	}},
}

// forEachBackend runs f as a subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, e *env)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			leakcheck.Register(t) // first: its check runs after the server stops
			f(t, b.start(t))
		})
	}
}

// real skips the test unless it runs on a real redis-server.
func (e *env) real() {
	e.t.Helper()
	if e.srv == nil {
		e.t.Skip("needs a real redis-server")
	}
}

// client returns a new client of the backend (one per simulated process),
// closed at cleanup.
func (e *env) client(t testing.TB, hooks ...redis.Hook) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: e.addr})
	for _, h := range hooks {
		c.AddHook(h)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// newMutex returns a Mutex on a fresh client, closed at cleanup.
func (e *env) newMutex(t testing.TB, opts ...Option) *Mutex[string] {
	t.Helper()
	return newMutexOn(t, e.client(t), opts...)
}

func newMutexOn(t testing.TB, c redis.UniversalClient, opts ...Option) *Mutex[string] {
	t.Helper()
	m, err := New[string](c, opts...)
	if err != nil {
		t.Fatalf("New() = %v; want nil error", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close() = %v; want nil", err)
		}
	})
	return m
}

// strategies are the two wait strategies, as options.
var strategies = []struct {
	name string
	opts []Option
}{
	{"pubsub", nil},
	{"spin", []Option{WithSpin(2 * time.Millisecond)}},
}

// counter counts the commands a client sends (All) and its scripts.
type counter = redistest.Counter

func ctxT(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or 10s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after 10s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitDone waits up to 10s for a lease to end.
func waitDone(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: Done() not closed after 10s", what)
	}
}

// numsub returns the subscriber count of channel.
func numsub(t *testing.T, c *redis.Client, channel string) int64 {
	t.Helper()
	res, err := c.PubSubNumSub(context.Background(), channel).Result()
	if err != nil {
		t.Fatalf("PUBSUB NUMSUB: %v", err)
	}
	return res[channel]
}

type redisClient = redis.Client

func redisClientFor(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}
