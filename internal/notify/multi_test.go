package notify

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A message naming several ids ("a,b,gone payload") reaches each of them
// with the payload, and the ids without a subscription go to the orphan
// handler, one call each; an id with a comma is refused.
func TestRoutingSeveralIDs(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b backend) {
		orphans := make(chan string, 10)
		h := openHub(t, b.client, WithOrphanHandler(func(channel, id, payload string) {
			orphans <- id + " " + payload
		}))
		const ch = "route:{several}"
		sa, sb, sc := subscribeID(t, h, ch, "a"), subscribeID(t, h, ch, "b"), subscribeID(t, h, ch, "c")
		b.admin.Publish(context.Background(), ch, "a,b,gone 1 2 3")
		for _, s := range []*Subscription{sa, sb} {
			waitWake(t, s, "a named subscription")
			if m, ok := s.Message(); !ok || m != "1 2 3" {
				t.Errorf("message = %q, %v; want \"1 2 3\"", m, ok)
			}
		}
		select {
		case o := <-orphans:
			if o != "gone 1 2 3" {
				t.Errorf("orphan %q; want \"gone 1 2 3\"", o)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no orphan reported for id gone")
		}
		if pending(sc) {
			t.Error("a subscription the message did not name woke")
		}
		if _, err := h.Subscribe(context.Background(), ch, "x,y"); err == nil || !strings.Contains(err.Error(), "commas") {
			t.Errorf("Subscribe with id \"x,y\" = %v; want an error naming commas", err)
		}
	})
}
