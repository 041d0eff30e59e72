// Package notify shares one Redis Pub/Sub subscriber per client among every
// waiter of the process and routes each message to the one waiter it names.
//
// The hub of a client (one per client value, shared by every [Open] of
// it) owns one *redis.PubSub connection and one reader goroutine; on a
// Redis Cluster, where it uses sharded pub/sub (SSUBSCRIBE, SPUBLISH), it
// owns one of each per shard master that owns subscribed channels. Only
// the reader receives from a connection, as go-redis requires. Each Open
// returns a [Hub] handle with its own logger and orphan handler.
//
// [Hub.Subscribe] subscribes an id to a channel and returns only once
// Redis has confirmed the channel's subscription, so a message published
// after it returns is delivered. A message's payload starts with the id
// it is for and a space; the reader hands the rest to that id's
// [Subscription] (kept in order, so nothing is lost however slow the
// waiter) and wakes it with a non-blocking send, so the reader never
// waits for a waiter. A message for an id that has no subscription (a
// waiter that left) goes to the orphan handler of the handle that owns
// the channel. A message may name several ids, separated by commas
// ("a,b,c payload"): each of them gets the payload. Channel names are exact names: patterns (PSUBSCRIBE) are
// never used, so a name containing * ? or [ matches only itself.
//
// Subscriptions are reference-counted per channel: the first sends
// SUBSCRIBE, and the channel is unsubscribed [Linger] after the last one
// closed, so that a waiter that comes back soon joins it with no command
// ([Hub.Join]). Pub/sub is at-most-once; messages are lost only when a
// connection drops, so after a reconnect, once Redis has confirmed the
// resubscription, every subscription of that connection is woken, and
// waiters re-check what they wait for.
//
// In Cluster mode a subscription lives on the master that owns the channel's
// hash slot. When that connection fails (a killed master, a failover) or the
// server answers MOVED, the hub reloads the slot map and resubscribes every
// channel on its current owner, then wakes the waiters.
package notify
