// Package leakcheck fails a test that leaves goroutines of this module
// running. It is this module's small stand-in for go.uber.org/goleak,
// which would be one more dependency for one function.
package leakcheck

import (
	"runtime"
	"strings"
	"testing"
	"time"
)

const module = "github.com/keyedmutex/keyedmutex/"

// Register makes tb fail, at cleanup, if goroutines that run or were
// started by code of this module (outside tests) are still alive after a
// grace period of 5s. Call it first in a test, so that its cleanup runs
// after the ones that close mutexes and clients. Tests that use it must
// not run in parallel with others of the same package.
func Register(tb testing.TB) {
	tb.Helper()
	tb.Cleanup(func() {
		tb.Helper()
		if leaked := Wait(5 * time.Second); leaked != "" {
			tb.Errorf("leaked goroutines:\n%s", leaked)
		}
	})
}

// Wait polls until no goroutine of this module is left, or d passes; it
// returns the stacks of those that remain, or "".
func Wait(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		leaked := Leaked()
		if leaked == "" || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Leaked returns the stacks of the goroutines of this module that are
// alive now, apart from the caller's and those of running tests.
func Leaked() string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 { // the caller
			continue
		}
		if !strings.Contains(g, module) || strings.Contains(g, "testing.tRunner") ||
			strings.Contains(g, "testing.(*T).Run") || strings.Contains(g, module+"internal/leakcheck") ||
			// Test servers belong to their test, which stops them.
			strings.Contains(g, module+"internal/redistest") {
			continue
		}
		// Goroutines started by test files own themselves.
		if isTestGoroutine(g) {
			continue
		}
		out = append(out, g)
	}
	return strings.Join(out, "\n\n")
}

func isTestGoroutine(g string) bool {
	i := strings.LastIndex(g, "created by ")
	if i < 0 {
		return false
	}
	return strings.Contains(g[i:], "_test.go")
}
