package distributed

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The operator API: what a person on call (or the keyedmutex command)
// needs to see and break the locks of any process, without a Mutex and
// without knowing the key layout. Its functions take a client, the prefix
// the Mutexes use ([WithPrefix]; [DefaultPrefix] by default) and keys as
// encoded strings (what [WithKeyEncoder] makes of them; for string keys,
// the keys themselves).

// Kind names a kind of lock whose Redis names the operator API knows.
type Kind string

// KindMutex is the kind of a [Mutex]'s locks: a lock key (a string) and
// a queue key (a sorted set). [KindRW] is the kind of an [RWMutex]'s.
// [ListKeys] reports only the kinds it knows.
const KindMutex Kind = "mutex"

// KeyReport is an operator's view of one key's lock.
type KeyReport struct {
	// Key is the encoded key; Kind the kind of lock.
	Key  string
	Kind Kind
	// LockKey and QueueKey are its Redis names. For [KindRW], LockKey is
	// the writer key and ReadersKey the readers' set; Held, Owner, Label
	// and TTL are the writer's, and Readers the readers that hold.
	LockKey, QueueKey, ReadersKey string
	// Readers are the readers holding a [KindRW] lock (live shares only).
	Readers []Reader
	// Info is what [Mutex.Inspect] reports (Waiters: the queue's length).
	// No fencing token and no acquisition time is stored (protocol v3:
	// tokens are the server clock read while the lock is held).
	Info
	// Queue is the queue in FIFO order.
	Queue []QueuedWaiter
	// Err is set when the key could not be read: errors.Is(Err,
	// [ErrWrongType]) for a lock or queue key of another type, or the
	// error of the key's server (a timeout of a stalled Cluster master).
	// The other fields but Key, Kind, LockKey and QueueKey are then zero.
	Err error

	clockUs int64 // the server clock (µs) when it was read
}

// Locked reports whether the key is held, has waiters, or its lock key
// holds a value this library did not write (Foreign), which blocks every
// Lock of the key as a holder would, until it expires or is deleted.
// For [KindRW], readers holding it count too.
func (r KeyReport) Locked() bool {
	return r.Held || r.Foreign || r.Waiters > 0 || len(r.Readers) > 0
}

// LongestWait is how long the head of the queue has waited; 0 without
// waiters.
func (r KeyReport) LongestWait() time.Duration {
	if len(r.Queue) == 0 {
		return 0
	}
	return r.Queue[0].Waited
}

// QueuedWaiter is one entry of a key's queue.
type QueuedWaiter struct {
	// Owner is the waiter's owner id (one per Lock call); Label names its
	// process ([WithLabel]); MutexID names its Mutex.
	Owner, Label, MutexID string
	// Waited is how long it has been queued, by the server's clock.
	Waited time.Duration
	// Dead reports an entry its waiter stopped refreshing (a crashed or
	// partitioned process): it is skipped when it reaches the head.
	Dead bool
	// Reader reports, in a [KindRW] queue, a reader (RLock); false for
	// a writer, and always false in a [KindMutex] queue.
	Reader bool
}

// ErrNotLocked is returned by [ForceRelease] for a key nobody holds.
var ErrNotLocked = errors.New("distributed: the key is not locked")

// ErrHeldByOther is returned by [ForceRelease] for a key held by a holder
// other than the one named.
var ErrHeldByOther = errors.New("distributed: the key is held by another holder")

// keyName is one Redis name form of a kind of lock: prefix + head + tag + "}".
type keyName struct {
	kind Kind
	part string // "lock", "queue"
	head string
}

// keyNames are the forms of every kind the operator API knows. A kind is
// added here (and to InspectKeys, which reads a kind's keys); ListKeys's
// SCAN pattern, prefix*{match}, finds every form that ends with the tag.
var keyNames = []keyName{
	{KindMutex, "lock", "{"},
	{KindMutex, "queue", "q:{"},
	{KindRW, "writer", "rw:{"},
	{KindRW, "readers", "rwr:{"},
	{KindRW, "queue", "rwq:{"},
}

// ParseKeyName returns the encoded key, the kind of lock and the part
// ("lock", "queue"; for [KindRW] "writer", "readers", "queue") of the Redis name name under prefix, or ok false if
// name is not the name of a lock of a known kind under prefix.
func ParseKeyName(prefix, name string) (key string, kind Kind, part string, ok bool) {
	rest, found := strings.CutPrefix(name, prefix)
	if !found || !strings.HasSuffix(rest, "}") {
		return "", "", "", false
	}
	for _, f := range keyNames {
		if tag, found := strings.CutPrefix(rest, f.head); found {
			key, err := unescapeTag(tag[:len(tag)-1])
			if err != nil || key == "" {
				return "", "", "", false
			}
			return key, f.kind, f.part, true
		}
	}
	return "", "", "", false
}

// unescapeTag inverts escapeTag.
func unescapeTag(tag string) (string, error) {
	if strings.ContainsRune(tag, '}') {
		return "", errors.New("'}' in a hash tag")
	}
	if !strings.Contains(tag, "%") {
		return tag, nil
	}
	var b strings.Builder
	for i := 0; i < len(tag); i++ {
		if tag[i] != '%' {
			b.WriteByte(tag[i])
			continue
		}
		switch {
		case strings.HasPrefix(tag[i:], "%25"):
			b.WriteByte('%')
		case strings.HasPrefix(tag[i:], "%7D"):
			b.WriteByte('}')
		default:
			return "", errors.New("bad escape in a hash tag")
		}
		i += 2
	}
	return b.String(), nil
}

// InspectKeys reports the locks of keys under prefix, in one pipeline of
// read-only commands (GET, PTTL, ZRANGE, TIME). In a Cluster the clock is
// read on each key's own server (by a script that runs TIME with the lock
// key in KEYS), so waited times and dead-waiter flags are by that
// server's clock, and a key needs only its own master to answer.
//
// A key that cannot be read does not hide the others: its report has Err
// set (a lock or queue key of another type: errors.Is(Err,
// [ErrWrongType]), naming it; a server that does not answer: its error),
// and InspectKeys returns every report with an error that wraps the
// first key's and counts the others. Invalid arguments, and a
// non-Cluster server that does not answer, return no reports. A key nobody holds or
// waits for reports Locked false.
func InspectKeys(ctx context.Context, client redis.UniversalClient, prefix string, keys ...string) ([]KeyReport, error) {
	if client == nil {
		return nil, errors.New("distributed: InspectKeys: nil Redis client")
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("distributed: InspectKeys: prefix %q: a prefix may not contain '{' or '}'", prefix)
	}
	for _, k := range keys {
		if err := checkEncoded(k); err != nil {
			return nil, fmt.Errorf("distributed: InspectKeys: key %q: %w", k, err)
		}
	}
	return inspectKeys(ctx, client, prefix, KindMutex, keys)
}

// inspectKeys reads the locks of kind of keys, checked.
func inspectKeys(ctx context.Context, client redis.UniversalClient, prefix string, kind Kind, keys []string) ([]KeyReport, error) {
	out := make([]KeyReport, 0, len(keys))
	const chunk = 256
	for len(keys) > 0 {
		n := min(len(keys), chunk)
		rs, err := inspectChunk(ctx, client, prefix, kind, keys[:n])
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
		keys = keys[n:]
	}
	return out, keyErrors(out)
}

// keyErrors returns nil if every report was read, else an error wrapping
// the first report's Err and counting the others.
func keyErrors(rs []KeyReport) error {
	var first error
	n := 0
	for _, r := range rs {
		if r.Err != nil {
			if first == nil {
				first = r.Err
			}
			n++
		}
	}
	switch {
	case n == 0:
		return nil
	case n == 1:
		return first
	}
	return fmt.Errorf("%w (and %d more keys could not be read)", first, n-1)
}

// clockScript reads the server clock on the node that serves KEYS[1]: in
// a Cluster, a keyless TIME goes to any node, whose clock may be skewed
// from the key's server, and which may be stalled while the key's is not.
const clockScript = "return redis.call('TIME')"

func inspectChunk(ctx context.Context, client redis.UniversalClient, prefix string, kind Kind, keys []string) ([]KeyReport, error) {
	type cmds struct {
		get     *redis.StringCmd
		pttl    *redis.DurationCmd
		queue   *redis.ZSliceCmd
		readers *redis.ZSliceCmd // KindRW only
		clock   *redis.Cmd       // Cluster: the key's own server clock
	}
	namesOf := namesFor
	if kind == KindRW {
		namesOf = rwNamesFor
	}
	_, cluster := client.(*redis.ClusterClient)
	cs := make([]cmds, len(keys))
	var now *redis.TimeCmd
	_, err := client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			nm := namesOf(prefix, k)
			cs[i] = cmds{get: p.Get(ctx, nm.lock), pttl: p.PTTL(ctx, nm.lock), queue: p.ZRangeWithScores(ctx, nm.queue, 0, -1)}
			if kind == KindRW {
				cs[i].readers = p.ZRangeWithScores(ctx, nm.readers, 0, -1)
			}
			if cluster {
				cs[i].clock = p.Eval(ctx, clockScript, []string{nm.lock})
			}
		}
		if !cluster {
			now = p.Time(ctx)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) && !isWrongType(err) && !cluster {
		return nil, fmt.Errorf("distributed: inspect: %w", err)
	}
	var nowUs int64
	if !cluster {
		if err := now.Err(); err != nil {
			return nil, fmt.Errorf("distributed: inspect: TIME: %w", err)
		}
		nowUs = now.Val().UnixMicro()
	}
	out := make([]KeyReport, len(keys))
	for i, k := range keys {
		nm := namesOf(prefix, k)
		c := cs[i]
		r := KeyReport{Key: k, Kind: kind, LockKey: nm.lock, QueueKey: nm.queue, ReadersKey: nm.readers}
		if cluster {
			us, err := clockOf(c.clock)
			if err != nil {
				r.Err = fmt.Errorf("distributed: inspect %q: TIME of %s's server: %w", k, nm.lock, err)
				out[i] = r
				continue
			}
			nowUs = us
		}
		r.clockUs = nowUs
		errs := []error{c.get.Err(), c.queue.Err(), c.pttl.Err()}
		if c.readers != nil {
			errs = append(errs, c.readers.Err())
		}
		for _, e := range errs {
			if e != nil && !errors.Is(e, redis.Nil) {
				if isWrongType(e) {
					e = wrongType(nm, e)
				}
				r.Err = fmt.Errorf("distributed: inspect %q: %w", k, e)
				break
			}
		}
		if r.Err != nil {
			out[i] = r
			continue
		}
		for _, z := range c.queue.Val() {
			member, _ := z.Member.(string)
			w := parseEntry(member, int64(z.Score), nowUs)
			w.Reader = kind == KindRW && field(strings.Split(member, " "), 2) == "0"
			r.Queue = append(r.Queue, w)
		}
		if c.readers != nil {
			r.Readers = parseReaders(c.readers.Val(), nowUs)
		}
		r.Waiters = int64(len(r.Queue))
		if v, err := c.get.Result(); err == nil {
			parseHolding(v, &r.Info)
			if r.Held || r.Foreign {
				r.TTL = c.pttl.Val()
			} else {
				r.MarkerTTL = c.pttl.Val()
			}
		}
		out[i] = r
	}
	return out, nil
}

// clockOf parses the reply of clockScript (TIME: seconds, microseconds)
// into microseconds.
func clockOf(c *redis.Cmd) (int64, error) {
	v, err := c.Slice()
	if err != nil {
		return 0, err
	}
	if len(v) != 2 {
		return 0, fmt.Errorf("TIME replied %v", v)
	}
	var f [2]int64
	for i, x := range v {
		switch x := x.(type) {
		case string:
			n, err := strconv.ParseInt(x, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("TIME replied %v", v)
			}
			f[i] = n
		case int64:
			f[i] = x
		default:
			return 0, fmt.Errorf("TIME replied %v", v)
		}
	}
	return f[0]*1_000_000 + f[1], nil
}

// parseEntry parses a queue member joined at score (server µs), at now.
func parseEntry(member string, score, nowUs int64) QueuedWaiter {
	f := strings.Split(member, " ")
	w := QueuedWaiter{Owner: field(f, 0), MutexID: field(f, 1), Label: field(f, 5)}
	if score > 0 && nowUs > score {
		w.Waited = time.Duration(nowUs-score) * time.Microsecond
	}
	if dl, err := strconv.ParseInt(field(f, 6), 10, 64); err == nil && dl < nowUs/1000 {
		w.Dead = true
	}
	return w
}

// ListKeys finds, by SCAN (never KEYS) on every master of a Cluster, the
// keys under prefix, of every kind (a [Mutex]'s, [KindMutex], and an
// [RWMutex]'s, [KindRW]: one report per kind of a key), that are held
// (for [KindRW], by a writer or by readers), have waiters or whose lock key holds a
// foreign value (see [KeyReport.Locked]), and reports them
// sorted by the wait of their queue's head, longest first (then by key).
// A key that cannot be read (see [InspectKeys]) is reported too, with Err
// set, after the others, and ListKeys then returns the reports with an
// error.
// match, if not empty, is a Redis glob pattern the encoded key must match
// ('%' and '}' in it stand for themselves, as in keys).
func ListKeys(ctx context.Context, client redis.UniversalClient, prefix, match string) ([]KeyReport, error) {
	if client == nil {
		return nil, errors.New("distributed: ListKeys: nil Redis client")
	}
	if strings.ContainsAny(prefix, "{}") {
		return nil, fmt.Errorf("distributed: ListKeys: prefix %q: a prefix may not contain '{' or '}'", prefix)
	}
	if match == "" {
		match = "*"
	}
	pattern := globEscape(prefix) + "*{" + escapeTag(match) + "}"
	seen := map[string]bool{}
	var keys, rwKeys []string
	var mu sync.Mutex // ForEachMaster scans the masters concurrently
	scan := func(ctx context.Context, node redis.Cmdable) error {
		var cursor uint64
		for {
			page, next, err := node.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				return err
			}
			mu.Lock()
			for _, name := range page {
				if k, kind, _, ok := ParseKeyName(prefix, name); ok && !seen[string(kind)+":"+k] {
					seen[string(kind)+":"+k] = true
					if kind == KindRW {
						rwKeys = append(rwKeys, k)
					} else {
						keys = append(keys, k)
					}
				}
			}
			mu.Unlock()
			if next == 0 {
				return nil
			}
			cursor = next
		}
	}
	var err error
	if cc, ok := client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return scan(ctx, node) })
	} else {
		err = scan(ctx, client)
	}
	if err != nil {
		return nil, fmt.Errorf("distributed: ListKeys: SCAN: %w", err)
	}
	rs, err := InspectKeys(ctx, client, prefix, keys...)
	if rs == nil && err != nil {
		return nil, err
	}
	if len(rwKeys) > 0 {
		rws, rwErr := InspectRWKeys(ctx, client, prefix, rwKeys...)
		if rws == nil && rwErr != nil {
			return nil, rwErr
		}
		rs = append(rs, rws...)
		err = keyErrors(rs)
	}
	out := rs[:0]
	for _, r := range rs {
		if r.Locked() || r.Err != nil {
			out = append(out, r) // a key released since the SCAN is left out
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if a, b := out[i].Err != nil, out[j].Err != nil; a != b {
			return b
		}
		if a, b := out[i].LongestWait(), out[j].LongestWait(); a != b {
			return a > b
		}
		if out[i].Key != out[j].Key {
			return out[i].Key < out[j].Key
		}
		return out[i].Kind < out[j].Kind
	})
	return out, err
}

// globEscape escapes the glob characters of s for a SCAN MATCH pattern.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(`*?[]\`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ReleaseResult is what [ForceRelease] did.
type ReleaseResult struct {
	// Before is the key as found; After as left (held by the next waiter,
	// or free), read after the release: zero if that read failed.
	Before, After KeyReport
}

// ForceRelease breaks key's lock if its holder is holder (the holder's
// label, [WithLabel], or its owner id), and hands it to the first live
// waiter exactly as an Unlock would (release.lua in its abort mode, by
// owner id, so a lock that changed hands meanwhile is left alone). The
// old holder's lease finds its loss at its next renewal (within a third
// of its TTL) or at its Unlock: errors.Is(err, [mutex.ErrLost]).
//
// A key nobody holds gets an error satisfying errors.Is(err,
// [ErrNotLocked]); one held by another holder, errors.Is(err,
// [ErrHeldByOther]), naming it. Protocol v3 stores no fencing tokens, so
// a holder cannot be named by token.
func ForceRelease(ctx context.Context, client redis.UniversalClient, prefix, key, holder string) (ReleaseResult, error) {
	if holder == "" {
		return ReleaseResult{}, errors.New("distributed: ForceRelease: empty holder: name the holder's label or owner id")
	}
	rs, err := InspectKeys(ctx, client, prefix, key)
	if err != nil {
		return ReleaseResult{}, err
	}
	before := rs[0]
	res := ReleaseResult{Before: before, After: before}
	switch {
	case before.Foreign:
		return res, fmt.Errorf("distributed: ForceRelease %q: %w: %s holds %q, a value this library did not write", key, ErrNotLocked, before.LockKey, before.Value)
	case !before.Held:
		note := ""
		if rws, err := InspectRWKeys(ctx, client, prefix, key); err == nil && rws[0].Locked() {
			note = "; its RWMutex lock is held or queued: ForceReleaseRW breaks that"
		}
		return res, fmt.Errorf("distributed: ForceRelease %q: %w (%s: no holder)%s", key, ErrNotLocked, before.LockKey, note)
	case before.Label != holder && before.Owner != holder:
		return res, fmt.Errorf("distributed: ForceRelease %q: %w: held by %s, not %s", key, ErrHeldByOther, holderName(before.Info), holder)
	}
	nm := namesFor(prefix, key)
	sc := newScripts(DefaultTTL.Milliseconds(), prefix)
	// The holder's tokens (a block of LockN's, for hybrid) run at most
	// maxAhead past the clock at its acquisition, which came before the
	// read of the key's own server clock (InspectKeys reads it there, in a
	// Cluster too): tokens issued after the release start above them.
	top := strconv.FormatInt(before.clockUs+maxAhead, 10)
	return breakHold(ctx, client, "ForceRelease", key, nm, sc.release, []any{before.Owner, "a", "", top}, res,
		func() ([]KeyReport, error) { return InspectKeys(ctx, client, prefix, key) })
}

// breakHold runs a release script in its abort mode for an operator
// (ForceRelease, ForceReleaseRW), then reads the key again with inspect
// for res.After.
func breakHold(ctx context.Context, client redis.UniversalClient, op, key string, nm names, script *redis.Script, args []any, res ReleaseResult, inspect func() ([]KeyReport, error)) (ReleaseResult, error) {
	n, err := runInPipeline(ctx, client, script, nm.keys(), args...)
	if err != nil {
		if isWrongType(err) {
			err = wrongType(nm, err)
		}
		return res, fmt.Errorf("distributed: %s %q: %w", op, key, err)
	}
	switch n {
	case 0:
		return res, fmt.Errorf("distributed: %s %q: %w: the lock changed hands before the release", op, key, ErrHeldByOther)
	case 2:
		return res, fmt.Errorf("distributed: %s %q: %w: the hold expired before the release", op, key, ErrNotLocked)
	}
	res.After = KeyReport{}
	if rs, err := inspect(); err == nil {
		res.After = rs[0]
	}
	return res, nil
}

// runInPipeline runs script as a one-command pipeline (EVALSHA, then EVAL
// at NOSCRIPT): in a Cluster, a pipeline goes straight to the key's
// master, while a lone command may first load the command table from an
// arbitrary node, which waits out its timeout if that node is stalled.
func runInPipeline(ctx context.Context, client redis.UniversalClient, script *redis.Script, keys []string, args ...any) (int64, error) {
	var cmd *redis.Cmd
	_, _ = client.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmd = script.EvalSha(ctx, p, keys, args...)
		return nil
	})
	if err := cmd.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		_, _ = client.Pipelined(ctx, func(p redis.Pipeliner) error {
			cmd = script.Eval(ctx, p, keys, args...)
			return nil
		})
	}
	return cmd.Int64()
}

// holderName names the holder of info: its label and owner id.
func holderName(info Info) string {
	if info.Label == "" {
		return "owner " + info.Owner
	}
	return info.Label + " (owner " + info.Owner + ")"
}

// field returns f[i], or "" past the end of f.
func field(f []string, i int) string {
	if i < len(f) {
		return f[i]
	}
	return ""
}
