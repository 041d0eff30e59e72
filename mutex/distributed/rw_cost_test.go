package distributed

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestRWScriptCost measures what each uncontended call of an RWMutex's
// scripts costs inside Redis (INFO commandstats usec_per_call of
// EVALSHA), the releases from a prepared state that tools/script-cost
// cannot set up. It runs only with KEYEDMUTEX_SCRIPT_COST=1 and prints
// its numbers; it asserts only that every call did what it should.
//
//	KEYEDMUTEX_SCRIPT_COST=1 go test -run TestRWScriptCost -v ./mutex/distributed/
func TestRWScriptCost(t *testing.T) {
	if os.Getenv("KEYEDMUTEX_SCRIPT_COST") != "1" {
		t.Skip("set KEYEDMUTEX_SCRIPT_COST=1 to measure")
	}
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := context.Background()
	sc := newRWScripts(10000, DefaultPrefix)
	sm := newScripts(10000, DefaultPrefix) // the Mutex's, for comparison
	const n = 50000
	keys := func(i int) []string { return rwNamesFor(DefaultPrefix, "key-"+strconv.Itoa(i)).keys() }
	id := func(i int) string { return fmt.Sprintf("%032x", i+1) }
	run := func(name string, s *redis.Script, args func(i int) []any, want func(res any) bool) {
		keys := keys
		if s == sm.acquire || s == sm.release {
			keys = func(i int) []string { return namesFor(DefaultPrefix, "key-"+strconv.Itoa(i)).keys() }
		}
		if s == sc.renew {
			keys = func(i int) []string { return rwNamesFor(DefaultPrefix, "key-"+strconv.Itoa(i)).renewKeys() }
		}
		t.Helper()
		if err := c.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var bad sync.Map
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := g; i < n; i += 8 {
					res, err := s.Run(ctx, c, keys(i), args(i)...).Result()
					if err != nil || !want(res) {
						bad.Store(name, fmt.Sprintf("%v %v", res, err))
					}
				}
			}()
		}
		wg.Wait()
		bad.Range(func(k, v any) bool { t.Errorf("%s: unexpected reply %v", k, v); return true })
		info := c.Info(ctx, "commandstats").Val()
		for _, line := range strings.Split(info, "\n") {
			if strings.HasPrefix(line, "cmdstat_evalsha:") {
				t.Logf("%-28s %s", name, strings.TrimSpace(line))
			}
		}
	}
	held := func(res any) bool { a, ok := res.([]any); return ok && len(a) == 5 && a[0] == int64(1) }
	one := func(res any) bool { return res == int64(1) }
	run("RLock (free key)", sc.acquire, func(i int) []any { return []any{id(i), 0} }, held)
	run("read release (last reader)", sc.release, func(i int) []any { return []any{id(i)} }, one)
	c.FlushAll(ctx)
	run("Lock (free key)", sc.acquire, func(i int) []any { return []any{id(i), 1} }, held)
	run("write release", sc.release, func(i int) []any { return []any{id(i)} }, one)
	c.FlushAll(ctx)
	for i := range n {
		sc.acquire.Run(ctx, c, keys(i), id(i), 0)
	}
	run("RLock (beside a reader)", sc.acquire, func(i int) []any { return []any{id(n + i), 0} }, held)
	run("read release (not last)", sc.release, func(i int) []any { return []any{id(n + i)} }, one)
	run("renew (reader)", sc.renew, func(i int) []any { return []any{id(i)} }, one)
	c.FlushAll(ctx)
	tok := func(res any) bool { _, ok := res.(string); return ok }
	run("Mutex: TryLock script", sm.acquire, func(i int) []any { return []any{id(i), 1} }, tok)
	run("Mutex: Unlock", sm.release, func(i int) []any { return []any{id(i)} }, one)
}
