package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
)

// TestClusterStalledMaster: with one master of a Cluster stalled, inspect
// and release of a key on another master work (the stalled one is named
// on stderr), every time.
func TestClusterStalledMaster(t *testing.T) {
	cl := redistest.StartCluster(t, 3, 0)
	cc := cl.Client(t)
	ctx := ctxT(t)
	addr := "-addr=" + strings.Join(cl.Addrs(), ",")
	byMaster := map[string]string{}
	for i := 0; len(byMaster) < 2; i++ {
		k := fmt.Sprintf("p%d", i)
		byMaster[cl.MasterOf("keyedmutex:{"+k+"}")] = k
	}
	var stalled, healthy string
	for a, k := range byMaster {
		if stalled == "" {
			stalled = a
		} else {
			healthy = k
		}
	}
	m := newMutex(t, cc, distributed.WithLabel("h"))
	l, err := m.Lock(ctx, healthy)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	node := cl.Node(stalled)
	node.Pause()
	defer node.Resume()
	// Each run's keyless commands go round robin to a master: several
	// runs, all of which must succeed.
	for i := range 3 {
		r := km(t, "", addr, "-cluster", "-timeout=1s", "inspect", healthy)
		r.want(t, 0, fmt.Sprintf("inspect #%d of %s with master %s stalled", i, healthy, stalled))
		if !strings.Contains(r.stdout, "holder    h ") || !strings.Contains(r.stderr, stalled) {
			t.Errorf("inspect with a stalled master: stdout %q, stderr %q; want held by h, and %s named", r.stdout, r.stderr, stalled)
		}
	}
	km(t, "", addr, "-cluster", "-timeout=1s", "release", healthy, "-holder", "h", "-yes").want(t, 0, "release with another master stalled")
	node.Resume()
}

// TestWrongTypeKeyAlone: a key whose lock is a list is reported with its
// error, the other keys are listed and inspected, and the exit code is 1.
func TestWrongTypeKeyAlone(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := ctxT(t)
	addr := "-addr=" + srv.Addr()
	m := newMutex(t, c, distributed.WithLabel("good-holder"))
	l, err := m.Lock(ctx, "good")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	if err := c.RPush(ctx, "keyedmutex:{bad}", "x").Err(); err != nil {
		t.Fatal(err)
	}
	r := km(t, "", addr, "list")
	r.want(t, 1, "list with a WRONGTYPE key")
	if !strings.Contains(r.stdout, "good-holder") || !strings.Contains(r.stdout, "bad ") || !strings.Contains(r.stderr, "WRONGTYPE") || !strings.Contains(r.stderr, "keyedmutex:{bad}") {
		t.Errorf("list with a WRONGTYPE key: stdout %q, stderr %q; want good listed, bad listed with its WRONGTYPE error", r.stdout, r.stderr)
	}
	r = km(t, "", addr, "list", "-json")
	r.want(t, 1, "list -json with a WRONGTYPE key")
	var keys []jsonKey
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || len(keys) != 2 || keys[0].Key != "good" || keys[0].State != "held" ||
		keys[1].Key != "bad" || keys[1].State != "error" || !strings.Contains(keys[1].Error, "WRONGTYPE") {
		t.Errorf("list -json = %+v, %v; want good held, then bad with state error\n%s", keys, err, r.stdout)
	}
	r = km(t, "", addr, "inspect", "-json", "bad", "good")
	r.want(t, 1, "inspect -json of a WRONGTYPE key and a held one")
	keys = nil
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || len(keys) != 2 || keys[0].State != "error" || keys[1].State != "held" {
		t.Errorf("inspect -json bad good = %+v, %v; want bad error, good held\n%s", keys, err, r.stdout)
	}
	r = km(t, "", addr, "inspect", "bad", "good")
	r.want(t, 1, "inspect of a WRONGTYPE key and a held one")
	if !strings.Contains(r.stdout, "holder    good-holder") || !strings.Contains(r.stdout, "error     ") {
		t.Errorf("inspect bad good: stdout %q; want bad's error and good's holder", r.stdout)
	}
}

// TestControlBytesQuoted: keys with a newline, a tab or an escape are
// quoted in text output (list, inspect, watch): no forged row, no control
// byte on the terminal; printable keys stay as they are.
func TestControlBytesQuoted(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := ctxT(t)
	addr := "-addr=" + srv.Addr()
	m := newMutex(t, c, distributed.WithLabel("lab"))
	keys := []string{"a\nforged  row", "tab\tkey", "esc\x1b[31mred", "plain key"}
	for _, k := range keys {
		l, err := m.Lock(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Unlock()
	}
	noControl := func(what, out string) {
		t.Helper()
		for _, b := range []byte(out) {
			if b < ' ' && b != '\n' {
				t.Errorf("%s: output has control byte %#x:\n%q", what, b, out)
				return
			}
		}
	}
	r := km(t, "", addr, "list")
	r.want(t, 0, "list")
	noControl("list", r.stdout)
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 1+len(keys) {
		t.Errorf("list: %d lines; want a header and %d rows:\n%s", len(lines), len(keys), r.stdout)
	}
	for _, want := range []string{`"a\nforged  row"`, `"tab\tkey"`, `"esc\x1b[31mred"`, "plain key "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("list: output lacks %s:\n%s", want, r.stdout)
		}
	}
	r = km(t, "", addr, "inspect", "--", keys[0], keys[2])
	r.want(t, 0, "inspect")
	noControl("inspect", r.stdout)
	if !strings.Contains(r.stdout, `"a\nforged  row"`+"\n") || !strings.Contains(r.stdout, `"keyedmutex:{esc\x1b[31mred}"`) {
		t.Errorf("inspect: keys and lock names not quoted:\n%s", r.stdout)
	}

	cmd := exec.CommandContext(ctx, binary(t), addr, "watch", "-interval=5ms", keys[1])
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var got []string
	for len(got) < 2 && sc.Scan() {
		got = append(got, sc.Text())
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	all := strings.Join(got, "\n")
	noControl("watch", all)
	if len(got) != 2 || !strings.Contains(got[0], `"tab\tkey"`) || !strings.Contains(got[0], `"keyedmutex:{tab\tkey}"`) || !strings.Contains(got[1], "held by lab") {
		t.Errorf("watch: first lines %q; want the banner and a held line, quoted", got)
	}
}

// TestJSONKeyRoundTrip: -json's key_quoted keeps every byte of a key that
// is not valid UTF-8, and -quoted takes it back, for inspect and release.
func TestJSONKeyRoundTrip(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := ctxT(t)
	addr := "-addr=" + srv.Addr()
	m := newMutex(t, c, distributed.WithLabel("bin"))
	const key = "\xff\xfe-bin"
	if _, err := m.Lock(ctx, key); err != nil {
		t.Fatal(err)
	}
	r := km(t, "", addr, "list", "-json")
	r.want(t, 0, "list -json")
	var keys []jsonKey
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || len(keys) != 1 {
		t.Fatalf("list -json = %+v, %v\n%s", keys, err, r.stdout)
	}
	if k, err := strconv.Unquote(keys[0].KeyQuot); err != nil || k != key {
		t.Fatalf("key_quoted %q unquotes to %q, %v; want %q", keys[0].KeyQuot, k, err, key)
	}
	r = km(t, "", addr, "-quoted", "inspect", "-json", keys[0].KeyQuot)
	r.want(t, 0, "inspect -quoted of key_quoted")
	keys = nil
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || len(keys) != 1 || keys[0].State != "held" {
		t.Errorf("inspect -quoted %s = %+v, %v; want held", keys[0].KeyQuot, keys, err)
	}
	km(t, "", addr, "-quoted", "inspect", "not-quoted").want(t, 2, "-quoted with an unquoted KEY")
	km(t, "", addr, "-quoted", "release", strconv.Quote(key), "-holder", "bin", "-yes").want(t, 0, "release -quoted")
	if rs, err := distributed.InspectKeys(ctx, c, distributed.DefaultPrefix, key); err != nil || rs[0].Locked() {
		t.Errorf("after release -quoted: %+v, %v; want free", rs, err)
	}
}

// TestWatchHelpSays: watch's help says it samples, and what it can miss.
func TestWatchHelpSays(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"watch", "-h"}} {
		r := km(t, "", args...)
		if r.code != 0 || !strings.Contains(r.stderr, "can be missed") || strings.Contains(r.stderr, "print each change") {
			t.Errorf("keyedmutex %s: exit %d, stderr %q; want it to say watch samples and can miss short changes", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

// TestForeignValueShown: a value keyedmutex did not write at a lock key
// blocks callers: list and inspect show it (exit 0), and release says how
// to delete it.
func TestForeignValueShown(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := ctxT(t)
	addr := "-addr=" + srv.Addr()
	if err := c.Set(ctx, "keyedmutex:{f'1}", "someone-else", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	r := km(t, "", addr, "list")
	r.want(t, 0, "list of a foreign value")
	if !strings.Contains(r.stdout, "f'1 ") || !strings.Contains(r.stdout, "(not keyedmutex's)") {
		t.Errorf("list: stdout %q; want f'1 with holder (not keyedmutex's)", r.stdout)
	}
	r = km(t, "", addr, "inspect", "f'1")
	r.want(t, 0, "inspect of a foreign value")
	if !strings.Contains(r.stdout, "holder    (not keyedmutex's)  ttl ") || !strings.Contains(r.stdout, "someone-else") {
		t.Errorf("inspect: stdout %q; want holder (not keyedmutex's), its ttl and value", r.stdout)
	}
	r = km(t, "", addr, "release", "f'1", "-holder", "x", "-yes")
	r.want(t, 3, "release of a foreign value")
	if want := "redis-cli -h 127.0.0.1 -p " + fmt.Sprint(srv.Port()) + ` DEL 'keyedmutex:{f'\''1}'`; !strings.Contains(r.stderr, want) {
		t.Errorf("release: stderr %q; want it to give %s", r.stderr, want)
	}
}

// TestWatchBanner: watch's banner names the lock as the library does
// (a '}' in the key escaped), and a key locked under another prefix gets
// inspect's "try -prefix" note.
func TestWatchBanner(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := ctxT(t)
	m := newMutex(t, c, distributed.WithPrefix("app:"))
	l, err := m.Lock(ctx, "{pay-1}")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	cmd := exec.CommandContext(ctx, binary(t), "-addr="+srv.Addr(), "-prefix=svc:", "watch", "{pay-1}")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var got []string
	for len(got) < 2 && sc.Scan() {
		got = append(got, sc.Text())
	}
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	if len(got) != 2 || !strings.Contains(got[0], "(lock svc:{{pay-1%7D})") || !strings.Contains(got[1], `try -prefix "app:"`) {
		t.Errorf("watch: first lines %q; want the lock svc:{{pay-1%%7D} and a note to try -prefix app:", got)
	}
}

// silentServer accepts connections and reads them, never answering, as a
// stalled server does; each first read is sent on the returned channel.
func silentServer(t *testing.T) (addr string, reads <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan struct{}, 16)
	var conns []net.Conn
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				buf := make([]byte, 4096)
				first := true
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
					if first {
						first = false
						select {
						case ch <- struct{}{}:
						default:
						}
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String(), ch
}

// TestTimeoutsExplained: a server that does not answer gets a hint naming
// -timeout; -tls against a plaintext server a hint naming TLS; and an
// interrupt ends a read in flight at once, long before -timeout.
func TestTimeoutsExplained(t *testing.T) {
	addr, reads := silentServer(t)
	r := km(t, "", "-addr="+addr, "-timeout=300ms", "inspect", "k")
	r.want(t, 1, "a silent server")
	if !strings.Contains(r.stderr, "no answer within -timeout 300ms") {
		t.Errorf("a silent server: stderr %q; want a hint naming -timeout", r.stderr)
	}
	srv := redistest.Start(t)
	r = km(t, "", "-addr="+srv.Addr(), "-tls", "-insecure", "-timeout=500ms", "list")
	r.want(t, 1, "-tls against a plaintext server")
	if !strings.Contains(r.stderr, "does the server at -addr speak TLS") {
		t.Errorf("-tls against a plaintext server: stderr %q; want a hint about TLS", r.stderr)
	}

	for len(reads) > 0 {
		<-reads
	}
	ctx := ctxT(t)
	// -timeout is far beyond the test's own deadline: only the interrupt
	// can end the command in time.
	cmd := exec.CommandContext(ctx, binary(t), "-addr="+addr, "-timeout=1h", "inspect", "k")
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reads: // the command waits for the answer to its first command
	case <-ctx.Done():
		t.Fatal("the command never wrote to the server")
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("an interrupt did not end a read in flight (stderr %q)", errb.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errb.String(), "interrupted") {
		t.Errorf("interrupted: %v, stderr %q; want exit 1 saying interrupted", err, errb.String())
	}
}

// TestHelpDocumentsLimits: the help says hybrid processes show only their
// remote head, and that a key starting with '-' follows "--"; and such a
// key after "--" is inspected.
func TestHelpDocumentsLimits(t *testing.T) {
	r := km(t, "", "-h")
	if !strings.Contains(r.stderr, "remote head") || !strings.Contains(r.stderr, `follows "--"`) {
		t.Errorf("-h: stderr %q; want the hybrid remote-head limit and the \"--\" rule", r.stderr)
	}
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := ctxT(t)
	m := newMutex(t, c, distributed.WithLabel("dash"))
	l, err := m.Lock(ctx, "-k")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	r = km(t, "", "-addr="+srv.Addr(), "inspect", "--", "-k")
	r.want(t, 0, "inspect -- -k")
	if !strings.Contains(r.stdout, "holder    dash") {
		t.Errorf("inspect -- -k: stdout %q; want held by dash", r.stdout)
	}
}
