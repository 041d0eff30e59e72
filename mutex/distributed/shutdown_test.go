package distributed

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

// blackHole listens on a free port, accepts connections and never
// answers; it stops at cleanup.
func blackHole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}

// within runs f and fails t if it has not returned after d, a bound far
// above what f should take and far below what the defect it guards
// against costs.
func within(t *testing.T, d time.Duration, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Errorf("%s still running after %v", what, d)
		<-done
	}
}

// TestCloseAfterTimeoutAgainstSilentServer: a Lock times out against a
// server that accepts connections but never answers; Close, with nothing
// held, does not wait for the calls stuck on it (here the client's read
// timeout and the unlock timeout are a minute each).
func TestCloseAfterTimeoutAgainstSilentServer(t *testing.T) {
	leakcheck.Register(t)
	c := redis.NewClient(&redis.Options{Addr: blackHole(t), ReadTimeout: time.Minute, MaxRetries: -1})
	defer c.Close()
	m, err := New[string](c, WithUnlockTimeout(time.Minute), WithoutEvictionCheck())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := m.Lock(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock(silent server) = %v; want DeadlineExceeded", err)
	}
	within(t, 20*time.Second, "Close with nothing held after a Lock timed out against a silent server", func() { m.Close() })
	c.Close() // ends the calls stuck on the silent server
}

// TestUnlockLostLeaseServerStalled: Unlock of a lease that is lost
// already does not wait on a server that does not answer.
func TestUnlockLostLeaseServerStalled(t *testing.T) {
	leakcheck.Register(t)
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: time.Minute, MaxRetries: -1})
	defer c.Close()
	m := newMutexOn(t, c, WithTTL(50*time.Millisecond), WithoutRenewal(), WithUnlockTimeout(time.Minute))
	l, err := m.Lock(ctxT(t, time.Minute), "k")
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, l.Done(), "lease without renewal past its TTL")
	srv.Pause()
	defer srv.Resume()
	within(t, 20*time.Second, "Unlock of a lost lease with the server stalled", func() {
		if err := l.Unlock(); !errors.Is(err, mutex.ErrLost) {
			t.Errorf("Unlock(lost) = %v; want ErrLost", err)
		}
	})
	srv.Resume()
}

// TestLossNamesTransportError: a lease lost because Redis died says how
// Redis failed (here the Pub/Sub connection of a waiter saw it first),
// not only that time ran out, while the client still retries the
// renewal's refused connection.
func TestLossNamesTransportError(t *testing.T) {
	leakcheck.Register(t)
	srv := redistest.Start(t)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer c.Close()
	m := newMutexOn(t, c, WithTTL(300*time.Millisecond), WithUnlockTimeout(time.Second))
	ctx := ctxT(t, time.Minute)
	l, err := m.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	waiter := make(chan error, 1)
	go func() { _, err := m.Lock(wctx, "k"); waiter <- err }()
	eventually(t, "a waiter subscribed", func() bool {
		s := m.hub.Join(namesFor(DefaultPrefix, "k").channel(m.id), "probe")
		if s != nil {
			s.Close()
		}
		return s != nil
	})
	srv.Kill()
	waitDone(t, l.Done(), "lease with Redis killed")
	err = l.Err()
	if msg := fmt.Sprint(err); !errors.Is(err, mutex.ErrLost) || !(strings.Contains(msg, "EOF") || strings.Contains(msg, "refused") || strings.Contains(msg, "reset")) {
		t.Errorf("Err() = %v; want ErrLost naming the transport error (EOF, refused, reset)", err)
	}
	t.Logf("Err() = %v", err)
	cancel()
	<-waiter
}
