package hybrid

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/keylock"
	"github.com/keyedmutex/keyedmutex/internal/lockutil"
	"github.com/keyedmutex/keyedmutex/internal/remote"
	"github.com/keyedmutex/keyedmutex/mutex"
	"golang.org/x/sync/errgroup"
)

// core is what a [Mutex] and an [RWMutex] share: the remote (as a
// [mutex.Keyed], its write side for an RWMutex), the options, the
// adaptive yield after a bound release, and what Close waits for.
type core[K comparable] struct {
	remote         mutex.Keyed[K]
	reserver       mutex.TokenReserver[K] // remote as a TokenReserver if bound > 0, else nil
	block          uint64                 // tokens reserved per remote (write) lease: bound+1, or 1
	logger         *slog.Logger           // nil: slog.Default()
	obs            mutex.Observer         // nil: none
	closer         io.Closer              // the remote, if owned (WithOwnedRemote)
	yield          time.Duration          // fixed yield after a bound release, if !adapt
	adapt          bool
	releaseLatency atomic.Int64 // moving average (EWMA) of the remote release latency, ns

	closing atomic.Bool
	wg      sync.WaitGroup // the watchers started by Done
}

// configure checks the remote r and applies opts for the constructor
// named op (New, NewRW), returning the config.
func configure[K comparable](op string, r mutex.Keyed[K], opts []Option) (config, error) {
	switch {
	case r == nil:
		return config{}, fmt.Errorf("hybrid: %s: nil remote mutex", op)
	case lockutil.IsNilPointer(r):
		return config{}, fmt.Errorf("hybrid: %s: nil remote mutex (%T)", op, r)
	}
	c := config{maxHandoffs: DefaultMaxLocalHandoffs}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(&c); err != nil {
			return config{}, err
		}
	}
	return c, nil
}

// init sets m up over the remote r with the config c.
func (m *core[K]) init(r mutex.Keyed[K], c config) error {
	m.remote, m.block, m.logger, m.obs, m.yield, m.adapt = r, 1, c.logger, c.obs, c.yield, !c.yieldSet
	if c.ownRemote {
		closer, ok := r.(io.Closer)
		if !ok {
			return fmt.Errorf("hybrid: WithOwnedRemote: the remote (%T) has no Close method", r)
		}
		m.closer = closer
	}
	if b, ok := remote.ReserverOf(r); ok && c.maxHandoffs > 0 {
		m.reserver = b
		m.block = uint64(c.maxHandoffs) + 1
	}
	return nil
}

func (m *core[K]) log() *slog.Logger { return lockutil.Logger(m.logger) }

// lockerError reports an error that a Locker's Lock retries.
func (m *core[K]) lockerError(key K, err error) {
	m.log().Warn("keyedmutex: Locker: Lock failed, retrying", "err", err)
}

// check refuses a call of op (Lock, RLock, ...) on m if New did not make
// m (notNew), with a nil ctx, or for the empty key.
func (m *core[K]) check(ctx context.Context, op string, key K, notNew error) error {
	switch {
	case m.remote == nil:
		return notNew
	case ctx == nil:
		return lockErr(op, key, lockutil.ErrNilContext)
	case keylock.EmptyKey(key):
		return lockErr(op, key, errEmptyKey)
	}
	return nil
}

// observe tells the observer, if any, about e.
func (m *core[K]) observe(ctx context.Context, kind mutex.EventKind, key K, e mutex.Event) {
	if m.obs == nil {
		return
	}
	e.Kind, e.Backend, e.Key = kind, "hybrid", keylock.KeyString(key)
	m.obs.Observe(ctx, e)
}

// releaseFailed reports whether err, from the Unlock of a remote lease
// nobody will use again, is a failure to report: not its loss, nor its
// end by a requeue or Close before (nothing was left to release).
func releaseFailed(err error) bool {
	return err != nil && !errors.Is(err, mutex.ErrLost) && !errors.Is(err, mutex.ErrUnlocked)
}

// releaseRemote releases a remote lease nobody will use again, reporting
// errors other than its loss.
func (m *core[K]) releaseRemote(key K, r mutex.Lease) {
	m.reportRelease(key, r.Unlock())
}

// reportRelease logs err, from the release of a lost remote lease, if it
// is a failure to report.
func (m *core[K]) reportRelease(key K, err error) {
	if releaseFailed(err) {
		m.log().Warn("keyedmutex: hybrid: release of a lost remote lease failed", "err", lockErr("Unlock", key, err))
	}
}

// releaseTimed releases r (if not nil). The release latency feeds the
// yield after a bound-forced release, so only such releases (bound set)
// and the first are timed: the clock is not free on every Unlock.
func (m *core[K]) releaseTimed(r mutex.Lease, bound bool) error {
	if r == nil {
		return nil
	}
	timed := m.adapt && (bound || m.releaseLatency.Load() == 0)
	var start time.Time
	if timed {
		start = time.Now()
	}
	err := r.Unlock()
	if err == nil && timed {
		m.recordReleaseLatency(time.Since(start))
	}
	return err
}

// yieldFor is how long the next local head waits after a bound release.
func (m *core[K]) yieldFor() time.Duration {
	if !m.adapt {
		return m.yield
	}
	return min(max(2*time.Duration(m.releaseLatency.Load()), minYield), maxYield)
}

// recordReleaseLatency folds a remote release latency into releaseLatency.
func (m *core[K]) recordReleaseLatency(d time.Duration) {
	for {
		old := m.releaseLatency.Load()
		v := int64(d)
		if old != 0 {
			v = old + (v-old)/8
		}
		if m.releaseLatency.CompareAndSwap(old, v) {
			return
		}
	}
}

// awaitTurn waits until notBefore (the yield after a bound release), or
// ctx's end.
func awaitTurn(ctx context.Context, notBefore time.Time) error {
	if notBefore.IsZero() {
		return nil
	}
	d := time.Until(notBefore)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// shutdown ends what Close took from the cohorts: it cancels the requeue
// tickets, releases the remote leases in parallel, waits for the
// acquisitions that were under way and for the lease watchers, and closes
// an owned remote. It returns the errors of the releases and the close.
func (m *core[K]) shutdown(s *seized) error {
	for _, tk := range s.tickets {
		tk.Cancel()
	}
	errs := releaseAll(s.remotes)
	for _, done := range s.contenders {
		<-done
	}
	m.wg.Wait()
	if m.closer != nil {
		if err := m.closer.Close(); err != nil {
			errs = append(errs, fmt.Errorf("hybrid: close the remote: %w", err))
		}
	}
	return errors.Join(errs...)
}

// closeParallel bounds how many remote leases Close releases at once.
const closeParallel = 64

// releaseAll releases remote leases in parallel, at most closeParallel at
// a time, so that Close takes about one release's time (bounded by the
// remote's own unlock timeout), not one per lease; it returns the errors
// other than a loss.
func releaseAll(remotes []mutex.Lease) []error {
	var (
		g    errgroup.Group
		mu   sync.Mutex // guards errs
		errs []error
	)
	g.SetLimit(closeParallel)
	for _, r := range remotes {
		g.Go(func() error {
			// ErrUnlocked: a requeue in progress ended the lease before
			// Close took it from the cohort; nothing is left to release.
			if err := r.Unlock(); releaseFailed(err) {
				mu.Lock()
				errs = append(errs, fmt.Errorf("hybrid: close: release remote lease: %w", err))
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	return errs
}
