package distributed

import (
	_ "embed"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// The scripts of protocol v2. lib.lua holds the functions acquire and
// release share (token issue, promote); it is prepended to each, so one
// EVALSHA runs each script whole.
var (
	//go:embed lib.lua
	libLua string

	//go:embed acquire.lua
	acquireLua    string
	acquireScript = redis.NewScript(libLua + acquireLua)

	//go:embed release.lua
	releaseLua    string
	releaseScript = redis.NewScript(libLua + releaseLua)

	//go:embed renew.lua
	renewLua    string
	renewScript = redis.NewScript(libLua + renewLua)
)

// grant is a holding of the lock as a script or a grant message reports
// it: tokens first..top, and the lock's TTL when it was set.
type grant struct {
	first, top uint64
	ttlMs      int64
}

// value is the lock key's value while owner holds g.
func (g grant) value(owner string) string {
	return owner + " " + strconv.FormatUint(g.first, 10) + " " + strconv.FormatUint(g.top, 10)
}

// acquireReply is what acquire.lua answered.
type acquireReply struct {
	held   bool   // the lock is the caller's: g
	g      grant  //
	pttl   int64  // otherwise: the holder's remaining TTL (-1: none)
	alien  bool   // try: the lock key holds a value the library did not write
	member string // wait mode: the caller's queue entry
	score  string
	now    int64 // wait mode: the server clock (µs) when it found the caller waiting
}

func parseAcquire(res any) (acquireReply, error) {
	a, ok := res.([]any)
	if !ok || len(a) < 2 {
		return acquireReply{}, fmt.Errorf("acquire: unexpected reply %v", res)
	}
	ints := make([]int64, 0, 4)
	for _, v := range a {
		if n, ok := v.(int64); ok {
			ints = append(ints, n)
		}
	}
	switch {
	case ints[0] == 1 && len(a) == 4 && len(ints) == 4:
		return acquireReply{held: true, g: grant{first: uint64(ints[1]), top: uint64(ints[2]), ttlMs: ints[3]}}, nil
	case ints[0] == 0 && len(a) == 2 && len(ints) == 2:
		return acquireReply{pttl: ints[1]}, nil
	case ints[0] == 0 && len(a) == 3 && len(ints) == 2 && a[2] == "foreign":
		return acquireReply{pttl: ints[1], alien: true}, nil
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
// "<first> <top> <grant-ttl-ms>".
func parseGrant(payload string) (grant, error) {
	var g grant
	_, err := fmt.Sscanf(payload, "%d %d %d", &g.first, &g.top, &g.ttlMs)
	if err != nil || g.top < g.first || g.ttlMs <= 0 {
		return grant{}, fmt.Errorf("malformed grant %q", payload)
	}
	return g, nil
}
