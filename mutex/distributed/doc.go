// Package distributed is a keyed mutex held in Redis: one lock per key,
// shared by every process that uses the same Redis server (or Redis
// Cluster, or a Sentinel-managed master) and key prefix. Waiters queue in
// Redis in FIFO order, and a release hands the lock straight to the first
// of them.
//
//	m, err := distributed.New[string](rdb) // rdb: a redis.UniversalClient
//	if err != nil { ... }
//	defer m.Close()
//	lease, err := m.Lock(ctx, "order-17")
//	if err != nil { ... }
//	defer lease.Unlock()
//
// # Protocol (v2)
//
// Every Redis name of one key carries the same hash tag: the encoded key
// with '%' and '}' percent-encoded (see [WithKeyEncoder]), so in Redis
// Cluster every script touches one slot:
//
//   - the lock, prefix + "{" + tag + "}", a string: "<owner> <first> <top>
//     <exp> <label>" while held (a random 128-bit owner id per Lock call,
//     its fencing tokens first..top, its expiry in server milliseconds,
//     equal to the key's own, and the holder's [WithLabel]), with a
//     trailing "*" once somebody queued; and,
//     once released, the free marker "~<last>" (last: the highest token
//     issued), which lives as long as the released lease had left;
//   - the queue, prefix + "q:{" + tag + "}", a sorted set scored by join
//     time (server microseconds), of "<owner> <mutex-id> <n> <deadline>
//     <label>" entries; it expires 3 poll intervals after its last refresh;
//   - the grant channel of each Mutex (a random id per [New]),
//     prefix + "grant:{" + tag + "}:" + id. Channel names are exact
//     names, never patterns: keys with '*', '?' or '[' touch no other key.
//
// Three Lua scripts (acquire.lua, release.lua, renew.lua, sharing
// lib.lua) do the work:
//
//   - acquire takes the lock if it is free (absent, or a free marker) and
//     nobody is queued: TIME, then one SET ... PXAT ... GET that writes
//     the new holding and returns the value it replaced; a replaced value
//     that was not free is put back exactly (its expiry is in it), in the
//     same atomic script. If another owner holds the lock, a waiting Lock
//     joins the queue (or refreshes its entry) and learns the holder's
//     remaining TTL; TryLock and spin waiting never queue. A lock key of
//     another type without expiry is an error ([ErrWrongType]); with an
//     expiry it is waited out. A string this library did not write is
//     waited out like a lease, and TryLock's error says so: the one-token
//     path, which writes before it reads, puts it back with the lease TTL
//     (its own expiry cannot be read back after the overwrite, and
//     reading it first would cost every Lock a command); the other paths
//     keep its expiry, and give one without expiry the lease TTL. The
//     keys under the prefix belong to the library.
//   - release swaps the holding for the free marker with one SET ... XX
//     KEEPTTL GET and checks the value it replaced; one that was not its
//     own (the lease was lost) is put back as it was. If the holding was
//     flagged as having waiters, it promotes the queue: it pops entries in
//     FIFO order, skips the dead ones, sets the lock to the first live
//     waiter and publishes the grant ("<owner> <first> <top> <ttl>") on
//     that waiter's Mutex channel (PUBLISH, or SPUBLISH on a Cluster with
//     sharded pub/sub). A release with nobody queued publishes nothing.
//   - renew extends the holding (value and expiry) only if it is still
//     the lease's.
//
// An uncontended Lock and Unlock cost two round trips and 5 commands
// inside Redis (2 EVALSHA, TIME and 2 SET). The shared notify hub routes
// a grant to the one waiter it names; that waiter returns from Lock with
// no further command. The lock is never free while someone waits, so no
// process can barge in, and processes are served in the order they
// queued.
//
// # Liveness
//
// A queued waiter refreshes its entry every poll interval
// ([WithPollInterval], 1s by default; sooner when the holder's TTL runs
// out first, and at once after a reconnect of the Pub/Sub connection,
// which may have lost a grant). The refresh also finds a grant whose
// message was lost. The rules, with d the poll interval:
//
//   - An entry not refreshed for 3·d is dead (a crashed or partitioned
//     waiter) and is skipped when it reaches the head.
//   - A grant that reaches no subscriber (the waiter's process is gone,
//     or its Pub/Sub connection is down) is skipped at once.
//   - A lock handed to a waiter lives min(TTL, 3·d) until the new
//     holder's first renewal extends it, so a waiter that died just
//     after its grant stalls the key for about 3·d at most; the next
//     refresh of any waiter then serves the queue.
//   - A waiter whose ctx ends (or whose Mutex closes) removes its entry,
//     and releases the lock if it was granted in the same instant; a grant
//     that arrives for a waiter that already left (an orphan) is released
//     by its Mutex at once.
//
// A queued waiter sends one command per poll interval while it waits,
// however long that is; a waiter that is served before its first poll
// sends one command in all if its Mutex has the key's grant channel
// subscribed already (a hot key), two otherwise (a try, then the queue).
//
// # Leases
//
// A lease is held with a TTL ([WithTTL], 10s by default). While held it
// is renewed every TTL/3, each renewal checking ownership; renewals of
// one Mutex that fall due at about the same time (within TTL/12) leave
// together, in one pipeline. [WithoutRenewal] makes the TTL the fixed
// length of every lease. The lease's validity is measured with the local
// monotonic clock from an instant known to precede the moment Redis set
// the TTL (the sending of the call that took the lock, or for a lock
// handed over, of the waiter's last call that found it still waiting),
// and renewals are scheduled from that validity, not from the moment
// Lock returned. If an ownership check fails, or the validity runs out
// before a renewal is confirmed, the lease is lost: [mutex.Lease.Done]
// closes and Err and Unlock return an error satisfying errors.Is(err,
// [mutex.ErrLost]). Unlock of a lost lease still asks Redis to release
// the key if it is somehow the lease's (a renewal that ran late).
//
// # Fencing tokens
//
// Each lease carries a token strictly greater than every token issued
// earlier for its key: the Redis server's clock in microseconds, or the
// last token + 1 if that is higher. Tokens never run ahead of the server
// clock: a block of tokens ([Mutex.LockN]) is taken from the clock's
// recent past (at most 1ms of it) and shrinks rather than overrun. So
// after a restart of a Redis without persistence, after a failover to a
// replica that missed the last writes, or once the free marker has
// expired, the clock alone floors new tokens above every earlier one,
// provided the server clock does not step back; no state is kept per key
// once its marker has expired.
//
// # Batching
//
// Every command of a Mutex goes through one executor: a call that finds a
// free flight (at most 2 pipelines in flight per Mutex) leaves at once;
// calls made while both are in flight leave together, as one pipeline,
// with the next flight that ends (one write and one read for all of
// them). Batching comes from concurrency, never from a timer. A caller
// waits for its own reply, its ctx or Close: one that gives up leaves its
// call to finish in the background, and an acquire that may have taken
// the lock or joined the queue is then undone.
//
// # Redis Cluster and Sentinel
//
// Pass a *redis.ClusterClient. Grants use sharded pub/sub
// (SPUBLISH/SSUBSCRIBE) where the servers support it, so a grant stays
// on the shard that owns the key. After an error that is not a reply from
// a server (a dead master), the Mutex asks the client to reload its slot
// map, so that locks on a failed-over shard work again as soon as the
// replica has taken over. For Sentinel, pass the client of
// redis.NewFailoverClient. Replication is asynchronous: a lock acquired
// just before its master died may be unknown to the new master, so two
// holders can briefly overlap across a failover; fencing tokens keep
// increasing across it (the new master's clock floors them) and let a
// resource reject the stale holder.
//
// # Deadlines and the client
//
// A Lock returns when its ctx ends or the Mutex is closed, whatever the
// network does: its commands run on the executor's goroutines. go-redis
// itself honours a ctx deadline on a stalled connection only when the
// client was created with ContextTimeoutEnabled: true; without it a
// command abandoned by its caller still occupies a connection until the
// client's ReadTimeout.
//
// # Keys
//
// Keys are encoded to strings (see [WithKeyEncoder] for the default and
// how to replace it; [New] refuses a key type the default cannot
// encode); the empty string and strings longer than [MaxKeyLen] are
// rejected with an error satisfying errors.Is(err, [mutex.ErrInvalidKey]),
// as every implementation of [mutex.Keyed] rejects the empty key. Any
// other bytes are fine, braces, glob characters and invalid UTF-8
// included. A nil ctx is a programming error of another kind: it gets
// an error that names it (not [mutex.ErrInvalidKey]).
//
// # Compatibility
//
// Protocol v2 does not interoperate with v1 (the releases before it kept
// a fence counter and a release channel): every process that shares a
// prefix must run the same protocol, or use a new prefix while they
// are upgraded.
package distributed
