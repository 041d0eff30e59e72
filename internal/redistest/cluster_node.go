package redistest

// Node returns the node of the cluster at addr, to Pause, Resume or Kill
// it; it fails the test if no node listens there.
func (c *Cluster) Node(addr string) *Server {
	c.tb.Helper()
	for _, s := range c.nodes {
		if s.Addr() == addr {
			return s
		}
	}
	c.tb.Fatalf("redistest: no cluster node at %s", addr)
	return nil
}
