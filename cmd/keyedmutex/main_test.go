package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keyedmutex/keyedmutex/internal/redistest"
	"github.com/keyedmutex/keyedmutex/mutex"
	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/redis/go-redis/v9"
)

// The tests build the command and run the binary, as an operator would,
// against real redis-servers with locks held by distributed.Mutex.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// binary builds the command once per test process.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "keyedmutex-cmd-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "keyedmutex")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type result struct {
	stdout, stderr string
	code           int
}

// km runs the command with args and stdin, bounded by a minute.
func km(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	cmd.Env = append(os.Environ(), "REDISCLI_AUTH=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("keyedmutex %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// want checks r's exit code.
func (r result) want(t *testing.T, code int, what string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: exit code %d; want %d\nstdout:\n%s\nstderr:\n%s", what, r.code, code, r.stdout, r.stderr)
	}
}

func newMutex(t *testing.T, c redis.UniversalClient, opts ...distributed.Option) *distributed.Mutex[string] {
	t.Helper()
	m, err := distributed.New[string](c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// queued waits until key has n waiters.
func queued(t *testing.T, c redis.UniversalClient, key string, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rs, err := distributed.InspectKeys(context.Background(), c, distributed.DefaultPrefix, key)
		if err == nil && len(rs[0].Queue) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("key %s: %d waiters never queued (last: %+v, %v)", key, n, rs, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitLock starts m.Lock(key) and returns the channel of its result.
func waitLock(ctx context.Context, m *distributed.Mutex[string], key string) <-chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		l, err := m.Lock(ctx, key)
		ch <- lockResult{l, err}
	}()
	return ch
}

type lockResult struct {
	l   mutex.Lease
	err error
}

// TestInspectAndList: inspect and list, in text and JSON, show the holder,
// the queue in order, and nothing for a free key (exit code 3).
func TestInspectAndList(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := ctxT(t)
	addr := "-addr=" + srv.Addr()
	holder := newMutex(t, c, distributed.WithLabel("holder-a"))
	waiter := newMutex(t, c, distributed.WithLabel("waiter-b"))
	other := newMutex(t, c, distributed.WithLabel("holder-c"))

	r := km(t, "", addr, "list")
	r.want(t, 3, "list of an empty server")
	if !strings.Contains(r.stderr, "no key held or waited for") {
		t.Errorf("list of an empty server: stderr %q; want it to say nothing is held", r.stderr)
	}

	la, err := holder.Lock(ctx, "order-17")
	if err != nil {
		t.Fatal(err)
	}
	defer la.Unlock()
	got := waitLock(ctx, waiter, "order-17")
	queued(t, c, "order-17", 1)
	lc, err := other.Lock(ctx, "invoice-9")
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Unlock()

	r = km(t, "", addr, "inspect", "order-17")
	r.want(t, 0, "inspect of a held key")
	for _, s := range []string{"lock      keyedmutex:{order-17}", "holder    holder-a", "waiters   1", "1  waiter-b  waited "} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("inspect order-17: output lacks %q:\n%s", s, r.stdout)
		}
	}
	// The lock's Redis name is accepted, and flags may follow the command.
	r = km(t, "", "inspect", "keyedmutex:{order-17}", "free-key", addr, "-json")
	r.want(t, 3, "inspect of a held and a free key")
	var keys []jsonKey
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil {
		t.Fatalf("inspect -json: %v\n%s", err, r.stdout)
	}
	if len(keys) != 2 || keys[0].State != "held" || keys[0].Holder == nil || keys[0].Holder.Label != "holder-a" ||
		keys[0].Holder.TTLMs <= 0 || len(keys[0].Waiters) != 1 || keys[0].Waiters[0].Label != "waiter-b" ||
		keys[1].Key != "free-key" || keys[1].State != "free" || keys[1].Holder != nil {
		t.Errorf("inspect -json = %+v; want order-17 held by holder-a with waiter-b queued, free-key free", keys)
	}

	r = km(t, "", addr, "list")
	r.want(t, 0, "list")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "KEY") ||
		!strings.HasPrefix(lines[1], "order-17 ") || !strings.Contains(lines[1], "holder-a") ||
		!strings.HasPrefix(lines[2], "invoice-9 ") || !strings.Contains(lines[2], "holder-c") {
		t.Errorf("list: want a header, order-17 (it has a waiter) then invoice-9:\n%s", r.stdout)
	}
	r = km(t, "", addr, "list", "-json", "-match", "inv*")
	r.want(t, 0, "list -match inv*")
	keys = nil
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || len(keys) != 1 || keys[0].Key != "invoice-9" {
		t.Errorf("list -json -match inv* = %+v, %v; want invoice-9 alone\n%s", keys, err, r.stdout)
	}
	r = km(t, "", addr, "-prefix", "other:", "list")
	r.want(t, 3, "list under a wrong prefix")
	if !strings.Contains(r.stderr, `"keyedmutex:"`) || !strings.Contains(r.stderr, "-prefix") {
		t.Errorf("list under a wrong prefix: stderr %q; want it to point at keyedmutex: and -prefix", r.stderr)
	}

	if err := la.Unlock(); err != nil {
		t.Fatal(err)
	}
	w := <-got
	if w.err != nil {
		t.Fatal(w.err)
	}
	w.l.Unlock()
}

// TestRelease: release refuses a wrong holder and a declined prompt, and
// then hands the lock to the queued waiter, whose Lock returns, while the
// old lease finds its loss.
func TestRelease(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := ctxT(t)
	addr := "-addr=" + srv.Addr()
	stuck := newMutex(t, c, distributed.WithLabel("stuck-1"), distributed.WithTTL(time.Second))
	next := newMutex(t, c, distributed.WithLabel("next-2"))

	km(t, "", addr, "release", "k", "-holder", "stuck-1", "-yes").want(t, 3, "release of a free key")
	km(t, "", addr, "release", "k").want(t, 2, "release without -holder")
	r := km(t, "", addr, "release", "k", "-holder", "stuck-1", "-token", "7")
	r.want(t, 2, "release -token")
	if !strings.Contains(r.stderr, "no fencing tokens") {
		t.Errorf("release -token: stderr %q; want it to say tokens are not stored", r.stderr)
	}

	old, err := stuck.Lock(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	got := waitLock(ctx, next, "k")
	queued(t, c, "k", 1)

	r = km(t, "", addr, "release", "k", "-holder", "next-2", "-yes", "-json")
	r.want(t, 3, "release by a holder that does not hold the key")
	var rel jsonRelease
	if err := json.Unmarshal([]byte(r.stdout), &rel); err != nil || rel.Released || rel.Before.Holder == nil || rel.Before.Holder.Label != "stuck-1" {
		t.Errorf("refused release -json = %+v, %v; want released false, held by stuck-1\n%s", rel, err, r.stdout)
	}
	km(t, "n\n", addr, "release", "k", "-holder", "stuck-1").want(t, 4, "release declined at the prompt")
	if rs, err := distributed.InspectKeys(ctx, c, distributed.DefaultPrefix, "k"); err != nil || rs[0].Label != "stuck-1" {
		t.Fatalf("after refusals: %+v, %v; want k still held by stuck-1", rs, err)
	}
	select {
	case w := <-got:
		t.Fatalf("the waiter got the lock while stuck-1 held it: %v", w.err)
	default:
	}

	r = km(t, "y\n", addr, "release", "k", "-holder", "stuck-1")
	r.want(t, 0, "release confirmed")
	if !strings.Contains(r.stdout, "released k held by stuck-1") || !strings.Contains(r.stdout, "now held by next-2") {
		t.Errorf("release: stdout %q; want it to name the old and the new holder", r.stdout)
	}
	if !strings.Contains(r.stderr, "[y/N]") {
		t.Errorf("release: stderr %q; want the prompt", r.stderr)
	}
	w := <-got
	if w.err != nil {
		t.Fatalf("the waiter's Lock after the release: %v", w.err)
	}
	select {
	case <-old.Done():
	case <-ctx.Done():
		t.Fatal("the old lease never found its loss")
	}
	if err := old.Unlock(); !errors.Is(err, mutex.ErrLost) {
		t.Errorf("old lease: Unlock = %v; want ErrLost", err)
	}
	if err := w.l.Err(); err != nil {
		t.Errorf("the new holder's lease: %v; want held", err)
	}
	if err := w.l.Unlock(); err != nil {
		t.Errorf("the new holder's Unlock: %v", err)
	}
}

// TestErrors: no server, WRONGTYPE, a Redis key that is not a lock key,
// bad usage.
func TestErrors(t *testing.T) {
	port, err := redistest.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	r := km(t, "", fmt.Sprintf("-addr=127.0.0.1:%d", port), "-timeout=2s", "list")
	r.want(t, 1, "no server")
	if !strings.Contains(r.stderr, "cannot reach Redis at") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("no server: stderr %q; want one line saying it cannot reach Redis", r.stderr)
	}
	km(t, "").want(t, 2, "no command")
	km(t, "", "frobnicate").want(t, 2, "unknown command")
	km(t, "", "inspect").want(t, 2, "inspect without KEY")
	km(t, "", "watch", "a", "b").want(t, 2, "watch of two keys")
	km(t, "", "-prefix", "a{", "list").want(t, 2, "a prefix with a brace")
	if r := km(t, "", "-h"); r.code != 0 || !strings.Contains(r.stderr, "Exit codes") || !strings.Contains(r.stderr, "-token") {
		t.Errorf("-h: exit %d, stderr %q; want 0 and the exit codes and why there is no -token", r.code, r.stderr)
	}

	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := ctxT(t)
	addr := "-addr=" + srv.Addr()
	if err := c.RPush(ctx, "keyedmutex:{bad}", "x").Err(); err != nil {
		t.Fatal(err)
	}
	r = km(t, "", addr, "inspect", "bad")
	r.want(t, 1, "inspect of a key whose lock is a list")
	if !strings.Contains(r.stderr, "WRONGTYPE") || !strings.Contains(r.stderr, "keyedmutex:{bad}") {
		t.Errorf("WRONGTYPE: stderr %q; want WRONGTYPE and the key's name", r.stderr)
	}
	if err := c.Set(ctx, "session:1", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r = km(t, "", addr, "inspect", "session:1")
	r.want(t, 3, "inspect of a plain Redis key")
	if !strings.Contains(r.stdout, "not a lock key") {
		t.Errorf("inspect of a plain Redis key: stdout %q; want it to say it is not a lock key", r.stdout)
	}
	app := newMutex(t, c, distributed.WithPrefix("app:"))
	la, err := app.Lock(ctx, "order-5*")
	if err != nil {
		t.Fatal(err)
	}
	defer la.Unlock()
	r = km(t, "", addr, "inspect", "order-5*")
	r.want(t, 3, "inspect of a key locked under another prefix")
	if !strings.Contains(r.stdout, `locked under prefix "app:"`) {
		t.Errorf("inspect of a key locked under another prefix: stdout %q; want it to suggest -prefix app:", r.stdout)
	}
	km(t, "", addr, "-prefix=app:", "inspect", "order-5*").want(t, 0, "inspect under the right prefix")
	r = km(t, "", addr, "inspect", "app:{order-1}")
	r.want(t, 3, "inspect of a lock name under another prefix")
	if !strings.Contains(r.stdout, `try -prefix "app:"`) {
		t.Errorf("inspect of a lock name under another prefix: stdout %q; want it to suggest -prefix app:", r.stdout)
	}
}

// TestWatch: watch prints a line per change of holder and queue, and
// exits 0 when interrupted.
func TestWatch(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := ctxT(t)
	a := newMutex(t, c, distributed.WithLabel("a"))
	b := newMutex(t, c, distributed.WithLabel("b"))

	cmd := exec.CommandContext(ctx, binary(t), "-addr="+srv.Addr(), "watch", "-json", "-interval=5ms", "w")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan jsonKey)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var k jsonKey
			if err := json.Unmarshal(sc.Bytes(), &k); err != nil {
				k.State = "bad line: " + sc.Text()
			}
			lines <- k
		}
	}()
	next := func(what string) jsonKey {
		t.Helper()
		select {
		case k, ok := <-lines:
			if !ok {
				t.Fatalf("watch ended before %s; stderr: %s", what, errb.String())
			}
			return k
		case <-ctx.Done():
			t.Fatalf("watch printed nothing for %s", what)
		}
		return jsonKey{}
	}
	holderOf := func(k jsonKey) string {
		if k.Holder == nil {
			return ""
		}
		return k.Holder.Label
	}
	if k := next("the free key"); k.State != "free" || k.Time == "" {
		t.Fatalf("first line %+v; want free, with a time", k)
	}
	la, err := a.Lock(ctx, "w")
	if err != nil {
		t.Fatal(err)
	}
	if k := next("a's Lock"); holderOf(k) != "a" || len(k.Waiters) != 0 {
		t.Fatalf("after a's Lock: %+v; want held by a, nobody waiting", k)
	}
	got := waitLock(ctx, b, "w")
	if k := next("b's wait"); holderOf(k) != "a" || len(k.Waiters) != 1 || k.Waiters[0].Label != "b" {
		t.Fatalf("after b queued: %+v; want held by a, b waiting", k)
	}
	if err := la.Unlock(); err != nil {
		t.Fatal(err)
	}
	if k := next("the hand-over"); holderOf(k) != "b" || len(k.Waiters) != 0 {
		t.Fatalf("after a's Unlock: %+v; want held by b, nobody waiting", k)
	}
	w := <-got
	if w.err != nil {
		t.Fatal(w.err)
	}
	if err := w.l.Unlock(); err != nil {
		t.Fatal(err)
	}
	if k := next("b's Unlock"); k.State != "free" {
		t.Fatalf("after b's Unlock: %+v; want free", k)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	for k := range lines {
		t.Errorf("line after the last change: %+v", k)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("watch after an interrupt: %v; want exit 0 (stderr: %s)", err, errb.String())
	}
}

// TestCluster: list finds the keys of every master, inspect and release
// work through -cluster, and a Cluster node without -cluster is named.
func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3, 0)
	cc := cl.Client(t)
	ctx := ctxT(t)
	addr := "-addr=" + strings.Join(cl.Addrs(), ",")
	holder := newMutex(t, cc, distributed.WithLabel("h"))
	waiter := newMutex(t, cc, distributed.WithLabel("w"))

	masters := map[string]bool{}
	var leases []mutex.Lease
	for i := 0; i < 12; i++ {
		key := fmt.Sprintf("c%d", i)
		l, err := holder.Lock(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
		masters[cl.MasterOf("keyedmutex:{"+key+"}")] = true
	}
	if len(masters) < 2 {
		t.Fatalf("12 keys on %d masters; want keys on several", len(masters))
	}
	got := waitLock(ctx, waiter, "c0")
	queued(t, cc, "c0", 1)

	r := km(t, "", addr, "-cluster", "list", "-json")
	r.want(t, 0, "list -cluster")
	var keys []jsonKey
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || len(keys) != 12 || keys[0].Key != "c0" {
		t.Fatalf("list -cluster: %d keys, first %+v, %v; want the 12 keys of %d masters, c0 (queued) first\n%s", len(keys), keys, err, len(masters), r.stdout)
	}
	r = km(t, "", "-addr="+cl.Addrs()[0], "list")
	r.want(t, 1, "list of a Cluster node without -cluster")
	if !strings.Contains(r.stderr, "add -cluster") {
		t.Errorf("without -cluster: stderr %q; want it to say add -cluster", r.stderr)
	}
	r = km(t, "", addr, "-cluster", "release", "c0", "-holder", "h", "-yes")
	r.want(t, 0, "release -cluster")
	w := <-got
	if w.err != nil {
		t.Fatalf("the waiter's Lock after the release: %v", w.err)
	}
	select {
	case <-leases[0].Done():
	case <-ctx.Done():
		t.Fatal("the old lease never found its loss")
	}
	if err := leases[0].Err(); !errors.Is(err, mutex.ErrLost) {
		t.Errorf("old lease: %v; want ErrLost", err)
	}
	w.l.Unlock()
	for _, l := range leases[1:] {
		l.Unlock()
	}
}

// TestSentinel: -sentinel-master finds the master through the Sentinels
// in -addr.
func TestSentinel(t *testing.T) {
	s := redistest.StartSentinel(t)
	c := s.Client(t)
	ctx := ctxT(t)
	m := newMutex(t, c, distributed.WithLabel("via-sentinel"))
	l, err := m.Lock(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	r := km(t, "", "-sentinel-master", s.MasterName(), "-addr", strings.Join(s.SentinelAddrs(), ","), "inspect", "-json", "s1")
	r.want(t, 0, "inspect -sentinel-master")
	var keys []jsonKey
	if err := json.Unmarshal([]byte(r.stdout), &keys); err != nil || len(keys) != 1 || keys[0].Holder == nil || keys[0].Holder.Label != "via-sentinel" {
		t.Errorf("inspect -sentinel-master = %+v, %v; want s1 held by via-sentinel\n%s", keys, err, r.stdout)
	}
	r = km(t, "", "-sentinel-master", "no-such-master", "-addr", strings.Join(s.SentinelAddrs(), ","), "-timeout=2s", "list")
	r.want(t, 1, "an unknown Sentinel master")
	if !strings.Contains(r.stderr, "cannot reach Sentinel master") || !strings.Contains(r.stderr, `know no master named "no-such-master"`) ||
		!strings.Contains(r.stderr, strconv.Quote(s.MasterName())) {
		t.Errorf("an unknown Sentinel master: stderr %q; want it to say the Sentinels know no such master, and name %q", r.stderr, s.MasterName())
	}
}

// TestReleaseInterrupted: an interrupt at the prompt releases nothing and
// exits 4 at once (the unanswered read does not hold the process).
func TestReleaseInterrupted(t *testing.T) {
	srv := redistest.Start(t)
	c := srv.Client(t)
	ctx := ctxT(t)
	m := newMutex(t, c, distributed.WithLabel("kept"))
	l, err := m.Lock(ctx, "i")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()

	cmd := exec.CommandContext(ctx, binary(t), "-addr="+srv.Addr(), "release", "i", "-holder", "kept")
	stdin, err := cmd.StdinPipe() // never answered
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var seen []byte
	buf := make([]byte, 512)
	for !bytes.Contains(seen, []byte("[y/N]")) {
		n, err := stderr.Read(buf)
		seen = append(seen, buf[:n]...)
		if err != nil {
			t.Fatalf("no prompt before %v; stderr: %s", err, seen)
		}
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(stderr)
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 4 {
		t.Errorf("release interrupted at the prompt: %v; want exit code 4 (stderr: %s%s)", err, seen, rest)
	}
	if !strings.Contains(string(rest), "nothing released") {
		t.Errorf("release interrupted at the prompt: stderr %q; want it to say nothing was released", rest)
	}
	if rs, err := distributed.InspectKeys(ctx, c, distributed.DefaultPrefix, "i"); err != nil || rs[0].Label != "kept" {
		t.Errorf("after the interrupt: %+v, %v; want i still held by kept", rs, err)
	}
}
