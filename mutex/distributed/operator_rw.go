package distributed

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
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

// ForceReleaseRW breaks a hold of key's [RWMutex] lock ([KindRW]): the
// writer's, if holder is its label ([WithLabel]) or owner id, or one
// reader's share, if holder is that reader's owner id (a holding
// reader's label is not stored, so a reader is named by owner id only;
// [InspectRWKeys] lists them). It releases as the holder's own release
// would (rwrelease.lua in its abort mode, by owner id, so a writer that
// changed meanwhile is left alone): a release that leaves the key
// without holders hands it to the head of the queue (the first live
// writer, or the run of live readers at its head). The holder's lease
// finds its loss at its next renewal or at its Unlock: errors.Is(err,
// [mutex.ErrLost]).
//
// A key whose read-write lock has no writer and no reader gets an error
// satisfying errors.Is(err, [ErrNotLocked]); one whose holders do not
// include holder, errors.Is(err, [ErrHeldByOther]), naming them.
func ForceReleaseRW(ctx context.Context, client redis.UniversalClient, prefix, key, holder string) (ReleaseResult, error) {
	if holder == "" {
		return ReleaseResult{}, errors.New("distributed: ForceReleaseRW: empty holder: name the writer's label or owner id, or a reader's owner id")
	}
	rs, err := InspectRWKeys(ctx, client, prefix, key)
	if err != nil {
		return ReleaseResult{}, err
	}
	before := rs[0]
	res := ReleaseResult{Before: before, After: before}
	owner, top := "", ""
	switch {
	case before.Foreign:
		return res, fmt.Errorf("distributed: ForceReleaseRW %q: %w: %s holds %q, a value this library did not write", key, ErrNotLocked, before.LockKey, before.Value)
	case before.Held && (before.Label == holder || before.Owner == holder):
		// The writer's tokens run at most maxAhead past the clock (see
		// ForceRelease): the release's free marker floors later tokens.
		owner, top = before.Owner, strconv.FormatInt(before.clockUs+maxAhead, 10)
	default:
		for _, rd := range before.Readers {
			if rd.Owner == holder {
				owner = rd.Owner
			}
		}
	}
	if owner == "" {
		switch {
		case before.Held:
			return res, fmt.Errorf("distributed: ForceReleaseRW %q: %w: held by writer %s, not %s", key, ErrHeldByOther, holderName(before.Info), holder)
		case len(before.Readers) > 0:
			owners := make([]string, len(before.Readers))
			for i, rd := range before.Readers {
				owners[i] = rd.Owner
			}
			return res, fmt.Errorf("distributed: ForceReleaseRW %q: %w: held by readers (owners %s), not %s (a reader is named by owner id)", key, ErrHeldByOther, strings.Join(owners, ", "), holder)
		}
		return res, fmt.Errorf("distributed: ForceReleaseRW %q: %w (%s: no writer, %s: no reader)", key, ErrNotLocked, before.LockKey, before.ReadersKey)
	}
	nm := rwNamesFor(prefix, key)
	sc := newRWScripts(DefaultTTL.Milliseconds(), prefix)
	args := []any{owner, "a", ""}
	if top != "" {
		args = append(args, top)
	}
	return breakHold(ctx, client, "ForceReleaseRW", key, nm, sc.release, args, res,
		func() ([]KeyReport, error) { return InspectRWKeys(ctx, client, prefix, key) })
}
