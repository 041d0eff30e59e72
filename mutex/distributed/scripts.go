package distributed

import (
	_ "embed"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The scripts of protocol v3. lib.lua holds the functions acquire and
// release share (token issue, promote); Go splices it into each after
// release's fast path, so an uncontended release runs a few lines and
// defines no function (an uncontended acquire runs no script at all). The Mutex's lease TTL and prefix length are written into the
// text as constants (a Mutex's scripts are its own: one SHA per distinct
// TTL and prefix length), so no call sends them.
var (
	//go:embed lib.lua
	libLua string
	//go:embed acquire.lua
	acquireLua string
	//go:embed release.lua
	releaseLua string
	//go:embed renew.lua
	renewLua string
)

// scripts are the scripts of one Mutex.
type scripts struct {
	acquire, release, renew *redis.Script
}

func newScripts(ttlMs int64, prefix string) scripts {
	head := fmt.Sprintf("local TTL, P = %d, %d\n", ttlMs, len(prefix))
	splice := func(s string) string { return head + strings.Replace(s, "--@lib\n", libLua, 1) }
	return scripts{
		acquire: redis.NewScript(splice(acquireLua)),
		release: redis.NewScript(splice(releaseLua)),
		renew:   redis.NewScript(head + renewLua),
	}
}

// grant is a holding of the lock as a script or a grant message reports
// it: tokens first..top, the lock's TTL when it was set, and the server
// clock (µs) of the script that issued it.
type grant struct {
	first, top uint64
	ttlMs      int64
	clock      uint64
}

// ahead reports whether g's tokens may run ahead of the server clock:
// then its release leaves a free marker until the clock has passed them.
func (g grant) ahead() bool { return g.top > g.clock }

// acquireReply is what acquire.lua answered.
type acquireReply struct {
	held    bool   // the lock is the caller's: g
	g       grant  //
	pttl    int64  // otherwise: the holder's remaining TTL (-1: none)
	foreign bool   // try: the lock key holds a value the library did not write
	member  string // wait mode: the caller's queue entry
	score   string
	now     int64 // wait mode: the server clock (µs) when it found the caller waiting
}

// parseAcquire parses acquire.lua's reply.
// The fast path's reply, a token alone, stands for a block of up to n
// tokens from it, for ttlMs.
func parseAcquire(res any, n uint64, ttlMs int64) (acquireReply, error) {
	if s, ok := res.(string); ok {
		tok, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return acquireReply{}, fmt.Errorf("acquire: unexpected reply %q", s)
		}
		return acquireReply{held: true, g: grant{first: tok, top: tok + min(n, maxAhead) - 1, ttlMs: ttlMs, clock: tok}}, nil
	}
	a, ok := res.([]any)
	if !ok || len(a) < 2 {
		return acquireReply{}, fmt.Errorf("acquire: unexpected reply %v", res)
	}
	ints := make([]int64, 0, 5)
	for _, v := range a {
		if n, ok := v.(int64); ok {
			ints = append(ints, n)
		}
	}
	switch {
	case ints[0] == 1 && len(a) == 5 && len(ints) == 5:
		return acquireReply{held: true, g: grant{first: uint64(ints[1]), top: uint64(ints[2]), ttlMs: ints[3], clock: uint64(ints[4])}}, nil
	case ints[0] == 0 && len(a) == 2 && len(ints) == 2:
		return acquireReply{pttl: ints[1]}, nil
	case ints[0] == 0 && len(a) == 3 && len(ints) == 2 && a[2] == "foreign":
		return acquireReply{pttl: ints[1], foreign: true}, nil
	case ints[0] == 0 && len(a) == 5 && len(ints) == 3:
		member, _ := a[2].(string)
		score, _ := a[3].(string)
		if member != "" && score != "" {
			return acquireReply{pttl: ints[1], member: member, score: score, now: ints[2]}, nil
		}
	}
	return acquireReply{}, fmt.Errorf("acquire: unexpected reply %v", res)
}

// parseGrant parses a grant message's payload after the owner id:
// "<first> <top> <grant-ttl-ms> <clock-us>".
func parseGrant(payload string) (grant, error) {
	var g grant
	_, err := fmt.Sscanf(payload, "%d %d %d %d", &g.first, &g.top, &g.ttlMs, &g.clock)
	if err != nil || g.top < g.first || g.ttlMs <= 0 {
		return grant{}, fmt.Errorf("malformed grant %q", payload)
	}
	return g, nil
}
