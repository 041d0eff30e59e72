// Package reliability is the fault-injection suite of this module: it has
// no code of its own, only tests. They run the distributed mutex (Pub/Sub
// and spin waiting) and the hybrid mutex against real redis-server
// processes, with many goroutines over several instances (each with its own
// Redis client, as separate processes would have), and break things on
// purpose while they run: the server is SIGKILLed and restarted on the same
// port, subscriber connections are killed, the network is partitioned,
// stalled and slowed through a TCP proxy (command and subscriber paths
// separately), holders are paused past their TTL, releases race with
// subscriptions, Locks are cancelled and instances closed mid-wait. On a
// Sentinel deployment (failover clients) the master is failed over
// (SENTINEL FAILOVER) and SIGKILLed; on a Redis Cluster a master is
// SIGKILLed and a slot migrates under load. A history checker
// (internal/faulttest) then verifies mutual exclusion, fencing, liveness
// and that nothing is left behind: no goroutine, no subscription, no lock
// key. The Sentinel and Cluster tests log how long each fault kept locks
// from being taken.
//
// The short form runs with the other tests:
//
//	go test -race ./internal/reliability/
//
// A long soak scales every timed run and iteration count by the same
// factor, so that the timed runs last about the given duration in total;
// the Sentinel and Cluster tests repeat their fault that many times, each
// taking its real time (a forced failover about 12s, a Cluster round
// about 8s), so the whole suite runs longer: KEYEDMUTEX_SOAK=5m took 7
// minutes on a 2-core machine before they were added. Each test logs its
// figures (acquisitions, Lock errors, lost leases, faults injected,
// violations) and the run ends with the totals:
//
//	KEYEDMUTEX_SOAK=10m go test -race -timeout 0 -v ./internal/reliability/
package reliability
