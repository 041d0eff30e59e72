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
