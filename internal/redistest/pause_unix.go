//go:build unix

package redistest

import (
	"errors"
	"os"
	"syscall"
)

// Pause stops the server with SIGSTOP, as a stalled host, a long fork or
// a frozen VM would: it keeps its connections, its data and its clock
// (keys still expire by wall time once it runs again), but reads and
// answers nothing, so clients see timeouts, not refused connections.
// Commands sent meanwhile wait in the socket buffers and run, in order,
// after [Server.Resume]. Kill and Stop work on a paused server. Pause
// fails the test if the server does not run.
func (s *Server) Pause() {
	s.tb.Helper()
	cmd := s.process()
	if cmd == nil {
		s.tb.Fatalf("redistest: Pause: redis-server on %s does not run", s.Addr())
	}
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.tb.Fatalf("redistest: SIGSTOP to redis-server on %s: %v", s.Addr(), err)
	}
}

// Resume continues a server stopped by [Server.Pause] with SIGCONT. On a
// server that runs, or one that no longer exists (killed), it does
// nothing, so a test may defer it as soon as it pauses.
func (s *Server) Resume() {
	s.tb.Helper()
	if cmd := s.process(); cmd != nil {
		if err := cmd.Process.Signal(syscall.SIGCONT); err != nil && !errors.Is(err, os.ErrProcessDone) {
			s.tb.Errorf("redistest: SIGCONT to redis-server on %s: %v", s.Addr(), err)
		}
	}
}
