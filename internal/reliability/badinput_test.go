package reliability

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/keyedmutex/keyedmutex/mutex/hybrid"
	"github.com/redis/go-redis/v9"
)

// wantErr fails t unless err is non-nil and its message contains every
// word of want (case-insensitive): the error must say what is wrong.
func wantErr(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s = nil error; want an error mentioning %q", what, want)
		return
	}
	for _, w := range want {
		if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(w)) {
			t.Errorf("%s = %q; want an error mentioning %q", what, err, w)
		}
	}
}

// TestBadInput feeds each implementation bad input. Each case must give
// a clear error (or, for odd but valid keys, work), never a panic or a
// hang, and leave nothing behind: env.close checks Redis for lock keys and
// subscriptions, leakcheck for goroutines.
func TestBadInput(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, e *env)
	}{
		{"EmptyKey", func(t *testing.T, e *env) {
			_, err := e.ms[0].Lock(ctxFor(t, 5*time.Second), "")
			wantErr(t, `Lock("")`, err, "empty key")
			_, err = e.ms[0].TryLock(ctxFor(t, 5*time.Second), "")
			wantErr(t, `TryLock("")`, err, "empty key")
		}},
		{"HugeKey", func(t *testing.T, e *env) {
			key := strings.Repeat("x", 1<<20)
			_, err := e.ms[0].Lock(ctxFor(t, 5*time.Second), key)
			wantErr(t, "Lock(1 MB key)", err, "limit")
		}},
		{"OddKeys", testOddKeys},
		{"UnlockTwice", func(t *testing.T, e *env) {
			l, err := e.ms[0].Lock(ctxFor(t, 5*time.Second), "twice")
			if err != nil {
				t.Fatalf("Lock = %v", err)
			}
			if err := l.Unlock(); err != nil {
				t.Fatalf("Unlock = %v; want nil", err)
			}
			if err := l.Unlock(); !errors.Is(err, mutex.ErrUnlocked) {
				t.Errorf("second Unlock = %v; want ErrUnlocked", err)
			}
			if err := l.Err(); !errors.Is(err, mutex.ErrUnlocked) {
				t.Errorf("Err() after Unlock = %v; want ErrUnlocked", err)
			}
		}},
		{"UnlockAfterLoss", func(t *testing.T, e *env) {
			i := e.addWith(t, distributed.WithTTL(50*time.Millisecond), distributed.WithoutRenewal())
			l, err := e.ms[i].Lock(ctxFor(t, 5*time.Second), "lost")
			if err != nil {
				t.Fatalf("Lock = %v", err)
			}
			select {
			case <-l.Done():
			case <-time.After(5 * time.Second):
				t.Fatalf("a 50ms lease without renewal still held after 5s")
			}
			if err := l.Unlock(); !errors.Is(err, mutex.ErrLost) {
				t.Errorf("Unlock after loss = %v; want ErrLost", err)
			}
			if err := l.Unlock(); err == nil {
				t.Errorf("second Unlock after loss = nil; want an error")
			}
		}},
		{"LockAfterClose", func(t *testing.T, e *env) {
			i := e.add(t)
			e.closeInstance(i)
			_, err := e.ms[i].Lock(ctxFor(t, 5*time.Second), "closed")
			if !errors.Is(err, mutex.ErrClosed) {
				t.Errorf("Lock after Close = %v; want ErrClosed", err)
			}
			_, err = e.ms[i].TryLock(ctxFor(t, 5*time.Second), "closed")
			if !errors.Is(err, mutex.ErrClosed) {
				t.Errorf("TryLock after Close = %v; want ErrClosed", err)
			}
		}},
		{"CancelledCtx", func(t *testing.T, e *env) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_, err := e.ms[0].Lock(ctx, "cancelled")
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Lock(cancelled ctx) = %v; want context.Canceled", err)
			}
			// A deadline that passes while waiting for a held key.
			l, err := e.ms[0].Lock(ctxFor(t, 5*time.Second), "held")
			if err != nil {
				t.Fatalf("Lock = %v", err)
			}
			defer l.Unlock()
			dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer dcancel()
			_, err = e.ms[1].Lock(dctx, "held")
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Lock of a held key past its deadline = %v; want context.DeadlineExceeded", err)
			}
		}},
		{"NilCtx", func(t *testing.T, e *env) {
			// The contract forbids a nil ctx (as the standard library
			// does); every implementation answers it with an error that
			// names it: no panic, no hang, no lease.
			done := make(chan string, 1)
			go func() {
				defer func() {
					if r := recover(); r != nil {
						done <- fmt.Sprintf("panics: %v", r)
					}
				}()
				var nilCtx context.Context // nil on purpose
				l, err := e.ms[0].Lock(nilCtx, "nilctx")
				if l != nil {
					l.Unlock()
					done <- "returns a lease"
					return
				}
				done <- fmt.Sprintf("returns error %v", err)
			}()
			select {
			case out := <-done:
				t.Logf("Lock(nil ctx) %s", out)
				if !strings.HasPrefix(out, "returns error") || !strings.Contains(out, "nil context") {
					t.Errorf("Lock(nil ctx) %s; want an error naming the nil context", out)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("Lock(nil ctx) hung")
			}
		}},
		{"WrongType", func(t *testing.T, e *env) {
			ctx := context.Background()
			lockKey := e.prefix + "{wt}"
			if err := e.admin.LPush(ctx, lockKey, "x").Err(); err != nil {
				t.Fatal(err)
			}
			defer e.admin.Del(ctx, lockKey)
			_, err := e.ms[0].Lock(ctxFor(t, 5*time.Second), "wt")
			wantErr(t, "Lock of a key holding a list", err, "WRONGTYPE")
			if !errors.Is(err, distributed.ErrWrongType) {
				t.Errorf("Lock of a key holding a list = %v; want errors.Is(err, distributed.ErrWrongType)", err)
			}
			_, err = e.ms[0].TryLock(ctxFor(t, 5*time.Second), "wt")
			if !errors.Is(err, distributed.ErrWrongType) {
				t.Errorf("TryLock of a key holding a list = %v; want ErrWrongType", err)
			}
		}},
		{"OverwrittenWhileHeld", func(t *testing.T, e *env) {
			// Something else replaces the lock key with a list while it
			// is held: renewal must report the lease lost.
			i := e.addWith(t, distributed.WithTTL(150*time.Millisecond))
			l, err := e.ms[i].Lock(ctxFor(t, 5*time.Second), "ow")
			if err != nil {
				t.Fatalf("Lock = %v", err)
			}
			ctx := context.Background()
			lockKey := e.prefix + "{ow}"
			e.admin.Del(ctx, lockKey)
			e.admin.LPush(ctx, lockKey, "x")
			defer e.admin.Del(ctx, lockKey)
			select {
			case <-l.Done():
			case <-time.After(5 * time.Second):
				t.Fatalf("lease whose key was overwritten still held after 5s")
			}
			if err := l.Err(); !errors.Is(err, mutex.ErrLost) {
				t.Errorf("Err() after the key was overwritten = %v; want ErrLost", err)
			}
			if err := l.Unlock(); !errors.Is(err, mutex.ErrLost) {
				t.Errorf("Unlock after the key was overwritten = %v; want ErrLost", err)
			}
		}},
		{"ACLNoEval", func(t *testing.T, e *env) {
			i := e.addUser(t, "noeval", "+@all", "-eval", "-evalsha")
			_, err := e.ms[i].Lock(ctxFor(t, 5*time.Second), "acl")
			wantErr(t, "Lock as a user without EVAL/EVALSHA", err, "NOPERM")
			_, err = e.ms[i].TryLock(ctxFor(t, 5*time.Second), "acl")
			wantErr(t, "TryLock as a user without EVAL/EVALSHA", err, "NOPERM")
		}},
		{"ACLNoChannels", func(t *testing.T, e *env) {
			// A user with every command but no Pub/Sub channel: a waiter
			// cannot subscribe, a release cannot publish. Whatever the
			// outcome, it must be an error that says so, not a hang.
			i := e.addUser(t, "nochan", "+@all", "resetchannels")
			l, err := e.ms[0].Lock(ctxFor(t, 5*time.Second), "aclch")
			if err != nil {
				t.Fatalf("Lock = %v", err)
			}
			_, err = e.ms[i].Lock(ctxFor(t, 2*time.Second), "aclch")
			if e.cfg.kind != spin {
				wantErr(t, "contended Lock as a user without channel permission", err, "NOPERM")
			} else if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("contended spin Lock as a user without channel permission = %v; want DeadlineExceeded", err)
			}
			l.Unlock()
			l2, err := e.ms[i].Lock(ctxFor(t, 5*time.Second), "aclch2")
			if err != nil {
				t.Fatalf("uncontended Lock as a user without channel permission = %v; want the lock", err)
			}
			// A release needs no channel permission: the notice is
			// published with pcall, and pub/sub waiters of a user that
			// cannot publish fall back to their poll bound.
			if err := l2.Unlock(); err != nil {
				t.Errorf("Unlock as a user without channel permission = %v; want nil", err)
			}
			if l3, err := e.ms[0].TryLock(ctxFor(t, 5*time.Second), "aclch2"); err != nil {
				t.Errorf("TryLock after that Unlock = %v; want the lock (released)", err)
			} else {
				l3.Unlock()
			}
		}},
	}
	forKinds(t, allKinds, func(t *testing.T, kind string) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				leakcheck.Register(t)
				e := setup(t, config{kind: kind, instances: 2})
				tc.run(t, e)
				e.close()
			})
		}
	})
}

// testOddKeys locks keys made of the characters that matter to Redis
// names and glob patterns, and non-UTF-8 bytes: each must work, and all
// must be distinct locks (one Redis key each).
func testOddKeys(t *testing.T, e *env) {
	keys := []string{"{", "}", "{}", "}{", "{a}", "a}b", "a%7Db", "%7D", "%", "%25", "*", "?", "[", "]",
		"[a-z]", "a*", "a?", "\\", "\xff\xfe", "\x00", "\x00\x00", "ключ", " ", "a b", "release:{a}", "fence:{a}"}
	ctx := ctxFor(t, 10*time.Second)
	var held []mutex.Lease
	for _, k := range keys {
		l, err := e.ms[0].TryLock(ctx, k)
		if err != nil {
			t.Errorf("TryLock(%q) = %v; want the lock (every key here is distinct and free)", k, err)
			continue
		}
		held = append(held, l)
	}
	n, err := e.admin.Eval(ctx, `return #redis.call('KEYS', ARGV[1])`, nil, globEscape(e.prefix)+"{*").Int()
	if err != nil {
		t.Fatal(err)
	}
	if n != len(held) {
		t.Errorf("%d keys held, %d lock keys in Redis; want one each", len(held), n)
	}
	for _, k := range keys {
		if _, err := e.ms[1].TryLock(ctx, k); !errors.Is(err, mutex.ErrLocked) {
			t.Errorf("TryLock(%q) from another instance while held = %v; want ErrLocked", k, err)
		}
	}
	for _, l := range held {
		if err := l.Unlock(); err != nil {
			t.Errorf("Unlock = %v", err)
		}
	}
	// A waiter on a glob-like key gets it when it is released, and only then.
	l, err := e.ms[0].Lock(ctx, "a*")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		l2, err := e.ms[1].Lock(ctx, "a*")
		if err == nil {
			err = l2.Unlock()
		}
		got <- err
	}()
	if other, err := e.ms[0].Lock(ctx, "ab"); err != nil {
		t.Errorf("Lock(ab) = %v", err)
	} else {
		other.Unlock() // releases "ab": must not hand "a*" to its waiter
	}
	select {
	case err := <-got:
		t.Errorf("waiter on %q returned (%v) while it was held", "a*", err)
	default:
	}
	l.Unlock()
	if err := <-got; err != nil {
		t.Errorf("waiter on %q after release = %v; want the lock", "a*", err)
	}
}

func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// addWith adds an instance with extra distributed options.
func (e *env) addWith(t *testing.T, opts ...distributed.Option) int {
	t.Helper()
	saved := e.cfg.opts
	e.cfg.opts = append(append([]distributed.Option(nil), saved...), opts...)
	defer func() { e.cfg.opts = saved }()
	return e.add(t)
}

// addUser creates a Redis user with the given ACL rules (besides on,
// a password and ~* &*) and adds an instance that connects as it.
func (e *env) addUser(t *testing.T, name string, rules ...string) int {
	t.Helper()
	args := []any{"ACL", "SETUSER", name, "on", ">pw", "~*", "&*"}
	for _, r := range rules {
		args = append(args, r)
	}
	if err := e.admin.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	saved := e.cfg.client
	e.cfg.client = func(o *redis.Options) { o.Username, o.Password = name, "pw" }
	defer func() { e.cfg.client = saved }()
	return e.add(t)
}

// TestBadConfig: invalid options are configuration errors with a message
// naming the option; nothing is started.
func TestBadConfig(t *testing.T) {
	leakcheck.Register(t)
	e := setup(t, config{kind: pubsub, instances: 1})
	for _, tc := range []struct {
		name string
		opt  distributed.Option
		want string
	}{
		{"ZeroTTL", distributed.WithTTL(0), "TTL"},
		{"NegativeTTL", distributed.WithTTL(-time.Second), "TTL"},
		{"SubMillisecondTTL", distributed.WithTTL(time.Microsecond), "TTL"},
		{"ZeroSpin", distributed.WithSpin(0), "WithSpin"},
		{"NegativePoll", distributed.WithPollInterval(-time.Second), "WithPollInterval"},
		{"BracePrefix", distributed.WithPrefix("a{b"), "prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := distributed.New[string](e.clients[0], tc.opt)
			if d != nil {
				d.Close()
			}
			wantErr(t, "distributed.New", err, tc.want)
		})
	}
	for _, tc := range []struct {
		name   string
		remote mutex.Keyed[string]
		opts   []hybrid.Option
		want   string
	}{
		{"HybridNilRemote", nil, nil, "nil remote"},
		{"HybridNegativeHandoffs", e.dists[0], []hybrid.Option{hybrid.WithMaxLocalHandoffs(-1)}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := hybrid.New(tc.remote, tc.opts...)
			if h != nil {
				h.Close()
			}
			wantErr(t, "hybrid.New", err, tc.want)
		})
	}
}
