package distributed

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

// maxFlights bounds how many pipelines of one Mutex are in flight at
// once to one server (one lane; a Cluster has a lane per master), and so
// how many connections it uses there at a time; calls made while every
// flight of their lane is busy wait in its queue and leave together, as
// one pipeline (one write and one read for all of them), with the next
// flight that ends. A call alone finds a free flight and leaves at once.
// Lanes are independent: a dead master holds up no call to the others.
const maxFlights = 2

// maxBatch bounds how many calls one pipeline carries.
const maxBatch = 256

// call is one script call, or one short sequence of plain commands,
// submitted to the executor.
type call struct {
	script *redis.Script
	keys   []string // the first names the lane
	args   []any

	// plain, if set, replaces the script: it queues the call's commands
	// on p and returns what reads their result once p has run.
	plain func(ctx context.Context, p redis.Pipeliner) func() (any, error)

	res  any
	err  error
	done chan struct{} // closed when res and err are set

	// state settles who handles the result: the caller (done) or, if
	// the caller gave up first (abandoned), the flight, which then runs
	// abandon with the result.
	state   atomic.Int32
	abandon func(res any, err error)
}

const (
	pending = iota
	finished
	abandoned
)

// executor runs a Mutex's script calls off the callers' goroutines, so a
// caller can stop waiting when its ctx ends or the Mutex is closed,
// whatever the network does; concurrent calls share round trips
// (auto-pipelining: batching comes from concurrency, never from a timer).
type executor struct {
	client redis.UniversalClient
	failed func(error) // told about every transport error

	mu     sync.Mutex       // guards lanes, busy and idle
	lanes  map[string]*lane // by master address ("" for a single server)
	busy   int              // flights running, in all lanes
	queued int              // calls queued, in all lanes
	idle   chan struct{}    // made by wait; closed when nothing runs or waits

	wg       sync.WaitGroup // flights
	lastDone atomic.Int64   // unix ns when a batch last finished
}

// lane is the queue and flights of one server.
type lane struct {
	queue   []*call
	flights int
}

// laneOf returns the name of the lane of a call on key: its master's
// address on a Cluster, "" otherwise (or if the slot map cannot tell).
func (x *executor) laneOf(key string) string {
	cc, ok := x.client.(*redis.ClusterClient)
	if !ok {
		return ""
	}
	node, err := cc.MasterForKey(context.Background(), key)
	if err != nil {
		return ""
	}
	return node.Options().Addr
}

// do submits c and waits for its result, ctx's end or stop's: it returns
// ctx's error (or errStopped) if it gave up first, and the call then
// finishes in the background, handing its result to c.abandon.
func (x *executor) do(ctx context.Context, stop <-chan struct{}, c *call) (any, error) {
	x.submit(c)
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
	case <-stop:
	}
	if !c.state.CompareAndSwap(pending, abandoned) {
		<-c.done // finished just now: the result is the caller's
		return c.res, c.err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, errStopped
}

// errStopped is returned by do when stop was closed first.
var errStopped = fmt.Errorf("distributed: command executor stopped: %w", mutex.ErrClosed)

// submit queues the calls in their lanes and starts a flight in each lane
// where fewer than maxFlights run.
func (x *executor) submit(cs ...*call) {
	if len(cs) == 0 {
		return
	}
	names := make([]string, len(cs))
	for i, c := range cs {
		c.done = make(chan struct{})
		names[i] = x.laneOf(c.keys[0])
	}
	x.mu.Lock()
	if x.lanes == nil {
		x.lanes = map[string]*lane{}
	}
	var start []*lane // at most one new flight per lane
	for i, c := range cs {
		ln := x.lanes[names[i]]
		if ln == nil {
			ln = &lane{}
			x.lanes[names[i]] = ln
		}
		ln.queue = append(ln.queue, c)
		x.queued++
		if ln.flights < maxFlights && !slices.Contains(start, ln) {
			ln.flights++
			x.busy++
			start = append(start, ln)
		}
	}
	batches := make([][]*call, len(start))
	for i, ln := range start {
		batches[i] = x.takeLocked(ln)
	}
	x.wg.Add(len(start))
	x.mu.Unlock()
	for i, ln := range start {
		go x.fly(ln, batches[i])
	}
}

// takeLocked takes up to maxBatch queued calls of ln. x.mu is held.
func (x *executor) takeLocked(ln *lane) []*call {
	n := min(len(ln.queue), maxBatch)
	batch := make([]*call, n)
	copy(batch, ln.queue)
	clear(ln.queue[:n])
	ln.queue = ln.queue[n:]
	if len(ln.queue) == 0 {
		ln.queue = nil
	}
	x.queued -= n
	return batch
}

// fly runs batches of ln until its queue is empty.
func (x *executor) fly(ln *lane, batch []*call) {
	defer x.wg.Done()
	for {
		if len(batch) > 0 {
			x.run(batch)
		}
		x.mu.Lock()
		if len(ln.queue) == 0 {
			ln.flights--
			x.busy--
			if x.busy == 0 && x.queued == 0 && x.idle != nil {
				close(x.idle)
				x.idle = nil
			}
			x.mu.Unlock()
			return
		}
		batch = x.takeLocked(ln)
		x.mu.Unlock()
	}
}

// run sends one batch, as one pipeline if it has more than one call, and
// settles every call.
func (x *executor) run(batch []*call) {
	ctx := context.Background()
	if c := batch[0]; len(batch) == 1 && c.plain == nil {
		c.res, c.err = c.script.Run(ctx, x.client, c.keys, c.args...).Result()
	} else {
		x.pipeline(ctx, batch)
	}
	x.lastDone.Store(time.Now().UnixNano())
	for _, c := range batch {
		if c.err != nil && !isReply(c.err) {
			x.failed(c.err)
		}
		x.settle(c)
	}
}

// pipeline runs batch in one pipeline (EVALSHA for script calls), then,
// once, the calls that found their script missing (NOSCRIPT) as EVAL.
func (x *executor) pipeline(ctx context.Context, batch []*call) {
	cmds := make([]*redis.Cmd, len(batch))
	reads := make([]func() (any, error), len(batch))
	_, _ = x.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range batch {
			if c.plain != nil {
				reads[i] = c.plain(ctx, p)
			} else {
				cmds[i] = c.script.EvalSha(ctx, p, c.keys, c.args...)
			}
		}
		return nil
	})
	var missing []int
	for i, cmd := range cmds {
		if reads[i] != nil {
			batch[i].res, batch[i].err = reads[i]()
			continue
		}
		batch[i].res, batch[i].err = cmd.Result()
		if batch[i].err != nil && redis.HasErrorPrefix(batch[i].err, "NOSCRIPT") {
			missing = append(missing, i)
		}
	}
	if len(missing) == 0 {
		return
	}
	_, _ = x.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, i := range missing {
			c := batch[i]
			cmds[i] = c.script.Eval(ctx, p, c.keys, c.args...)
		}
		return nil
	})
	for _, i := range missing {
		batch[i].res, batch[i].err = cmds[i].Result()
	}
}

// settle hands c's result to its caller, or to c.abandon if the caller
// gave up.
func (x *executor) settle(c *call) {
	if c.state.CompareAndSwap(pending, finished) {
		close(c.done)
		return
	}
	close(c.done)
	if c.abandon != nil {
		c.abandon(c.res, c.err)
	}
}

// wait returns a channel closed once no flight runs and no call is
// queued. Calls submitted afterwards are not waited for.
func (x *executor) wait() <-chan struct{} {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.busy == 0 && x.queued == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	if x.idle == nil {
		x.idle = make(chan struct{})
	}
	return x.idle
}

// drain waits until no call runs or is queued, deadline passes, or no
// batch has finished for stall (Redis does not answer: the calls then
// finish in the background, within the client's own timeouts).
func (x *executor) drain(deadline <-chan struct{}, stall time.Duration) {
	idle := x.wait()
	t := time.NewTimer(stall)
	defer t.Stop()
	for {
		select {
		case <-idle:
			return
		case <-deadline:
			return
		case <-t.C:
			quiet := time.Since(time.Unix(0, x.lastDone.Load()))
			if quiet >= stall {
				return
			}
			t.Reset(stall - quiet)
		}
	}
}

// isReply reports whether err is an error reply from a live server
// (WRONGTYPE, NOSCRIPT, ...), as opposed to a transport failure.
func isReply(err error) bool {
	if err == nil {
		return false
	}
	var reply redis.Error
	return errors.As(err, &reply) && !redis.HasErrorPrefix(err, "CLUSTERDOWN") && !redis.HasErrorPrefix(err, "TRYAGAIN")
}

// isMoving reports whether err is a Cluster's answer that the slot is
// moving or the cluster is settling (TRYAGAIN: a script's keys are split
// between two masters mid-migration; ASK, MOVED: redirections go-redis
// did not follow inside a script call; CLUSTERDOWN): worth retrying
// after a pause.
func isMoving(err error) bool {
	if err == nil {
		return false
	}
	for _, p := range []string{"TRYAGAIN", "ASK", "MOVED", "CLUSTERDOWN"} {
		if redis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// unfollowable returns, for a redirection (MOVED, ASK) that the client
// cannot follow because it is not a *redis.ClusterClient, the error that
// says so; nil otherwise.
func (x *executor) unfollowable(err error) error {
	if _, ok := x.client.(*redis.ClusterClient); ok {
		return nil
	}
	if !redis.HasErrorPrefix(err, "MOVED") && !redis.HasErrorPrefix(err, "ASK") {
		return nil
	}
	return fmt.Errorf("the server is a node of a Redis Cluster and redirected the call, which a plain client cannot follow: use a *redis.ClusterClient: %w", err)
}

// doRetrying is do, retried with a growing pause (1ms to 50ms) while the
// Cluster answers that the slot is moving, until ctx or stop ends.
func (x *executor) doRetrying(ctx context.Context, stop <-chan struct{}, mk func() *call) (any, error) {
	pause := time.Millisecond
	for {
		res, err := x.do(ctx, stop, mk())
		if !isMoving(err) {
			return res, err
		}
		if err := x.unfollowable(err); err != nil {
			return nil, err
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-stop:
			t.Stop()
			return nil, err
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}
