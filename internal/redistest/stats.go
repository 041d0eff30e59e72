package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Counter is a go-redis hook that counts the commands a client sends:
// All of them (connection set-up such as HELLO included), Scripts, the
// EVAL and EVALSHA calls, and Trips, the round trips: one per command sent
// alone and one per pipeline. Add it with client.AddHook(&counter).
type Counter struct {
	All, Scripts, Trips atomic.Int64
}

// Reset sets the counts to zero.
func (c *Counter) Reset() {
	c.All.Store(0)
	c.Scripts.Store(0)
	c.Trips.Store(0)
}

func (c *Counter) count(cmd redis.Cmder) {
	c.All.Add(1)
	switch cmd.Name() {
	case "eval", "evalsha":
		c.Scripts.Add(1)
	}
}

// DialHook implements [redis.Hook].
func (c *Counter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

// ProcessHook implements [redis.Hook].
func (c *Counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.count(cmd)
		c.Trips.Add(1)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements [redis.Hook].
func (c *Counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.count(cmd)
		}
		c.Trips.Add(1)
		return next(ctx, cmds)
	}
}

// ParseCommandStats returns the calls per command of an INFO commandstats
// reply, keyed by the lower-case command name ("evalsha", "set", ...).
// Commands run inside Lua scripts are counted by the server, so they are
// there too.
func ParseCommandStats(info string) (map[string]int64, error) {
	calls := make(map[string]int64)
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		cmd, ok := strings.CutPrefix(name, "cmdstat_")
		if !ok {
			continue
		}
		for _, f := range strings.Split(rest, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("redistest: bad commandstats line %q: %w", line, err)
				}
				calls[cmd] += n
			}
		}
	}
	return calls, sc.Err()
}

// CommandStats asks c for INFO commandstats and parses it as
// [ParseCommandStats] does.
func CommandStats(ctx context.Context, c redis.Cmdable) (map[string]int64, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("redistest: INFO commandstats: %w", err)
	}
	return ParseCommandStats(info)
}
