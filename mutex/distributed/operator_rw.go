package distributed

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// KindRW is the kind of an [RWMutex]'s locks: a writer key (a string),
// a readers key (a sorted set) and a queue key (a sorted set), under
// prefix + "rw:{", "rwr:{" and "rwq:{" (see the package documentation,
// "Read-write locks"). A Mutex and an RWMutex of the same key are
// different locks: [InspectKeys] reports a key's [KindMutex] lock,
// [InspectRWKeys] its [KindRW] lock, and [ListKeys] both.
const KindRW Kind = "rw"

// Reader is a reader holding a [KindRW] lock.
type Reader struct {
	// Owner is the reader's owner id (one per RLock call). Its label is
	// not stored in Redis for a reader that holds (only its queue entry,
	// while it waits, carries one), so Label is empty.
	Owner, Label string
	// TTL is how long its share has left unless renewed.
	TTL time.Duration
}

// InspectRWKeys reports the [RWMutex] locks ([KindRW]) of keys under
// prefix, as [InspectKeys] reports the Mutex's, in one pipeline of
// read-only commands: the writer (Held, Owner, Label, TTL), the readers
// that hold (Readers, in order of the expiry of their share) and the
// queue in FIFO order, readers and writers alike (QueuedWaiter.Reader).
// Errors are reported as by InspectKeys.
func InspectRWKeys(ctx context.Context, client redis.UniversalClient, prefix string, keys ...string) ([]KeyReport, error) {
	if client == nil {
		return nil, errors.New("distributed: InspectRWKeys: nil Redis client")
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("distributed: InspectRWKeys: prefix %q: a prefix may not contain '{' or '}'", prefix)
	}
	for _, k := range keys {
		if err := checkEncoded(k); err != nil {
			return nil, fmt.Errorf("distributed: InspectRWKeys: key %q: %w", k, err)
		}
	}
	return inspectKeys(ctx, client, prefix, KindRW, keys)
}

// parseReaders reads the readers' set (owner -> expiry ms) at nowUs:
// the live shares, soonest expiry first. Expired shares, which the next
// script that looks removes, are left out.
func parseReaders(zs []redis.Z, nowUs int64) []Reader {
	var out []Reader
	nowMs := nowUs / 1000
	for _, z := range zs {
		owner, _ := z.Member.(string)
		exp := int64(z.Score)
		if exp <= nowMs {
			continue
		}
		out = append(out, Reader{Owner: owner, TTL: time.Duration(exp-nowMs) * time.Millisecond})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].TTL < out[j].TTL })
	return out
}
