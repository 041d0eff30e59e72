package bench

import (
	"context"
	"math"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
)

// locker is what the harness drives: every strategy, ours and the peers',
// behind one small interface.
type locker interface {
	// Lock blocks until key is held or ctx ends; unlock releases it.
	Lock(ctx context.Context, key string) (unlock func() error, err error)
}

// A strategy builds the simulated processes of one benchmark row: procs
// lockers that share nothing but the Redis server (each has its own
// client, so its own connection pool and subscriber), and a func that
// closes them all.
type strategy struct {
	name  string
	redis bool // sends commands to Redis (all but local)
	// yardstick marks a row that is not a lock (ping): it is driven and
	// measured like the others, but mutual exclusion is not checked,
	// since it has none.
	yardstick bool
	procs     func(t *target, prefix string, procs int) ([]locker, func(), error)
}

// ttl is the lease length every Redis strategy uses.
const ttl = 10 * time.Second

// retry is the peers' retry interval: their fastest honest setting.
const retry = time.Millisecond

// eachProc builds n processes, each with its own client.
func eachProc(t *target, n int, mk func(c redis.UniversalClient) (locker, func(), error)) ([]locker, func(), error) {
	var ls []locker
	var closers []func()
	closeAll := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	for range n {
		c := t.client()
		closers = append(closers, func() { c.Close() })
		l, closeL, err := mk(c)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		if closeL != nil {
			closers = append(closers, closeL)
		}
		ls = append(ls, l)
	}
	return ls, closeAll, nil
}

// ping is the Uncontended row's yardstick: one PING round trip.
var ping = strategy{name: "ping", redis: true, yardstick: true, procs: func(t *target, _ string, n int) ([]locker, func(), error) {
	return eachProc(t, n, func(c redis.UniversalClient) (locker, func(), error) { return pingLocker{c}, nil, nil })
}}

type pingLocker struct{ c redis.UniversalClient }

func (p pingLocker) Lock(ctx context.Context, _ string) (func() error, error) {
	return func() error { return nil }, p.c.Ping(ctx).Err()
}

// redsyncStrategy is github.com/go-redsync/redsync/v4 on one pool,
// retrying every 1 ms until the context ends.
//
// Its defaults (redsync.go, v4.18.1): expiry 8s, 32 tries, a random delay
// of 50-250 ms between tries, so a contended Lock gives up with
// ErrFailed after about 32 x 150 ms ≈ 5 s. Each failed try also sends the
// release script (delete-if-value), so a retry costs two commands.
var redsyncStrategy = strategy{name: "redsync", redis: true, procs: func(t *target, prefix string, n int) ([]locker, func(), error) {
	return eachProc(t, n, func(c redis.UniversalClient) (locker, func(), error) {
		return redsyncLocker{rs: redsync.New(goredis.NewPool(c)), prefix: prefix}, nil, nil
	})
}}

type redsyncLocker struct {
	rs     *redsync.Redsync
	prefix string
}

func (r redsyncLocker) Lock(ctx context.Context, key string) (func() error, error) {
	m := r.rs.NewMutex(r.prefix+key,
		redsync.WithExpiry(ttl),
		redsync.WithTries(math.MaxInt32),
		redsync.WithRetryDelay(retry))
	if err := m.LockContext(ctx); err != nil {
		return nil, err
	}
	return func() error { _, err := m.Unlock(); return err }, nil
}

// redislockStrategy is github.com/bsm/redislock, retrying every 1 ms
// (LinearBackoff) until the context's deadline.
//
// Its defaults (redislock.go, v0.9.4): no retry at all (NoRetry: Obtain
// tries once and returns ErrNotObtained), and where retries are set but
// ctx has no deadline, it gives up after the TTL.
var redislockStrategy = strategy{name: "redislock", redis: true, procs: func(t *target, prefix string, n int) ([]locker, func(), error) {
	return eachProc(t, n, func(c redis.UniversalClient) (locker, func(), error) {
		return redislockLocker{c: redislock.New(c), prefix: prefix}, nil, nil
	})
}}

type redislockLocker struct {
	c      *redislock.Client
	prefix string
}

var redislockOpts = &redislock.Options{RetryStrategy: redislock.LinearBackoff(retry)}

func (r redislockLocker) Lock(ctx context.Context, key string) (func() error, error) {
	l, err := r.c.Obtain(ctx, r.prefix+key, ttl, redislockOpts)
	if err != nil {
		return nil, err
	}
	return func() error { return l.Release(context.Background()) }, nil
}
