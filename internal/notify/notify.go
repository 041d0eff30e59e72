package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

// ErrClosed is returned by [Hub.Subscribe] after the Hub was closed. It
// wraps [mutex.ErrClosed], the one closed error of the module.
var ErrClosed = fmt.Errorf("notify: %w", mutex.ErrClosed)

// Linger is how long a channel stays subscribed after its last
// subscription closed, so that a waiter that comes back soon (a hot key)
// joins it with no Redis command. A message for no subscription that
// arrives meanwhile goes to the orphan handler.
const Linger = time.Second

// DefaultHealthCheckInterval is the default of [WithHealthCheckInterval].
const DefaultHealthCheckInterval = 3 * time.Second

// An Option configures the Hub handle that [Open] returns; Open returns
// the error of an invalid one.
type Option func(*config) error

type config struct {
	logger    *slog.Logger // nil: slog.Default() at the time of each report
	health    time.Duration
	orphan    func(channel, id, payload string)
	reconnect func(cause error)
}

// WithLogger sets the logger that receives this handle's reports:
// connection losses, reconnect failures and the fallback to classic
// pub/sub on a cluster without sharded pub/sub, at level Warn. Every open
// handle of a shared hub gets the hub's reports; a closed one gets none.
// The default is [slog.Default], looked up at each report.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("notify: WithLogger(nil): pass slog.New(slog.DiscardHandler) to discard reports")
		}
		c.logger = l
		return nil
	}
}

// WithHealthCheckInterval sets how long a connection may stay silent before
// the hub sends a PING; a connection that stays silent for another interval
// is treated as lost. It applies when the hub is created, by the first
// Open of a client. d must be positive. The default is 3s.
func WithHealthCheckInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("notify: WithHealthCheckInterval(%v): the interval must be positive", d)
		}
		c.health = d
		return nil
	}
}

// WithOrphanHandler sets the function told about a message addressed to
// an id that no subscription of the channel has (a waiter that left
// before its message arrived). It is called from the hub's reader
// goroutine, for channels this handle subscribed, and must not block. The
// default ignores such messages.
func WithOrphanHandler(f func(channel, id, payload string)) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("notify: WithOrphanHandler(nil)")
		}
		c.orphan = f
		return nil
	}
}

// WithReconnectHandler sets the function told, once per handle, each time
// a Pub/Sub connection of the hub was lost (with the cause); the hub then
// rebuilds it and wakes its waiters. It is called from the hub's reader
// goroutine and must not block. The default is none.
func WithReconnectHandler(f func(cause error)) Option {
	return func(c *config) error {
		if f == nil {
			return errors.New("notify: WithReconnectHandler(nil)")
		}
		c.reconnect = f
		return nil
	}
}

// errRing refuses a *redis.Ring: its Pub/Sub picks a shard by the first
// channel of a Subscribe call, so one connection cannot carry channels of
// several shards (and a Subscribe without channels panics).
var errRing = errors.New("notify: a *redis.Ring is not supported (one Pub/Sub connection cannot follow the shard of each channel): use a *redis.Client per server or a *redis.ClusterClient")

// registry maps clients to their shared subscribers. Only Open and the
// last Close of a client's handles take its lock.
var registry struct {
	mu   sync.Mutex // guards subs
	subs map[redis.UniversalClient]*subscriber
}

// Hub is one user's handle on the shared subscriber of a Redis client: its
// Subscribe, Join and Close, its logger and its orphan handler. Its
// methods are safe for concurrent use. Get one with [Open]; the zero
// value is not usable.
type Hub struct {
	h      *subscriber
	cfg    config
	closed atomic.Bool
}

// Values of subscriber.sharded.
const (
	shardUnknown int32 = iota
	shardClassic
	shardSharded
)

// subscriber is the state shared by every handle of one client (the
// "hub" of the docs). Each lock guards the fields of one type:
// subscriber.mu the channel table (and the entries in it, which belong to
// the table as a singleflight call belongs to its Group), subscriber.umu
// the list of handles, shard.sendMu a connection's writes and
// Subscription.mu a subscription's messages. Where two are held,
// subscriber.mu is taken first. No lock is shared by two clients.
type subscriber struct {
	client redis.UniversalClient
	health time.Duration
	done   chan struct{} // closed when the last handle is closed
	wg     sync.WaitGroup

	// sharded caches the answer of isSharded: shardUnknown until a
	// detection succeeded.
	sharded atomic.Int32

	umu      sync.Mutex // guards users and fellBack
	users    []*Hub     // open handles
	fellBack bool       // the fallback to classic pub/sub was reported

	mu      sync.Mutex // guards closed, entries, shards and the fields of every entry
	closed  bool
	entries map[string]*entry
	shards  map[string]*shard
}

// Open returns a handle on the Hub for client, shared by every caller in
// the process that passes the same client value: one Pub/Sub connection
// (one per shard master on a cluster) however many handles and
// subscriptions. Each Open needs one Close. Open does no I/O: the
// connections are opened on first Subscribe.
func Open(client redis.UniversalClient, opts ...Option) (*Hub, error) {
	if _, ok := client.(*redis.Ring); ok {
		return nil, errRing
	}
	cfg := config{health: DefaultHealthCheckInterval}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	registry.mu.Lock()
	defer registry.mu.Unlock()
	h := registry.subs[client]
	if h == nil {
		h = &subscriber{
			client:  client,
			health:  cfg.health,
			done:    make(chan struct{}),
			entries: make(map[string]*entry),
			shards:  make(map[string]*shard),
		}
		if registry.subs == nil {
			registry.subs = make(map[redis.UniversalClient]*subscriber)
		}
		registry.subs[client] = h
	}
	u := &Hub{h: h, cfg: cfg}
	h.umu.Lock()
	h.users = append(h.users, u)
	h.umu.Unlock()
	return u, nil
}

// Sharded reports whether messages must be published with SPUBLISH (true
// for a *redis.ClusterClient whose servers support sharded pub/sub, Redis
// 7+) or PUBLISH. The answer is cached after the first successful call.
func (u *Hub) Sharded(ctx context.Context) (bool, error) { return u.h.isSharded(ctx) }

func (h *subscriber) isSharded(ctx context.Context) (bool, error) {
	switch h.sharded.Load() {
	case shardClassic:
		return false, nil
	case shardSharded:
		return true, nil
	}
	sharded := false
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
	if sharded {
		h.sharded.Store(shardSharded)
	} else {
		h.sharded.Store(shardClassic)
	}
	h.umu.Lock()
	report := ok && !sharded && !h.fellBack
	h.fellBack = h.fellBack || report
	h.umu.Unlock()
	if report {
		h.report(errors.New("notify: the cluster does not support sharded pub/sub (SSUBSCRIBE, Redis 7+); falling back to classic SUBSCRIBE, which every node broadcasts"))
	}
	return sharded, nil
}

// entry is the hub's state for one channel. All fields are guarded by subscriber.mu.
type entry struct {
	name  string
	sh    *shard
	owner *Hub                     // the handle that told about orphans
	subs  map[string]*Subscription // by id
	state int
	// att is the confirmation that new subscribers wait for; nil while the
	// server-side subscription is confirmed and current.
	att *attempt
	// wakeAll asks for a wake of every subscription at the next
	// confirmation (set when resubscribing after a reconnect).
	wakeAll bool
	// idle ends the linger: set while no subscription is open and the
	// channel is still subscribed.
	idle *time.Timer
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

// Subscribe subscribes to one exact channel name (never a pattern) for the
// messages addressed to id, and returns once Redis has confirmed the
// subscription, so a message published after it returns is delivered.
// Subscriptions are reference-counted per channel: the first sends
// SUBSCRIBE (SSUBSCRIBE on a cluster); the channel is unsubscribed
// [Linger] after the last one closed. id must be non-empty, free of
// spaces and not in use on channel. If ctx ends first it returns an
// error satisfying errors.Is(err, ctx.Err()). After Close it returns an
// error satisfying errors.Is(err, ErrClosed).
func (u *Hub) Subscribe(ctx context.Context, channel, id string) (*Subscription, error) {
	if err := checkID(id); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("notify: subscribe %q: %w", channel, err)
	}
	h := u.h
	if h.isDone() {
		return nil, fmt.Errorf("notify: subscribe %q: %w", channel, ErrClosed)
	}
	node, sharded, err := h.route(ctx, channel)
	if err != nil {
		return nil, err
	}
	s, att, send, ps, err := h.register(u, channel, id, sharded, node)
	if err != nil || att == nil {
		return s, err
	}
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

// register adds the subscription of u for id to channel's entry: it
// returns att nil if the channel is subscribed and confirmed already,
// else the confirmation to wait for, and the shard and connection to send
// a SUBSCRIBE on if this call must send it. It holds subscriber.mu, released by
// a deferred call so that a panic of a callee (the client's) cannot leave
// the hub locked.
func (h *subscriber) register(u *Hub, channel, id string, sharded bool, node *redis.Client) (s *Subscription, att *attempt, send *shard, ps *redis.PubSub, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || u.closed.Load() {
		return nil, nil, nil, nil, fmt.Errorf("notify: subscribe %q: %w", channel, ErrClosed)
	}
	e := h.entries[channel]
	if e == nil {
		e = &entry{name: channel, sh: h.shardLocked(sharded, node), subs: map[string]*Subscription{}}
		h.entries[channel] = e
	}
	if s, err = e.add(u, id); err != nil {
		return nil, nil, nil, nil, err
	}
	switch {
	case e.state == stSubscribed && e.att == nil:
		return s, nil, nil, nil, nil
	case e.state == stNone:
		e.state = stSubscribing
		send, ps = e.sh, e.sh.ps.Load()
		fallthrough
	default:
		if e.att == nil {
			e.att = newAttempt()
		}
	}
	return s, e.att, send, ps, nil
}

// route finds the shard master that owns channel on a cluster with
// sharded pub/sub (node nil otherwise).
func (h *subscriber) route(ctx context.Context, channel string) (node *redis.Client, sharded bool, err error) {
	sharded, err = h.isSharded(ctx)
	if err != nil || !sharded {
		return nil, sharded, err
	}
	node, err = h.client.(*redis.ClusterClient).MasterForKey(ctx, channel)
	if err != nil {
		if ctx.Err() != nil {
			return nil, true, fmt.Errorf("notify: subscribe %q: %w (%w)", channel, ctx.Err(), err)
		}
		return nil, true, fmt.Errorf("notify: subscribe %q: find the shard: %w", channel, err)
	}
	return node, true, nil
}

func checkID(id string) error {
	if id == "" || strings.ContainsAny(id, " ,") {
		return fmt.Errorf("notify: subscription id %q: want a non-empty id without spaces or commas", id)
	}
	return nil
}

// add registers a subscription of u for id. subscriber.mu is held.
func (e *entry) add(u *Hub, id string) (*Subscription, error) {
	if e.subs[id] != nil {
		return nil, fmt.Errorf("notify: subscribe %q: id %q is already subscribed", e.name, id)
	}
	if e.idle != nil {
		e.idle.Stop()
		e.idle = nil
	}
	if e.owner == nil || e.owner.closed.Load() {
		e.owner = u
	}
	s := &Subscription{h: u.h, e: e, id: id, c: make(chan struct{}, 1)}
	e.subs[id] = s
	return s, nil
}

// Join returns a new subscription of channel for id, with no Redis
// command, if the hub already holds a confirmed subscription to channel
// (open, or lingering); otherwise, or if id is in use, nil. A waiter
// that joins can act at once, knowing no later message will be missed.
func (u *Hub) Join(channel, id string) *Subscription {
	if checkID(id) != nil {
		return nil
	}
	h := u.h
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.entries[channel]
	if h.closed || u.closed.Load() || e == nil || e.state != stSubscribed || e.att != nil {
		return nil
	}
	s, err := e.add(u, id)
	if err != nil {
		return nil
	}
	return s
}

// testHookSent, when set by a test, runs after Subscribe sent a SUBSCRIBE.
var testHookSent func(channel string)

// shardLocked returns the shard for node (or the single classic one),
// creating it and starting its reader if needed. subscriber.mu must be held.
func (h *subscriber) shardLocked(sharded bool, node *redis.Client) *shard {
	addr := ""
	if sharded {
		addr = node.Options().Addr
	}
	sh := h.shards[addr]
	if sh == nil {
		sh = &shard{h: h, addr: addr, node: node, sharded: sharded}
		sh.ps.Store(sh.newPubSub())
		h.shards[addr] = sh
		h.wg.Add(1)
		go sh.run()
	}
	return sh
}

// Close closes this handle: it gets no more reports. The last Close of a
// client's hub also wakes every subscription, fails the pending Subscribe
// calls with ErrClosed, unsubscribes, closes the Pub/Sub connections and
// waits for the reader goroutines to end. Close is idempotent and returns
// nil.
func (u *Hub) Close() error {
	if !u.closed.CompareAndSwap(false, true) {
		return nil
	}
	h := u.h
	// registry.mu is held across the removal so that an Open of the same
	// client finds either this hub with u's peers or no hub at all.
	registry.mu.Lock()
	h.umu.Lock()
	for i, o := range h.users {
		if o == u {
			h.users = append(h.users[:i:i], h.users[i+1:]...)
			break
		}
	}
	last := len(h.users) == 0
	h.umu.Unlock()
	if last && registry.subs[h.client] == h {
		delete(registry.subs, h.client)
	}
	registry.mu.Unlock()
	if last {
		h.close()
	}
	return nil
}

// close ends the shared hub.
func (h *subscriber) close() {
	h.mu.Lock()
	h.closed = true
	var shards []*shard
	var pss []*redis.PubSub
	for _, sh := range h.shards {
		shards = append(shards, sh)
		pss = append(pss, sh.ps.Load())
	}
	for _, e := range h.entries {
		if e.idle != nil {
			e.idle.Stop()
			e.idle = nil
		}
		for _, s := range e.subs {
			s.wake()
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
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case <-ended:
	case <-t.C:
		for _, ps := range pss {
			ps.Close()
		}
		<-ended
	}
}

func (h *subscriber) isDone() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// report tells every open handle's logger about err.
func (h *subscriber) report(err error) {
	for _, u := range h.openUsers() {
		u.logger().Warn("keyedmutex: pub/sub", "err", err)
	}
}

// lost tells every open handle that a connection was lost, with cause.
func (h *subscriber) lost(cause error) {
	for _, u := range h.openUsers() {
		u.logger().Warn("keyedmutex: pub/sub", "err", cause)
		if u.cfg.reconnect != nil {
			u.cfg.reconnect(cause)
		}
	}
}

func (h *subscriber) openUsers() []*Hub {
	h.umu.Lock()
	defer h.umu.Unlock()
	open := make([]*Hub, 0, len(h.users))
	for _, u := range h.users {
		if !u.closed.Load() { // a Close under way gets no more reports
			open = append(open, u)
		}
	}
	return open
}

func (u *Hub) logger() *slog.Logger { return lockutil.Logger(u.cfg.logger) }

// Subscription is the interest of one id in one channel, from
// [Hub.Subscribe] or [Hub.Join]. Its methods are safe for concurrent use.
// A message published on the channel after Subscribe returned happens
// before the wake it causes is received from C.
type Subscription struct {
	h  *subscriber
	e  *entry
	id string
	c  chan struct{}

	mu     sync.Mutex // guards closed and msgs; taken after h.mu where both are
	closed bool
	msgs   []string // payloads addressed to id, oldest first
}

// C receives wakes (capacity 1; sends never block the reader). A wake
// means one of:
//   - a message addressed to the subscription's id arrived (take it with
//     Message);
//   - the connection dropped and the hub has resubscribed and Redis
//     confirmed, so messages may have been lost meanwhile: the waiter
//     should check what it waits for;
//   - the hub was closed.
func (s *Subscription) C() <-chan struct{} { return s.c }

// Message takes the oldest message addressed to the subscription that was
// not taken yet: its payload, the text after the id and one space.
func (s *Subscription) Message() (payload string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.msgs) == 0 {
		return "", false
	}
	payload = s.msgs[0]
	s.msgs = s.msgs[1:]
	return payload, true
}

// Close ends the subscription; it is idempotent. Messages it did not
// take, and messages for its id that arrive later, go to the orphan
// handler. The channel is unsubscribed Linger after its last
// subscription closed.
func (s *Subscription) Close() {
	h := s.h
	h.mu.Lock()
	unread, ok := s.close()
	if !ok {
		h.mu.Unlock()
		return
	}
	e := s.e
	delete(e.subs, s.id)
	owner := e.owner
	if !h.closed && len(e.subs) == 0 && e.state == stSubscribed {
		e.idle = time.AfterFunc(Linger, func() { h.expire(e) })
	}
	// A channel still subscribing is unsubscribed by the reader when the
	// confirmation arrives.
	h.mu.Unlock()
	for _, payload := range unread {
		owner.orphan(e.name, s.id, payload)
	}
}

// close marks s closed and returns the messages it did not take; ok is
// false if it was closed already.
func (s *Subscription) close() (unread []string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	s.closed = true
	unread, s.msgs = s.msgs, nil
	return unread, true
}

// push queues a message for s and wakes it. subscriber.mu is held, so s is open
// (Close removes it from its entry under subscriber.mu before it returns).
func (s *Subscription) push(payload string) {
	s.mu.Lock()
	s.msgs = append(s.msgs, payload)
	s.mu.Unlock()
	s.wake()
}

// orphan hands a message nobody will take to u's orphan handler.
func (u *Hub) orphan(channel, id, payload string) {
	if u != nil && u.cfg.orphan != nil && !u.closed.Load() {
		u.cfg.orphan(channel, id, payload)
	}
}

// expire unsubscribes e at the end of its linger, unless a subscription
// came back meanwhile.
func (h *subscriber) expire(e *entry) {
	h.mu.Lock()
	if h.closed || e.idle == nil || len(e.subs) > 0 || e.state != stSubscribed {
		h.mu.Unlock()
		return
	}
	e.idle = nil
	e.state = stUnsubscribing
	sh, ps := e.sh, e.sh.ps.Load()
	h.mu.Unlock()
	_ = sh.write(ps, func(ctx context.Context) error { return sh.unsubscribe(ctx, ps, e.name) })
}

// wake sends a wake to s unless one is pending.
func (s *Subscription) wake() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

// deliver routes a message on channel to the subscription its id names,
// or to the orphan handler. subscriber.mu must not be held.
func (h *subscriber) deliver(sh *shard, channel, msg string) {
	id, payload, _ := strings.Cut(msg, " ")
	if strings.Contains(id, ",") {
		// One message for several ids of the channel ("a,b,c payload"):
		// each gets the payload, as if sent to it alone.
		for _, one := range strings.Split(id, ",") {
			if one != "" {
				h.deliver(sh, channel, one+" "+payload)
			}
		}
		return
	}
	h.mu.Lock()
	e := h.entries[channel]
	if e == nil || e.sh != sh {
		h.mu.Unlock()
		return
	}
	if s := e.subs[id]; s != nil {
		s.push(payload)
		h.mu.Unlock()
		return
	}
	owner := e.owner
	h.mu.Unlock()
	owner.orphan(channel, id, payload)
}
