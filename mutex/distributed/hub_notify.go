package distributed

import (
	"context"
	"errors"

	"github.com/keyedmutex/keyedmutex/internal/notify"
	"github.com/redis/go-redis/v9"
)

// openHub takes a reference to the process-wide hub of client. The hub is
// shared by every Mutex (and any other user) of the same client value, so
// a process keeps one Pub/Sub connection per client however many Mutexes
// and waiters it has.
func openHub(client redis.UniversalClient, onError func(error)) hubRef {
	return notifyHub{notify.Open(client, notify.WithErrorHandler(onError))}
}

// notifyHub adapts *notify.Hub to hubRef.
type notifyHub struct{ *notify.Hub }

func (h notifyHub) Subscribe(ctx context.Context, channel string) (subscription, error) {
	s, err := h.Hub.Subscribe(ctx, channel)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (h notifyHub) Join(channel string) subscription {
	if s := h.Hub.Join(channel); s != nil {
		return s
	}
	return nil // not a typed nil
}

func isHubClosed(err error) bool { return errors.Is(err, notify.ErrClosed) }
