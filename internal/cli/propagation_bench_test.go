package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kongfb/kongfb/internal/cp/cluster/clustertest"
	"github.com/kongfb/kongfb/internal/dp"
	"github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
)

// Propagation benchmarks: the time from the start of an Admin API write
// (POST /services/bench/routes) to every data plane serving the new route,
// on a configuration of benchRoutes routes. The CP is a real `serve cp`
// (SQLite, Admin API, cluster listener); "real" DPs are `serve dp --cp`
// with proxy listeners: one counts from the moment its node starts serving
// a configuration with the route, confirmed by a request through its proxy
// answering 200 (polling each real DP every millisecond instead cost ~1,000
// requests a second per DP of the CPU the DPs share); light DPs
// (clustertest) receive and decode every push, and in the full-apply case
// also parse and apply it like a DP, but have no listener. Everything shares
// this process and the machine's cores.
//
// Each benchmark iteration is ONE write: run with -benchtime 300x for 300
// writes (scripts/bench/propagation.sh does). Reported: p50/p99/max over
// the writes, the Admin API write time, and for light DPs when the last of
// them had the frame in hand (the CP's fan-out).
//
//	go test -run '^$' -bench BenchmarkPropagation -benchtime 300x ./internal/cli/

func BenchmarkPropagation(b *testing.B) {
	b.Run("N=1", func(b *testing.B) { benchPropagation(b, 1, 0, lightApply) })
	// The setup: three real DPs plus 47 lightweight sync clients
	// that receive, gunzip and decode every push (no parse/apply: on real
	// hardware each DP applies on its own cores, in parallel, and the real
	// DPs here measure that apply).
	b.Run("N=50", func(b *testing.B) { benchPropagation(b, 3, 47, lightDecode) })
	// Harsher: the 47 light DPs also parse and apply every push, so 50
	// applies share this machine's cores.
	b.Run("N=50-full-apply", func(b *testing.B) { benchPropagation(b, 3, 47, lightApply) })
	// Diagnostic: the 47 clients only read each frame off the connection
	// (no gunzip), which isolates the CP's fan-out from the clients' work.
	b.Run("N=50-frame-only", func(b *testing.B) { benchPropagation(b, 3, 47, lightFrameOnly) })
	// Diagnostic: the three real DPs alone, what every N = 50 case carries
	// on top of N = 1 before any sync client is added.
	b.Run("N=3-real", func(b *testing.B) { benchPropagation(b, 3, 0, lightApply) })
}

// What the in-process light DPs do with each push.
type lightMode int

const (
	lightApply     lightMode = iota // gunzip, parse, apply
	lightDecode                     // gunzip and decode (sync clients)
	lightFrameOnly                  // read the frame only
)

// benchCP runs `serve cp` with a cluster listener for a benchmark.
func benchCP(b *testing.B) (serveCPAddrs, cluster.TLSOptions) {
	b.Helper()
	tlsOpts := clustertest.SharedCert(b)
	o := serveCPOptions{
		AdminListen: "127.0.0.1:0", StatusListen: "off",
		storeOptions:  storeOptions{Database: "sqlite", Prefix: filepath.Join(b.TempDir(), "cp")},
		ClusterListen: "127.0.0.1:0", ClusterCert: tlsOpts.Cert, ClusterCertKey: tlsOpts.Key,
		Logger: slog.New(slog.DiscardHandler),
	}
	ready := make(chan serveCPAddrs, 1)
	o.Ready = func(a serveCPAddrs) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServeCP(ctx, o) }()
	b.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-ready:
		return a, tlsOpts
	case err := <-done:
		b.Fatalf("serve cp: %v", err)
	case <-time.After(30 * time.Second):
		b.Fatal("serve cp did not start")
	}
	return serveCPAddrs{}, tlsOpts
}

// benchDP runs `serve dp --cp` and returns its proxy address; onServe
// (may be nil) gets the node's serve events.
func benchDP(b *testing.B, cpAddr string, tlsOpts cluster.TLSOptions, onServe func(url string, ev dp.ServeEvent)) string {
	b.Helper()
	o := serveDPOptions{
		ProxyListen: "127.0.0.1:0", StatusListen: "127.0.0.1:0",
		ControlPlane: cpAddr, ClusterCert: tlsOpts.Cert, ClusterCertKey: tlsOpts.Key, ClusterMTLS: "shared",
		ClusterMaxPayload: cluster.DefaultMaxPayload,
		PingInterval:      cluster.DefaultPingInterval,
		ReconnectMin:      10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond,
		CPConnectTimeout: 5 * time.Second, DrainTimeout: time.Second,
		Prefix: filepath.Join(b.TempDir(), "dp"),
		Logger: slog.New(slog.DiscardHandler),
	}
	var url atomic.Value // string, set once the proxy is bound
	url.Store("")
	if onServe != nil {
		o.onServe = func(ev dp.ServeEvent) {
			if u := url.Load().(string); u != "" {
				onServe(u, ev)
			}
		}
	}
	ready := make(chan serveDPAddrs, 1)
	o.Ready = func(a serveDPAddrs) { url.Store("http://" + a.Proxy[0]); ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServeDP(ctx, o) }()
	b.Cleanup(func() { cancel(); <-done })
	select {
	case a := <-ready:
		return "http://" + a.Proxy[0]
	case err := <-done:
		b.Fatalf("serve dp: %v", err)
	case <-time.After(30 * time.Second):
		b.Fatal("serve dp did not start")
	}
	return ""
}

var benchClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

func benchPost(b *testing.B, url, body string) {
	res, err := benchClient.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	out, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		b.Fatalf("POST %s: %d %s", url, res.StatusCode, out)
	}
}

// benchServes polls a real DP until path answers want.
func benchServes(url string, want int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if res, err := benchClient.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == want {
				return true
			}
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// pending tracks one write: the DPs not yet serving its route, and when
// the last light DP received the frame carrying it.
type pending struct {
	mu       sync.Mutex
	route    string
	left     map[any]bool
	all      chan struct{}
	lastRecv time.Time
}

func (p *pending) done(who any, receivedAt time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.left[who] {
		return
	}
	if receivedAt.After(p.lastRecv) {
		p.lastRecv = receivedAt
	}
	delete(p.left, who)
	if len(p.left) == 0 {
		close(p.all)
	}
}

func benchPropagation(b *testing.B, nReal, nLight int, mode lightMode) {
	addrs, tlsOpts := benchCP(b)
	admin := "http://" + addrs.Admin[0]
	up := benchUpstream(b)
	benchPost(b, admin+"/services", fmt.Sprintf(`{"name":"bench","url":%q}`, up))
	// A fixed-size configuration: benchRoutes routes, and each write adds
	// one route while the one added before is removed (untimed), so the
	// figures do not depend on how many writes are run.
	for i := 0; i < benchRoutes; i++ {
		benchPost(b, admin+"/services/bench/routes", fmt.Sprintf(`{"name":"base-%d","paths":["/base-%d"]}`, i, i))
	}

	var cur atomic.Pointer[pending]
	onApplied := func(d *clustertest.LightDP, recv time.Time) {
		// A frame-only client cannot look inside: any frame after the
		// write started is the write's (the previous change was fully
		// delivered before it, see benchRemove).
		if p := cur.Load(); p != nil && (mode == lightFrameOnly || d.HasRoute(p.route)) {
			p.done(d, recv)
		}
	}
	var light []*clustertest.LightDP
	for i := 0; i < nLight; i++ {
		light = append(light, clustertest.Start(b, addrs.Cluster, tlsOpts, clustertest.Options{OnApplied: onApplied,
			RecvOnly: mode == lightDecode, FrameOnly: mode == lightFrameOnly}))
	}
	// A real DP that starts serving a configuration with the pending
	// route is confirmed by one request through its proxy (off the
	// node's apply lock).
	onServe := func(u string, ev dp.ServeEvent) {
		p := cur.Load()
		if p == nil || !ev.Changed || !configHasRoute(ev.Config, p.route) {
			return
		}
		go func() {
			if benchServes(u+"/"+p.route, 200, 30*time.Second) {
				p.done(u, time.Time{})
			}
		}()
	}
	var real []string
	for i := 0; i < nReal; i++ {
		real = append(real, benchDP(b, addrs.Cluster, tlsOpts, onServe))
	}
	// Every DP holds the initial config (the service, no route) first.
	deadline := time.Now().Add(30 * time.Second)
	for _, d := range light {
		for d.Applied() == 0 {
			if time.Now().After(deadline) {
				b.Fatal("light DPs did not get the initial config")
			}
			time.Sleep(time.Millisecond)
		}
	}
	for _, u := range real {
		// Kong's 404 "no Route matched" means a config is being served.
		if !benchServes(u+"/", 404, 30*time.Second) {
			b.Fatalf("DP %s serves nothing", u)
		}
	}

	var lat, writeLat, recvLat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 {
			b.StopTimer()
			cur.Store(nil)
			benchRemove(b, admin, fmt.Sprintf("r%d", i-1), light, real, mode == lightFrameOnly)
			b.StartTimer()
		}
		name := fmt.Sprintf("r%d", i)
		p := &pending{route: name, left: map[any]bool{}, all: make(chan struct{})}
		for _, d := range light {
			p.left[d] = true
		}
		for _, u := range real {
			p.left[u] = true
		}
		cur.Store(p)
		start := time.Now()
		benchPost(b, admin+"/services/bench/routes", fmt.Sprintf(`{"name":%q,"paths":["/%s"]}`, name, name))
		writeLat = append(writeLat, time.Since(start))
		for _, d := range light {
			if mode != lightFrameOnly && d.HasRoute(name) {
				p.done(d, time.Time{})
			}
		}
		select {
		case <-p.all:
		case <-time.After(30 * time.Second):
			b.Fatalf("write %d: not every DP serves /%s after 30 s", i, name)
		}
		lat = append(lat, time.Since(start))
		p.mu.Lock()
		if !p.lastRecv.IsZero() {
			recvLat = append(recvLat, p.lastRecv.Sub(start))
		}
		p.mu.Unlock()
	}
	b.StopTimer()
	pct(b, lat, "")
	pct(b, writeLat, "write-")
	if len(recvLat) > 0 {
		pct(b, recvLat, "light-received-")
	}
	b.ReportMetric(0, "ns/op") // the wall time per op says nothing here
}

// configHasRoute reports whether cfg holds a route named name.
func configHasRoute(cfg *config.Config, name string) bool {
	if cfg == nil {
		return false
	}
	for _, r := range cfg.Routes {
		if r.Name != nil && *r.Name == name {
			return true
		}
	}
	return false
}

// benchRoutes is the size of the benchmark's configuration (routes).
const benchRoutes = 100

// benchRemove deletes route name and waits until no DP has it any more
// (frame-only light DPs: until each got one more frame).
func benchRemove(b *testing.B, admin, name string, light []*clustertest.LightDP, real []string, frameOnly bool) {
	before := make([]int64, len(light))
	for i, d := range light {
		before[i] = d.Applied()
	}
	req, err := http.NewRequest(http.MethodDelete, admin+"/routes/"+name, nil)
	if err != nil {
		b.Fatal(err)
	}
	res, err := benchClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		b.Fatalf("DELETE /routes/%s: %d", name, res.StatusCode)
	}
	deadline := time.Now().Add(30 * time.Second)
	for i, d := range light {
		for d.HasRoute(name) || frameOnly && d.Applied() == before[i] {
			if time.Now().After(deadline) {
				b.Fatalf("light DP still has %s after 30 s", name)
			}
			time.Sleep(time.Millisecond)
		}
	}
	for _, u := range real {
		if !benchServes(u+"/"+name, http.StatusNotFound, 30*time.Second) {
			b.Fatalf("DP %s still serves /%s after 30 s", u, name)
		}
	}
}

// pct reports p50, p99 and max of d in milliseconds.
func pct(b *testing.B, d []time.Duration, prefix string) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	at := func(p float64) float64 {
		i := int(float64(len(d))*p+0.5) - 1
		i = max(0, min(i, len(d)-1))
		return float64(d[i].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), prefix+"p50-ms")
	b.ReportMetric(at(0.99), prefix+"p99-ms")
	if prefix == "" {
		b.ReportMetric(at(1), "max-ms")
	}
}

func benchUpstream(b *testing.B) string {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}
