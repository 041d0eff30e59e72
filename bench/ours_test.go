package bench

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/keyedmutex/keyedmutex/mutex/hybrid"
	"github.com/keyedmutex/keyedmutex/mutex/local"
)

func init() {
	strategies = append([]strategy{localStrategy, spinStrategy, pubsubStrategy, hybridStrategy, hybridNoHandoffStrategy}, strategies...)
}

// spinInterval is the spin strategy's retry interval (±50% jitter): 1 ms,
// the same as the peers' retry, so the three spinning rows compare the
// lock protocol, not the interval.
const spinInterval = time.Millisecond

// keyed adapts any mutex.Keyed[string] to the harness.
type keyed struct{ m mutex.Keyed[string] }

func (k keyed) Lock(ctx context.Context, key string) (func() error, error) {
	l, err := k.m.Lock(ctx, key)
	if err != nil {
		return nil, err
	}
	return l.Unlock, nil
}

// localStrategy is local.Mutex: in-process only, so the simulated
// processes of a row share one instance (separate ones would not exclude
// each other). It is the ceiling: what one process gets without Redis.
var localStrategy = strategy{name: "local", procs: func(_ *target, _ string, n int) ([]locker, func(), error) {
	m := new(local.Mutex[string])
	ls := make([]locker, n)
	for i := range ls {
		ls[i] = keyed{m}
	}
	return ls, func() {}, nil
}}

// distributedProcs builds n processes, each a distributed.Mutex on its own
// client (so its own subscriber), optionally wrapped by wrap.
func distributedProcs(t *target, prefix string, n int, opts []distributed.Option, wrap func(*distributed.Mutex[string]) (mutex.Keyed[string], func())) ([]locker, func(), error) {
	return eachProc(t, n, func(c redis.UniversalClient) (locker, func(), error) {
		d, err := distributed.New[string](c, append([]distributed.Option{distributed.WithTTL(ttl), distributed.WithPrefix(prefix)}, opts...)...)
		if err != nil {
			return nil, nil, err
		}
		if wrap == nil {
			return keyed{d}, func() { d.Close() }, nil
		}
		m, closeM := wrap(d)
		return keyed{m}, func() { closeM(); d.Close() }, nil
	})
}

var spinStrategy = strategy{name: "spin", redis: true, procs: func(t *target, prefix string, n int) ([]locker, func(), error) {
	return distributedProcs(t, prefix, n, []distributed.Option{distributed.WithSpin(spinInterval)}, nil)
}}

var pubsubStrategy = strategy{name: "pubsub", redis: true, procs: func(t *target, prefix string, n int) ([]locker, func(), error) {
	return distributedProcs(t, prefix, n, nil, nil)
}}

// hybridOver returns a wrap that puts a hybrid.Mutex with opts in front of
// a pub/sub distributed.Mutex.
func hybridOver(opts ...hybrid.Option) func(*distributed.Mutex[string]) (mutex.Keyed[string], func()) {
	return func(d *distributed.Mutex[string]) (mutex.Keyed[string], func()) {
		h, err := hybrid.New[string](d, opts...)
		if err != nil {
			panic(err) // the options are the bench's own: a bug here
		}
		return h, func() { h.Close() }
	}
}

// hybridStrategy is hybrid over pub/sub with the default handoff bound
// (hybrid.DefaultMaxLocalHandoffs).
var hybridStrategy = strategy{name: "hybrid", redis: true, procs: func(t *target, prefix string, n int) ([]locker, func(), error) {
	return distributedProcs(t, prefix, n, nil, hybridOver())
}}

// hybridNoHandoffStrategy is hybrid over pub/sub with local handoffs
// disabled: local queueing only, every Unlock releases the remote lease.
var hybridNoHandoffStrategy = strategy{name: "hybrid-nohandoff", redis: true, procs: func(t *target, prefix string, n int) ([]locker, func(), error) {
	return distributedProcs(t, prefix, n, nil, hybridOver(hybrid.WithMaxLocalHandoffs(0)))
}}
