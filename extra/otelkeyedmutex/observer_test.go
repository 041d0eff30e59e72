package otelkeyedmutex_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/keyedmutex/keyedmutex/extra/otelkeyedmutex"
	"github.com/keyedmutex/keyedmutex/internal/leakcheck"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/keyedmutex/keyedmutex/mutex/hybrid"
	"github.com/keyedmutex/keyedmutex/mutex/local"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// The instrument names the tests read.
const (
	waitName     = "keyedmutex.lock.wait.duration"
	holdName     = "keyedmutex.lock.hold.duration"
	acqName      = "keyedmutex.lock.acquisitions"
	waitersName  = "keyedmutex.lock.waiters"
	lostName     = "keyedmutex.lease.lost"
	renewalsName = "keyedmutex.lease.renewals"
	handoffsName = "keyedmutex.handoffs"
	pollsName    = "keyedmutex.poll.wakeups"
	noticesName  = "keyedmutex.notices"
	reconnName   = "keyedmutex.reconnects"
)

// hold is how long the scenario's first holder keeps the key while a
// second Lock waits for it: the wait the histograms must see.
const hold = 50 * time.Millisecond

func backend(b string) attribute.KeyValue { return attribute.String("keyedmutex.backend", b) }
func op(o string) attribute.KeyValue      { return attribute.String("keyedmutex.op", o) }
func outcome(o string) attribute.KeyValue { return attribute.String("keyedmutex.outcome", o) }
func kind(k string) attribute.KeyValue    { return attribute.String("keyedmutex.handoff.kind", k) }

// scenario drives m, observed through h.tee, through the Locks every
// backend must count alike: an uncontended Lock, a TryLock of the held
// key, a Lock whose ctx ends while it waits, and a Lock that waits
// about hold for the holder's Unlock. The calls run under a span it
// returns, which the spans of the waiting Locks must have as parent.
func scenario(t *testing.T, h *harness, m mutex.Keyed[string], be, key string) trace.SpanContext {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx, span := h.tp.Tracer("test").Start(ctx, "request")
	defer span.End()

	l1, err := m.Lock(ctx, key)
	if err != nil {
		t.Fatalf("Lock(free key) = %v", err)
	}
	if _, err := m.TryLock(ctx, key); !errors.Is(err, mutex.ErrLocked) {
		t.Fatalf("TryLock(held key) = %v; want ErrLocked", err)
	}
	// A Lock whose ctx ends while it waits. (Cancelled once it waits,
	// not by a deadline: on a loaded machine a short deadline can run
	// out before the Lock starts to wait.)
	short, cancelShort := context.WithCancel(ctx)
	defer cancelShort()
	ended := make(chan error, 1)
	go func() {
		_, err := m.Lock(short, key)
		ended <- err
	}()
	h.tee.awaitWaiting(t, ctx, be)
	cancelShort()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock(held key), cancelled while it waits = %v; want context.Canceled", err)
	}

	got := make(chan error, 1)
	go func() {
		l2, err := m.Lock(ctx, key)
		if err == nil {
			err = l2.Unlock()
		}
		got <- err
	}()
	h.tee.awaitWaiting(t, ctx, be)
	if n := h.collect(t).sum(t, waitersName, backend(be)); n != 1 {
		t.Errorf("%s{%s} while one Lock waits = %d; want 1", waitersName, be, n)
	}
	time.Sleep(hold) // the holder's critical section: the wait to measure
	if err := l1.Unlock(); err != nil {
		t.Fatalf("Unlock() = %v", err)
	}
	if err := <-got; err != nil {
		t.Fatalf("waiting Lock, then Unlock = %v", err)
	}
	return span.SpanContext()
}

// checkScenario checks what every backend must have recorded for one
// scenario.
func checkScenario(t *testing.T, h *harness, be string, parent trace.SpanContext) {
	t.Helper()
	s := h.collect(t)
	for _, c := range []struct {
		op, outcome string
		want        int64
	}{
		{"Lock", "acquired", 2},
		{"TryLock", "locked", 1},
		{"Lock", "canceled", 1},
	} {
		if n := s.sum(t, acqName, backend(be), op(c.op), outcome(c.outcome)); n != c.want {
			t.Errorf("%s{%s, %s, %s} = %d; want %d", acqName, be, c.op, c.outcome, n, c.want)
		}
	}
	if n := s.sum(t, acqName, backend(be)); n != 4 {
		t.Errorf("%s{%s} = %d; want 4 (no other outcome)", acqName, be, n)
	}
	if n := s.sum(t, waitersName, backend(be)); n != 0 {
		t.Errorf("%s{%s} after the scenario = %d; want 0", waitersName, be, n)
	}

	if n, sum := s.hist(t, waitName, backend(be)); n != 4 {
		t.Errorf("%s{%s} count = %d (sum %v); want 4", waitName, be, n, sum)
	}
	if n, sum := s.hist(t, waitName, backend(be), op("Lock"), outcome("acquired")); n != 2 || sum < hold.Seconds() {
		t.Errorf("%s{%s, Lock, acquired} = count %d, sum %vs; want 2, at least %v", waitName, be, n, sum, hold)
	}
	// The cancelled Lock's span covers exactly its wait.
	nCanceled, canceledWait := s.hist(t, waitName, backend(be), outcome("canceled"))
	if nCanceled != 1 || canceledWait <= 0 {
		t.Errorf("%s{%s, canceled} = count %d, sum %vs; want 1, positive", waitName, be, nCanceled, canceledWait)
	}
	// The first lease was held across the hold.
	if n, sum := s.hist(t, holdName, backend(be), outcome("released")); n != 2 || sum < hold.Seconds() {
		t.Errorf("%s{%s, released} = count %d, sum %vs; want 2, at least %v", holdName, be, n, sum, hold)
	}

	var spans []string
	for _, sp := range h.spans.GetSpans() {
		if sp.Name != otelkeyedmutex.SpanName || !hasAttr(sp.Attributes, backend(be)) {
			continue
		}
		spans = append(spans, attrValue(sp.Attributes, "keyedmutex.outcome"))
		if sp.Parent.SpanID() != parent.SpanID() {
			t.Errorf("span %s: parent %v; want the caller's span %v", sp.Name, sp.Parent.SpanID(), parent.SpanID())
		}
		d := sp.EndTime.Sub(sp.StartTime)
		switch out := attrValue(sp.Attributes, "keyedmutex.outcome"); out {
		case "acquired":
			if sp.Status.Code != codes.Unset || d < hold {
				t.Errorf("span of the waiting Lock: status %v, duration %v; want Unset, at least %v", sp.Status, d, hold)
			}
		case "canceled":
			if sp.Status.Code != codes.Error || sp.Status.Description != "canceled" || d.Seconds() != canceledWait {
				t.Errorf("span of the cancelled Lock: status %v, duration %v; want Error \"canceled\", %vs (its recorded wait)", sp.Status, d, canceledWait)
			}
		default:
			t.Errorf("span with outcome %q; want only the two Locks that waited", out)
		}
	}
	if len(spans) != 2 {
		t.Errorf("%s spans of %s: outcomes %q; want 2 (the Locks that waited, not the others)", otelkeyedmutex.SpanName, be, spans)
	}
}

func hasAttr(kvs []attribute.KeyValue, want attribute.KeyValue) bool {
	for _, kv := range kvs {
		if kv == want {
			return true
		}
	}
	return false
}

func attrValue(kvs []attribute.KeyValue, key attribute.Key) string {
	for _, kv := range kvs {
		if kv.Key == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// checkNoKey fails if any attribute or span text contains key.
func checkNoKey(t *testing.T, h *harness, key string) {
	t.Helper()
	texts := append(h.collect(t).attrs(), spanTexts(h.spans.GetSpans())...)
	if len(texts) == 0 {
		t.Fatal("no attributes recorded at all")
	}
	if leaks := containing(texts, key); len(leaks) > 0 {
		t.Errorf("the key %q is recorded without WithKeyAttribute: %q", key, leaks)
	}
}

func TestLocal(t *testing.T) {
	h := newHarness(t)
	m, err := local.New[string](local.WithObserver(h.tee))
	if err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	parent := scenario(t, h, m, "local", key)
	checkScenario(t, h, "local", parent)
	checkNoKey(t, h, key)
}

// TestHybridOverLocal gives one Observer to a hybrid Mutex and to its
// remote, a local.Mutex: each counts its own side.
func TestHybridOverLocal(t *testing.T) {
	leakcheck.Register(t)
	h := newHarness(t)
	remote, err := local.New[string](local.WithObserver(h.tee))
	if err != nil {
		t.Fatal(err)
	}
	m, err := hybrid.New[string](remote, hybrid.WithObserver(h.tee))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	key := testKey(t)
	parent := scenario(t, h, m, "hybrid", key)
	checkScenario(t, h, "hybrid", parent)
	checkNoKey(t, h, key)

	s := h.collect(t)
	// The first Lock acquired the remote lease; the waiting Lock got it
	// from the first holder's Unlock, by a cohort handoff.
	if n := s.sum(t, handoffsName, backend("hybrid"), kind("remote")); n != 1 {
		t.Errorf("%s{hybrid, remote} = %d; want 1", handoffsName, n)
	}
	if n := s.sum(t, handoffsName, backend("hybrid"), kind("local")); n != 1 {
		t.Errorf("%s{hybrid, local} = %d; want 1", handoffsName, n)
	}
	// The remote saw one Lock and one Unlock: the cohort's.
	if n := s.sum(t, acqName, backend("local")); n != 1 {
		t.Errorf("%s{local} = %d; want 1 (the cohort's remote lease)", acqName, n)
	}
	if n, _ := s.hist(t, holdName, backend("local")); n != 1 {
		t.Errorf("%s{local} count = %d; want 1", holdName, n)
	}
}

// newDistributed returns a distributed Mutex on a fresh miniredis,
// observed through h.tee.
func newDistributed(t *testing.T, h *harness, opts ...distributed.Option) (*distributed.Mutex[string], *miniredis.Miniredis) {
	t.Helper()
	s := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	// Losses reach the tests through leases and metrics, not the log.
	m, err := distributed.New[string](rdb, append([]distributed.Option{
		distributed.WithObserver(h.tee),
		distributed.WithLogger(slog.New(slog.DiscardHandler)),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return m, s
}

func TestDistributed(t *testing.T) {
	leakcheck.Register(t)
	h := newHarness(t)
	// A poll bound far past the test: the waiting Lock wakes by its grant.
	m, _ := newDistributed(t, h, distributed.WithPollInterval(time.Minute))
	key := testKey(t)
	parent := scenario(t, h, m, "distributed", key)
	checkScenario(t, h, "distributed", parent)
	checkNoKey(t, h, key)

	s := h.collect(t)
	// The first holder's release handed the lock to the waiting Lock
	// and told it by a notice.
	for _, c := range []struct {
		name string
		kv   []attribute.KeyValue
		want int64
	}{
		{handoffsName, []attribute.KeyValue{kind("remote")}, 1},
		{handoffsName, []attribute.KeyValue{kind("local")}, 0},
		{noticesName, nil, 1},
		{pollsName, nil, 0},
		{reconnName, nil, 0},
		{lostName, nil, 0},
	} {
		if n := s.sum(t, c.name, append(c.kv, backend("distributed"))...); n != c.want {
			t.Errorf("%s{distributed %v} = %d; want %d", c.name, c.kv, n, c.want)
		}
	}
}

// TestDistributedLostLease: a lease renewed, then lost when its key
// expires in Redis, is counted once as lost while held, and its Unlock
// in the hold histogram with outcome lost.
func TestDistributedLostLease(t *testing.T) {
	leakcheck.Register(t)
	h := newHarness(t)
	// Renewed every 500ms: long enough that a renewal succeeds on a
	// loaded machine, short enough for a test.
	const ttl = 1500 * time.Millisecond
	m, s := newDistributed(t, h, distributed.WithTTL(ttl))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	l, err := m.Lock(ctx, testKey(t))
	if err != nil {
		t.Fatalf("Lock() = %v", err)
	}
	select {
	case <-h.tee.renew:
	case <-l.Done():
		t.Fatalf("the lease ended before its first renewal: %v", l.Err())
	case <-ctx.Done():
		t.Fatal("no renewal")
	}
	s.FastForward(ttl) // the key expires: the next renewal finds it gone
	select {
	case <-l.Done():
	case <-ctx.Done():
		t.Fatal("the lease was not lost")
	}
	// Done closes before the Lost event is told: wait for it too.
	select {
	case <-h.tee.lost:
	case <-ctx.Done():
		t.Fatalf("no Lost event for a lease lost with %v", l.Err())
	}
	if err := l.Unlock(); !errors.Is(err, mutex.ErrLost) {
		t.Fatalf("Unlock(lost lease) = %v; want ErrLost", err)
	}

	snap := h.collect(t)
	be := backend("distributed")
	if n := snap.sum(t, lostName, be); n != 1 {
		t.Errorf("%s = %d; want 1", lostName, n)
	}
	if n, want := snap.sum(t, renewalsName, be, outcome("ok")), h.tee.renewed.Load(); n != want || n < 1 {
		t.Errorf("%s{ok} = %d; want %d (the renewals before the loss), at least 1", renewalsName, n, want)
	}
	if n := snap.sum(t, renewalsName, be, outcome("failed")); n != 0 {
		t.Errorf("%s{failed} = %d; want 0 (the loss is no transport failure)", renewalsName, n)
	}
	if n, _ := snap.hist(t, holdName, be, outcome("lost")); n != 1 {
		t.Errorf("%s{lost} count = %d; want 1", holdName, n)
	}
	if n, _ := snap.hist(t, holdName, be, outcome("released")); n != 0 {
		t.Errorf("%s{released} count = %d; want 0", holdName, n)
	}
}

// TestKeyAttribute: with WithKeyAttribute, measurements and spans carry
// the key, and the span of a failed Lock says why in the error's words.
func TestKeyAttribute(t *testing.T) {
	for _, c := range []struct {
		backend string
		new     func(*testing.T, *harness) mutex.Keyed[string]
	}{
		{"local", func(t *testing.T, h *harness) mutex.Keyed[string] {
			m, err := local.New[string](local.WithObserver(h.tee))
			if err != nil {
				t.Fatal(err)
			}
			return m
		}},
		{"distributed", func(t *testing.T, h *harness) mutex.Keyed[string] {
			m, _ := newDistributed(t, h, distributed.WithPollInterval(time.Minute))
			return m
		}},
	} {
		t.Run(c.backend, func(t *testing.T) {
			h := newHarness(t, otelkeyedmutex.WithKeyAttribute())
			key := testKey(t)
			scenario(t, h, c.new(t, h), c.backend, key)

			s := h.collect(t)
			withKey := attribute.String("keyedmutex.key", key)
			if n := s.sum(t, acqName, withKey); n != 4 {
				t.Errorf("%s{keyedmutex.key=%q} = %d; want 4", acqName, key, n)
			}
			if n, _ := s.hist(t, holdName, withKey); n != 2 {
				t.Errorf("%s{keyedmutex.key=%q} count = %d; want 2", holdName, key, n)
			}
			if n := s.sum(t, waitersName, withKey); n != 0 {
				t.Errorf("%s{keyedmutex.key=%q} = %d; want 0", waitersName, key, n)
			}
			var failed int
			for _, sp := range h.spans.GetSpans() {
				if sp.Name != otelkeyedmutex.SpanName {
					continue
				}
				if !hasAttr(sp.Attributes, withKey) {
					t.Errorf("span %v: no %v", sp.Attributes, withKey)
				}
				if sp.Status.Code == codes.Error {
					failed++
					if got := sp.Status.Description; !strings.Contains(got, context.Canceled.Error()) {
						t.Errorf("status of the cancelled Lock's span = %q; want the Lock's error", got)
					}
				}
			}
			if failed != 1 {
				t.Errorf("%d spans with status Error; want 1", failed)
			}
		})
	}
}
