package distributed

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
)

// An Option configures a [Mutex] in [New].
type Option func(*config) error

// config is the settings of one Mutex, fixed by New.
type config struct {
	ttl           time.Duration
	spin          time.Duration // 0: pub/sub waiting
	renew         bool
	prefix        string
	pollInterval  time.Duration
	encoder       any          // func(K) (string, error), checked by New; nil: default encoding
	logger        *slog.Logger // nil: slog.Default() at each report
	obs           mutex.Observer
	label         string
	unlockTimeout time.Duration
	serverCheck   bool          // the one-time check of the servers' settings
	maxHold       time.Duration // 0: none; see WithMaxHold
}

// Defaults.
const (
	DefaultTTL           = 10 * time.Second
	DefaultPrefix        = "keyedmutex:"
	DefaultPollInterval  = time.Second
	DefaultUnlockTimeout = 5 * time.Second
)

func defaultConfig() config {
	return config{
		ttl:           DefaultTTL,
		renew:         true,
		prefix:        DefaultPrefix,
		pollInterval:  DefaultPollInterval,
		label:         defaultLabel(),
		unlockTimeout: DefaultUnlockTimeout,
		serverCheck:   true,
	}
}

// WithTTL sets the lease length: how long Redis keeps a lock whose holder
// stopped renewing it (crashed, partitioned). With renewal (the default)
// a lease is extended every ttl/3 while held; [WithoutRenewal] makes ttl
// the fixed length of every lease. A ttl below 1ms is an error; a ttl
// of a few round trips to Redis is valid but loses leases while held
// (their renewal, every ttl/3, cannot keep up with a busy host or
// network): keep it well above the worst latency you expect, 1s or more.
// The default is 10s.
func WithTTL(ttl time.Duration) Option {
	return func(c *config) error {
		if ttl < time.Millisecond {
			return fmt.Errorf("distributed: WithTTL(%v): the TTL must be at least 1ms", ttl)
		}
		c.ttl = ttl
		return nil
	}
}

// WithSpin makes Lock wait by retrying every interval (±50% random
// jitter) instead of queueing in Redis and sleeping until its grant
// arrives by Pub/Sub. A spinner never queues: it takes the lock only when
// it is free and nobody is queued, so it excludes, and yields to,
// queueing Mutexes of the same prefix, and on a key that queueing waiters
// keep busy it may wait long. Spinning costs Redis commands for as long
// as a waiter waits; it suits servers where Pub/Sub is unavailable.
// interval must be positive. The default is queueing with Pub/Sub grants.
func WithSpin(interval time.Duration) Option {
	return func(c *config) error {
		if interval <= 0 {
			return fmt.Errorf("distributed: WithSpin(%v): the interval must be positive", interval)
		}
		c.spin = interval
		return nil
	}
}

// WithoutRenewal gives every lease a fixed length, the TTL: it is lost
// when the TTL runs out even if still held. The default is to renew
// leases every TTL/3 while held.
func WithoutRenewal() Option {
	return func(c *config) error {
		c.renew = false
		return nil
	}
}

// WithPrefix sets the namespace of every Redis name the Mutex uses: the
// lock key prefix+"{"+key+"}", the queue key prefix+"q:{"+key+"}" and the
// grant channels prefix+"grant:{"+key+"}:"+id. Mutexes that must exclude
// each other use the same prefix. A prefix may not contain '{' or '}',
// which would break the Redis Cluster hash tag. Keys under the prefix
// belong to the library: nothing else should write them, and no prefix
// in use should be another one followed by "q:", "grant:" or, for an
// [RWMutex], "rw:", "rwr:", "rwq:" or "rwgrant:" ("app:" and "app:q:", or
// "app:" and "app:rw:", would name the same keys).
// The default is "keyedmutex:".
func WithPrefix(prefix string) Option {
	return func(c *config) error {
		if strings.ContainsAny(prefix, "{}") {
			return fmt.Errorf("distributed: WithPrefix(%q): a prefix may not contain '{' or '}' (they would break the Redis Cluster hash tag)", prefix)
		}
		c.prefix = prefix
		return nil
	}
}

// WithPollInterval sets how often a queued waiter refreshes its queue
// entry, which also checks whether a grant reached it: it sleeps
// min(the holder's remaining TTL, d) between two. Grant notices are lost
// only in rare cases (a reconnect wakes every waiter anyway), so d only
// bounds the wait in those. It also sets the liveness rules: a queue
// entry not refreshed for 3·d is dead, and a lock handed to a waiter
// lives min(TTL, 3·d) until the new holder's first renewal, so a waiter
// that died stalls the key for about 3·d at most. d must be positive.
// The default is 1s.
func WithPollInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("distributed: WithPollInterval(%v): the interval must be positive", d)
		}
		c.pollInterval = d
		return nil
	}
}

// WithKeyEncoder sets the function that turns a key into the string
// named in Redis. It must be injective (distinct keys, distinct strings)
// and return a non-empty string; errors are returned by Lock and TryLock.
// The default encoding takes string kinds as they are, formats integer
// kinds and bool with strconv, uses MarshalText for an
// [encoding.TextMarshaler], and is an error for any other type.
func WithKeyEncoder[K comparable](encode func(K) (string, error)) Option {
	return func(c *config) error {
		if encode == nil {
			return fmt.Errorf("distributed: WithKeyEncoder(nil)")
		}
		c.encoder = encode
		return nil
	}
}

// WithLogger sets the logger that receives what nobody else can be told:
// failed lease renewals and leases found lost in the background (Warn),
// releases that failed at Close, the errors the [sync.Locker] adapter
// retries, the shared Pub/Sub connection's losses, and what the one-time
// server check found (see [WithoutEvictionCheck]). Errors a call
// returns are never logged too. l must not be nil: to discard, pass
// slog.New(slog.DiscardHandler). The default is [slog.Default], looked
// up at each report.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("distributed: WithLogger(nil): pass slog.New(slog.DiscardHandler) to discard reports")
		}
		c.logger = l
		return nil
	}
}

// WithObserver sets the [mutex.Observer] told about every Lock, TryLock
// and Unlock (wait and hold times, outcomes), lost leases, renewals, and
// the protocol's events: waiters queued in Redis, grants handed over by a
// release, grant notices, poll wake-ups and Pub/Sub reconnects. o must
// not be nil. The default is none.
func WithObserver(o mutex.Observer) Option {
	return func(c *config) error {
		if o == nil {
			return errors.New("distributed: WithObserver(nil)")
		}
		c.obs = o
		return nil
	}
}

// WithLabel sets the label stored with every lock this Mutex holds and
// every queue entry of its waiters, so that an operator can see who holds
// a stuck key ([Mutex.Inspect], or redis-cli). It travels in values the
// protocol writes anyway: it adds bytes, not commands. Up to 64 bytes of
// printable ASCII, without spaces or '*'; "" for none. The default is
// the host name and process id, "host:pid".
func WithLabel(label string) Option {
	return func(c *config) error {
		if err := checkLabel(label); err != nil {
			return err
		}
		c.label = label
		return nil
	}
}

// MaxLabelLen is the longest label [WithLabel] accepts, in bytes.
const MaxLabelLen = 64

func checkLabel(label string) error {
	if len(label) > MaxLabelLen {
		return fmt.Errorf("distributed: WithLabel(%q): %d bytes; at most %d", label, len(label), MaxLabelLen)
	}
	for i := 0; i < len(label); i++ {
		if c := label[i]; c <= ' ' || c > '~' || c == '*' {
			return fmt.Errorf("distributed: WithLabel(%q): byte %d (%q) is not printable ASCII, or is a space or '*'", label, i, c)
		}
	}
	return nil
}

// defaultLabel is "host:pid", with any byte checkLabel refuses replaced.
func defaultLabel() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	b := []byte(host + ":" + strconv.Itoa(os.Getpid()))
	for i, c := range b {
		if c <= ' ' || c > '~' || c == '*' {
			b[i] = '_'
		}
	}
	if len(b) > MaxLabelLen {
		b = b[len(b)-MaxLabelLen:]
	}
	return string(b)
}

// WithUnlockTimeout bounds how long Unlock (which takes no context)
// waits for Redis. If it runs out, Unlock returns an error and the lock
// is freed by Redis when its TTL runs out. d must be positive.
// The default is 5s.
func WithUnlockTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("distributed: WithUnlockTimeout(%v): the timeout must be positive", d)
		}
		c.unlockTimeout = d
		return nil
	}
}

// WithoutEvictionCheck skips the check that a Mutex makes once, at its
// first Lock or TryLock (one round trip of INFO, to every master of a
// Cluster): that no server can evict the library's keys. A server with a
// memory limit (maxmemory) and any maxmemory-policy but noeviction may
// evict a held lock, and another process then takes it while the first
// still holds it: mutual exclusion breaks, and nothing tells either
// holder in time. Every key of the library has a TTL, so the volatile-*
// policies evict them first. The check logs a warning through
// [WithLogger], once per server, naming the server and its policy; it
// does not refuse the server (a managed service may not let you change
// the policy). Through a plain client it also warns when the server is a
// node of a Redis Cluster. Use this option to accept the risk, or where
// INFO is refused. The default is to check.
func WithoutEvictionCheck() Option {
	return func(c *config) error {
		c.serverCheck = false
		return nil
	}
}
