package notify

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrClosed is returned by [Hub.Subscribe] after the hub was closed.
var ErrClosed = errors.New("notify: hub closed")

// Option configures a [Hub].
type Option func(*config)

type config struct {
	onError func(error)
	health  time.Duration
}

// WithErrorHandler sets a function that is told about connection losses,
// reconnect failures and the fallback to classic pub/sub on a cluster
// without sharded pub/sub. It is called from the hub's goroutines and must
// not block. The default discards the errors.
func WithErrorHandler(f func(error)) Option {
	return func(c *config) { c.onError = f }
}

// WithHealthCheckInterval sets how long a connection may stay silent before
// the hub sends a PING; a connection that stays silent for another interval
// is treated as lost. Values <= 0 select the default. The default is 3s.
func WithHealthCheckInterval(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.health = d
		}
	}
}

// registry maps clients to their shared hubs.
var registry struct {
	mu   sync.Mutex // guards m and every Hub.refs
	hubs map[redis.UniversalClient]*Hub
}

// Hub is the shared subscriber of one Redis client. Its methods are safe for
// concurrent use. Get one with [Open]; the zero value is not usable, and a
// Hub must not be copied.
type Hub struct {
	client redis.UniversalClient
	cfg    config
	done   chan struct{} // closed when the last reference is closed
	wg     sync.WaitGroup

	refs int // guarded by registry.mu

	smu        sync.Mutex // guards the three fields below
	shardKnown bool
	sharded    bool
	fellBack   bool

	mu      sync.Mutex // guards closed, entries, shards and every entry, shard.ps and Subscription.closed
	closed  bool
	entries map[string]*entry
	shards  map[string]*shard
}

// Open returns the Hub for client, shared by every caller in the process
// that passes the same client value (reference-counted; each Open needs one
// Close). Options apply when the Hub is created, by the first Open of a
// client; later Opens share it as it is. Open does no I/O: the Pub/Sub
// connections are opened on first Subscribe.
func Open(client redis.UniversalClient, opts ...Option) *Hub {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	if h := registry.hubs[client]; h != nil {
		h.refs++
		return h
	}
	cfg := config{onError: func(error) {}, health: 3 * time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.onError == nil {
		cfg.onError = func(error) {}
	}
	h := &Hub{
		client:  client,
		cfg:     cfg,
		done:    make(chan struct{}),
		refs:    1,
		entries: make(map[string]*entry),
		shards:  make(map[string]*shard),
	}
	if registry.hubs == nil {
		registry.hubs = make(map[redis.UniversalClient]*Hub)
	}
	registry.hubs[client] = h
	return h
}

// Sharded reports whether releases must be published with SPUBLISH (true
// for a *redis.ClusterClient whose servers support sharded pub/sub, Redis
// 7+) or PUBLISH. The answer is cached after the first successful call.
func (h *Hub) Sharded(ctx context.Context) (bool, error) {
	h.smu.Lock()
	known, sharded := h.shardKnown, h.sharded
	h.smu.Unlock()
	if known {
		return sharded, nil
	}
	cc, ok := h.client.(*redis.ClusterClient)
	if ok {
		res, err := cc.Do(ctx, "COMMAND", "INFO", "SSUBSCRIBE").Slice()
		if err != nil {
			if ctx.Err() != nil {
				return false, fmt.Errorf("notify: detect sharded pub/sub: %w (%w)", ctx.Err(), err)
			}
			return false, fmt.Errorf("notify: detect sharded pub/sub: %w", err)
		}
		sharded = len(res) == 1 && res[0] != nil
	}
	h.smu.Lock()
	h.shardKnown, h.sharded = true, sharded
	report := ok && !sharded && !h.fellBack
	h.fellBack = h.fellBack || report
	h.smu.Unlock()
	if report {
		h.cfg.onError(errors.New("notify: the cluster does not support sharded pub/sub (SSUBSCRIBE, Redis 7+); falling back to classic SUBSCRIBE, which every node broadcasts"))
	}
	return sharded, nil
}

// entry is the hub's state for one channel. All fields are guarded by Hub.mu.
type entry struct {
	name  string
	sh    *shard
	subs  []*Subscription // oldest first
	state int
	// att is the confirmation that new subscribers wait for; nil while the
	// server-side subscription is confirmed and current.
	att *attempt
	// wakeAll asks for a wake of every subscription at the next
	// confirmation (set when resubscribing after a reconnect).
	wakeAll bool
}

// Server-side states of a channel. At most one SUBSCRIBE or UNSUBSCRIBE is
// in flight per channel, so confirmations are never ambiguous.
const (
	stNone = iota
	stSubscribing
	stSubscribed
	stUnsubscribing
)

// attempt is one wait for a confirmation: done is closed when Redis confirmed
// (err nil) or the attempt failed (err set before close).
type attempt struct {
	done chan struct{}
	err  error
}

func newAttempt() *attempt { return &attempt{done: make(chan struct{})} }

// Subscribe subscribes to one exact channel name (never a pattern) and
// returns once Redis has confirmed the subscription. Subscriptions are
// reference-counted per channel: only the first sends SUBSCRIBE (SSUBSCRIBE
// on a cluster), the last Close sends the UNSUBSCRIBE. If ctx ends first it
// returns an error satisfying errors.Is(err, ctx.Err()) and leaves nothing
// subscribed. If the connection cannot be established it returns that
// error. After Close it returns an error satisfying errors.Is(err, ErrClosed).
func (h *Hub) Subscribe(ctx context.Context, channel string) (*Subscription, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("notify: subscribe %q: %w", channel, err)
	}
	if h.isDone() {
		return nil, fmt.Errorf("notify: subscribe %q: %w", channel, ErrClosed)
	}
	sharded, err := h.Sharded(ctx)
	if err != nil {
		return nil, err
	}
	var node *redis.Client
	if sharded {
		node, err = h.client.(*redis.ClusterClient).MasterForKey(ctx, channel)
		if err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("notify: subscribe %q: %w (%w)", channel, ctx.Err(), err)
			}
			return nil, fmt.Errorf("notify: subscribe %q: find the shard: %w", channel, err)
		}
	}

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, fmt.Errorf("notify: subscribe %q: %w", channel, ErrClosed)
	}
	e := h.entries[channel]
	if e == nil {
		e = &entry{name: channel, sh: h.shardLocked(sharded, node)}
		h.entries[channel] = e
	}
	s := &Subscription{h: h, e: e, c: make(chan struct{}, 1)}
	e.subs = append(e.subs, s)
	var (
		send *shard
		ps   *redis.PubSub
	)
	switch {
	case e.state == stSubscribed && e.att == nil:
		h.mu.Unlock()
		return s, nil
	case e.state == stNone:
		e.state = stSubscribing
		send, ps = e.sh, e.sh.ps
		fallthrough
	default:
		if e.att == nil {
			e.att = newAttempt()
		}
	}
	att := e.att
	h.mu.Unlock()

	if send != nil {
		_ = send.write(ps, func(ctx context.Context) error { return send.subscribe(ctx, ps, channel) })
		if testHookSent != nil {
			testHookSent(channel)
		}
	}
	select {
	case <-att.done:
	case <-ctx.Done():
	}
	// When both happened, ctx wins: the caller asked to stop.
	if err := ctx.Err(); err != nil {
		s.Close()
		return nil, fmt.Errorf("notify: subscribe %q: %w", channel, err)
	}
	if att.err != nil {
		s.Close()
		return nil, fmt.Errorf("notify: subscribe %q: %w", channel, att.err)
	}
	return s, nil
}

// Join returns a new subscription to channel, with no Redis command, if
// the hub already holds a confirmed subscription to it; otherwise nil.
// It lets a waiter that arrives while others of its process already wait
// on a key subscribe first and try the lock second, which costs one
// acquire attempt instead of two and still cannot miss a release.
func (h *Hub) Join(channel string) *Subscription {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entries[channel]
	if h.closed || e == nil || e.state != stSubscribed || e.att != nil {
		return nil
	}
	s := &Subscription{h: h, e: e, c: make(chan struct{}, 1)}
	e.subs = append(e.subs, s)
	return s
}

// testHookSent, when set by a test, runs after Subscribe sent a SUBSCRIBE.
var testHookSent func(channel string)

// shardLocked returns the shard for node (or the single classic one),
// creating it and starting its reader if needed. h.mu must be held.
func (h *Hub) shardLocked(sharded bool, node *redis.Client) *shard {
	addr := ""
	if sharded {
		addr = node.Options().Addr
	}
	sh := h.shards[addr]
	if sh == nil {
		sh = &shard{h: h, addr: addr, node: node, sharded: sharded}
		sh.ps = sh.newPubSub()
		h.shards[addr] = sh
		h.wg.Add(1)
		go sh.run()
	}
	return sh
}

// Close drops one reference; the last wakes every subscription, fails the
// pending Subscribe calls with ErrClosed, unsubscribes, closes the Pub/Sub
// connections and waits for the reader goroutines to end. It returns nil.
func (h *Hub) Close() error {
	registry.mu.Lock()
	if h.refs <= 0 {
		registry.mu.Unlock()
		return nil
	}
	h.refs--
	if h.refs > 0 {
		registry.mu.Unlock()
		return nil
	}
	if registry.hubs[h.client] == h {
		delete(registry.hubs, h.client)
	}
	registry.mu.Unlock()

	h.mu.Lock()
	h.closed = true
	var shards []*shard
	var pss []*redis.PubSub
	for _, sh := range h.shards {
		shards = append(shards, sh)
		pss = append(pss, sh.ps)
	}
	for _, e := range h.entries {
		for _, s := range e.subs {
			wake(s)
		}
		if e.att != nil {
			e.att.err = ErrClosed
			close(e.att.done)
			e.att = nil
		}
	}
	h.mu.Unlock()
	close(h.done)

	// Unsubscribe everything, then ask for a marker PONG: once the reader
	// sees it, Redis has processed the UNSUBSCRIBE, and the reader closes
	// the connection and ends.
	for i, sh := range shards {
		sh.stop(pss[i])
	}
	ended := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(ended)
	}()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		for _, ps := range pss {
			ps.Close()
		}
		<-ended
	}
	return nil
}

func (h *Hub) isDone() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

func (h *Hub) report(err error) {
	if !h.isDone() {
		h.cfg.onError(err)
	}
}

// Subscription is one subscriber of one channel, from [Hub.Subscribe]. Its
// methods are safe for concurrent use. A message published on the channel
// after Subscribe returned happens before the wake it causes is received
// from C.
type Subscription struct {
	h *Hub
	e *entry
	c chan struct{}

	closed bool // guarded by h.mu
}

// C receives wakes (capacity 1; sends never block the reader):
//   - a message on the channel wakes ONE subscription of that channel in this
//     hub: the oldest one that has no wake pending (if all have one pending,
//     the message is dropped);
//   - after the connection dropped and the hub has resubscribed and Redis
//     confirmed, every subscription of that connection gets a wake, so
//     waiters retry;
//   - Hub.Close (last reference) wakes every subscription.
func (s *Subscription) C() <-chan struct{} { return s.c }

// Pass hands one wake to another subscription of the same channel (the
// oldest without one pending), for a waiter that took a wake from C but
// gives up without retrying.
func (s *Subscription) Pass() {
	h := s.h
	h.mu.Lock()
	wakeOne(s.e, s)
	h.mu.Unlock()
}

// Close ends the subscription; it is idempotent. If a wake is pending in C
// (never received), it is passed on as by Pass. The last Close of a channel
// unsubscribes it.
func (s *Subscription) Close() {
	h := s.h
	h.mu.Lock()
	if s.closed {
		h.mu.Unlock()
		return
	}
	s.closed = true
	e := s.e
	for i, o := range e.subs {
		if o == s {
			e.subs = append(e.subs[:i:i], e.subs[i+1:]...)
			break
		}
	}
	select {
	case <-s.c:
		wakeOne(e, nil)
	default:
	}
	if h.closed || len(e.subs) > 0 || e.state != stSubscribed {
		// A channel still subscribing is unsubscribed by the reader when
		// the confirmation arrives.
		h.mu.Unlock()
		return
	}
	e.state = stUnsubscribing
	sh, ps := e.sh, e.sh.ps
	h.mu.Unlock()
	_ = sh.write(ps, func(ctx context.Context) error { return sh.unsubscribe(ctx, ps, e.name) })
}

// wake sends a wake to s unless one is pending. h.mu must be held.
func wake(s *Subscription) bool {
	select {
	case s.c <- struct{}{}:
		return true
	default:
		return false
	}
}

// wakeOne wakes the oldest subscription of e, other than except, that has
// no wake pending. h.mu must be held (all sends to Subscription.c happen
// under it).
func wakeOne(e *entry, except *Subscription) {
	for _, s := range e.subs {
		if s != except && wake(s) {
			return
		}
	}
}
