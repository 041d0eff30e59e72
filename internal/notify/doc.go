// Package notify shares one Redis Pub/Sub subscriber per client among every
// waiter of the process and fans release notices out to them, per channel.
//
// A [Hub] (one per client, from [Open]) owns one *redis.PubSub connection
// and one reader goroutine; on a Redis Cluster, where it uses sharded
// pub/sub (SSUBSCRIBE, SPUBLISH), it owns one of each per shard master that
// owns subscribed channels. Only the reader receives from a connection, as
// go-redis requires.
//
// [Hub.Subscribe] is reference-counted per channel: the first subscription
// of a channel sends SUBSCRIBE, the last [Subscription.Close] sends
// UNSUBSCRIBE, and Subscribe returns only once Redis has confirmed the
// subscription, so a message published after it returns is delivered.
// Channel names are exact names: patterns (PSUBSCRIBE) are never used, so a
// name containing * ? or [ matches only itself.
//
// Delivery is wake-one: a message wakes the oldest subscription of the
// channel that has no wake pending, through a buffered channel of capacity
// one, so the reader never blocks on a slow waiter. A waiter that gives up
// after taking a wake hands it on with [Subscription.Pass]. Pub/sub is
// at-most-once; messages are lost only when a connection drops, so after a
// reconnect, once Redis has confirmed the resubscription, every subscription
// of that connection is woken, and waiters re-check what they wait for.
//
// In Cluster mode a subscription lives on the master that owns the channel's
// hash slot. When that connection fails (a killed master, a failover) or the
// server answers MOVED, the hub reloads the slot map and resubscribes every
// channel on its current owner, then wakes the waiters.
package notify
