// Command keyedmutex shows and breaks the locks that
// github.com/keyedmutex/keyedmutex/mutex/distributed keeps in Redis: who
// holds a key, for how long still, who waits and since when; and it
// releases a stuck holder's lock, handing it to the next waiter as an
// Unlock would.
//
// Install it with
//
//	go install github.com/keyedmutex/keyedmutex/cmd/keyedmutex@latest
//
// Usage:
//
//	keyedmutex [connection flags] inspect KEY...
//	keyedmutex [connection flags] list [-match PATTERN]
//	keyedmutex [connection flags] watch [-interval D] KEY
//	keyedmutex [connection flags] release [-yes] KEY -holder LABEL
//
// It connects like redis-cli: -addr host:port (several, comma-separated,
// with -cluster or -sentinel-master), -user and -pass (or the
// REDISCLI_AUTH environment variable), -db, -tls with -cacert and
// -insecure. -prefix is the Mutexes' key prefix (distributed.WithPrefix;
// "keyedmutex:" by default). KEY is the key as the Mutex encodes it (for
// string keys, the key itself); a lock's Redis name is accepted too.
// Every command takes -json, and flags may follow the command. Text
// output quotes keys with control or non-printable bytes; -json's
// "key_quoted" is the key Go-quoted, exact even when "key" is not (a key
// that is not valid UTF-8), and -quoted takes KEY arguments in that form.
// A KEY that starts with '-' follows "--".
//
// Exit codes: 0 success; 1 an error (no server, WRONGTYPE, ...); 2 bad
// usage; 3 nothing to do: a key not locked, nothing listed, or a lock not
// held by the holder named; 4 a release not confirmed at the prompt. A
// key that cannot be read (WRONGTYPE, its Cluster master stalled) does
// not hide the others: inspect and list print them, and that key with its
// error ("state": "error" and "error" in -json), and exit 1.
//
// Protocol v3 stores no fencing token and no acquisition time (tokens
// are the server's clock read while the lock is held), so neither can be
// shown, and release cannot select a holder by token: name its label
// (distributed.WithLabel; "host:pid" by default) or its owner id.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keyedmutex/keyedmutex/mutex/distributed"
	"github.com/redis/go-redis/v9"
)

// Exit codes.
const (
	exitOK       = 0
	exitError    = 1
	exitUsage    = 2
	exitNothing  = 3 // not locked, nothing listed, held by another holder
	exitDeclined = 4
)

func main() {
	redis.SetLogger(quiet{}) // errors are reported once, with a hint
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// quiet drops go-redis's log lines (its dial retries).
type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

const usageText = `keyedmutex shows and breaks the locks of keyedmutex/mutex/distributed in Redis.

Usage:
  keyedmutex [flags] inspect KEY...           holder, TTL and waiters of each key
  keyedmutex [flags] list [-match PATTERN]    every held or queued key (SCAN), longest wait first
  keyedmutex [flags] watch [-interval D] KEY  sample holder and queue every -interval, print a line
                                              when they differ from the last sample, until interrupted
                                              (a change shorter than the interval can be missed)
  keyedmutex [flags] release [-yes] KEY -holder LABEL
                                              break the lock if LABEL (or owner id) holds it and
                                              hand it to the next waiter; asks unless -yes

KEY is the key as the Mutex encodes it (for string keys, the key itself);
a lock's Redis name (PREFIX{KEY}) is accepted too. Flags may follow the
command. Every command takes -json. Text output quotes, with Go's
escapes ("a\nb"), a key with control or non-printable bytes. -json's
"key" loses the bytes of a key that is not valid UTF-8; its "key_quoted"
is exact: with -quoted, KEY arguments are taken in that form
(keyedmutex -quoted inspect '"\xffk"'). A KEY that starts with '-'
follows "--" (keyedmutex inspect -- -k).

A value keyedmutex did not write at a lock key blocks every Lock of the
key: inspect and list show it (holder "(not keyedmutex's)"); release
leaves it and prints the redis-cli DEL that clears it.

Read-write locks (distributed.RWMutex) are other locks than the Mutex's
of the same key, shown as kind "rw": the writer or the readers (a
reader's label is not stored: "-"), and the queue with each waiter's
kind (reader, writer). A plain KEY shows each kind that is held or
queued (the Mutex's, free, if neither is); a Redis name (PREFIX{KEY},
PREFIXrw:{KEY}, ...) only its own kind. release of a key whose Mutex
is free but whose read-write lock is held (or of PREFIXrw:{KEY}) breaks
the writer (-holder: label or owner id) or one reader's share (-holder:
the reader's owner id, which inspect shows), and hands the lock on as a
release does.

Hybrid (mutex/hybrid) processes show only their remote head, the Lock
each queues or holds in Redis, not the callers queued locally behind it.
A KEY that starts with '-' follows "--" (keyedmutex inspect -- -k).

Not stored, so not shown: fencing tokens and acquisition times (protocol
v3 issues tokens from the server clock), so release has no -token: name
the holder's label (WithLabel; "host:pid" by default) or owner id.

Exit codes: 0 ok; 1 error (no server, WRONGTYPE, ...); 2 usage; 3 nothing
to do (a key not locked, nothing listed, a lock not held by that holder);
4 release not confirmed. A key that cannot be read (WRONGTYPE, its Cluster
master stalled) is shown with its error, the other keys as usual, and
the exit code is 1.

Flags:
`

// options are the flags every command takes.
type options struct {
	addr, user, pass, db         string
	tls, insecure                bool
	cacert                       string
	cluster                      bool
	sentinelMaster, sentinelPass string
	prefix                       string
	timeout                      time.Duration
	json                         bool
	quoted                       bool

	match    string        // list
	interval time.Duration // watch
	holder   string        // release
	yes      bool          // release
	token    string        // release: refused

	stdin          io.Reader
	stdout, stderr io.Writer
}

// register adds the connection flags to fs, with o's values as defaults
// (so flags given before the command stay set).
func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.addr, "addr", o.addr, "Redis `host:port`; comma-separated seeds with -cluster, Sentinel addresses with -sentinel-master")
	fs.StringVar(&o.user, "user", o.user, "ACL `user` name")
	fs.StringVar(&o.pass, "pass", o.pass, "`password` (default: $REDISCLI_AUTH)")
	fs.StringVar(&o.db, "db", o.db, "database `number` (not with -cluster)")
	fs.BoolVar(&o.tls, "tls", o.tls, "connect with TLS")
	fs.StringVar(&o.cacert, "cacert", o.cacert, "CA certificate `file` for -tls (default: the system's)")
	fs.BoolVar(&o.insecure, "insecure", o.insecure, "with -tls, do not verify the server's certificate")
	fs.BoolVar(&o.cluster, "cluster", o.cluster, "Redis Cluster: -addr lists seed nodes; list scans every master")
	fs.StringVar(&o.sentinelMaster, "sentinel-master", o.sentinelMaster, "Sentinel master `name`: -addr lists the Sentinels")
	fs.StringVar(&o.sentinelPass, "sentinel-pass", o.sentinelPass, "Sentinel `password`, if the Sentinels need one")
	fs.StringVar(&o.prefix, "prefix", o.prefix, "the Mutexes' key `prefix` (distributed.WithPrefix)")
	fs.DurationVar(&o.timeout, "timeout", o.timeout, "`timeout`: how long each step waits for Redis (no retries); a stalled server fails the command within it (list: 10 × it)")
	fs.BoolVar(&o.json, "json", o.json, "print JSON")
	fs.BoolVar(&o.quoted, "quoted", o.quoted, `each KEY is Go-quoted ("a\nb", "\xff"), as -json's key_quoted and text output print keys`)
}

// run runs the command with args and returns its exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	o := &options{
		addr:     "127.0.0.1:6379",
		db:       "0",
		prefix:   distributed.DefaultPrefix,
		timeout:  5 * time.Second,
		interval: 250 * time.Millisecond,
		stdin:    stdin, stdout: stdout, stderr: stderr,
	}
	top := flag.NewFlagSet("keyedmutex", flag.ContinueOnError)
	top.SetOutput(stderr)
	o.register(top)
	top.Usage = func() {
		fmt.Fprint(stderr, usageText)
		top.PrintDefaults()
	}
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if top.NArg() == 0 {
		top.Usage()
		return exitUsage
	}
	cmd, rest := top.Arg(0), top.Args()[1:]
	if cmd == "help" {
		top.SetOutput(stdout)
		fmt.Fprint(stdout, usageText)
		top.PrintDefaults()
		return exitOK
	}
	fs := flag.NewFlagSet("keyedmutex "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var synopsis string
	switch cmd {
	case "inspect":
		synopsis = "inspect KEY..."
	case "list":
		synopsis = "list [-match PATTERN]"
		fs.StringVar(&o.match, "match", "", "Redis glob `pattern` the keys must match (default: all)")
	case "watch":
		synopsis = "watch [-interval D] KEY"
		fs.DurationVar(&o.interval, "interval", o.interval, "sampling `interval`: a line is printed when a sample differs from the last; a change that lasts less than this can be missed")
	case "release":
		synopsis = "release [-yes] KEY -holder LABEL"
		fs.StringVar(&o.holder, "holder", "", "release only if this holder `label` (or owner id) holds the lock")
		fs.BoolVar(&o.yes, "yes", false, "do not ask for confirmation")
		fs.StringVar(&o.token, "token", "", "not supported: protocol v3 stores no fencing tokens; use -holder")
	default:
		fmt.Fprintf(stderr, "keyedmutex: unknown command %q (commands: inspect, list, watch, release; keyedmutex -h for help)\n", cmd)
		return exitUsage
	}
	o.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: keyedmutex %s\n\nFlags (also accepted before the command):\n", synopsis)
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if o.pass == "" {
		o.pass = os.Getenv("REDISCLI_AUTH")
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "keyedmutex %s: %s\nUsage: keyedmutex %s (keyedmutex %s -h for flags)\n", cmd, fmt.Sprintf(format, a...), synopsis, cmd)
		return exitUsage
	}
	if o.quoted {
		for i, a := range pos {
			k, err := strconv.Unquote(a)
			if err != nil {
				return usage("-quoted: KEY %s is not a Go-quoted string (as key_quoted in -json prints it, quotes included)", show(a))
			}
			pos[i] = k
		}
	}
	switch {
	case cmd == "inspect" && len(pos) == 0:
		return usage("no KEY given")
	case cmd == "list" && len(pos) != 0:
		return usage("unexpected arguments %q", pos)
	case (cmd == "watch" || cmd == "release") && len(pos) != 1:
		return usage("want exactly one KEY, got %d arguments", len(pos))
	case cmd == "release" && o.token != "":
		return usage("-token is not supported: protocol v3 stores no fencing tokens (they are the server's clock read at acquisition); name the holder with -holder LABEL")
	case cmd == "release" && o.holder == "":
		return usage("-holder LABEL is required: the lock is released only if that holder (its label or owner id) holds it")
	case cmd == "watch" && o.interval <= 0:
		return usage("-interval must be positive")
	case o.timeout <= 0:
		return usage("-timeout must be positive")
	case strings.ContainsAny(o.prefix, "{}"):
		return usage("-prefix %q: a prefix may not contain '{' or '}'", o.prefix)
	case o.cluster && o.sentinelMaster != "":
		return usage("-cluster and -sentinel-master exclude each other")
	}
	client, err := o.connect()
	if err != nil {
		return usage("%v", err)
	}
	defer client.Close()
	// go-redis does not abandon a read in flight when its context ends:
	// at an interrupt, closing the client ends it at once.
	stopClose := context.AfterFunc(ctx, func() { client.Close() })
	defer stopClose()
	if err := o.ping(ctx, client); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "keyedmutex %s: interrupted\n", cmd)
			return exitError
		}
		fmt.Fprintf(stderr, "keyedmutex: %v\n", err)
		return exitError
	}
	var code int
	switch cmd {
	case "inspect":
		code, err = o.inspect(ctx, client, pos)
	case "list":
		code, err = o.list(ctx, client)
	case "watch":
		code, err = o.watch(ctx, client, pos[0])
	case "release":
		code, err = o.release(ctx, client, pos[0])
	}
	if err != nil && ctx.Err() != nil && cmd != "release" {
		fmt.Fprintf(stderr, "keyedmutex %s: interrupted\n", cmd)
		return exitError
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("interrupted; the lock may or may not have been released (inspect shows it): %w", err)
		}
		fmt.Fprintf(stderr, "keyedmutex %s: %v\n", cmd, o.explain(err))
	}
	return code
}

// parseInterleaved parses fs's flags wherever they stand among args and
// returns the other arguments; after "--" everything is an argument.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// connect makes the client the flags describe.
func (o *options) connect() (redis.UniversalClient, error) {
	db, err := strconv.Atoi(o.db)
	if err != nil || db < 0 {
		return nil, fmt.Errorf("-db %q: want a database number", o.db)
	}
	addrs := strings.Split(o.addr, ",")
	for i := range addrs {
		addrs[i] = strings.TrimSpace(addrs[i])
		if addrs[i] == "" {
			return nil, fmt.Errorf("-addr %q: an empty address", o.addr)
		}
	}
	var tc *tls.Config
	if o.tls {
		tc = &tls.Config{InsecureSkipVerify: o.insecure}
		if o.cacert != "" {
			pem, err := os.ReadFile(o.cacert)
			if err != nil {
				return nil, fmt.Errorf("-cacert: %v", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("-cacert %s: no PEM certificate in it", o.cacert)
			}
		}
	} else if o.cacert != "" || o.insecure {
		return nil, errors.New("-cacert and -insecure need -tls")
	}
	switch {
	case o.cluster:
		if db != 0 {
			return nil, errors.New("-db: a Redis Cluster has database 0 only")
		}
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: addrs, Username: o.user, Password: o.pass, TLSConfig: tc,
			DialTimeout: o.timeout, ReadTimeout: o.timeout, WriteTimeout: o.timeout, MaxRetries: -1,
		}), nil
	case o.sentinelMaster != "":
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: o.sentinelMaster, SentinelAddrs: addrs, SentinelPassword: o.sentinelPass,
			Username: o.user, Password: o.pass, DB: db, TLSConfig: tc,
			DialTimeout: o.timeout, ReadTimeout: o.timeout, WriteTimeout: o.timeout, MaxRetries: -1,
		}), nil
	case len(addrs) > 1:
		return nil, fmt.Errorf("-addr %q: several addresses need -cluster or -sentinel-master", o.addr)
	}
	return redis.NewClient(&redis.Options{
		Addr: addrs[0], Username: o.user, Password: o.pass, DB: db, TLSConfig: tc,
		DialTimeout: o.timeout, ReadTimeout: o.timeout, WriteTimeout: o.timeout, MaxRetries: -1,
	}), nil
}

// where names the server(s) the flags point at.
func (o *options) where() string {
	switch {
	case o.cluster:
		return "the Redis Cluster at " + o.addr
	case o.sentinelMaster != "":
		return fmt.Sprintf("Sentinel master %q via %s", o.sentinelMaster, o.addr)
	}
	return "Redis at " + o.addr
}

// ping checks that the server answers, and with a plain client that it is
// not a Cluster node.
func (o *options) ping(ctx context.Context, client redis.UniversalClient) error {
	if cc, ok := client.(*redis.ClusterClient); ok {
		return o.pingMasters(ctx, cc)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		if o.sentinelMaster != "" {
			if known, ok := o.sentinelMasters(ctx); ok {
				return fmt.Errorf("cannot reach %s: the Sentinels know no master named %q (they know: %s); -sentinel-master names it", o.where(), o.sentinelMaster, known)
			}
		}
		return fmt.Errorf("cannot reach %s: %w", o.where(), o.explain(err))
	}
	if !o.cluster {
		if info, err := client.Info(ctx, "cluster").Result(); err == nil && strings.Contains(info, "cluster_enabled:1") {
			return fmt.Errorf("%s is a Redis Cluster node: add -cluster", o.where())
		}
	}
	return nil
}

// pingMasters pings every master of a Cluster. It fails only if none
// answers: a stalled master is reported on stderr, and the keys it serves
// get their own errors, while the keys of the others are read.
func (o *options) pingMasters(ctx context.Context, cc *redis.ClusterClient) error {
	// Loading the slot map tries the seeds one by one, each for up to
	// -timeout: a stalled seed must not use up the time of the others.
	seeds := len(strings.Split(o.addr, ","))
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seeds+1)*o.timeout)
	defer cancel()
	var mu sync.Mutex
	var ok int
	var failed []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		ctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		err := n.Ping(ctx).Err()
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			failed = append(failed, fmt.Sprintf("master %s: %v", n.Options().Addr, o.explain(err)))
		} else {
			ok++
		}
		return nil
	})
	sort.Strings(failed)
	switch {
	case err != nil:
		return fmt.Errorf("cannot reach %s: %w", o.where(), o.explain(err))
	case ok == 0 && len(failed) > 0:
		return fmt.Errorf("cannot reach %s: %s", o.where(), strings.Join(failed, "; "))
	}
	for _, f := range failed {
		fmt.Fprintf(o.stderr, "keyedmutex: %s (the keys it serves cannot be read)\n", f)
	}
	return nil
}

// sentinelMasters asks the Sentinels of -addr for -sentinel-master, and
// returns ok true and the names they know if one answers that it knows no
// master of that name.
func (o *options) sentinelMasters(ctx context.Context) (known string, ok bool) {
	for _, a := range strings.Split(o.addr, ",") {
		sc := redis.NewSentinelClient(&redis.Options{
			Addr: strings.TrimSpace(a), Password: o.sentinelPass,
			DialTimeout: o.timeout, ReadTimeout: o.timeout, WriteTimeout: o.timeout, MaxRetries: -1,
		})
		_, err := sc.GetMasterAddrByName(ctx, o.sentinelMaster).Result()
		if !errors.Is(err, redis.Nil) {
			sc.Close()
			continue
		}
		var names []string
		if ms, err := sc.Masters(ctx).Result(); err == nil {
			for _, m := range ms {
				// Each master is a list of field, value pairs (RESP2) or a map.
				switch m := m.(type) {
				case []any:
					for i := 0; i+1 < len(m); i += 2 {
						if m[i] == "name" {
							names = append(names, fmt.Sprint(m[i+1]))
						}
					}
				case map[any]any:
					names = append(names, fmt.Sprint(m["name"]))
				}
			}
		}
		sc.Close()
		sort.Strings(names)
		if len(names) == 0 {
			return "none", true
		}
		for i, n := range names {
			names[i] = strconv.Quote(n)
		}
		return strings.Join(names, ", "), true
	}
	return "", false
}

// explain adds a hint to the errors whose cause a person may not guess.
func (o *options) explain(err error) error {
	msg := err.Error()
	switch {
	case o.tls && (strings.Contains(msg, "tls:") || strings.Contains(msg, "deadline exceeded") || strings.Contains(msg, "i/o timeout") || strings.Contains(msg, "EOF")):
		return fmt.Errorf("%w (-tls is set: does the server at -addr speak TLS? A plaintext server does not answer a TLS handshake; or it is stalled: -timeout is %v)", err, o.timeout)
	case strings.Contains(msg, "connection refused") || strings.Contains(msg, "no such host"):
		return fmt.Errorf("%w (is the server running? -addr sets its address)", err)
	case strings.Contains(msg, "i/o timeout") || strings.Contains(msg, "deadline exceeded"):
		return fmt.Errorf("%w (no answer within -timeout %v: is the server stalled or overloaded, or -addr a port that is not Redis? A TLS-only server needs -tls)", err, o.timeout)
	case !o.tls && (strings.Contains(msg, "EOF") || strings.Contains(msg, "connection reset")):
		return fmt.Errorf("%w (the server closed the connection: does it need -tls?)", err)
	case strings.Contains(msg, "NOAUTH") || strings.Contains(msg, "WRONGPASS"):
		return fmt.Errorf("%w (-user and -pass, or REDISCLI_AUTH, set the credentials)", err)
	case strings.Contains(msg, "MOVED") || strings.Contains(msg, "CROSSSLOT"):
		return fmt.Errorf("%w (the server is a Redis Cluster node: add -cluster)", err)
	case errors.Is(err, distributed.ErrWrongType):
		return fmt.Errorf("%w (something other than keyedmutex wrote these keys: -prefix may be wrong, or another program shares it)", err)
	}
	return err
}

// keyArg returns the encoded key of a command-line KEY: the key itself,
// or the key of a lock's Redis name under the prefix.
func (o *options) keyArg(arg string) string {
	if k, _, _, ok := distributed.ParseKeyName(o.prefix, arg); ok {
		return k
	}
	return arg
}

// kindArg returns the kind of lock a command-line KEY names: a Mutex's
// Redis name (PREFIX{KEY}, PREFIXq:{KEY}) names its Mutex lock, an
// RWMutex's (PREFIXrw:{KEY}, PREFIXrwr:{KEY}, PREFIXrwq:{KEY}) its
// read-write lock, and a plain key both ("").
func (o *options) kindArg(arg string) distributed.Kind {
	if _, kind, _, ok := distributed.ParseKeyName(o.prefix, arg); ok {
		return kind
	}
	return ""
}

// pick chooses the reports to show for a KEY of kind (see kindArg) from
// its Mutex report m and its read-write report rw: for a plain key, each
// that is locked (or could not be read), or the Mutex's if neither is.
func pick(kind distributed.Kind, m, rw distributed.KeyReport) []distributed.KeyReport {
	switch kind {
	case distributed.KindMutex:
		return []distributed.KeyReport{m}
	case distributed.KindRW:
		return []distributed.KeyReport{rw}
	}
	var out []distributed.KeyReport
	if m.Locked() || m.Err != nil {
		out = append(out, m)
	}
	if rw.Locked() || rw.Err != nil {
		out = append(out, rw)
	}
	if len(out) == 0 {
		out = append(out, m)
	}
	return out
}

// inspectBoth reads the Mutex and the read-write lock of keys.
func inspectBoth(ctx context.Context, client redis.UniversalClient, prefix string, keys []string) (m, rw []distributed.KeyReport, err error) {
	m, err = distributed.InspectKeys(ctx, client, prefix, keys...)
	if m == nil {
		return nil, nil, err
	}
	rw, rwErr := distributed.InspectRWKeys(ctx, client, prefix, keys...)
	if rw == nil {
		return nil, nil, rwErr
	}
	return m, rw, nil
}

// firstErr is the Err of the first report of rs that has one, counting
// the others.
func firstErr(rs []distributed.KeyReport) error {
	var first error
	n := 0
	for _, r := range rs {
		if r.Err != nil {
			if first == nil {
				first = r.Err
			}
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("%w (and %d more locks could not be read)", first, n-1)
	}
	return first
}

// notLockedNote explains a KEY that is not locked, when the argument
// looks like something else: a Redis key of its own, or a lock's Redis
// name under another prefix.
func (o *options) notLockedNote(ctx context.Context, client redis.UniversalClient, arg string) string {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	// A lock found under another prefix first: a fact beats a reading of
	// the argument's shape.
	if p := o.lockElsewhere(ctx, client, o.keyArg(arg)); p != "" {
		return fmt.Sprintf("the key is locked under prefix %q: try -prefix %q", p, p)
	}
	if i := strings.IndexByte(arg, '{'); i >= 0 && strings.HasSuffix(arg, "}") {
		p := prefixOf(arg[:i])
		if k, _, _, ok := distributed.ParseKeyName(p, arg); ok && p != o.prefix {
			return fmt.Sprintf("%q reads as the Redis name of key %q under prefix %q, not %q: try -prefix %q", arg, k, p, o.prefix, p)
		}
	}
	if t, err := client.Type(ctx, arg).Result(); err == nil && t != "none" {
		return fmt.Sprintf("a Redis key %q exists (a %s): it is not a lock key; KEY is the key a Mutex locks, whose lock is %s{KEY}", arg, t, o.prefix)
	}
	return ""
}

// lockElsewhere looks, with a bounded SCAN of the server that serves the
// key's hash tag, for a lock of key under another prefix, and returns
// that prefix.
func (o *options) lockElsewhere(ctx context.Context, client redis.UniversalClient, key string) string {
	tag := strings.NewReplacer("%", "%25", "}", "%7D").Replace(key)
	var node redis.Cmdable = client
	if cc, ok := client.(*redis.ClusterClient); ok {
		n, err := cc.MasterForKey(ctx, o.prefix+"{"+tag+"}")
		if err != nil {
			return ""
		}
		node = n
	}
	suffix := "{" + tag + "}"
	pattern := "*{" + strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`, "]", `\]`).Replace(tag) + "}"
	var cursor uint64
	for range 10 {
		page, next, err := node.Scan(ctx, cursor, pattern, 1000).Result()
		if err != nil {
			return ""
		}
		for _, name := range page {
			p := prefixOf(strings.TrimSuffix(name, suffix))
			if k, _, _, ok := distributed.ParseKeyName(p, name); ok && k == key && p != o.prefix {
				return p
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	return ""
}

// ---- inspect ---------------------------------------------------------

func (o *options) inspect(ctx context.Context, client redis.UniversalClient, args []string) (int, error) {
	keys := make([]string, len(args))
	for i, a := range args {
		keys[i] = o.keyArg(a)
	}
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	ms, rws, err := inspectBoth(cctx, client, o.prefix, keys)
	cancel()
	if ms == nil {
		return exitError, err
	}
	var rs []distributed.KeyReport
	var argOf []int
	for i := range keys {
		for _, r := range pick(o.kindArg(args[i]), ms[i], rws[i]) {
			rs = append(rs, r)
			argOf = append(argOf, i)
		}
	}
	// err, if any, is a key that could not be read: it is reported with
	// its key, and the others are printed.
	err = firstErr(rs)
	code := exitOK
	notes := make([]string, len(rs))
	for i, r := range rs {
		switch {
		case r.Err != nil:
			code = exitError
		case !r.Locked():
			if code == exitOK {
				code = exitNothing
			}
			if r.Kind == distributed.KindMutex {
				notes[i] = o.notLockedNote(ctx, client, args[argOf[i]])
			}
		}
	}
	if o.json {
		out := make([]jsonKey, len(rs))
		for i, r := range rs {
			out[i] = o.toJSON(r)
			out[i].Note = notes[i]
		}
		if err := o.printJSON(out); err != nil {
			return exitError, err
		}
		return code, err
	}
	for i, r := range rs {
		if i > 0 {
			fmt.Fprintln(o.stdout)
		}
		o.printReport(r)
		if notes[i] != "" {
			fmt.Fprintf(o.stdout, "  note      %s\n", notes[i])
		}
	}
	return code, err
}

// printReport prints one key's lock, for a person.
func (o *options) printReport(r distributed.KeyReport) {
	if r.Kind == distributed.KindRW {
		o.printRWReport(r)
		return
	}
	w := o.stdout
	fmt.Fprintf(w, "%s\n", show(r.Key))
	fmt.Fprintf(w, "  lock      %s\n", show(r.LockKey))
	if r.Err != nil {
		fmt.Fprintf(w, "  error     %v\n", o.explain(r.Err))
		return
	}
	switch {
	case r.Held:
		fmt.Fprintf(w, "  holder    %s  owner %s  ttl %s\n", labelOrDash(r.Label), show(r.Owner), fmtTTL(r.TTL))
	case r.Foreign:
		fmt.Fprintf(w, "  holder    (not keyedmutex's)  ttl %s: the lock key holds %q, a value keyedmutex did not write; it blocks every Lock of the key\n", fmtTTL(r.TTL), r.Value)
		fmt.Fprintf(w, "  clear     %s\n", o.delHint(r.LockKey))
	case r.Waiters > 0:
		fmt.Fprintf(w, "  holder    none (the holder's lock expired; the next waiter's poll serves the queue)\n")
	default:
		fmt.Fprintf(w, "  holder    none: not locked\n")
	}
	fmt.Fprintf(w, "  waiters   %d\n", len(r.Queue))
	for i, q := range r.Queue {
		dead := ""
		if q.Dead {
			dead = "  (dead: its waiter stopped refreshing it)"
		}
		fmt.Fprintf(w, "    %d  %s  waited %s  owner %s%s\n", i+1, labelOrDash(q.Label), fmtDur(q.Waited), show(q.Owner), dead)
	}
}

func labelOrDash(l string) string {
	if l == "" {
		return "-"
	}
	return show(l)
}

// show returns s for text output: as is if it is valid UTF-8 of
// printable characters (spaces included), else (a newline, a tab, an
// escape, any control or non-printable byte, or a leading '"') quoted
// with Go's escapes, as strconv.Quote does, so a key can neither forge a
// row, break the columns nor reach the terminal as a control sequence.
func show(s string) string {
	if s != "" && s[0] == '"' {
		return strconv.Quote(s)
	}
	for i, r := range s {
		if (r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD")) || (!unicode.IsPrint(r) && r != ' ') {
			return strconv.Quote(s)
		}
	}
	return s
}

func fmtDur(d time.Duration) string {
	if d >= 10*time.Second {
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func fmtTTL(d time.Duration) string {
	if d < 0 {
		return "none (never expires)"
	}
	return fmtDur(d)
}

// ---- list -------------------------------------------------------------

func (o *options) list(ctx context.Context, client redis.UniversalClient) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*o.timeout)
	rs, err := distributed.ListKeys(cctx, client, o.prefix, o.match)
	cancel()
	if rs == nil && err != nil {
		return exitError, err
	}
	// err, if any, is a key that could not be read: listed with its error,
	// after the others, and the exit code is 1.
	code := exitOK
	if err != nil {
		code = exitError
	}
	if o.json {
		out := make([]jsonKey, len(rs))
		for i, r := range rs {
			out[i] = o.toJSON(r)
		}
		if err := o.printJSON(out); err != nil {
			return exitError, err
		}
	} else if len(rs) > 0 {
		tw := tabwriter.NewWriter(o.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY\tKIND\tHOLDER\tTTL\tWAITERS\tLONGEST WAIT")
		for _, r := range rs {
			holder, ttl := "-", "-"
			switch {
			case r.Err != nil:
				holder = "(error: see below)"
			case r.Held:
				holder, ttl = labelOrDash(r.Label), fmtTTL(r.TTL)
				if r.Kind == distributed.KindRW {
					holder = "writer " + holder
				}
			case r.Foreign:
				holder, ttl = "(not keyedmutex's)", fmtTTL(r.TTL)
			case len(r.Readers) > 0:
				holder, ttl = fmt.Sprintf("%d reader(s)", len(r.Readers)), fmtTTL(r.Readers[0].TTL)
			}
			wait := "-"
			if len(r.Queue) > 0 {
				wait = fmtDur(r.LongestWait())
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", show(r.Key), r.Kind, holder, ttl, len(r.Queue), wait)
		}
		tw.Flush()
		for _, r := range rs {
			if r.Err != nil {
				fmt.Fprintf(o.stderr, "keyedmutex list: %v\n", o.explain(r.Err))
			}
		}
	}
	if len(rs) == 0 {
		what := "no key held or waited for"
		if o.match != "" {
			what += fmt.Sprintf(" matching %q", o.match)
		}
		msg := fmt.Sprintf("%s under prefix %q in %s", what, o.prefix, o.where())
		if hint := o.otherPrefixes(ctx, client); hint != "" {
			msg += "; " + hint
		}
		fmt.Fprintln(o.stderr, "keyedmutex list: "+msg)
		return exitNothing, nil
	}
	if o.json && err != nil {
		return code, err
	}
	return code, nil
}

// otherPrefixes looks, in a bounded SCAN of the first server, for lock
// names under other prefixes, and suggests them.
func (o *options) otherPrefixes(ctx context.Context, client redis.UniversalClient) string {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if cc, ok := client.(*redis.ClusterClient); ok {
		var first redis.UniversalClient
		_ = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			if first == nil {
				first = n
			}
			return nil
		})
		if first == nil {
			return ""
		}
		client = first
	}
	found := map[string]bool{}
	var cursor uint64
	for range 10 {
		page, next, err := client.Scan(ctx, cursor, "*{*}", 1000).Result()
		if err != nil {
			return ""
		}
		for _, name := range page {
			i := strings.IndexByte(name, '{')
			p := prefixOf(name[:i])
			if _, _, _, ok := distributed.ParseKeyName(p, name); ok && p != o.prefix {
				found[p] = true
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	if len(found) == 0 {
		return ""
	}
	ps := make([]string, 0, len(found))
	for p := range found {
		ps = append(ps, fmt.Sprintf("%q", p))
	}
	sort.Strings(ps)
	return "keys named like locks exist under " + strings.Join(ps, ", ") + ": is -prefix right?"
}

// ---- watch ------------------------------------------------------------

func (o *options) watch(ctx context.Context, client redis.UniversalClient, arg string) (int, error) {
	key := o.keyArg(arg)
	if !o.json {
		fmt.Fprintf(o.stdout, "watching %s (lock %s) every %v; interrupt to stop\n", show(key), show(distributed.LockKeyName(o.prefix, key)), o.interval)
	}
	// A plain key watches its Mutex lock and, from when it is first seen
	// locked, its read-write lock; a Redis name, the lock it names.
	kind := o.kindArg(arg)
	last, lastRW, lastErr := "", "", ""
	first := true // the first sample of a free key gets inspect's note
	t := time.NewTicker(o.interval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, o.timeout)
		ms, rws, err := inspectBoth(cctx, client, o.prefix, []string{key})
		cancel()
		if err == nil {
			err = firstErr([]distributed.KeyReport{ms[0], rws[0]})
		}
		switch {
		case ctx.Err() != nil:
			return exitOK, nil
		case err != nil:
			if e := o.explain(err).Error(); e != lastErr {
				fmt.Fprintf(o.stderr, "%s  keyedmutex watch: %s (retrying)\n", time.Now().Format("15:04:05.000"), e)
				lastErr = e
			}
		default:
			lastErr = ""
			m, rw := ms[0], rws[0]
			note := ""
			if first && kind != distributed.KindRW && !m.Locked() && !rw.Locked() {
				note = o.notLockedNote(ctx, client, arg)
			}
			first = false
			if s := signature(m); kind != distributed.KindRW && s != last {
				last = s
				if err := o.printChange(m, note); err != nil {
					return exitError, err
				}
			}
			if s := signature(rw); kind != distributed.KindMutex && s != lastRW && (kind == distributed.KindRW || rw.Locked() || lastRW != "") {
				lastRW = s
				if err := o.printChange(rw, ""); err != nil {
					return exitError, err
				}
			}
		}
		select {
		case <-ctx.Done():
			return exitOK, nil
		case <-t.C:
		}
	}
}

// signature is what a change of which watch prints: holder and queue.
func signature(r distributed.KeyReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v %s %s %v %q|", r.Held, r.Owner, r.Label, r.Foreign, r.Value)
	for _, q := range r.Queue {
		fmt.Fprintf(&b, "%s %v,", q.Owner, q.Dead)
	}
	b.WriteString("|")
	for _, rd := range r.Readers {
		fmt.Fprintf(&b, "%s,", rd.Owner)
	}
	return b.String()
}

func (o *options) printChange(r distributed.KeyReport, note string) error {
	now := time.Now()
	if o.json {
		j := o.toJSON(r)
		j.Time = now.UTC().Format(time.RFC3339Nano)
		j.Note = note
		return o.printJSONLine(j)
	}
	var b strings.Builder
	if r.Kind == distributed.KindRW {
		b.WriteString("read-write lock: ")
	}
	switch {
	case r.Held && r.Kind == distributed.KindRW:
		fmt.Fprintf(&b, "held by writer %s (owner %s, ttl %s)", labelOrDash(r.Label), show(r.Owner), fmtTTL(r.TTL))
	case len(r.Readers) > 0:
		owners := make([]string, len(r.Readers))
		for i, rd := range r.Readers {
			owners[i] = show(rd.Owner)
		}
		fmt.Fprintf(&b, "held by %d reader(s) (owners %s)", len(r.Readers), strings.Join(owners, ", "))
	case r.Held:
		fmt.Fprintf(&b, "held by %s (owner %s, ttl %s)", labelOrDash(r.Label), show(r.Owner), fmtTTL(r.TTL))
	case r.Foreign:
		fmt.Fprintf(&b, "not keyedmutex's: the lock key holds %q", r.Value)
	case len(r.Queue) > 0:
		b.WriteString("no holder")
	default:
		b.WriteString("free")
	}
	if len(r.Queue) > 0 {
		labels := make([]string, len(r.Queue))
		for i, q := range r.Queue {
			labels[i] = labelOrDash(q.Label)
			if r.Kind == distributed.KindRW {
				labels[i] = waiterKind(q) + " " + labels[i]
			}
			if q.Dead {
				labels[i] += "(dead)"
			}
		}
		fmt.Fprintf(&b, "; waiting: %s", strings.Join(labels, ", "))
	}
	if note != "" {
		fmt.Fprintf(&b, " (note: %s)", note)
	}
	_, err := fmt.Fprintf(o.stdout, "%s  %s\n", now.Format("15:04:05.000"), b.String())
	return err
}

// ---- release ----------------------------------------------------------

func (o *options) release(ctx context.Context, client redis.UniversalClient, arg string) (int, error) {
	key := o.keyArg(arg)
	cctx, cancel := context.WithTimeout(ctx, o.timeout)
	ms, rws, err := inspectBoth(cctx, client, o.prefix, []string{key})
	cancel()
	if err == nil {
		err = ms[0].Err
	}
	if err != nil {
		return exitError, err
	}
	r := ms[0]
	if rw, kind := rws[0], o.kindArg(arg); kind == distributed.KindRW || (kind == "" && !r.Held && !r.Foreign && rw.Locked()) {
		return o.releaseRW(ctx, client, rw)
	}
	if !r.Held || (r.Label != o.holder && r.Owner != o.holder) {
		// Refused before asking (ForceRelease checks again, atomically).
		var err error
		switch {
		case r.Foreign:
			err = fmt.Errorf("%q is not locked by keyedmutex: %s holds %q, a value keyedmutex did not write, which blocks every Lock of the key; nothing released. If no program of yours wrote it, %s", key, show(r.LockKey), r.Value, o.delHint(r.LockKey))
		case !r.Held:
			err = fmt.Errorf("%q is not locked (no holder in %s); nothing released", key, show(r.LockKey))
			if n := o.notLockedNote(ctx, client, arg); n != "" && !r.Locked() {
				err = fmt.Errorf("%w; %s", err, n)
			}
		default:
			err = fmt.Errorf("%q is held by %s (owner %s), not by %s; nothing released", key, labelOrDash(r.Label), show(r.Owner), show(o.holder))
		}
		if o.json {
			_ = o.printJSON(jsonRelease{Key: key, Released: false, Reason: err.Error(), Before: o.toJSON(r)})
		}
		return exitNothing, err
	}
	if !o.yes {
		next := "nobody waits: the key becomes free"
		for _, q := range r.Queue {
			if !q.Dead {
				next = "the next waiter, " + labelOrDash(q.Label) + ", gets it"
				break
			}
		}
		prompt := fmt.Sprintf("Release %s held by %s (owner %s, ttl %s)? %s; the holder finds its lease lost at its next renewal. [y/N] ",
			show(key), labelOrDash(r.Label), show(r.Owner), fmtTTL(r.TTL), next)
		if ok, code := o.confirm(ctx, prompt); !ok {
			return code, nil
		}
	}
	cctx, cancel = context.WithTimeout(ctx, o.timeout)
	res, err := distributed.ForceRelease(cctx, client, o.prefix, key, o.holder)
	cancel()
	return o.released(key, res, err)
}

// confirm asks prompt on stderr and reads the answer: ok if yes, else
// the exit code.
func (o *options) confirm(ctx context.Context, prompt string) (ok bool, code int) {
	fmt.Fprint(o.stderr, prompt)
	answer := make(chan string, 1)
	go func() { // abandoned at an interrupt: the process exits
		line, _ := bufio.NewReader(o.stdin).ReadString('\n')
		answer <- line
	}()
	var line string
	select {
	case line = <-answer:
	case <-ctx.Done():
		fmt.Fprintln(o.stderr, "\nkeyedmutex release: interrupted; nothing released")
		return false, exitDeclined
	}
	if !isTerminal(o.stdin) {
		fmt.Fprintln(o.stderr, strings.TrimSpace(line)) // the answer a terminal would echo
	}
	if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
		fmt.Fprintln(o.stderr, "keyedmutex release: not confirmed; nothing released")
		return false, exitDeclined
	}
	return true, exitOK
}

// released reports the result of a ForceRelease or ForceReleaseRW.
func (o *options) released(key string, res distributed.ReleaseResult, err error) (int, error) {
	if err != nil {
		code := exitError
		if errors.Is(err, distributed.ErrNotLocked) || errors.Is(err, distributed.ErrHeldByOther) {
			code = exitNothing
		}
		if o.json {
			_ = o.printJSON(jsonRelease{Key: key, Released: false, Reason: err.Error(), Before: o.toJSON(res.Before)})
		}
		return code, err
	}
	if o.json {
		after := o.toJSON(res.After)
		return exitOK, o.printJSON(jsonRelease{Key: key, Released: true, Before: o.toJSON(res.Before), After: &after})
	}
	now := "now free"
	switch a := res.After; {
	case a.Held:
		now = "now held by " + labelOrDash(a.Label) + " (owner " + show(a.Owner) + ")"
	case a.Locked():
		now = fmt.Sprintf("now without holder, %d waiting", len(a.Queue))
	}
	fmt.Fprintf(o.stdout, "released %s held by %s (owner %s); %s\n", show(key), labelOrDash(res.Before.Label), show(res.Before.Owner), now)
	return exitOK, nil
}

// delHint says how to delete the lock key name by hand: the redis-cli
// command for the flags' server.
func (o *options) delHint(name string) string {
	if show(name) != name {
		return fmt.Sprintf("delete the key %s (Go-quoted: give redis-cli its exact bytes) with DEL", show(name))
	}
	conn := ""
	if o.sentinelMaster == "" {
		if host, port, err := net.SplitHostPort(strings.Split(o.addr, ",")[0]); err == nil {
			conn = fmt.Sprintf("-h %s -p %s ", host, port)
		}
		if o.cluster {
			conn += "-c "
		}
		if o.tls {
			conn += "--tls "
		}
		if o.db != "0" {
			conn += "-n " + o.db + " "
		}
	}
	return fmt.Sprintf("delete it: redis-cli %sDEL '%s'", conn, strings.ReplaceAll(name, "'", `'\''`))
}

// isTerminal reports whether r is a terminal (a character device).
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// ---- JSON -------------------------------------------------------------

type jsonHolder struct {
	Owner string `json:"owner"`
	Label string `json:"label"`
	TTLMs int64  `json:"ttl_ms"` // -1: no expiry
}

type jsonWaiter struct {
	Kind     string `json:"kind,omitempty"` // read-write lock only: reader or writer
	Owner    string `json:"owner"`
	Label    string `json:"label"`
	Mutex    string `json:"mutex"`
	WaitedMs int64  `json:"waited_ms"`
	Dead     bool   `json:"dead,omitempty"`
}

type jsonKey struct {
	Time     string `json:"time,omitempty"` // watch only
	Key      string `json:"key"`            // not valid UTF-8: its bad bytes read U+FFFD
	KeyQuot  string `json:"key_quoted"`     // Go-quoted, exact: give it back with -quoted
	Kind     string `json:"kind"`
	LockKey  string `json:"lock_key"`
	QueueKey string `json:"queue_key"`
	// ReadersKey and Readers: a read-write lock (kind "rw") only; its
	// holder is its writer.
	ReadersKey string       `json:"readers_key,omitempty"`
	State      string       `json:"state"` // held, read (readers hold), queued (waiters, no holder), free, foreign, error
	Holder     *jsonHolder  `json:"holder"`
	Readers    []jsonHolder `json:"readers,omitempty"`
	Waiters    []jsonWaiter `json:"waiters"`
	Value      string       `json:"value,omitempty"` // foreign only
	Note       string       `json:"note,omitempty"`
	Error      string       `json:"error,omitempty"` // state "error": the key could not be read
}

type jsonRelease struct {
	Key      string   `json:"key"`
	Released bool     `json:"released"`
	Reason   string   `json:"reason,omitempty"`
	Before   jsonKey  `json:"before"`
	After    *jsonKey `json:"after,omitempty"`
}

func (o *options) toJSON(r distributed.KeyReport) jsonKey {
	j := jsonKey{Key: r.Key, KeyQuot: strconv.Quote(r.Key), Kind: string(r.Kind), LockKey: r.LockKey, QueueKey: r.QueueKey, ReadersKey: r.ReadersKey, Waiters: []jsonWaiter{}}
	for _, rd := range r.Readers {
		j.Readers = append(j.Readers, jsonHolder{Owner: rd.Owner, Label: rd.Label, TTLMs: ttlMs(rd.TTL)})
	}
	switch {
	case r.Err != nil:
		j.State, j.Error = "error", o.explain(r.Err).Error()
	case r.Held:
		j.State = "held"
		j.Holder = &jsonHolder{Owner: r.Owner, Label: r.Label, TTLMs: ttlMs(r.TTL)}
	case r.Foreign:
		j.State, j.Value = "foreign", r.Value
	case len(r.Readers) > 0:
		j.State = "read"
	case r.Waiters > 0:
		j.State = "queued"
	default:
		j.State = "free"
	}
	for _, q := range r.Queue {
		kind := ""
		if r.Kind == distributed.KindRW {
			kind = waiterKind(q)
		}
		j.Waiters = append(j.Waiters, jsonWaiter{Kind: kind, Owner: q.Owner, Label: q.Label, Mutex: q.MutexID, WaitedMs: q.Waited.Milliseconds(), Dead: q.Dead})
	}
	return j
}

func ttlMs(d time.Duration) int64 {
	if d < 0 {
		return -1
	}
	return d.Milliseconds()
}

func (o *options) printJSON(v any) error {
	enc := json.NewEncoder(o.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printJSONLine prints v on one line (watch: one line per changed sample).
func (o *options) printJSONLine(v any) error {
	return json.NewEncoder(o.stdout).Encode(v)
}
