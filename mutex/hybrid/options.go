package hybrid

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/keyedmutex/keyedmutex/mutex"
)

// DefaultMaxLocalHandoffs is the default of [WithMaxLocalHandoffs]: a
// process keeps a hot key for up to 17 critical sections in a row, which
// takes most Redis traffic off the key while other processes wait a few
// of their own critical sections, not hundreds. The README shows the
// measurements behind it.
const DefaultMaxLocalHandoffs = 16

// Bounds of the adaptive yield after a bound release; see
// [WithReleaseYield].
const (
	minYield = 20 * time.Microsecond
	maxYield = 10 * time.Millisecond
)

// An Option configures a [Mutex] in [New], which returns the error of an
// invalid one.
type Option func(*config) error

type config struct {
	maxHandoffs int
	logger      *slog.Logger // nil: slog.Default() at each report
	obs         mutex.Observer
	ownRemote   bool
	yield       time.Duration // used if yieldSet
	yieldSet    bool
}

// WithMaxLocalHandoffs bounds how many times in a row the remote lease
// passes from one local holder to the next local waiter without a remote
// command. 0 means every Unlock releases the remote lease. A larger bound
// gives more throughput on a hot key and fewer remote commands, but lets
// one process keep the key longer while other processes wait. A negative
// n is an error. The bound is
// forced to 0 for a remote that does not implement [mutex.TokenReserver].
// The default is [DefaultMaxLocalHandoffs] (16).
func WithMaxLocalHandoffs(n int) Option {
	return func(c *config) error {
		if n < 0 {
			return fmt.Errorf("hybrid: WithMaxLocalHandoffs(%d): negative bound", n)
		}
		c.maxHandoffs = n
		return nil
	}
}

// WithLogger sets the logger that receives what no caller can be told:
// the errors the [sync.Locker] adapter retries, and failed remote releases
// behind a lost lease, at level Warn. l must not be nil: to discard, pass
// slog.New(slog.DiscardHandler). The default is [slog.Default], looked
// up at each report.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("hybrid: WithLogger(nil): pass slog.New(slog.DiscardHandler) to discard reports")
		}
		c.logger = l
		return nil
	}
}

// WithObserver sets the [mutex.Observer] told about every Lock, TryLock
// and Unlock (wait and hold times, outcomes), and about each local
// cohort handoff and remote acquisition. It sees the hybrid side only:
// give the remote its own (the same one will do; events carry their
// backend). o must not be nil. The default is none.
func WithObserver(o mutex.Observer) Option {
	return func(c *config) error {
		if o == nil {
			return errors.New("hybrid: WithObserver(nil)")
		}
		c.obs = o
		return nil
	}
}

// WithOwnedRemote makes the Mutex own its remote: Close closes the remote
// too, after releasing what the Mutex holds, so the usual stack (hybrid
// over distributed) is built, and closed, in one step. The remote must
// have a Close() error method. The default is a remote the caller owns
// and closes after the Mutex.
func WithOwnedRemote() Option {
	return func(c *config) error {
		c.ownRemote = true
		return nil
	}
}

// WithReleaseYield fixes how long the next local head waits before it
// contends for the remote lease after a release forced by the handoff
// bound, so that a waiting process can take the key first. It applies
// only to a remote that cannot requeue (a distributed remote requeues
// instead, see the package doc). 0 disables the yield; a negative d is an
// error. The default adapts: twice the moving average of the measured
// remote release latency, within 20µs and 10ms.
func WithReleaseYield(d time.Duration) Option {
	return func(c *config) error {
		if d < 0 {
			return fmt.Errorf("hybrid: WithReleaseYield(%v): negative duration", d)
		}
		c.yield, c.yieldSet = d, true
		return nil
	}
}
