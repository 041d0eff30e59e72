package distributed

// TEMPORARY stand-in for internal/notify until it lands: one go-redis
// PubSub per subscription, every subscription of a channel woken by each
// notice. Replaced by hub_notify.go.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

var errHubClosed = errors.New("notify: hub closed")

type stubHub struct {
	client redis.UniversalClient
	mu     sync.Mutex
	closed bool
	subs   map[*stubSub]struct{}
}

func openHub(client redis.UniversalClient, onError func(error)) hubRef {
	return &stubHub{client: client, subs: make(map[*stubSub]struct{})}
}

func (h *stubHub) Sharded(ctx context.Context) (bool, error) {
	_, ok := h.client.(*redis.ClusterClient)
	return ok, nil
}

type stubSub struct {
	h    *stubHub
	ps   *redis.PubSub
	c    chan struct{}
	once sync.Once
	done chan struct{}
}

func (h *stubHub) Subscribe(ctx context.Context, channel string) (subscription, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, errHubClosed
	}
	h.mu.Unlock()
	ps := h.client.Subscribe(ctx)
	if err := ps.Subscribe(ctx, channel); err != nil {
		ps.Close()
		return nil, err
	}
	if _, err := ps.ReceiveTimeout(ctx, 0); err != nil { // the confirmation
		ps.Close()
		if ctx.Err() != nil {
			return nil, errors.Join(ctx.Err(), err)
		}
		return nil, err
	}
	s := &stubSub{h: h, ps: ps, c: make(chan struct{}, 1), done: make(chan struct{})}
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	go s.read()
	return s, nil
}

func (s *stubSub) read() {
	defer close(s.done)
	for {
		msg, err := s.ps.Receive(context.Background())
		if errors.Is(err, redis.ErrClosed) {
			return
		}
		if err != nil {
			time.Sleep(10 * time.Millisecond) // stub: crude reconnect backoff
			continue
		}
		switch msg.(type) {
		case *redis.Message, *redis.Subscription: // a notice, or resubscribed after a reconnect
			s.wake()
		}
	}
}

func (s *stubSub) wake() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

func (s *stubSub) C() <-chan struct{} { return s.c }
func (s *stubSub) Pass()              {}
func (s *stubSub) Close() {
	s.once.Do(func() {
		s.ps.Close()
		<-s.done
		s.h.mu.Lock()
		delete(s.h.subs, s)
		s.h.mu.Unlock()
	})
}

func (h *stubHub) Close() error {
	h.mu.Lock()
	h.closed = true
	for s := range h.subs {
		s.wake()
	}
	h.mu.Unlock()
	return nil
}

func isHubClosed(err error) bool { return errors.Is(err, errHubClosed) }
