//go:build unix

package cli

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/pkg/config"
)

// dpKillChildEnv carries the `kongfb` arguments (JSON) to TestDPKillChild.
const dpKillChildEnv = "KONGFB_DP_KILL_CHILD"

// TestDPKillChild is the data plane process of TestDPKillMidStreamServesCache:
// the real `serve dp` command, which prints its addresses once ready and
// logs (debug) to stderr until it is killed.
func TestDPKillChild(t *testing.T) {
	raw := os.Getenv(dpKillChildEnv)
	if raw == "" {
		t.Skip("only run as a child of TestDPKillMidStreamServesCache")
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		t.Fatal(err)
	}
	serveDPTestHook = func(o *serveDPOptions) {
		o.Ready = func(a serveDPAddrs) { fmt.Printf("READY %s %s\n", a.Proxy[0], a.Status) }
	}
	code := Main(args, strings.NewReader(""), os.Stdout, os.Stderr)
	t.Fatalf("serve dp exited with %d before it was killed", code)
}

// dpChild is a `serve dp` process and what it logged.
type dpChild struct {
	t      *testing.T
	cmd    *exec.Cmd
	proxy  string
	status string
	stdout chan struct{} // closed once stdout is read to its end

	mu      sync.Mutex
	lines   []string      // stderr: the command's log
	changed chan struct{} // closed (and replaced) when lines grows or the log ends
	closed  bool
}

func startDPChild(t *testing.T, args ...string) *dpChild {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	c := &dpChild{t: t, changed: make(chan struct{}), stdout: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^TestDPKillChild$", "-test.count=1")
	c.cmd.Env = append(os.Environ(), dpKillChildEnv+"="+string(raw))
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Never left running, whatever the test does.
	t.Cleanup(func() { _ = c.cmd.Process.Kill() })
	ready := make(chan []string, 1)
	go func() {
		defer close(c.stdout)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "READY" {
				ready <- f[1:]
			}
		}
	}()
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			c.update(func() { c.lines = append(c.lines, sc.Text()) })
		}
		c.update(func() { c.closed = true })
	}()
	select {
	case a := <-ready:
		c.proxy, c.status = a[0], a[1]
	case <-c.stdout:
		_ = c.cmd.Process.Kill()
		t.Fatalf("serve dp exited before it was ready:\n%s", c.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("serve dp did not become ready:\n%s", c.log())
	}
	return c
}

func (c *dpChild) update(f func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f()
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *dpChild) log() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

// count is how many log lines the process wrote so far.
func (c *dpChild) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines)
}

var (
	errStopped = errors.New("stopped")
	errEnded   = errors.New("serve dp ended")
)

// next returns the index of the first log line at or after from that
// matches, as soon as it is logged; errStopped if stop is closed first.
func (c *dpChild) next(from int, match func(string) bool, stop <-chan struct{}) (int, error) {
	// Generous: the machine may be loaded and the test built with -race.
	deadline := time.After(60 * time.Second)
	for {
		c.mu.Lock()
		for i := from; i < len(c.lines); i++ {
			if match(c.lines[i]) {
				c.mu.Unlock()
				return i, nil
			}
		}
		from = len(c.lines)
		closed, changed := c.closed, c.changed
		c.mu.Unlock()
		if closed {
			return 0, errEnded
		}
		select {
		case <-changed:
		case <-stop:
			return 0, errStopped
		case <-deadline:
			return 0, errors.New("timed out")
		}
	}
}

// await is next for the test goroutine.
func (c *dpChild) await(what string, from int, match func(string) bool) int {
	c.t.Helper()
	i, err := c.next(from, match, nil)
	if err != nil {
		c.t.Fatalf("waiting for %s: %v; log:\n%s", what, err, c.log())
	}
	return i
}

// killAndWait SIGKILLs the process, reads the rest of its output and reaps
// it.
func (c *dpChild) killAndWait() {
	c.t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		c.t.Fatalf("kill: %v", err)
	}
	for {
		c.mu.Lock()
		closed, changed := c.closed, c.changed
		c.mu.Unlock()
		if closed {
			break
		}
		<-changed
	}
	<-c.stdout
	err := c.cmd.Wait()
	if ws, _ := c.cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		c.t.Fatalf("serve dp did not die by SIGKILL (%v):\n%s", err, c.log())
	}
}

var logTook = regexp.MustCompile(`\btook=(\S+)`)

var logHash = regexp.MustCompile(`\b(?:config_)?hash=([0-9a-f]{32})\b`)

// hashesLogged returns the hashes of the lines that contain msg, in order.
func hashesLogged(lines []string, msg string) []string {
	var out []string
	for _, l := range lines {
		if !strings.Contains(l, msg) {
			continue
		}
		if m := logHash.FindStringSubmatch(l); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// seedKillStore bootstraps the CP's SQLite store with the service and route
// every test configuration keeps (/always) and bulk: services whose random
// tags make the configuration about size bytes that compress badly, so that
// the DP's cache write takes real time.
func seedKillStore(t *testing.T, prefix, upstream string, size int) {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(u.Port())
	colls := map[string][]store.Row{}
	add := func(coll string, in map[string]any) {
		row, verr := config.ValidateEntity(coll, in, config.Insert)
		if verr != nil {
			t.Fatalf("seed %s: %s", coll, verr.Message())
		}
		row["created_at"], row["updated_at"] = int64(1700000000), int64(1700000000)
		colls[coll] = append(colls[coll], row)
	}
	sid := uuid.NewString()
	add("services", map[string]any{"id": sid, "name": "always", "protocol": "http", "host": u.Hostname(), "port": int64(port)})
	add("routes", map[string]any{"id": uuid.NewString(), "name": "always", "paths": []any{"/always"}, "service": map[string]any{"id": sid}})
	const tagLen = 16 << 10
	raw := make([]byte, tagLen*3/4)
	for i := 0; i*tagLen < size; i++ {
		_, _ = crand.Read(raw)
		add("services", map[string]any{
			"id": uuid.NewString(), "name": fmt.Sprintf("bulk-%03d", i), "host": fmt.Sprintf("bulk-%d.internal", i),
			"tags": []any{base64.RawURLEncoding.EncodeToString(raw)},
		})
	}
	st, err := store.Open(context.Background(), store.Config{
		Database: store.BackendSQLite, Prefix: prefix, AutoMigrate: true, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.ReplaceAll(context.Background(), colls); err != nil {
		t.Fatal(err)
	}
}

// streamRoutes adds routes through the Admin API until stop is closed,
// each once the DP has applied a push after the previous one (so that the
// stream follows the DP instead of burying it, and a change is always on
// its way while the DP writes its cache). It returns how many it added.
func streamRoutes(admin string, next *int, c *dpChild, from int, stop <-chan struct{}) (int, error) {
	n := 0
	for {
		body := fmt.Sprintf(`{"name":"stream-%d","paths":["/stream-%d"]}`, *next, *next)
		res, err := http.Post(admin+"/services/always/routes", "application/json", strings.NewReader(body))
		if err != nil {
			return n, fmt.Errorf("POST route %d: %w", *next, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusCreated {
			return n, fmt.Errorf("POST route %d: %d %s", *next, res.StatusCode, b)
		}
		*next++
		n++
		i, err := c.next(from, applied, stop)
		if errors.Is(err, errStopped) || errors.Is(err, errEnded) {
			return n, nil // the end of the stream, or the kill
		}
		if err != nil {
			return n, fmt.Errorf("waiting for the DP to apply route %d: %w", *next-1, err)
		}
		from = i + 1
	}
}

func applied(l string) bool { return strings.Contains(l, "configuration from control plane applied") }
func cached(l string) bool  { return strings.Contains(l, "config cache written") }

// TestDPKillMidStreamServesCache SIGKILLs a real `serve dp` process while its
// CP pushes a stream of changes (Admin API writes), so that the kill lands
// around the DP's cache writes, then restarts the DP on the same prefix with
// the CP down: it must serve from its cache (/status config_source "cache")
// a configuration the CP pushed, no older than the last one the killed DP
// logged as cached. Plain and encrypted (--cache-encrypt) caches.
func TestDPKillMidStreamServesCache(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a control plane and data plane processes")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	for i, encrypt := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "encrypted"}[encrypt]
		t.Run(name, func(t *testing.T) {
			testDPKill(t, encrypt, rand.New(rand.NewPCG(seed, uint64(i))))
		})
	}
}

func testDPKill(t *testing.T, encrypt bool, rng *rand.Rand) {
	up := newUpstream(t)
	cert, key := writeSharedCert(t)
	cpOpts := cpTestOptions(t)
	cpOpts.ClusterCert, cpOpts.ClusterCertKey = cert, key
	// 256 KiB that compress badly: a cache write takes milliseconds
	// (tens under -race), the DP's apply not much more.
	seedKillStore(t, cpOpts.Prefix, up.URL, 256<<10)
	prefix := filepath.Join(t.TempDir(), "dp")

	// pushed lists the configurations the CPs sent, oldest first.
	var pushed []string
	held := "" // the configuration the DP's cache holds
	next := 0  // the next stream route
	// writeTook is the longest cache write the DPs logged.
	writeTook := 10 * time.Millisecond
	const rounds = 2
	for round := range rounds {
		cpOpts.ClusterListen, cpOpts.AdminListen = "127.0.0.1:0", "127.0.0.1:0"
		cpLog := &syncBuffer{}
		cpOpts.Logger = newTestLogger(cpLog)
		addrs, stopCP := startCP(t, cpOpts)
		admin := "http://" + addrs.Admin[0]

		args := []string{"serve", "dp", "--log-level", "debug",
			"--cp", addrs.Cluster, "--cluster-cert", cert, "--cluster-cert-key", key,
			"--prefix", prefix, "--proxy-listen", "127.0.0.1:0", "--status-listen", "127.0.0.1:0",
			"--cluster-ping-interval", "100ms", "--cluster-reconnect-min", "10ms", "--cluster-reconnect-max", "50ms"}
		if encrypt {
			args = append(args, "--cache-encrypt")
		}
		child := startDPChild(t, args...)
		eventually(t, "the DP to connect to the CP", func() bool {
			return hyKongfb(t, child.status)["cp_connected"] == true
		})
		if held == "" {
			// A first cache, so that there is a last good configuration
			// to come back to whenever the kill lands.
			child.await("the first cache write", 0, cached)
		}

		// The stream runs until after the kill.
		from := child.count()
		stop := make(chan struct{})
		type result struct {
			n   int
			err error
		}
		streamed := make(chan result, 1)
		go func() {
			n, err := streamRoutes(admin, &next, child, from, stop)
			streamed <- result{n, err}
		}()
		// Kill after an apply (the cache write follows it at once) with a
		// random delay of up to one cache write, so that the kill lands
		// before, inside or after it; or right after a cache write.
		var plan string
		at := from
		for range 1 + rng.IntN(3) {
			at = child.await("an applied push", at, applied) + 1
		}
		if rng.IntN(3) > 0 {
			d := time.Duration(rng.Int64N(int64(writeTook)))
			plan = "after an apply + " + d.String()
			time.Sleep(d) // deliberate jitter, not a wait for an event
		} else {
			child.await("a cache write", at, cached)
			plan = "after a cache write"
		}
		child.killAndWait()
		close(stop)
		res := <-streamed
		if res.err != nil {
			t.Fatalf("round %d: stream: %v", round, res.err)
		}
		if err := stopCP(); err != nil {
			t.Fatalf("round %d: stop CP: %v", round, err)
		}
		lines := strings.Split(child.log(), "\n")
		lastCached := held
		if c := hashesLogged(lines, "config cache written"); len(c) > 0 {
			lastCached = c[len(c)-1]
		}
		for _, msg := range []string{"config pushed", "configuration sent to data plane"} {
			for _, h := range hashesLogged(strings.Split(cpLog.String(), "\n"), msg) {
				if !slices.Contains(pushed, h) {
					pushed = append(pushed, h)
				}
			}
		}
		// What the kill left, before the restart cleans it up.
		temps, _ := filepath.Glob(filepath.Join(prefix, "config.cache.tmp-*"))
		var took []string
		for _, l := range lines {
			if cached(l) {
				if m := logTook.FindStringSubmatch(l); m != nil {
					took = append(took, m[1])
					if d, err := time.ParseDuration(m[1]); err == nil {
						writeTook = max(writeTook, d)
					}
				}
			}
		}
		t.Logf("round %d: killed %s; %d routes streamed, %d configurations applied, cache writes took %v, %d temporary files left",
			round, plan, res.n, len(hashesLogged(lines, "configuration from control plane applied")), took, len(temps))

		// Restart on the same prefix, the CP down: the cache serves.
		o := hybridDP(addrs.Cluster, prefix, cert, key)
		o.CacheEncrypt = encrypt
		d := startDP(t, o)
		doc := statusDoc(t, d.addrs.Status)
		kb := doc["kongfb"].(map[string]any)
		hash, _ := doc["configuration_hash"].(string)
		if kb["config_source"] != "cache" {
			t.Fatalf("round %d: restarted DP serves from %v (hash %s), want the cache; log:\n%s", round, kb["config_source"], hash, d.logs)
		}
		idx := slices.Index(pushed, hash)
		if idx < 0 {
			t.Fatalf("round %d: restarted DP serves %s, which no CP pushed (%v)", round, hash, pushed)
		}
		want := slices.Index(pushed, lastCached)
		if idx < want {
			t.Errorf("round %d: restarted DP serves %s (push %d), older than the last cached %s (push %d)", round, hash, idx, lastCached, want)
		}
		t.Logf("round %d: restarted DP serves push %d of %d from its cache (last logged as cached: push %d)", round, idx, len(pushed), want)
		if !serves(t, d, "/always", http.StatusOK) {
			t.Errorf("round %d: restarted DP does not serve /always from its cache", round)
		}
		for _, pattern := range []string{"config.cache.tmp-*", "config.cache.corrupt-*", "config.cache.unreadable-*"} {
			if m, _ := filepath.Glob(filepath.Join(prefix, pattern)); len(m) != 0 {
				t.Errorf("round %d: %v in the prefix after the restart", round, m)
			}
		}
		if err := d.stop(t); err != nil {
			t.Fatalf("round %d: stop the restarted DP: %v", round, err)
		}
		held = hash
	}
}
