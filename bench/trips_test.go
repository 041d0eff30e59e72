package bench

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
)

// roundTrips counts the round trips every client of the bench makes: one
// per command sent alone, one per pipeline (or transaction). runRow reads
// it around a row's drive. Commands a Pub/Sub connection sends
// (SUBSCRIBE, UNSUBSCRIBE) are not counted: go-redis sends them without
// its hooks; a lock sends them only when it has to wait.
var roundTrips atomic.Int64

// tripCounter is the go-redis hook that counts into roundTrips.
type tripCounter struct{}

func (tripCounter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

func (tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		roundTrips.Add(1)
		return next(ctx, cmd)
	}
}

func (tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		roundTrips.Add(1)
		return next(ctx, cmds)
	}
}

// countingClient is a rueidis.Client that counts into roundTrips: one per
// Do or DoCache call, one per DoMulti or DoMultiCache batch, as a caller
// waits for each (rueidis may share one write among concurrent callers).
// Receive (Pub/Sub) is not counted, as with go-redis.
type countingClient struct{ rueidis.Client }

func (c countingClient) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	roundTrips.Add(1)
	return c.Client.Do(ctx, cmd)
}

func (c countingClient) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	roundTrips.Add(1)
	return c.Client.DoMulti(ctx, cmds...)
}

func (c countingClient) DoCache(ctx context.Context, cmd rueidis.Cacheable, ttl time.Duration) rueidis.RedisResult {
	roundTrips.Add(1)
	return c.Client.DoCache(ctx, cmd, ttl)
}

func (c countingClient) DoMultiCache(ctx context.Context, cmds ...rueidis.CacheableTTL) []rueidis.RedisResult {
	roundTrips.Add(1)
	return c.Client.DoMultiCache(ctx, cmds...)
}

// newCountingRueidis builds a rueidis client that counts its round trips:
// rueidislock's ClientBuilder.
func newCountingRueidis(opt rueidis.ClientOption) (rueidis.Client, error) {
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, err
	}
	return countingClient{c}, nil
}
