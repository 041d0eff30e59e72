package faulttest

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Path selects the connections a fault applies to.
type Path uint8

const (
	// Commands is every connection that is not a subscriber connection:
	// the pool connections that run SET, EVALSHA, PEXPIRE, PUBLISH ...
	Commands Path = 1 << iota
	// Subscriber is every connection whose first command after the
	// handshake subscribes (SUBSCRIBE, SSUBSCRIBE, PSUBSCRIBE).
	Subscriber
	// All is both paths.
	All = Commands | Subscriber
)

func (p Path) String() string {
	switch p {
	case Commands:
		return "commands"
	case Subscriber:
		return "subscriber"
	case All:
		return "all"
	}
	return "none"
}

func paths(ps []Path) Path {
	if len(ps) == 0 {
		return All
	}
	var out Path
	for _, p := range ps {
		out |= p
	}
	return out
}

// Proxy is a TCP proxy between Redis clients and one server, listening on
// 127.0.0.1 on a port chosen at run time. Faults are set per [Path] and
// apply at once to open connections and to new ones:
//
//   - Partition kills the connections of the path and refuses new ones
//     (they are closed as soon as they are known to be on the path);
//   - Blackhole stalls them: bytes are held, in order, until Heal, as a
//     network that drops packets does to TCP (the client sees timeouts);
//   - SetLatency delays every chunk of bytes by a fixed time per direction;
//   - Kill closes the open connections of the path once, new ones work.
//
// A Proxy is safe for concurrent use. Create it with [NewProxy]; it is
// closed, with all its goroutines stopped, at the test's cleanup.
type Proxy struct {
	tb     testing.TB
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu          sync.Mutex // guards the fields below
	links       map[*link]struct{}
	partitioned Path
	blackholed  Path
	latency     [2][3]time.Duration // [direction][path index]
	changed     chan struct{}       // closed and replaced when a fault changes
	closed      bool

	accepted, killed atomic.Int64
}

// Directions for SetLatency.
const (
	up   = 0 // client to server
	down = 1 // server to client
)

func pathIndex(p Path) int {
	switch p {
	case Commands:
		return 1
	case Subscriber:
		return 2
	}
	return 0 // not classified yet: the handshake
}

// NewProxy starts a proxy to target (host:port) and closes it at tb's
// cleanup.
func NewProxy(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("faulttest: listen: %v", err)
	}
	p := &Proxy{tb: tb, target: target, ln: ln, links: make(map[*link]struct{}), changed: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// Addr is the address clients dial instead of the server's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Accepted is the number of connections the proxy has accepted.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Killed is the number of connections the proxy has closed on purpose
// (Kill, Partition, refused while partitioned).
func (p *Proxy) Killed() int64 { return p.killed.Load() }

// Conns returns how many open connections are on path (none: all).
func (p *Proxy) Conns(path ...Path) int {
	want := paths(path)
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for l := range p.links {
		if c := l.path(); c == 0 || c&want != 0 {
			n++
		}
	}
	return n
}

// Partition cuts the given paths (none: all): their open connections are
// closed and new ones are closed as soon as their path is known, until
// Heal.
func (p *Proxy) Partition(path ...Path) {
	pp := paths(path)
	p.mu.Lock()
	p.partitioned |= pp
	p.notifyLocked()
	p.mu.Unlock()
	p.Kill(pp)
}

// Blackhole stalls the given paths (none: all) until Heal: connections
// stay open but no byte passes in either direction.
func (p *Proxy) Blackhole(path ...Path) {
	p.mu.Lock()
	p.blackholed |= paths(path)
	p.notifyLocked()
	p.mu.Unlock()
}

// Heal ends Partition and Blackhole on the given paths (none: all).
// Stalled bytes flow again, in order.
func (p *Proxy) Heal(path ...Path) {
	pp := paths(path)
	p.mu.Lock()
	p.partitioned &^= pp
	p.blackholed &^= pp
	p.notifyLocked()
	p.mu.Unlock()
}

// SetLatency delays, from now on, every chunk sent client to server by
// toServer and every chunk sent server to client by toClient, on the
// given paths (none: all). Zero removes the delay.
func (p *Proxy) SetLatency(toServer, toClient time.Duration, path ...Path) {
	pp := paths(path)
	p.mu.Lock()
	for _, one := range []Path{Commands, Subscriber} {
		if pp&one != 0 {
			p.latency[up][pathIndex(one)] = toServer
			p.latency[down][pathIndex(one)] = toClient
		}
	}
	if pp == All {
		p.latency[up][0] = toServer
		p.latency[down][0] = toClient
	}
	p.notifyLocked()
	p.mu.Unlock()
}

// Kill closes the open connections on the given paths (none: all). New
// connections are not affected. It returns how many it closed.
func (p *Proxy) Kill(path ...Path) int {
	pp := paths(path)
	p.mu.Lock()
	var victims []*link
	for l := range p.links {
		c := l.path()
		if c&pp != 0 || (c == 0 && pp == All) {
			victims = append(victims, l)
		}
	}
	p.mu.Unlock()
	for _, l := range victims {
		p.killed.Add(1)
		l.close()
	}
	return len(victims)
}

// Close stops the proxy: it closes the listener and every connection and
// waits for its goroutines. It is registered with Cleanup; calling it
// again does nothing.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	var all []*link
	for l := range p.links {
		all = append(all, l)
	}
	p.notifyLocked()
	p.mu.Unlock()
	p.ln.Close()
	for _, l := range all {
		l.close()
	}
	p.wg.Wait()
}

func (p *Proxy) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		p.mu.Lock()
		if p.closed || p.partitioned == All {
			p.mu.Unlock()
			p.killed.Add(1)
			c.Close()
			continue
		}
		l := &link{p: p, client: c, done: make(chan struct{})}
		p.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go l.run()
	}
}

// link is one proxied connection.
type link struct {
	p      *Proxy
	client net.Conn
	done   chan struct{} // closed by close
	once   sync.Once

	mu     sync.Mutex // guards server
	server net.Conn
	cls    atomic.Uint32 // the Path, 0 until known
}

func (l *link) path() Path { return Path(l.cls.Load()) }

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.client.Close()
		l.mu.Lock()
		if l.server != nil {
			l.server.Close()
		}
		l.mu.Unlock()
	})
}

func (l *link) run() {
	defer l.p.wg.Done()
	defer func() {
		l.close()
		l.p.mu.Lock()
		delete(l.p.links, l)
		l.p.mu.Unlock()
	}()
	d := net.Dialer{Timeout: 2 * time.Second}
	server, err := d.Dial("tcp", l.p.target)
	if err != nil {
		return
	}
	l.mu.Lock()
	l.server = server
	l.mu.Unlock()
	select {
	case <-l.done: // closed while dialing
		server.Close()
		return
	default:
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); l.pump(l.client, server, up) }()
	go func() { defer wg.Done(); l.pump(server, l.client, down) }()
	wg.Wait()
}

type chunk struct {
	b  []byte
	at time.Time
}

// pump copies src to dst through a queue, so that latency delays bytes
// without slowing the reads, and a stall holds them in order.
func (l *link) pump(src, dst net.Conn, dir int) {
	defer l.close()
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				b := bytes.Clone(buf[:n])
				if dir == up && l.path() == 0 {
					l.classify(b)
				}
				select {
				case q <- chunk{b: b, at: time.Now()}:
				case <-l.done:
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		if !l.wait(c, dir) {
			break
		}
		if _, err := dst.Write(c.b); err != nil {
			break
		}
	}
	l.close()
	for range q { // let the reader end
	}
}

// wait blocks until chunk c may be written: its latency has passed and its
// path is not stalled. It reports false if the link was closed.
func (l *link) wait(c chunk, dir int) bool {
	for {
		select {
		case <-l.done:
			return false
		default:
		}
		path := l.path()
		l.p.mu.Lock()
		if l.p.partitioned&path != 0 {
			l.p.mu.Unlock()
			l.p.killed.Add(1)
			l.close()
			return false
		}
		stalled := l.p.blackholed&path != 0 || (path == 0 && l.p.blackholed == All)
		delay := time.Until(c.at.Add(l.p.latency[dir][pathIndex(path)]))
		changed := l.p.changed
		l.p.mu.Unlock()
		if !stalled && delay <= 0 {
			return true
		}
		var t *time.Timer
		var timer <-chan time.Time
		if !stalled {
			t = time.NewTimer(delay)
			timer = t.C
		}
		select {
		case <-timer:
		case <-changed:
		case <-l.done:
		}
		if t != nil {
			t.Stop()
		}
	}
}

var handshake = map[string]bool{"hello": true, "auth": true, "client": true, "select": true, "readonly": true}

// classify sets the link's path from the first command of b that is not
// part of the connection handshake.
func (l *link) classify(b []byte) {
	name, ok := firstCommand(b)
	if !ok || handshake[name] {
		return
	}
	switch name {
	case "subscribe", "ssubscribe", "psubscribe":
		l.cls.Store(uint32(Subscriber))
	default:
		l.cls.Store(uint32(Commands))
	}
}

// firstCommand returns the lower-cased name of the first command in a
// RESP request (*N\r\n$len\r\nNAME\r\n...).
func firstCommand(b []byte) (string, bool) {
	if len(b) == 0 || b[0] != '*' {
		return "", false
	}
	i := bytes.Index(b, []byte("\r\n$"))
	if i < 0 {
		return "", false
	}
	rest := b[i+3:]
	j := bytes.Index(rest, []byte("\r\n"))
	if j < 0 {
		return "", false
	}
	rest = rest[j+2:]
	k := bytes.Index(rest, []byte("\r\n"))
	if k < 0 {
		return "", false
	}
	return string(bytes.ToLower(rest[:k])), true
}
