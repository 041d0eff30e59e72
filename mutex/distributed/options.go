package distributed

import (
	"fmt"
	"strings"
	"time"
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
	encoder       any // func(K) (string, error), checked by New; nil: default encoding
	onError       func(error)
	unlockTimeout time.Duration
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
		onError:       func(error) {},
		unlockTimeout: DefaultUnlockTimeout,
	}
}

// WithTTL sets the lease length: how long Redis keeps a lock whose holder
// stopped renewing it (crashed, partitioned). With renewal (the default)
// a lease is extended every ttl/3 while held; [WithoutRenewal] makes ttl
// the fixed length of every lease. A ttl below 1ms is an error.
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
// jitter) instead of sleeping until a Pub/Sub release notice. Spinning
// costs Redis commands for as long as a waiter waits; it suits servers
// where Pub/Sub is unavailable. interval must be positive.
// The default is Pub/Sub waiting.
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
// lock keys, the fence counters and the release channels. Mutexes that
// must exclude each other use the same prefix. A prefix may not contain
// '{' or '}', which would break the Redis Cluster hash tag.
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

// WithPollInterval bounds how long a Pub/Sub waiter sleeps without a
// release notice before it tries again: it waits min(the holder's
// remaining TTL, d). Notices are lost only in rare cases (a reconnect
// wakes every waiter anyway), so d only bounds the wait in those.
// d must be positive. The default is 1s.
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

// WithErrorHandler sets the function that receives errors nobody else
// can return: failed lease renewals and lost leases, and the errors the
// [sync.Locker] adapter retries. It is called from background
// goroutines and must not block. The default discards them.
func WithErrorHandler(h func(error)) Option {
	return func(c *config) error {
		if h == nil {
			h = func(error) {}
		}
		c.onError = h
		return nil
	}
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
