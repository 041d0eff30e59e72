package redistest

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestStartKillRestart(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET = %v; want nil", err)
	}
	s.Kill()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Kill = nil; want an error")
	}
	s.Restart()
	got, err := c.Get(ctx, "k").Result()
	if err == nil {
		t.Errorf("GET after restart = %q; want redis.Nil (no persistence)", got)
	}
	if err := c.Ping(ctx).Err(); err != nil {
		t.Errorf("PING after Restart = %v; want nil", err)
	}
}

func TestCommandStats(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	var cnt Counter
	c.AddHook(&cnt)
	ctx := context.Background()
	before, err := CommandStats(ctx, c)
	if err != nil {
		t.Fatalf("CommandStats = %v", err)
	}
	if err := c.Eval(ctx, "redis.call('SET', KEYS[1], 'v') return 1", []string{"k"}).Err(); err != nil {
		t.Fatalf("EVAL = %v", err)
	}
	after, err := CommandStats(ctx, c)
	if err != nil {
		t.Fatalf("CommandStats = %v", err)
	}
	if got := after["set"] - before["set"]; got != 1 {
		t.Errorf("set calls inside the script = %d; want 1", got)
	}
	if got := cnt.Scripts.Load(); got != 1 {
		t.Errorf("Counter.Scripts = %d; want 1", got)
	}
	if _, err := ParseCommandStats("cmdstat_get:calls=x,usec=1\r\n"); err == nil {
		t.Error("ParseCommandStats(calls=x) = nil error; want an error")
	}
}

// TestPauseResume: a paused server keeps its connections and data but
// answers nothing; a command sent meanwhile runs after Resume; Kill
// works on a paused server, and Resume after Kill does nothing.
func TestPauseResume(t *testing.T) {
	s := Start(t)
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), ContextTimeoutEnabled: true, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	if err := c.Set(ctx, "k", "before", 0).Err(); err != nil {
		t.Fatalf("SET = %v; want nil", err)
	}

	s.Pause()
	defer s.Resume() // if the test fails while paused
	pctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := c.Ping(pctx).Err()
	cancel()
	if err == nil {
		t.Fatal("PING of a paused server = nil; want a timeout")
	}
	// A command sent while paused waits for Resume, then runs.
	late := s.Client(t)
	set := make(chan error, 1)
	go func() { set <- late.Set(ctx, "k", "during", 0).Err() }()
	select {
	case err := <-set:
		t.Fatalf("SET on a paused server returned %v; want it to wait for Resume", err)
	case <-time.After(200 * time.Millisecond): // the pause goes on
	}
	s.Resume()
	select {
	case err := <-set:
		if err != nil {
			t.Errorf("SET sent while paused = %v after Resume; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SET sent while paused still waiting 10s after Resume")
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "during" {
		t.Errorf("GET after Resume = %q, %v; want %q (data kept, the late SET ran)", got, err, "during")
	}

	s.Pause()
	s.Kill()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Error("PING after Kill of a paused server = nil; want an error")
	}
	s.Resume() // nothing to resume: no failure
	s.Restart()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Errorf("PING after Restart = %v; want nil", err)
	}
}
