package distributed

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/redis/go-redis/v9"
)

// Info is what [Mutex.Inspect] found of one key's lock: an operator's view
// of a stuck key.
type Info struct {
	// Held reports whether somebody holds the lock.
	Held bool
	// Owner is the holder's owner id (random, one per Lock call).
	Owner string
	// Label names the holder's process ([WithLabel]; by default
	// "host:pid").
	Label string
	// TTL is how long the lock has left unless renewed (-1: no expiry);
	// 0 when nobody holds it.
	TTL time.Duration
	// Waiters is the length of the key's queue in Redis (dead entries
	// included until they reach its head).
	Waiters int64
	// LastToken is, for a lock that is free, the highest token issued
	// for the key while its free marker lives; 0 if unknown.
	LastToken uint64
	// MarkerTTL is, for a lock that is free, how long its free marker
	// (and so LastToken) still lives; 0 if there is none. It says
	// nothing about a holder: nobody holds a free lock.
	MarkerTTL time.Duration
	// Foreign is set when the lock key holds a value this library did not
	// write; Value is that value.
	Foreign bool
	Value   string
}

// Inspect reports who holds key's lock, since when, its remaining TTL and
// how many wait for it, in one round trip of read-only commands (GET,
// PTTL, ZCARD). The same can be read with redis-cli; for the default
// prefix and key "order-17":
//
//	redis-cli EVAL "return {redis.call('GET',KEYS[1]),redis.call('PTTL',KEYS[1]),redis.call('ZCARD',KEYS[2])}" 2 'keyedmutex:{order-17}' 'keyedmutex:q:{order-17}'
//
// where a held lock's value reads "<owner> <label>" (a trailing '*' says
// waiters were queued); a lock released with nobody
// waiting is absent, or for a few milliseconds "~<last-token>" (see
// the package doc).
func (m *Mutex[K]) Inspect(ctx context.Context, key K) (Info, error) {
	if m.core == nil {
		return Info{}, errNotNew
	}
	enc, err := m.encode(key)
	if err == nil {
		err = checkEncoded(enc)
	}
	if err != nil {
		return Info{}, lockutil.KeyError("distributed", "Inspect", key, fmt.Errorf("%w: %w", mutex.ErrInvalidKey, err))
	}
	if ctx == nil {
		return Info{}, opErr("Inspect", enc, lockutil.ErrNilContext)
	}
	nm := namesFor(m.cfg.prefix, enc)
	var (
		get   *redis.StringCmd
		pttl  *redis.DurationCmd
		zcard *redis.IntCmd
	)
	_, err = m.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, nm.lock)
		pttl = p.PTTL(ctx, nm.lock)
		zcard = p.ZCard(ctx, nm.queue)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		if isWrongType(err) {
			err = wrongType(nm, err)
		} else if uerr := m.exec.unfollowable(err); uerr != nil {
			err = uerr
		}
		return Info{}, opErr("Inspect", enc, err)
	}
	if err := zcard.Err(); err != nil {
		if isWrongType(err) {
			err = wrongType(nm, err)
		}
		return Info{}, opErr("Inspect", enc, err)
	}
	info := Info{Waiters: zcard.Val()}
	v, gerr := get.Result()
	if errors.Is(gerr, redis.Nil) {
		return info, nil
	}
	parseHolding(v, &info)
	if info.Held || info.Foreign {
		info.TTL = pttl.Val()
	} else {
		info.MarkerTTL = pttl.Val()
	}
	return info, nil
}

// parseHolding fills info from the lock key's value v.
func parseHolding(v string, info *Info) {
	lv := parseLockValue(v)
	switch {
	case lv.foreign:
		info.Foreign, info.Value = true, lv.raw
	case lv.marker:
		info.LastToken = lv.last
	default:
		info.Held, info.Owner, info.Label = true, lv.owner, lv.label
	}
}
