package redistest

import (
	"context"
	"testing"
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
