// Package distributed is a keyed mutex held in Redis: one lock per key,
// shared by every process that uses the same Redis server (or Redis
// Cluster) and key prefix.
//
//	m, err := distributed.New[string](rdb) // rdb: a redis.UniversalClient
//	if err != nil { ... }
//	defer m.Close()
//	lease, err := m.Lock(ctx, "order-17")
//	if err != nil { ... }
//	defer lease.Unlock()
//
// # Protocol
//
// A lock is the Redis key prefix + "{" + tag + "}", where tag is the
// encoded key with '%' and '}' percent-encoded. Its fence counter,
// prefix + "fence:{" + tag + "}", and its release channel,
// prefix + "release:{" + tag + "}", carry the same hash tag, so in Redis
// Cluster every name of one lock lives in one slot. Channel names are
// exact names, never patterns: keys with '*', '?' or '[' touch no other
// key.
//
// Three Lua scripts (acquire.lua, release.lua, renew.lua) do the work:
//
//   - acquire: SET lock owner NX PX ttl; on success issue fencing tokens
//     (below); on failure return the holder's PTTL. A lock key of another
//     type and without expiry (written by something else) is an error
//     ([ErrWrongType]), not an endless wait; with an expiry it is waited
//     out like a lock.
//   - release: delete the lock only if the value is still this lease's
//     owner id (random, 128 bits), then PUBLISH (SPUBLISH in Cluster) a
//     release notice on the channel. The notice is best effort (pcall): a
//     Redis user without channel permission still releases, and Pub/Sub
//     waiters then fall back to their poll bound.
//   - renew: PEXPIRE the lock only if the value is still this lease's
//     owner id.
//
// An uncontended Lock and Unlock cost two round trips, one EVALSHA each.
//
// # Waiting
//
// By default a Lock that finds the key held subscribes to the key's
// release channel through one Pub/Sub connection shared by the process
// (internal/notify), waits for Redis to confirm the subscription, tries
// again, then sleeps until a release notice, min(the holder's remaining
// TTL, [WithPollInterval]) or the end of ctx, and loops. A notice wakes
// one waiter of the key per process, not all of them, and a woken waiter
// that gives up passes the wake on; a reconnect of the Pub/Sub connection
// wakes every waiter. A waiter therefore sends a handful of commands
// however long it waits. [WithSpin] instead retries at a fixed interval
// with jitter, costing commands for as long as it waits.
//
// # Leases
//
// A lease is held with a TTL ([WithTTL], 10s by default). While held it
// is renewed every TTL/3, each renewal checking ownership;
// [WithoutRenewal] makes the TTL the fixed length of every lease. The
// lease's validity is measured with the local monotonic clock from the
// start of the acquire call: if the ownership check fails, or the
// validity runs out while Redis cannot be reached, the lease is lost:
// [mutex.Lease.Done] closes and Err and Unlock return an error
// satisfying errors.Is(err, [mutex.ErrLost]). Losses are also reported
// through [WithErrorHandler].
//
// # Fencing tokens
//
// Each lease carries a token strictly greater than every token issued
// earlier for its key: max(last token + 1, the Redis server's clock in
// microseconds). The last token is kept in the fence counter, which
// expires (a second or the TTL after the last acquire, plus however far
// tokens ran ahead of the clock), so storage does not grow with the
// number of distinct keys ever locked; after it expired, or after a
// restart of a Redis without persistence, the server clock alone keeps
// tokens increasing, provided that clock does not step back.
//
// # Redis Cluster
//
// Pass a *redis.ClusterClient. Release notices use sharded pub/sub
// (SPUBLISH/SSUBSCRIBE) where the servers support it, so a notice stays
// on the shard that owns the key. After an error that is not a reply from
// a server (a dead master), the Mutex asks the client to reload its slot
// map, so that locks on a failed-over shard work again as soon as the
// replica has taken over. Replication is asynchronous: a lock acquired
// just before its master died may be unknown to the new master, so two
// holders can briefly overlap across a failover; fencing tokens keep
// increasing across it (the new master's clock floors them) and let a
// resource reject the stale holder.
//
// # Deadlines and the client
//
// Every Redis command runs under the caller's ctx, but go-redis honours a
// ctx deadline on a stalled connection only when the client was created
// with ContextTimeoutEnabled: true; otherwise a Lock on a dead network
// returns at the client's ReadTimeout (3s by default) however short its
// ctx. Set ContextTimeoutEnabled when Lock deadlines must hold tightly.
//
// # Keys
//
// Keys are encoded to strings (see [WithKeyEncoder] for the default and
// how to replace it); the empty string and strings longer than
// [MaxKeyLen] are rejected, and so is a nil ctx. Any other bytes are fine, braces, glob
// characters and invalid UTF-8 included.
package distributed
