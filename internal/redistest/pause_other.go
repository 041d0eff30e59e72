//go:build !unix

package redistest

// Pause needs SIGSTOP, which this platform lacks: it skips the test.
func (s *Server) Pause() {
	s.tb.Helper()
	s.tb.Skip("redistest: Pause needs SIGSTOP (unix only)")
}

// Resume needs SIGCONT, which this platform lacks: it skips the test.
func (s *Server) Resume() {
	s.tb.Helper()
	s.tb.Skip("redistest: Resume needs SIGCONT (unix only)")
}
