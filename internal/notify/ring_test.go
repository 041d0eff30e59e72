package notify

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/redis/go-redis/v9"
)

// TestRingRefused: a *redis.Ring cannot carry the hub's Pub/Sub (its
// Subscribe needs a channel to pick a shard, and would panic without
// one): Open refuses it with an error that names it.
func TestRingRefused(t *testing.T) {
	m := miniredis.RunT(t)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": m.Addr()}})
	defer ring.Close()
	h, err := Open(ring)
	if err == nil {
		h.Close()
		t.Fatal("Open(*redis.Ring) = nil error; want one")
	}
	if !strings.Contains(err.Error(), "Ring") {
		t.Errorf("Open(*redis.Ring) = %v; want an error naming the Ring", err)
	}
}

// panicky is a client whose Subscribe panics, as a stand-in for any
// callee that panics while the hub's lock is held.
type panicky struct{ *redis.Client }

func (panicky) Subscribe(context.Context, ...string) *redis.PubSub { panic("boom") }

// TestPanicLeavesHubUsable: a panic in the client under the hub's lock
// (recovered by the caller, as net/http does) leaves the hub usable.
func TestPanicLeavesHubUsable(t *testing.T) {
	leakcheck.Register(t)
	m := miniredis.RunT(t)
	c := panicky{newClient(t, m.Addr())}
	h := openHub(t, c)
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Subscribe with a panicking client returned; want its panic")
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = h.Subscribe(ctx, "ch", "id")
	}()
	done := make(chan *Subscription, 1)
	go func() { done <- h.Join("ch", "id2") }()
	select {
	case s := <-done:
		if s != nil {
			t.Errorf("Join after a failed Subscribe = a subscription; want nil")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Join after a panic under the hub's lock is still blocked after 10s: the hub is wedged")
	}
}
