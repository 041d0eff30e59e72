// Package reliability is the fault-injection suite of this module: it has
// no code of its own, only tests. They run the distributed mutex (Pub/Sub
// and spin waiting) and the hybrid mutex against real redis-server
// processes, with many goroutines over several instances (each with its own
// Redis client, as separate processes would have), and break things on
// purpose while they run: the server is SIGKILLed and restarted on the same
// port, subscriber connections are killed, the network is partitioned,
// stalled and slowed through a TCP proxy (command and subscriber paths
// separately), holders are paused past their TTL, releases race with
// subscriptions, Locks are cancelled and instances closed mid-wait. A
// history checker (internal/faulttest) then verifies mutual exclusion,
// fencing, liveness and that nothing is left behind: no goroutine, no
// subscription, no lock key.
//
// The short form runs with the other tests:
//
//	go test -race ./internal/reliability/
//
// A long soak scales every timed run and iteration count by the same
// factor, so that the timed runs last about the given duration in total
// (the whole suite somewhat longer: KEYEDMUTEX_SOAK=5m took 7 minutes on a
// 2-core machine). Each test logs its figures (acquisitions, Lock errors,
// lost leases, faults injected, violations) and the run ends with the
// totals:
//
//	KEYEDMUTEX_SOAK=10m go test -race -timeout 0 -v ./internal/reliability/
package reliability
