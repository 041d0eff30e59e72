package distributed

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/internal/logtest"
	"github.com/keyedmutex/keyedmutex/internal/redistest"
)

// TestEvictionCheck: the first Lock reads the server's maxmemory and
// maxmemory-policy; a policy that can evict lock keys under a limit gets
// one warning naming it and what to set, noeviction none, and
// WithoutEvictionCheck skips the check.
func TestEvictionCheck(t *testing.T) {
	leakcheck.Register(t)
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := ctxT(t, time.Minute)
	lockTwice := func(t *testing.T, m *Mutex[string]) {
		for range 2 {
			l, err := m.Lock(ctx, "k")
			if err != nil {
				t.Fatal(err)
			}
			l.Unlock()
		}
	}
	for _, tc := range []struct {
		policy, maxmemory string
		warn              bool
	}{
		{"allkeys-lru", "64mb", true},
		{"volatile-ttl", "64mb", true},
		{"volatile-lru", "64mb", true},
		{"noeviction", "64mb", false},
		{"allkeys-lru", "0", false}, // no limit: nothing is evicted
	} {
		t.Run(tc.policy+"/"+tc.maxmemory, func(t *testing.T) {
			admin.ConfigSet(ctx, "maxmemory-policy", tc.policy)
			admin.ConfigSet(ctx, "maxmemory", tc.maxmemory)
			t.Cleanup(func() { admin.ConfigSet(ctx, "maxmemory", "0") })
			logger, logged := logtest.New()
			if !tc.warn {
				logger = logtest.Fail(t)
			}
			lockTwice(t, newMutexOn(t, srv.Client(t), WithLogger(logger)))
			if !tc.warn {
				return
			}
			recs := logged.All()
			if len(recs) != 1 || recs[0].Level != slog.LevelWarn || !strings.Contains(recs[0].Text, tc.policy) || !strings.Contains(recs[0].Text, "noeviction") {
				t.Errorf("logged %v; want one warning naming %s and noeviction", recs, tc.policy)
			}
		})
	}
	t.Run("WithoutEvictionCheck", func(t *testing.T) {
		admin.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru")
		admin.ConfigSet(ctx, "maxmemory", "64mb")
		t.Cleanup(func() { admin.ConfigSet(ctx, "maxmemory", "0") })
		lockTwice(t, newMutexOn(t, srv.Client(t), WithLogger(logtest.Fail(t)), WithoutEvictionCheck()))
	})
}
