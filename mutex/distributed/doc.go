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
// # Protocol (v3)
//
// Every Redis name of one key carries the same hash tag: the encoded key
// with '%' and '}' percent-encoded (see [WithKeyEncoder]), so in Redis
// Cluster every script touches one slot:
//
//   - the lock, prefix + "{" + tag + "}", a string: "<owner> <label>"
//     while held (a random 128-bit owner id per Lock call and the
//     holder's [WithLabel]), with a trailing "*" once somebody queued. A
//     lock released with nobody waiting is deleted: nothing is left. (For
//     a few milliseconds after the release of a lease whose fencing
//     tokens ran ahead of the server clock, see below, it is the free
//     marker "~<last-token>".)
//   - the queue, prefix + "q:{" + tag + "}", a sorted set scored by join
//     time (server microseconds), of "<owner> <mutex-id> <n> <grant-ms>
//     <verb> <label> <deadline>" entries; it expires 3 poll intervals
//     after its last refresh;
//   - the grant channel of each Mutex (a random id per [New]),
//     prefix + "grant:{" + tag + "}:" + id. Channel names are exact
//     names, never patterns: keys with '*', '?' or '[' touch no other key.
//
// What each operation costs inside Redis, uncontended (Redis 7.0 on
// loopback, INFO commandstats, measured with the tools/script-cost
// method: redis-benchmark on one command or script):
//
//   - Lock and TryLock of a free key: one round trip of three plain
//     commands, EXISTS of the queue, SET lock "<owner> <label>" NX PX
//     ttl, and TIME (about 1.5µs together). TIME, read while the lock is
//     held, issues the fencing token. Through a Cluster or a Ring the
//     same runs as a short script (acquire.lua's fast path, about 3.5µs),
//     as TIME must reach the lock's own server after the SET.
//   - Unlock: one EVALSHA of release.lua, whose fast path is a GET and a
//     DEL (about 2.5µs).
//   - Renewal, every TTL/3 while held: one EVALSHA (GET, PEXPIRE).
//
// The lease TTL and the prefix length are written into each Mutex's
// scripts as constants (so a Mutex's scripts are its own, one SHA per
// TTL and prefix length), and the scripts' shared functions (lib.lua)
// are defined only past the fast paths, so an uncontended call sends one
// argument and runs a few lines.
//
// The first acquire of each Mutex runs acquire.lua instead, so a Redis
// user that may not run scripts fails at its first Lock, not at Unlock.
// (Rights revoked later are seen at the next script: an Unlock then
// fails, and the key expires at its TTL.)
//
// When the plain SET does not take the lock, acquire.lua does the rest:
// it takes the lock if it is free after all (a free marker, or a queue
// left behind a lock that expired, which it serves first); if another
// owner holds it, a waiting Lock joins the queue (or refreshes its entry)
// and learns the holder's remaining TTL; TryLock and spin waiting never
// queue (a TryLock of a held key costs a second round trip, the script
// that says why). A lock key of another type without expiry is an error
// ([ErrWrongType]); with an expiry it is waited out. A string this
// library did not write is waited out like a lease (one without expiry
// gets the lease TTL), and TryLock's error says so. The keys under the
// prefix belong to the library.
//
// release.lua frees the lock if its value is the lease's. If the holding
// was flagged as having waiters, it promotes the queue: it pops entries
// in FIFO order, skips the dead ones, sets the lock to the first live
// waiter (with that waiter's grant TTL) and publishes the grant
// ("<owner> <first> <top> <grant-ms> <clock>") on that waiter's Mutex
// channel, with PUBLISH, or SPUBLISH where that waiter's Mutex listens
// on sharded pub/sub. A release with nobody queued publishes nothing.
// The shared notify hub routes a grant to the one waiter it names; that
// waiter returns from Lock with no further command. The lock is never
// free while someone waits, so no process can barge in, and processes
// are served in the order they queued.
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
// Renewal keeps a lease alive for as long as its process runs, even if
// the holder hangs. [WithMaxHold] caps it: no renewal is sent past the
// maximum hold, and the lease is lost at its next validity end, with
// cause [ErrMaxHold].
//
// # Fencing tokens
//
// Each lease carries a token strictly greater than every token issued
// earlier for its key: the Redis server's clock in microseconds, read
// while the lock is held. No token is stored: a reading taken while a
// lock is held comes after every reading of the holders before it (each
// read its clock before releasing) and before every reading of the
// holders after it. A block of tokens ([Mutex.LockN], which hybrid uses
// to hand a lease on locally) starts at the clock and runs at most 1ms
// ahead of it; the release of such a lease, while its tokens are still
// ahead of the clock, leaves the free marker "~<last>" until the clock
// has passed them (a few ms: Redis counts expiry in whole ms, so up to
// 4ms after Unlock returns), and the next holder's tokens start
// above it. So after a restart of a Redis without persistence, or a
// failover to a replica that missed the last writes (each takes far
// longer than 1ms), the clock alone floors new tokens above every
// earlier one, provided the server clock does not step back. No state is
// kept per key once it is released.
//
// # Read-write locks
//
// [RWMutex] ([NewRW]) is the keyed form of sync.RWMutex on the same
// queue-and-grant protocol: readers of a key hold it together, a writer
// holds it alone. Its Redis names are its own, so a Mutex and an RWMutex
// of the same key are different locks (they never exclude each other).
// The names of one key share the hash tag of the Mutex's (one Cluster
// slot):
//
//   - the writer key, prefix + "rw:{" + tag + "}", a string: "<owner>
//     <label>" while a writer holds (as a Mutex's lock key), or, for a
//     few milliseconds after the release of a writer whose block of
//     tokens ran ahead of the server clock, the free marker "~<last>";
//   - the readers, prefix + "rwr:{" + tag + "}", a sorted set of the
//     owner ids of the readers that hold, each scored by the server time
//     (ms) at which its share expires unless renewed;
//   - the queue, prefix + "rwq:{" + tag + "}", a sorted set as a Mutex's,
//     whose entries ask for n = 0 tokens for a reader;
//   - the grant channel of each RWMutex, prefix + "rwgrant:{" + tag +
//     "}:" + id.
//
// RLock and TryRLock are admitted at once (one script call) if no writer
// holds and nobody queues, so while readers hold and nobody waits, more
// readers join them; behind a queued writer, a reader queues (TryRLock
// fails). Lock and TryLock are admitted at once if nobody holds and
// nobody queues. Waiters queue in arrival order, readers and writers
// alike. A release that leaves the key without holders (the writer's, or
// the last reader's) hands it on in the same script: to the first live
// writer of the queue, or to the whole run of live readers at its head,
// which then hold together. The run's grant is one message per RWMutex
// that has readers in it, naming all of them, not one per reader. A
// release with nobody queued publishes nothing and leaves no key behind
// (the readers' set is removed with its last member).
//
// Liveness is the Mutex's: dead queue entries (not refreshed for three
// poll intervals, or whose grant reached no subscriber) are skipped, and
// a granted lock lives min(TTL, 3 poll intervals) until its first
// renewal. A reader's share expires on its own: a reader that dies
// (without Unlock) stops renewing its share, which is dropped at its
// expiry by the next script that looks (a queued writer's poll looks no
// later than that expiry), while the other readers hold on. Read leases
// are renewed in the same batched renewals as write leases, each
// renewal checking the reader's own share, and are lost, and report it,
// as a Mutex's lease is.
//
// Fencing tokens follow [mutex.RWKeyed]: none is stored. A writer's
// token is the server clock read while it holds alone, so above every
// earlier token, readers' included; a reader's is the clock read while
// no writer holds, so above the writers before it and below the writers
// after it. Readers admitted in one run share one token. A writer's
// block of tokens ([RWMutex.LockN]) may run ahead of the clock, as a
// Mutex's; the free marker "~last" left by its release then floors
// readers' tokens at last+1 and the next writer's at last+2.
//
// Costs inside Redis, uncontended: RLock and Lock of a free key are one
// EVALSHA each (no plain-command fast path as the Mutex's); a read
// release is a ZREM and an EXISTS of the queue, a write release a ZREM
// that finds nothing, a GET, a DEL and the same EXISTS; a renewal one
// EVALSHA per lease, batched. Inside Redis an uncontended RLock costs
// about 1.5 times a Lock (it adds the reader to a sorted set and keeps
// the set's expiry), and a read or write release about what a Mutex's
// Unlock costs.
// Hand-offs and queueing cost what a Mutex's do, plus one ZREM per
// expired reader share.
//
// The write leases reserve tokens ([mutex.TokenReserver]), run a
// function when they end (AfterDone) and requeue in one step (release,
// and queue a new writer at the back, in one script), as a Mutex's do,
// for hybrid. Read leases run a function when they end; they do not
// requeue (hybrid then unlocks and locks).
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
// # Operators
//
// [InspectKeys], [ListKeys] and [ForceRelease] show and break the locks
// of every process from a bare client and the prefix, by encoded key;
// the keyedmutex command (cmd/keyedmutex) is built on them.
// [InspectRWKeys] shows an [RWMutex]'s locks ([KindRW]), which ListKeys
// lists too; [ForceReleaseRW] breaks their writers and readers as
// ForceRelease breaks a Mutex's holder.
//
// # Compatibility
//
// Protocol v3 does not interoperate with v2 or v1 (v2 kept tokens and
// an expiry in the lock value and a free marker after every release; v1
// a fence counter and a release channel): every process that shares a
// prefix must run the same protocol, or use a new prefix while they are
// upgraded.
package distributed
