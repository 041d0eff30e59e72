// Package bench compares the keyed mutexes of this module with each other
// and with the best Go peers, github.com/go-redsync/redsync/v4,
// github.com/bsm/redislock and github.com/redis/rueidis/rueidislock, in
// one run:
//
//	go -C bench test -run '^$' -bench . -benchtime 3s
//
// It is a nested module so that the peer libraries and the plotting
// library never enter the library's own module graph. The benchmarks live
// in the _test.go files; this package itself holds only the statistics
// they report (wait-time histogram, percentiles, Jain's fairness index),
// which the tests check.
//
// The Redis server used is, in order: the one at $REDIS_ADDR (it must be
// dedicated to the run: redis-cmds/op, redis-us/op and redis-cpu-us/op are
// read from INFO commandstats and INFO cpu, which count every client's
// load); a redis-server found on PATH, started on a free loopback port in
// a temp dir and stopped after; or miniredis: its timings say nothing
// about Redis, it reports no Redis time or CPU, and rueidislock (which
// needs client-side caching) skips there.
//
// After the raw result lines the run prints the table a person reads
// (with the machine, Redis, commit and date above it), writes the chart to
// comparison.png (the path is printed) and prints the targets it could
// evaluate; package report does all three, and ./cmd/chart does them again
// from a saved output.
package bench
