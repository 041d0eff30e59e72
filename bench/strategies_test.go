package bench

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/redis/rueidis/rueidislock"
)

// locker is what the harness drives: every strategy, ours and the peers',
// behind one small interface.
type locker interface {
	// Lock blocks until key is held or ctx ends; unlock releases it.
	Lock(ctx context.Context, key string) (unlock func() error, err error)
}

// A rearmer is a locker that restarts waits a peer library may never end
// (rueidislock) and counts them, for the row to report.
type rearmer interface{ rearms() int64 }

// A strategy builds the simulated processes of one benchmark row: procs
// lockers that share nothing but the Redis server (each has its own
// client, so its own connection pool and subscriber), and a func that
// closes them all.
type strategy struct {
	name  string
	redis bool // sends commands to Redis (all but local)
	// yardstick marks a row that is not a lock (ping, notice): it is
	// driven and measured like the others, but mutual exclusion is not
	// checked, since it has none.
	yardstick bool
	// handoffOnly marks a pair of processes that pass a token (notice):
	// it runs only under driveHandoff, whose strict alternation it needs.
	handoffOnly bool
	// needsRealRedis, when set, says why the strategy cannot run on
	// miniredis; its rows and smoke tests skip there with that message.
	needsRealRedis string
	procs          func(t *target, prefix string, procs int) ([]locker, func(), error)
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

// notice is the Handoff scenario's yardstick: the time for one PUBLISH
// from one process to reach the parked subscriber of another, the floor
// of any handoff made by a notice. The two processes pass a token: each
// has its own client and a subscription (confirmed before the row starts)
// to its own channel; Lock waits on that subscription for the other's
// notice (process 0 holds the token at the start), and Unlock publishes
// the token to the other's channel. Under driveHandoff the handoff time
// is thus from just before the PUBLISH call to the other's receive, and
// the receiver has been parked for the 1-2 ms hold, as a lock waiter is.
var notice = strategy{name: "notice", redis: true, yardstick: true, handoffOnly: true, procs: noticeProcs}

func noticeProcs(t *target, prefix string, n int) ([]locker, func(), error) {
	if n != 2 {
		return nil, nil, fmt.Errorf("notice: %d processes; want 2", n)
	}
	channel := func(p int) string { return prefix + "notice:" + strconv.Itoa(p) }
	p := 0
	return eachProc(t, n, func(c redis.UniversalClient) (locker, func(), error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ps := c.Subscribe(ctx, channel(p))
		if err := confirm(ctx, ps, channel(p)); err != nil {
			ps.Close()
			return nil, nil, fmt.Errorf("notice: %w", err)
		}
		l := &noticeLocker{c: c, ps: ps, peer: channel(1 - p), first: p == 0}
		p++
		return l, func() { ps.Close() }, nil
	})
}

// confirm waits for the confirmation of ps's subscription to channel.
func confirm(ctx context.Context, ps *redis.PubSub, channel string) error {
	msg, err := ps.Receive(ctx)
	if err != nil {
		return fmt.Errorf("SUBSCRIBE %s: %w", channel, err)
	}
	if s, ok := msg.(*redis.Subscription); !ok || s.Kind != "subscribe" || s.Channel != channel {
		return fmt.Errorf("SUBSCRIBE %s: got %v; want its confirmation", channel, msg)
	}
	return nil
}

// noticeLocker is one process of the notice pair. Only its process's one
// goroutine calls Lock (driveHandoff), so only it receives on ps.
type noticeLocker struct {
	c     redis.UniversalClient
	ps    *redis.PubSub // subscribed to this process's channel
	peer  string        // the other process's channel
	first bool          // process 0 starts with the token: its first Lock takes it without a notice
}

func (l *noticeLocker) Lock(ctx context.Context, _ string) (func() error, error) {
	if l.first {
		l.first = false
	} else if _, err := l.ps.ReceiveMessage(ctx); err != nil {
		return nil, err
	}
	return func() error { return l.c.Publish(ctx, l.peer, "token").Err() }, nil
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

// rueidislockStrategy is github.com/redis/rueidis/rueidislock, the lock of
// Redis's own Go client: a waiter parks until a client-side-caching
// invalidation of the lock key (CLIENT TRACKING over RESP3) says it
// changed, and the client pipelines concurrent commands on one connection.
// Each process is a Locker with its own rueidis client, on one key per
// lock (KeyMajority 1: no quorum over several keys) and with NOLOOP
// tracking (Redis >= 7.0.5: no invalidation for a process's own writes).
//
// TryNextAfter, the time given one acquire round trip before trying the
// next of the KeyMajority*2-1 keys, is raised from 20 ms to 1 s: with one
// key there is no next key, and when a round trip takes over 20 ms (a
// busy 2-core machine), the attempt fails with a timeout and the waiter
// parks for an invalidation that may never come: the attempt may never
// have reached the key, or it took the key and its own release is not
// notified back (NOLOOP). On this machine under load the default
// stranded about 1 Lock in 200 on ManyKeys; 1 s, none seen.
//
// Its defaults (lock.go, v1.0.79): KeyMajority 2 (a lock is 2 of 3 keys),
// KeyValidity 5s extended every 2.5s, TryNextAfter 20ms, and tracking
// without NOLOOP.
var rueidislockStrategy = strategy{
	name:           "rueidislock",
	redis:          true,
	needsRealRedis: "rueidislock needs CLIENT TRACKING (RESP3 client-side caching), which miniredis lacks",
	procs: func(t *target, prefix string, n int) ([]locker, func(), error) {
		var ls []locker
		var closers []func()
		closeAll := func() {
			for _, c := range closers {
				c()
			}
		}
		rearmed := new(atomic.Int64)
		for range n {
			l, err := rueidislock.NewLocker(rueidislock.LockerOption{
				ClientOption:   rueidis.ClientOption{InitAddress: t.addrs()},
				ClientBuilder:  newCountingRueidis,
				KeyPrefix:      strings.TrimSuffix(prefix, ":"), // it adds ":<i>:<name>"
				KeyValidity:    ttl,
				KeyMajority:    1,
				NoLoopTracking: true,
				TryNextAfter:   time.Second,
			})
			if err != nil {
				closeAll()
				return nil, nil, err
			}
			closers = append(closers, l.Close) // closes its client too
			ls = append(ls, rueidisLocker{l: l, rearm: rueidisRearm, rearmed: rearmed})
		}
		return ls, closeAll, nil
	},
}

// rueidisRearm bounds one rueidislock wait, after which the adapter
// gives up that wait (releasing the lock if it came at the same moment)
// and calls WithContext again.
//
// rueidislock v1.0.79 can lose a waiter's wake-up: in try, the goroutine
// it starts for a failed attempt may read the failure count before the
// caller has incremented it, take the path of a lock held and released,
// and decrement the key's gate's waiter count, deleting the gate from
// the Locker's map; WithContext then waits on that gate, which no
// invalidation reaches any more. A process whose other goroutines hold
// the same gate may still wake it; a lone waiter (the Handoff rows) waits
// until its ctx ends. Seen within a few dozen handoffs under the race
// detector (counting the failure before starting the goroutine, in a
// patched copy, cured it); rarely without. The bench logs how many waits
// it had to restart, so that a row they slowed says so.
const rueidisRearm = time.Second

type rueidisLocker struct {
	l       rueidislock.Locker
	rearm   time.Duration // rueidisRearm
	rearmed *atomic.Int64 // waits restarted after rearm, shared by the row's processes
}

func (r rueidisLocker) Lock(ctx context.Context, key string) (func() error, error) {
	for {
		wait, stop := context.WithCancel(ctx)
		timer := time.AfterFunc(r.rearm, stop)
		_, release, err := r.l.WithContext(wait, key)
		if timer.Stop() {
			if err != nil {
				stop()
				return nil, err
			}
			// release releases the key and returns once the release
			// script has run; rueidislock's Unlock returns no error.
			return func() error { release(); stop(); return nil }, nil
		}
		// wait ends (the timer fired): so does a lock just taken.
		if err == nil {
			release()
		}
		stop()
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		r.rearmed.Add(1)
	}
}

func (r rueidisLocker) rearms() int64 { return r.rearmed.Load() }
