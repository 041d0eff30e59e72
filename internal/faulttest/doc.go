// Package faulttest is the reusable infrastructure of the fault-injection
// suite (internal/reliability): a TCP proxy that partitions, delays and
// kills the connections between a Redis client and a real redis-server,
// and a history checker that records every holding of every lock and
// verifies the invariants a keyed mutex owes its users:
//
//   - mutual exclusion: no two holders of one key overlap, except where a
//     recorded fault (a server restart that lost its data, a partition
//     longer than the TTL) explains it and one of the two learned it lost
//     its lease;
//   - fencing: successive holders of one key get strictly increasing
//     tokens, and a [Fenced] resource never accepts a write with a token
//     lower than one it has accepted;
//   - liveness: every Lock returns by its ctx deadline (or cancellation)
//     plus a bound;
//   - cleanliness: after Close, no lock key without an expiry and, once
//     the TTL has passed, no lock key at all, and no subscribed channel
//     under the prefix ([CheckRedisClean]).
//
// The proxy tells the subscriber connection apart from the command
// connections by watching what the client sends: a connection whose first
// command after the handshake is SUBSCRIBE, SSUBSCRIBE or PSUBSCRIBE is on
// the [Subscriber] path, any other is on the [Commands] path. So one
// proxy in front of one go-redis client can fault either path alone.
//
// Everything here is for tests: helpers take a [testing.TB] and clean up
// after themselves with Cleanup.
package faulttest
