package faulttest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

// fakeLease and fakeKeyed are a minimal in-process keyed mutex, correct
// or (broken) without exclusion, to show the checker tells them apart.
type fakeLease struct {
	unlock func()
	token  uint64
	done   chan struct{}
	once   sync.Once
	err    atomic.Value
}

func (l *fakeLease) Unlock() error {
	err := mutex.ErrUnlocked
	l.once.Do(func() { l.unlock(); l.err.Store(mutex.ErrUnlocked); close(l.done); err = nil })
	return err
}
func (l *fakeLease) Done() <-chan struct{} { return l.done }
func (l *fakeLease) Err() error {
	if e, ok := l.err.Load().(error); ok {
		return e
	}
	return nil
}
func (l *fakeLease) Token() uint64 { return l.token }

type fakeKeyed struct {
	broken   bool // no exclusion
	tokenBug bool // tokens do not increase
	mu       sync.Mutex
	locks    map[string]chan struct{}
	tok      atomic.Uint64
}

func (f *fakeKeyed) Lock(ctx context.Context, key string) (mutex.Lease, error) {
	f.mu.Lock()
	if f.locks == nil {
		f.locks = make(map[string]chan struct{})
	}
	ch, ok := f.locks[key]
	if !ok {
		ch = make(chan struct{}, 1)
		f.locks[key] = ch
	}
	f.mu.Unlock()
	release := func() {}
	if !f.broken {
		select {
		case ch <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		release = func() { <-ch }
	}
	t := f.tok.Add(1)
	if f.tokenBug {
		t = 1_000_000 - t
	}
	return &fakeLease{unlock: release, token: t, done: make(chan struct{})}, nil
}

func (f *fakeKeyed) TryLock(ctx context.Context, key string) (mutex.Lease, error) {
	return nil, errors.New("not implemented")
}
func (f *fakeKeyed) Locker(key string) sync.Locker { return nil }

func runFake(t *testing.T, m *fakeKeyed) (*History, *Fenced) {
	t.Helper()
	h := NewHistory(time.Second, time.Second)
	f := &Fenced{}
	w := &Workload{
		Instances: []mutex.Keyed[string]{m, m},
		Keys:      []string{"a", "b"},
		MaxHold:   time.Millisecond,
		Fenced:    f,
		History:   h,
	}
	w.Run(t, 200*time.Millisecond, nil)
	return h, f
}

func TestCheckerPassesCorrectMutex(t *testing.T) {
	leakcheck.Register(t)
	h, f := runFake(t, &fakeKeyed{})
	if v := h.Check(); len(v) != 0 {
		t.Errorf("Check() = %d violations, first %q; want none", len(v), v[0])
	}
	if s := h.Stats(); s.Acquisitions == 0 || f.Accepted() == 0 || f.Rejected() != 0 {
		t.Errorf("Stats() = %v, fenced accepted %d rejected %d; want acquisitions and no rejection", s, f.Accepted(), f.Rejected())
	}
}

func TestCheckerCatchesOverlap(t *testing.T) {
	leakcheck.Register(t)
	h, _ := runFake(t, &fakeKeyed{broken: true})
	v := h.Check()
	if !contains(v, "mutual exclusion") {
		t.Errorf("Check() found %d violations, none of mutual exclusion; want some", len(v))
	}
}

func TestCheckerCatchesTokenRegression(t *testing.T) {
	leakcheck.Register(t)
	h, f := runFake(t, &fakeKeyed{tokenBug: true})
	v := h.Check()
	if !contains(v, "fencing") || f.Rejected() == 0 {
		t.Errorf("Check() = %d violations (fencing among them: %v), rejected writes %d; want fencing violations", len(v), contains(v, "fencing"), f.Rejected())
	}
}

func TestCheckerExcusesLostLeaseNearFault(t *testing.T) {
	h := NewHistory(time.Second, time.Second)
	m := &fakeKeyed{broken: true}
	end := h.Fault("restart")
	a, _ := h.Lock(context.Background(), m, 0, "k")
	b, _ := h.Lock(context.Background(), m, 1, "k")
	end()
	a.MarkLost()
	a.Unlock()
	b.Unlock()
	if v := h.Check(); len(v) != 0 {
		t.Errorf("Check() = %q; want no violation (a lost its lease during a fault)", v)
	}

	h = NewHistory(time.Second, time.Second)
	a, _ = h.Lock(context.Background(), m, 0, "k")
	b, _ = h.Lock(context.Background(), m, 1, "k")
	a.MarkLost()
	a.Unlock()
	b.Unlock()
	if v := h.Check(); !contains(v, "mutual exclusion") || !contains(v, "lost with no fault") {
		t.Errorf("Check() = %q; want an overlap and a loss with no fault", v)
	}
}

// TestCheckerSplitBrainTokens: near a split brain a hold of another
// instance may carry a smaller token only if the fenced resource refused
// its writes.
func TestCheckerSplitBrainTokens(t *testing.T) {
	for _, tc := range []struct {
		name      string
		instanceB int
		writeB    bool
		want      string // "" for no violation
	}{
		{"other instance, write refused", 1, true, ""},
		{"other instance, no write", 1, false, "not increasing"},
		{"same instance, write refused", 0, true, "not increasing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistory(time.Second, time.Second)
			m := &fakeKeyed{tokenBug: true}
			var f Fenced
			end := h.SplitBrain("failover")
			a, _ := h.Lock(context.Background(), m, 0, "k")
			if err := a.Write(&f); err != nil {
				t.Fatalf("first write = %v; want nil", err)
			}
			a.Unlock()
			b, _ := h.Lock(context.Background(), m, tc.instanceB, "k")
			if tc.writeB {
				if err := b.Write(&f); !errors.Is(err, ErrStale) {
					t.Fatalf("write with token %d after %d = %v; want ErrStale", b.Token, a.Token, err)
				}
			}
			b.Unlock()
			end()
			v := h.Check()
			if tc.want == "" && len(v) != 0 {
				t.Errorf("Check() = %q; want no violation", v)
			}
			if tc.want != "" && !contains(v, tc.want) {
				t.Errorf("Check() = %q; want a violation %q", v, tc.want)
			}
		})
	}
}

func TestCheckerLiveness(t *testing.T) {
	h := NewHistory(time.Second, 10*time.Millisecond)
	slow := slowKeyed{delay: 200 * time.Millisecond}
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	h.Lock(ctx, slow, 0, "k")
	if v := h.Check(); !contains(v, "liveness") {
		t.Errorf("Check() = %q; want a liveness violation", v)
	}
}

// slowKeyed ignores ctx for delay, then fails.
type slowKeyed struct{ delay time.Duration }

func (s slowKeyed) Lock(ctx context.Context, key string) (mutex.Lease, error) {
	time.Sleep(s.delay)
	return nil, errors.New("slow")
}
func (s slowKeyed) TryLock(ctx context.Context, key string) (mutex.Lease, error) {
	return s.Lock(ctx, key)
}
func (s slowKeyed) Locker(key string) sync.Locker { return nil }

func TestFenced(t *testing.T) {
	var f Fenced
	for _, tc := range []struct {
		tok  uint64
		want error
	}{{5, nil}, {5, nil}, {7, nil}, {6, ErrStale}, {8, nil}} {
		if err := f.Write("k", tc.tok); !errors.Is(err, tc.want) {
			t.Errorf("Write(k, %d) = %v; want %v", tc.tok, err, tc.want)
		}
	}
	if err := f.Write("other", 1); err != nil {
		t.Errorf("Write(other, 1) = %v; want nil (keys are independent)", err)
	}
}

func contains(v []string, s string) bool {
	for _, x := range v {
		if strings.Contains(x, s) {
			return true
		}
	}
	return false
}

func TestFirstCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"*2\r\n$9\r\nsubscribe\r\n$1\r\na\r\n", "subscribe", true},
		{"*3\r\n$5\r\nHELLO\r\n$1\r\n3\r\n", "hello", true},
		{"*1\r\n$4\r\nPING\r\n", "ping", true},
		{"*1\r\n$4\r\nPI", "", false},
		{"+OK\r\n", "", false},
	} {
		got, ok := firstCommand([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("firstCommand(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestProxyPaths checks, against a real server, that the proxy forwards,
// tells the subscriber connection from the command connections, and
// faults each path alone.
func TestProxyPaths(t *testing.T) {
	leakcheck.Register(t)
	srv := redistest.Start(t)
	p := NewProxy(t, srv.Addr())
	c := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1, ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through proxy = %v; want nil", err)
	}
	ps := c.Subscribe(ctx, "ch")
	defer ps.Close()
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatalf("SUBSCRIBE through proxy = %v", err)
	}
	if n := p.Conns(Subscriber); n != 1 {
		t.Errorf("Conns(Subscriber) = %d; want 1", n)
	}
	if n := p.Conns(Commands); n != 1 {
		t.Errorf("Conns(Commands) = %d; want 1", n)
	}

	// Partition the commands only: SET fails, the subscription lives.
	p.Partition(Commands)
	if err := c.Set(ctx, "k", "v", 0).Err(); err == nil {
		t.Errorf("SET during commands partition = nil; want an error")
	}
	if err := srv.Client(t).Publish(ctx, "ch", "hello").Err(); err != nil {
		t.Fatal(err)
	}
	msg, err := ps.ReceiveMessage(ctx)
	if err != nil || msg.Payload != "hello" {
		t.Errorf("ReceiveMessage during commands partition = %v, %v; want hello", msg, err)
	}
	p.Heal()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Errorf("SET after Heal = %v; want nil", err)
	}

	// Blackhole the subscriber: a PING on it times out; commands work.
	p.Blackhole(Subscriber)
	pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	if err := ps.Ping(pctx); err != nil {
		t.Logf("PING on blackholed subscriber: %v", err)
	}
	_, err = ps.ReceiveTimeout(pctx, 150*time.Millisecond)
	cancel()
	if err == nil {
		t.Errorf("Receive on blackholed subscriber = nil error; want a timeout")
	}
	if err := c.Get(ctx, "k").Err(); err != nil {
		t.Errorf("GET with the subscriber blackholed = %v; want nil", err)
	}
	p.Heal()

	// Latency on commands delays them.
	p.SetLatency(50*time.Millisecond, 0, Commands)
	start := time.Now()
	if err := c.Get(ctx, "k").Err(); err != nil {
		t.Errorf("GET with latency = %v", err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("GET with 50ms latency took %v; want at least 50ms", d)
	}
	p.SetLatency(0, 0)

	// Kill the subscriber: its connection closes, the server sees no
	// subscriber until go-redis reconnects.
	if n := p.Kill(Subscriber); n != 1 {
		t.Errorf("Kill(Subscriber) = %d; want 1", n)
	}
	// Full partition refuses new connections.
	p.Partition()
	c2 := redis.NewClient(&redis.Options{Addr: p.Addr(), MaxRetries: -1})
	defer c2.Close()
	if err := c2.Ping(ctx).Err(); err == nil {
		t.Errorf("PING through a partitioned proxy = nil; want an error")
	}
	p.Heal()
	if err := c2.Ping(ctx).Err(); err != nil {
		t.Errorf("PING after Heal = %v; want nil", err)
	}
	if p.Killed() == 0 || p.Accepted() < 3 {
		t.Errorf("Killed() = %d, Accepted() = %d; want > 0 and >= 3", p.Killed(), p.Accepted())
	}
}

func TestCheckRedisClean(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	c.Set(ctx, "p:{a}", "~1795997472088376", time.Minute)
	CheckRedisClean(t, c, "p:", time.Second) // only a free marker with a TTL: clean

	ft := &fakeTB{TB: t}
	c.Set(ctx, "p:{b}", "0123456789abcdef0123456789abcdef 1 1 1795997472088", time.Minute)
	CheckRedisClean(ft, c, "p:", 100*time.Millisecond)
	if !ft.failed {
		t.Errorf("CheckRedisClean with a lock still held passed; want a failure")
	}
	c.Del(ctx, "p:{a}", "p:{b}")
	ps := c.Subscribe(ctx, "p:release:{a}")
	if _, err := ps.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	if n := NumSub(t, c, "p:release:{a}"); n != 1 {
		t.Errorf("NumSub = %d; want 1", n)
	}
	ft = &fakeTB{TB: t}
	CheckRedisClean(ft, c, "p:", 100*time.Millisecond)
	if !ft.failed {
		t.Errorf("CheckRedisClean with a subscribed channel passed; want a failure")
	}
	ps.Close()
	CheckRedisClean(t, c, "p:", 5*time.Second)
}

// fakeTB records failures instead of failing the test.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Errorf(format string, args ...any) { f.failed = true }
func (f *fakeTB) Helper()                           {}

func TestAcquisitionsAndStart(t *testing.T) {
	leakcheck.Register(t)
	h := NewHistory(time.Second, time.Second)
	m := &fakeKeyed{}
	w := &Workload{
		Instances: []mutex.Keyed[string]{m, m},
		Keys:      []string{"a", "b"},
		MaxHold:   time.Millisecond,
		Fenced:    &Fenced{},
		History:   h,
	}
	r := w.Start()
	deadline := time.Now().Add(10 * time.Second)
	for h.Stats().Acquisitions < 20 {
		if time.Now().After(deadline) {
			t.Fatalf("a started workload made %d acquisitions in 10s; want 20", h.Stats().Acquisitions)
		}
		time.Sleep(time.Millisecond)
	}
	r.Stop(t)
	got := h.Acquisitions()
	if n := h.Stats().Acquisitions; int64(len(got)) != n {
		t.Fatalf("len(Acquisitions()) = %d; want %d (Stats)", len(got), n)
	}
	seen := map[int]bool{}
	for i, a := range got {
		seen[a.Instance] = true
		if a.Key != "a" && a.Key != "b" || a.Token == 0 {
			t.Errorf("Acquisitions()[%d] = %+v; want key a or b and a token", i, a)
		}
		if i > 0 && a.At.Before(got[i-1].At) {
			t.Errorf("Acquisitions() not in order: [%d] at %v before [%d]", i, a.At, i-1)
		}
	}
	if len(seen) != 2 {
		t.Errorf("acquisitions by %d instances; want 2", len(seen))
	}
	after := len(h.Acquisitions())
	if after != len(got) {
		t.Errorf("%d acquisitions after Stop returned; want none", after-len(got))
	}
	if v := h.Check(); len(v) != 0 {
		t.Errorf("Check() = %q; want no violation", v)
	}
}
