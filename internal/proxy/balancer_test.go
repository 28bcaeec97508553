package proxy

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
)

// nameOf returns which test upstream answered.
func nameOf(t *testing.T, r result) string {
	t.Helper()
	if r.status != 200 {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	return r.header.Get("X-Upstream")
}

func TestRoundRobinWeights(t *testing.T) {
	a := newUpstream(t, "a", nil)
	b := newUpstream(t, "b", nil)
	c := newUpstream(t, "c", nil)
	cfg := newCfg().
		upstream("u", "rr.upstream").
		target("ta", "u", a.addr(), 100).
		target("tb", "u", b.addr(), 300).
		target("tc", "u", c.addr(), 0). // weight 0: never selected
		service("s", "", "rr.upstream", 80).
		route("r", "", "s", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	counts := map[string]int{}
	for i := 0; i < 400; i++ {
		counts[nameOf(t, p.get(t, "/", nil))]++
	}
	// 100 full turns of the 1:3 wheel.
	if counts["a"] != 100 || counts["b"] != 300 || counts["c"] != 0 {
		t.Errorf("distribution %v, want a=100 b=300 c=0", counts)
	}
	// Upstream Host header is the target's host:port.
	e := decodeEcho(t, p.get(t, "/", nil))
	if e.Host != a.addr() && e.Host != b.addr() {
		t.Errorf("Host %q", e.Host)
	}
}

func TestWheelSpreadsPicks(t *testing.T) {
	peers := []*peer{{weight: 1}, {weight: 2}, {weight: 4}}
	w := buildWheel(peers)
	if len(w) != 7 {
		t.Fatalf("wheel %v", w)
	}
	n := map[uint32]int{}
	for _, i := range w {
		n[i]++
	}
	if n[0] != 1 || n[1] != 2 || n[2] != 4 {
		t.Errorf("wheel %v", w)
	}
	// Huge co-prime weights are scaled, keeping the ratio roughly.
	w = buildWheel([]*peer{{weight: 65535}, {weight: 65534}, {weight: 1}})
	if len(w) > maxWheel+3 {
		t.Errorf("wheel of %d slots", len(w))
	}
}

func TestRetriesGoToNextTarget(t *testing.T) {
	good := newUpstream(t, "good", nil)
	dead1, dead2 := closedAddr(t), closedAddr(t)
	cfg := newCfg().
		upstream("u", "retry.upstream").
		target("t1", "u", dead1, 100).
		target("t2", "u", dead2, 100).
		target("t3", "u", good.addr(), 100).
		service("s", "", "retry.upstream", 80, func(s *config.Service) { s.Retries = 2 }).
		route("r", "", "s", []string{"/"}).
		service("s0", "", "retry.upstream", 80, func(s *config.Service) { s.Retries = 0 }).
		route("r0", "", "s0", []string{"/noretry"}).c
	p := startProxy(t, Options{}, cfg)
	// With 2 retries every request reaches the good target, whatever the
	// wheel position: each retry avoids the targets that already failed.
	for i := 0; i < 30; i++ {
		if got := nameOf(t, p.get(t, "/", nil)); got != "good" {
			t.Fatalf("request %d answered by %q", i, got)
		}
	}
	// A heavy dead target: the wheel holds it 3 times out of 4, yet one
	// retry is enough because the retry avoids the peer that just failed.
	heavy := newCfg().upstream("u", "heavy.upstream").
		target("t1", "u", dead1, 300).target("t2", "u", good.addr(), 100).
		service("s", "", "heavy.upstream", 80, func(s *config.Service) { s.Retries = 1 }).
		route("r", "", "s", []string{"/"}).c
	ph := startProxy(t, Options{}, heavy)
	for i := 0; i < 20; i++ {
		if got := nameOf(t, ph.get(t, "/", nil)); got != "good" {
			t.Fatalf("heavy: request %d answered by %q", i, got)
		}
	}
	// Without retries, 2 of 3 requests fail with 502.
	fails := 0
	for i := 0; i < 30; i++ {
		r := p.get(t, "/noretry", nil)
		if r.status == 502 {
			fails++
		} else if r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
	}
	if fails != 20 {
		t.Errorf("%d of 30 failed without retries, want 20", fails)
	}
}

// flakyUpstream accepts connections and closes them after reading the
// request: a try that fails after the request was sent.
func flakyUpstream(t *testing.T) (addr string, accepted *countingListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	go func() {
		for {
			c, err := cl.Accept()
			if err != nil {
				return
			}
			go func() {
				buf := make([]byte, 4096)
				_, _ = c.Read(buf)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), cl
}

type countingListener struct {
	net.Listener
	mu sync.Mutex
	n  int
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.n++
		l.mu.Unlock()
	}
	return c, err
}

func (l *countingListener) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

func TestNonIdempotentNotRetriedOnceSent(t *testing.T) {
	addr, cl := flakyUpstream(t)
	h, port := splitAddr(t, addr)
	cfg := newCfg().service("s", "", h, port, func(s *config.Service) { s.Retries = 3 }).
		route("r", "", "s", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	if r := p.do(t, "POST", "/", nil, "x"); r.status != 502 {
		t.Errorf("POST: %d", r.status)
	}
	waitFor(t, time.Second, "the POST connection", func() bool { return cl.count() >= 1 })
	if n := cl.count(); n != 1 {
		t.Errorf("POST reached the upstream %d times, want 1", n)
	}
	if r := p.get(t, "/", nil); r.status != 502 {
		t.Errorf("GET: %d", r.status)
	}
	waitFor(t, time.Second, "the GET connections", func() bool { return cl.count() >= 5 })
	if n := cl.count(); n != 5 { // 1 POST + GET tried 1 + 3 retries
		t.Errorf("upstream saw %d connections, want 5", n)
	}
}

func TestConsistentHashing(t *testing.T) {
	ups := []*upstreamServer{newUpstream(t, "a", nil), newUpstream(t, "b", nil), newUpstream(t, "c", nil)}
	b := newCfg().upstream("u", "hash.upstream", func(u *config.Upstream) {
		u.Algorithm = "consistent-hashing"
		u.HashOn = "header"
		u.HashOnHeader = sp("X-User")
		u.HashFallback = "query_arg"
		u.HashFallbackQueryArg = sp("user")
	})
	for i, u := range ups {
		b.target("t"+strconv.Itoa(i), "u", u.addr(), 100)
	}
	cfg := b.service("s", "", "hash.upstream", 80).route("r", "", "s", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	seen := map[string]string{}
	used := map[string]bool{}
	for round := 0; round < 3; round++ {
		for u := 0; u < 60; u++ {
			user := "user-" + strconv.Itoa(u)
			got := nameOf(t, p.get(t, "/", map[string]string{"X-User": user}))
			if prev, ok := seen[user]; ok && prev != got {
				t.Fatalf("%s moved from %s to %s", user, prev, got)
			}
			seen[user] = got
			used[got] = true
			// The fallback (query arg) hashes the same key the same way.
			if got2 := nameOf(t, p.get(t, "/?user="+user, nil)); got2 != got {
				t.Fatalf("%s: header -> %s, query arg -> %s", user, got, got2)
			}
		}
	}
	if len(used) != 3 {
		t.Errorf("60 keys used only %v", used)
	}

	// Same key, same target on a second engine (stable continuum).
	p2 := startProxy(t, Options{}, cfg)
	for u := 0; u < 20; u++ {
		user := "user-" + strconv.Itoa(u)
		if got := nameOf(t, p2.get(t, "/", map[string]string{"X-User": user})); got != seen[user] {
			t.Errorf("%s: %s on engine 2, %s on engine 1", user, got, seen[user])
		}
	}
}

func TestConsistentHashingSkipsUnhealthy(t *testing.T) {
	a := newUpstream(t, "a", nil)
	dead := closedAddr(t)
	cfg := newCfg().upstream("u", "hash.upstream", func(u *config.Upstream) {
		u.Algorithm = "consistent-hashing"
		u.HashOn = "ip"
		u.Healthchecks = passiveHC(map[string]any{"tcp_failures": 1})
	}).target("t1", "u", a.addr(), 100).target("t2", "u", dead, 100).
		service("s", "", "hash.upstream", 80, func(s *config.Service) { s.Retries = 1 }).
		route("r", "", "s", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	for i := 0; i < 10; i++ {
		if got := nameOf(t, p.get(t, "/", nil)); got != "a" {
			t.Fatalf("got %q", got)
		}
	}
}

func TestHashOnCookieSetsCookie(t *testing.T) {
	a, b := newUpstream(t, "a", nil), newUpstream(t, "b", nil)
	cfg := newCfg().upstream("u", "cookie.upstream", func(u *config.Upstream) {
		u.Algorithm = "consistent-hashing"
		u.HashOn = "cookie"
		u.HashOnCookie = sp("kongfb-sticky")
		u.HashOnCookiePath = "/app"
	}).target("t1", "u", a.addr(), 100).target("t2", "u", b.addr(), 100).
		service("s", "", "cookie.upstream", 80).route("r", "", "s", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	r := p.get(t, "/", nil)
	sc := r.header.Get("Set-Cookie")
	if !strings.HasPrefix(sc, "kongfb-sticky=") || !strings.HasSuffix(sc, "; Path=/app; Same-Site=Lax; HttpOnly") {
		t.Fatalf("Set-Cookie %q", sc)
	}
	val := strings.TrimPrefix(strings.SplitN(sc, ";", 2)[0], "kongfb-sticky=")
	if len(val) != 36 {
		t.Errorf("cookie value %q is not a uuid", val)
	}
	first := nameOf(t, r)
	for i := 0; i < 10; i++ {
		r := p.get(t, "/", map[string]string{"Cookie": "kongfb-sticky=" + val})
		if got := nameOf(t, r); got != first {
			t.Fatalf("cookie %s moved from %s to %s", val, first, got)
		}
		if r.header.Get("Set-Cookie") != "" {
			t.Errorf("cookie set again")
		}
	}
}

func TestLeastConnections(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan string, 10)
	h := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Block") != "" {
				arrived <- name
				<-release
			}
			w.Header().Set("X-Upstream", name)
		}
	}
	a, b := newUpstream(t, "a", h("a")), newUpstream(t, "b", h("b"))
	cfg := newCfg().upstream("u", "lc.upstream", func(u *config.Upstream) { u.Algorithm = "least-connections" }).
		target("t1", "u", a.addr(), 100).target("t2", "u", b.addr(), 100).
		service("s", "", "lc.upstream", 80).route("r", "", "s", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.get(t, "/", map[string]string{"X-Block": "1"})
	}()
	busy := <-arrived
	free := "a"
	if busy == "a" {
		free = "b"
	}
	for i := 0; i < 10; i++ {
		if got := nameOf(t, p.get(t, "/", nil)); got != free {
			t.Errorf("request %d went to %s, busy with 1 in flight; want %s", i, got, free)
		}
	}
	close(release)
	<-done
}

func TestLatencyAlgorithmPrefersFaster(t *testing.T) {
	slow := newUpstream(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		w.Header().Set("X-Upstream", "slow")
	})
	fast := newUpstream(t, "fast", func(w http.ResponseWriter, r *http.Request) { w.Header().Set("X-Upstream", "fast") })
	cfg := newCfg().upstream("u", "lat.upstream", func(u *config.Upstream) { u.Algorithm = "latency" }).
		target("t1", "u", slow.addr(), 100).target("t2", "u", fast.addr(), 100).
		service("s", "", "lat.upstream", 80).route("r", "", "s", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	counts := map[string]int{}
	for i := 0; i < 40; i++ {
		counts[nameOf(t, p.get(t, "/", nil))]++
	}
	if counts["fast"] < 30 {
		t.Errorf("latency algorithm: %v", counts)
	}
}

func passiveHC(unhealthy map[string]any) map[string]any {
	u := map[string]any{"http_statuses": []any{429.0, 500.0, 503.0}, "tcp_failures": 0.0, "timeouts": 0.0, "http_failures": 0.0}
	for k, v := range unhealthy {
		u[k] = v
	}
	return map[string]any{
		"passive": map[string]any{
			"type":      "http",
			"healthy":   map[string]any{"http_statuses": []any{200.0, 201.0}, "successes": 0.0},
			"unhealthy": u,
		},
		"active":    map[string]any{"healthy": map[string]any{"interval": 0.0}, "unhealthy": map[string]any{"interval": 0.0}},
		"threshold": 0.0,
	}
}

func TestPassiveHealthTakeOutAndBringBack(t *testing.T) {
	var mu sync.Mutex
	failing := true
	bad := newUpstream(t, "bad", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		f := failing
		mu.Unlock()
		w.Header().Set("X-Upstream", "bad")
		if f {
			w.WriteHeader(500)
		}
	})
	good := newUpstream(t, "good", nil)
	cfg := newCfg().upstream("u", "hc.upstream", func(u *config.Upstream) {
		u.Healthchecks = passiveHC(map[string]any{"http_failures": 2.0})
	}).target("t1", "u", bad.addr(), 100).target("t2", "u", good.addr(), 100).
		service("s", "", "hc.upstream", 80).route("r", "", "s", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	p.e.healthCooldown = time.Hour

	statuses := map[int]int{}
	for i := 0; i < 20; i++ {
		statuses[p.get(t, "/", nil).status]++
	}
	if statuses[500] != 2 || statuses[200] != 18 {
		t.Fatalf("after 2 failures the bad target must be out: %v", statuses)
	}
	if n := bad.hits.Load(); n != 2 {
		t.Errorf("bad target hit %d times", n)
	}

	// Health state survives a hot swap that keeps the target.
	cfg2 := newCfg().upstream("u", "hc.upstream", func(u *config.Upstream) {
		u.Healthchecks = passiveHC(map[string]any{"http_failures": 2.0})
	}).target("t1", "u", bad.addr(), 100).target("t2", "u", good.addr(), 100).
		service("s", "renamed", "hc.upstream", 80).route("r", "", "s", []string{"/"}).c
	if err := p.e.Apply(cfg2, "h2"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if got := nameOf(t, p.get(t, "/", nil)); got != "good" {
			t.Fatalf("after swap: answered by %s", got)
		}
	}

	// Cool-down elapses: the target is put back.
	mu.Lock()
	failing = false
	mu.Unlock()
	p.e.healthCooldown = 50 * time.Millisecond
	waitFor(t, 2*time.Second, "the bad target to take traffic again", func() bool {
		return p.get(t, "/", nil).header.Get("X-Upstream") == "bad"
	})
}

func TestPassiveHealthSuccessesBringBack(t *testing.T) {
	st := &peerState{}
	pc, err := parsePassive(map[string]any{"passive": map[string]any{
		"healthy":   map[string]any{"successes": 2.0, "http_statuses": []any{200.0}},
		"unhealthy": map[string]any{"tcp_failures": 2.0, "timeouts": 1.0, "http_failures": 0.0, "http_statuses": []any{500.0}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	pc.record(st, outcomeTCP, 0, now)
	if st.state.Load() != stMostlyHealthy || !st.takesTraffic(now, time.Hour) {
		t.Fatalf("1 tcp failure: state %d", st.state.Load())
	}
	pc.record(st, outcomeStatus, 200, now) // clears the failure count
	pc.record(st, outcomeTCP, 0, now)
	if st.takesTraffic(now, time.Hour) == false {
		t.Fatalf("failures are not consecutive but it went down")
	}
	pc.record(st, outcomeTCP, 0, now)
	if st.state.Load() != stUnhealthy || st.takesTraffic(now, time.Hour) {
		t.Fatalf("2 consecutive tcp failures: state %d", st.state.Load())
	}
	pc.record(st, outcomeStatus, 200, now)
	if st.state.Load() != stMostlyUnhealthy {
		t.Fatalf("1 success: state %d", st.state.Load())
	}
	pc.record(st, outcomeStatus, 200, now)
	if st.state.Load() != stHealthy {
		t.Fatalf("2 successes: state %d", st.state.Load())
	}
	pc.record(st, outcomeTimeout, 0, now)
	if st.state.Load() != stUnhealthy {
		t.Fatalf("1 timeout (limit 1): state %d", st.state.Load())
	}
	if !st.takesTraffic(now+int64(time.Hour), time.Hour) || st.state.Load() != stHealthy {
		t.Fatalf("cool-down did not put it back")
	}
	// Disabled counters count nothing.
	var off passiveConfig
	off, _ = parsePassive(nil)
	st2 := &peerState{}
	for i := 0; i < 100; i++ {
		off.record(st2, outcomeTCP, 0, now)
	}
	if st2.state.Load() != stHealthy || off.enabled {
		t.Errorf("default healthchecks took a target out")
	}
}

func TestHealthThreshold(t *testing.T) {
	a := newUpstream(t, "a", nil)
	dead := closedAddr(t)
	hc := passiveHC(map[string]any{"tcp_failures": 1.0})
	hc["threshold"] = 60.0
	cfg := newCfg().upstream("u", "th.upstream", func(u *config.Upstream) { u.Healthchecks = hc }).
		target("t1", "u", a.addr(), 100).target("t2", "u", dead, 100).
		service("s", "", "th.upstream", 80, func(s *config.Service) { s.Retries = 0 }).
		route("r", "", "s", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	p.e.healthCooldown = time.Hour
	var last result
	for i := 0; i < 4; i++ {
		last = p.get(t, "/", nil)
	}
	// Once the dead target is out, 50% healthy weight < 60% threshold.
	if last.status != 503 || !strings.Contains(last.body, "failure to get a peer from the ring-balancer") {
		t.Errorf("threshold: %d %q", last.status, last.body)
	}
}

func TestTargetHostnamesResolved(t *testing.T) {
	a := newUpstream(t, "a", nil)
	cfg := newCfg().upstream("u", "dns.upstream").
		target("t1", "u", "backend.internal:"+strconv.Itoa(a.port), 100).
		service("s", "", "dns.upstream", 80).route("r", "", "s", []string{"/"}).
		service("s2", "", "direct.internal", a.port).route("r2", "", "s2", []string{"/direct"}).c
	e := New(Options{})
	lookups := map[string]*atomic.Int64{"backend.internal": {}, "direct.internal": {}}
	e.dns.lookupFn = func(host string) ([]netip.Addr, error) {
		if n := lookups[host]; n != nil {
			n.Add(1)
		}
		if host == "backend.internal" || host == "direct.internal" {
			return []netip.Addr{netip.MustParseAddr(a.host)}, nil
		}
		return nil, fmt.Errorf("resolve %s: %w", host, errNameResolution)
	}
	if err := e.Apply(cfg, "h"); err != nil {
		t.Fatal(err)
	}
	p := startProxyEngine(t, e)
	for i := 0; i < 5; i++ {
		r := p.get(t, "/", nil)
		if got := decodeEcho(t, r).Host; got != "backend.internal:"+strconv.Itoa(a.port) {
			t.Errorf("Host header %q, want the target's name", got)
		}
		if got := decodeEcho(t, p.get(t, "/direct", nil)).Host; got != "direct.internal:"+strconv.Itoa(a.port) {
			t.Errorf("direct Host header %q", got)
		}
	}
	for _, h := range []string{"backend.internal", "direct.internal"} {
		if n := lookups[h].Load(); n != 1 {
			t.Errorf("%s resolved %d times, want 1 (cached)", h, n)
		}
	}
}
