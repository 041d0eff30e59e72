// Package redistest starts real redis-server processes for tests and
// benchmarks: each on a free loopback port, in its own temp dir, stopped
// when the test ends. Nothing is shared between tests and no fixed port is
// ever used. It builds a standalone server ([Start]), a Redis Cluster
// ([StartCluster], with slot migration: [Cluster.BeginMigration]) and a
// Sentinel deployment ([StartSentinel]), and breaks them on cue: kill a
// server, pause it ([Server.Pause]), kill a master, fail over.
//
// Where redis-server is not on PATH the tests that need it skip with a
// message, unless the environment variable KEYEDMUTEX_REQUIRE_REDIS is set
// (as .ci/run does), in which case they fail: CI can never pass by skipping.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RequireEnv is the environment variable that turns a missing
// redis-server into a test failure instead of a skip.
const RequireEnv = "KEYEDMUTEX_REQUIRE_REDIS"

// Binary returns the path of redis-server, or "" if it is not on PATH.
func Binary() string {
	p, err := exec.LookPath("redis-server")
	if err != nil {
		return ""
	}
	return p
}

// Need skips (or, with KEYEDMUTEX_REQUIRE_REDIS set, fails) tb when
// redis-server is not on PATH, and returns its path otherwise.
func Need(tb testing.TB) string {
	tb.Helper()
	p := Binary()
	if p == "" {
		if os.Getenv(RequireEnv) != "" {
			tb.Fatalf("redis-server not found on PATH and %s is set: install it (apt-get install -y redis-server)", RequireEnv)
		}
		tb.Skip("redis-server not found on PATH, skipping real-Redis test (install redis-server to run it)")
	}
	return p
}

// Server is one redis-server process owned by a test.
type Server struct {
	tb    testing.TB
	bin   string
	dir   string
	port  int
	conf  string   // config file given before every other argument, or ""
	extra []string // arguments after the standard ones; Sentinel.Restart replaces them

	mu  sync.Mutex // guards cmd
	cmd *exec.Cmd
}

// Start starts a redis-server for tb and stops it in tb.Cleanup. Extra
// arguments are passed to redis-server as "--name value" pairs.
func Start(tb testing.TB, extra ...string) *Server {
	tb.Helper()
	bin := Need(tb)
	s := &Server{tb: tb, bin: bin, dir: tb.TempDir(), extra: extra}
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		s.port, err = FreePort()
		if err != nil {
			continue
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatalf("redistest: start redis-server: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// Port is the server's port.
func (s *Server) Port() int { return s.port }

// Dir is the server's working directory.
func (s *Server) Dir() string { return s.dir }

func (s *Server) start() error {
	args := []string{
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--dir", s.dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--logfile", filepath.Join(s.dir, "redis.log"),
	}
	if s.conf != "" {
		args = append([]string{s.conf}, args...)
	}
	args = append(args, s.extra...)
	cmd := exec.Command(s.bin, args...)
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			return fmt.Errorf("redis-server exited: %v\n%s", err, log)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("redis-server on %s not answering after 10s: %v", s.Addr(), err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	s.cmd = cmd
	s.mu.Unlock()
	go func() {
		// Reap the process whenever it ends; Stop and Kill wait on done.
		err := <-exited
		_ = err
		s.mu.Lock()
		if s.cmd == cmd {
			s.cmd = nil
		}
		s.mu.Unlock()
	}()
	return nil
}

// Kill kills the server with SIGKILL and waits until its port is closed.
// Its data is gone: nothing is persisted.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd := s.cmd
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		gone := s.cmd != cmd
		s.mu.Unlock()
		if gone {
			return
		}
		time.Sleep(time.Millisecond)
	}
	s.tb.Errorf("redistest: redis-server on %s did not exit after SIGKILL", s.Addr())
}

// Restart starts the server again on the same port, after Kill.
func (s *Server) Restart() {
	s.tb.Helper()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond) // the port may linger briefly
	}
	s.tb.Fatalf("redistest: restart redis-server on %s: %v", s.Addr(), err)
}

// running reports whether the server's process runs.
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// poll calls cond until it returns nil or within has passed, and returns
// cond's last error; an [errStop] ends it at once. It is how this package
// waits: never a fixed sleep.
func poll(within time.Duration, cond func() error) error {
	deadline := time.Now().Add(within)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if stop, ok := errors.AsType[errStop](err); ok {
			return stop.err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still after %v: %w", within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// errStop ends a [poll] at once with its error.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }
func (e errStop) Unwrap() error { return e.err }

// Stop kills the server if it runs. It is registered with Cleanup.
func (s *Server) Stop() { s.Kill() }

// Client returns a new client for the server, closed at cleanup.
func (s *Server) Client(tb testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	tb.Cleanup(func() { c.Close() })
	return c
}

// process returns the running server's command, or nil.
func (s *Server) process() *exec.Cmd {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd
}
