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
// A long soak scales every timed run so that the suite lasts about the
// given duration, and logs its figures (acquisitions, faults, violations):
//
//	KEYEDMUTEX_SOAK=10m go test -race -timeout 0 -v ./internal/reliability/
package reliability
