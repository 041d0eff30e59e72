package distributed

import "context"

// hubRef is what a Mutex uses of its reference to the process-wide
// release-notice hub (internal/notify): one shared Pub/Sub connection per
// client, wakes fanned out per channel.
type hubRef interface {
	// Sharded reports whether releases are announced with SPUBLISH.
	Sharded(ctx context.Context) (bool, error)
	// Subscribe returns once Redis confirmed the subscription.
	Subscribe(ctx context.Context, channel string) (subscription, error)
	// Join returns a subscription, with no Redis command, if the channel
	// is already subscribed and confirmed; otherwise nil.
	Join(channel string) subscription
	// Close drops this reference.
	Close() error
}

// subscription is one waiter's subscription to one channel.
type subscription interface {
	// C receives a wake: a release notice, a reconnect, or hub close.
	C() <-chan struct{}
	// Pass hands a received wake to another waiter of the channel.
	Pass()
	// Close ends the subscription (passing on a pending wake).
	Close()
}
