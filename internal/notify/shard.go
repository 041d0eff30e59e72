package notify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// closeMarker is the payload of the PING that Hub.Close sends after the
// final UNSUBSCRIBE: its PONG tells the reader that Redis processed it.
const closeMarker = "keyedmutex-notify-close"

// writeTimeout bounds one SUBSCRIBE, UNSUBSCRIBE or PING (including a dial).
const writeTimeout = 5 * time.Second

// closeGrace bounds how long the hub's last Close waits for Redis to
// confirm the final UNSUBSCRIBE before it closes the connections (which
// drops the subscriptions anyway): a Redis that stalls does not hold
// Close up.
const closeGrace = time.Second

// errGone ends the reader of a cluster shard that no longer owns any
// subscribed channel.
var errGone = errors.New("notify: shard has no channels left")

// shard is one Pub/Sub connection and its reader goroutine: the only
// connection in classic mode, or one per cluster master in sharded mode.
type shard struct {
	h       *subscriber
	addr    string // master address; "" in classic mode
	sharded bool   // SSUBSCRIBE instead of SUBSCRIBE
	// node is the master's client in sharded mode. Only the reader
	// goroutine changes it (and reads it after the shard was created).
	node *redis.Client

	// ps is the current connection, replaced by the reader after a failure,
	// with subscriber.mu held so that the table and the connection change
	// together. Only the reader receives from it; anyone may send on it
	// through write.
	ps atomic.Pointer[redis.PubSub]

	sendMu   sync.Mutex // serializes writes; guards stopping
	stopping bool
}

func (sh *shard) newPubSub() *redis.PubSub {
	ctx := context.Background()
	if sh.sharded {
		return sh.node.SSubscribe(ctx) // no channels: no I/O yet
	}
	return sh.h.client.Subscribe(ctx)
}

func (sh *shard) subscribe(ctx context.Context, ps *redis.PubSub, channels ...string) error {
	if sh.sharded {
		return ps.SSubscribe(ctx, channels...)
	}
	return ps.Subscribe(ctx, channels...)
}

func (sh *shard) unsubscribe(ctx context.Context, ps *redis.PubSub, channels ...string) error {
	if sh.sharded {
		return ps.SUnsubscribe(ctx, channels...)
	}
	return ps.Unsubscribe(ctx, channels...)
}

// write runs one command on ps. A failed write closes ps, so that its reader
// notices and rebuilds the connection with every channel it should carry.
// Writes are skipped once the hub is stopping.
func (sh *shard) write(ps *redis.PubSub, f func(ctx context.Context) error) error {
	sh.sendMu.Lock()
	defer sh.sendMu.Unlock()
	if sh.stopping {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	err := f(ctx)
	if err != nil {
		ps.Close()
	}
	return err
}

// stop sends the final UNSUBSCRIBE and the close marker on ps.
func (sh *shard) stop(ps *redis.PubSub) {
	sh.sendMu.Lock()
	defer sh.sendMu.Unlock()
	sh.stopping = true
	ctx, cancel := context.WithTimeout(context.Background(), closeGrace)
	defer cancel()
	if err := sh.unsubscribe(ctx, ps); err != nil {
		ps.Close()
		return
	}
	if err := ps.Ping(ctx, closeMarker); err != nil {
		ps.Close()
	}
}

func (sh *shard) name() string {
	if sh.addr == "" {
		return "pub/sub connection"
	}
	return "sharded pub/sub connection to " + sh.addr
}

// run is the reader goroutine: it receives from the current connection and,
// when that fails, rebuilds it with backoff until the hub closes.
func (sh *shard) run() {
	h := sh.h
	defer h.wg.Done()
	ps := sh.ps.Load()
	fails := 0
	for {
		got, err := sh.receive(ps)
		ps.Close()
		if h.isDone() {
			return
		}
		if got {
			fails = 0
		} else {
			fails++
		}
		h.lost(fmt.Errorf("notify: %s lost: %w", sh.name(), err))
		for {
			if d := backoff(fails); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-h.done:
					t.Stop()
					return
				case <-t.C:
				}
			}
			ps, err = sh.rebuild()
			if err == nil {
				break
			}
			if errors.Is(err, errGone) || errors.Is(err, ErrClosed) {
				return
			}
			fails++
			h.report(fmt.Errorf("notify: %s: resubscribe: %w", sh.name(), err))
		}
	}
}

// backoff is the pause before the fails-th reconnect attempt in a row: none
// for the first, so a killed connection is replaced at once.
func backoff(fails int) time.Duration {
	if fails <= 1 {
		return 0
	}
	d := 10 * time.Millisecond << min(fails-2, 6)
	return min(d, 500*time.Millisecond)
}

// receive reads from ps until it fails or the close marker arrives. It
// reports whether anything was received.
func (sh *shard) receive(ps *redis.PubSub) (got bool, err error) {
	h := sh.h
	ctx := context.Background()
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, h.health)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged && !h.isDone() {
				pinged = true
				_ = sh.write(ps, func(ctx context.Context) error { return ps.Ping(ctx) })
				continue
			}
			var re redis.Error
			if errors.As(err, &re) && !isRedirect(err) {
				// A refusal (an ACL, say) that names no channel: fail
				// the subscriptions waiting for a confirmation.
				sh.failPending(err)
			}
			return got, err
		}
		got, pinged = true, false
		switch m := msg.(type) {
		case *redis.Message:
			h.deliver(sh, m.Channel, m.Payload)
		case *redis.Subscription:
			sh.confirm(m)
		case *redis.Pong:
			if m.Payload == closeMarker {
				return got, ErrClosed
			}
		}
	}
}

func isRedirect(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "MOVED ") || strings.HasPrefix(s, "ASK ")
}

// confirm advances the state of the channel that Redis confirmed a
// SUBSCRIBE or UNSUBSCRIBE of, and sends the next command if the wanted
// state changed meanwhile.
func (sh *shard) confirm(m *redis.Subscription) {
	h := sh.h
	h.mu.Lock()
	e := h.entries[m.Channel]
	if e == nil || e.sh != sh || h.closed {
		h.mu.Unlock()
		return
	}
	var next func(ctx context.Context, ps *redis.PubSub, channels ...string) error
	switch m.Kind {
	case "subscribe", "ssubscribe":
		if e.state != stSubscribing {
			break // a duplicate from an earlier connection's resubscription
		}
		e.state = stSubscribed
		if e.att != nil {
			close(e.att.done)
			e.att = nil
		}
		if e.wakeAll {
			e.wakeAll = false
			for _, s := range e.subs {
				s.wake()
			}
		}
		if len(e.subs) == 0 {
			e.state = stUnsubscribing
			next = sh.unsubscribe
		}
	case "unsubscribe", "sunsubscribe":
		if e.state == stSubscribed && sh.sharded {
			// Not asked for: the server dropped it, as Redis 7 does for
			// the shard channels of a slot that moved to another master.
			// Move the channel after its slot, and wake its waiters once
			// it is subscribed there (grants meanwhile reached nobody).
			e.state = stSubscribing
			e.wakeAll = true
			if e.att == nil {
				e.att = newAttempt()
			}
			h.wg.Add(1)
			go sh.follow(e)
			break
		}
		if e.state != stUnsubscribing {
			break
		}
		if len(e.subs) == 0 {
			delete(h.entries, e.name)
			break
		}
		e.state = stSubscribing
		next = sh.subscribe
	}
	ps := sh.ps.Load()
	h.mu.Unlock()
	if next != nil {
		_ = sh.write(ps, func(ctx context.Context) error { return next(ctx, ps, m.Channel) })
	}
}

// follow resubscribes e, which the server unsubscribed, on the master that
// owns its slot now (a fresh slot map tells), and marks it moved there.
func (sh *shard) follow(e *entry) {
	h := sh.h
	defer h.wg.Done()
	cc := h.client.(*redis.ClusterClient)
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	cc.ReloadState(ctx)
	node, err := cc.MasterForKey(ctx, e.name)
	h.mu.Lock()
	if h.closed || h.entries[e.name] != e || e.sh != sh || e.state != stSubscribing {
		h.mu.Unlock()
		return
	}
	to := sh
	if err == nil && node.Options().Addr != sh.addr {
		to = h.shardLocked(true, node)
		e.sh = to
	}
	ps := to.ps.Load()
	h.mu.Unlock()
	if err != nil {
		h.report(fmt.Errorf("notify: find the new shard of %q: %w", e.name, err))
	}
	_ = to.write(ps, func(ctx context.Context) error { return to.subscribe(ctx, ps, e.name) })
}

// failPending fails the waiting Subscribe calls of this shard's channels.
func (sh *shard) failPending(err error) {
	h := sh.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.entries {
		if e.sh == sh && e.att != nil {
			e.att.err = err
			close(e.att.done)
			e.att = nil
		}
	}
}

// rebuild replaces the shard's failed connection. In cluster mode it first
// looks up, with a fresh slot map, the master that now owns each of its
// channels. Every channel still wanted is then subscribed again (on its
// new shard if it moved), and each of its subscriptions is woken once
// Redis confirms. It returns the new connection, or errGone when the shard
// has no channels left in cluster mode.
func (sh *shard) rebuild() (*redis.PubSub, error) {
	h := sh.h
	routes := sh.routes()
	ps := sh.newPubSub()
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		ps.Close()
		return nil, ErrClosed
	}
	own, moved := sh.reassignLocked(routes)
	gone := sh.sharded && len(own) == 0
	if gone {
		delete(h.shards, sh.addr)
		ps.Close()
	} else {
		sh.ps.Store(ps)
	}
	h.mu.Unlock()

	for to, b := range moved {
		_ = to.write(b.ps, func(ctx context.Context) error { return to.subscribe(ctx, b.ps, b.names...) })
	}
	if gone {
		return nil, errGone
	}
	if len(own) == 0 {
		return ps, nil
	}
	if err := sh.write(ps, func(ctx context.Context) error { return sh.subscribe(ctx, ps, own...) }); err != nil {
		sh.failPending(err)
		return nil, err
	}
	return ps, nil
}

// routes reloads the cluster slot map and returns the master that owns
// each channel of the shard now (nothing in classic mode).
func (sh *shard) routes() map[string]*redis.Client {
	routes := map[string]*redis.Client{}
	if !sh.sharded {
		return routes
	}
	h := sh.h
	h.mu.Lock()
	var names []string
	for name, e := range h.entries {
		if e.sh == sh {
			names = append(names, name)
		}
	}
	h.mu.Unlock()
	cc := h.client.(*redis.ClusterClient)
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	cc.ReloadState(ctx)
	for _, name := range names {
		if node, err := cc.MasterForKey(ctx, name); err == nil {
			routes[name] = node
		}
	}
	return routes
}

// batch is the channels to subscribe on one connection.
type batch struct {
	ps    *redis.PubSub
	names []string
}

// reassignLocked marks every channel of the shard for resubscription (and
// a wake of its subscriptions at the confirmation), moves to other shards
// those whose slot another master owns now, and drops the lingering ones.
// It returns the channels to subscribe on this shard and, per other
// shard, the ones moved there. subscriber.mu is held.
func (sh *shard) reassignLocked(routes map[string]*redis.Client) (own []string, moved map[*shard]*batch) {
	h := sh.h
	moved = map[*shard]*batch{}
	for name, e := range h.entries {
		if e.sh != sh {
			continue
		}
		if len(e.subs) == 0 {
			// Its server-side subscription went with the connection,
			// and nobody waits for its confirmation (a lingering one).
			if e.idle != nil {
				e.idle.Stop()
				e.idle = nil
			}
			delete(h.entries, name)
			continue
		}
		e.state = stSubscribing
		e.wakeAll = true
		if e.att == nil {
			e.att = newAttempt()
		}
		node := routes[name]
		if node != nil && node.Options().Addr != sh.addr {
			to := h.shardLocked(true, node)
			e.sh = to
			b := moved[to]
			if b == nil {
				b = &batch{ps: to.ps.Load()}
				moved[to] = b
			}
			b.names = append(b.names, name)
			continue
		}
		if node != nil {
			sh.node = node
		}
		own = append(own, name)
	}
	return own, moved
}
