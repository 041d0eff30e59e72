// Package logtest records what this module's packages log, for tests: a
// [log/slog] handler that keeps every record.
package logtest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// Record is one logged record: its level, message, the error of its
// "err" attribute (if any), and all of it as one line of text.
type Record struct {
	Level   slog.Level
	Message string
	Err     error
	Text    string
}

// Recorder is a [slog.Handler] that keeps every record it handles. The
// zero value is ready to use.
type Recorder struct {
	mu   sync.Mutex // guards recs
	recs []Record
}

// New returns a logger that records into a new Recorder, and the Recorder.
func New() (*slog.Logger, *Recorder) {
	r := new(Recorder)
	return slog.New(r), r
}

// Enabled implements [slog.Handler]: every level is recorded.
func (r *Recorder) Enabled(context.Context, slog.Level) bool { return true }

// Handle implements [slog.Handler].
func (r *Recorder) Handle(_ context.Context, rec slog.Record) error {
	out := Record{Level: rec.Level, Message: rec.Message}
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		if err, ok := a.Value.Any().(error); ok && a.Key == "err" {
			out.Err = err
		}
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	out.Text = b.String()
	r.mu.Lock()
	r.recs = append(r.recs, out)
	r.mu.Unlock()
	return nil
}

// WithAttrs implements [slog.Handler]; the attributes are dropped.
func (r *Recorder) WithAttrs([]slog.Attr) slog.Handler { return r }

// WithGroup implements [slog.Handler]; the group is dropped.
func (r *Recorder) WithGroup(string) slog.Handler { return r }

// Len returns the number of records so far.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.recs)
}

// All returns a copy of the records so far.
func (r *Recorder) All() []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Record(nil), r.recs...)
}

// Wait polls until at least n records were handled and returns them; it
// fails tb after 10s.
func (r *Recorder) Wait(tb testing.TB, n int) []Record {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for r.Len() < n {
		if time.Now().After(deadline) {
			tb.Fatalf("logtest: %d records after 10s; want %d: %v", r.Len(), n, r.All())
		}
		time.Sleep(2 * time.Millisecond)
	}
	return r.All()
}

// Fail returns a logger that fails tb with every record it is given: for
// tests in which nothing should be logged.
func Fail(tb testing.TB) *slog.Logger {
	return slog.New(failer{tb})
}

type failer struct{ tb testing.TB }

func (f failer) Enabled(context.Context, slog.Level) bool { return true }
func (f failer) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Message)
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	f.tb.Errorf("logged: %s", b.String())
	return nil
}
func (f failer) WithAttrs([]slog.Attr) slog.Handler { return f }
func (f failer) WithGroup(string) slog.Handler      { return f }
