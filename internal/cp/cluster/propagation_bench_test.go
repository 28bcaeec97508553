package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kongfb/kongfb/internal/cp/admin"
	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/cp/store/storetest"
	"github.com/kongfb/kongfb/internal/proxy"
	wire "github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
)

// Propagation benchmarks: the time from an Admin API write to every DP
// serving the change. Run them with scripts/bench/propagation.sh, or:
//
//	go test -run '^$' -bench 'Propagation' -benchtime 30x ./internal/cp/cluster/
//
// Each iteration is ONE Admin API write (a new route); -benchtime 30x makes
// 30 writes, and the p50/p99 over them are reported as custom metrics.

// lightDP is a lightweight data plane: the sync protocol plus what a DP does
// with a reconfigure (gunzip, JSON decode, config parse and validation, and
// a proxy engine's Apply, which compiles the router and balancers). It has
// no proxy listener; "serving" a route means the engine applied a config
// holding it.
type lightDP struct {
	conn   *wire.Conn
	engine *proxy.Engine
	routes atomic.Pointer[map[string]bool] // names in the applied config
	onNew  func(d *lightDP, receivedAt time.Time)
	cancel context.CancelFunc
	done   chan struct{}
	// applyTook is the last decode+parse+apply time.
	applyTook atomic.Int64
	hash      atomic.Value
	// recvOnly DPs only gunzip the frame and look for route names in it,
	// without parsing or applying: they measure the CP's fan-out.
	recvOnly bool
}

func startLightDP(tb testing.TB, addr string, tlsOpts wire.TLSOptions, onNew func(*lightDP, time.Time)) *lightDP {
	return startDP(tb, addr, tlsOpts, onNew, false)
}

func startDP(tb testing.TB, addr string, tlsOpts wire.TLSOptions, onNew func(*lightDP, time.Time), recvOnly bool) *lightDP {
	tb.Helper()
	tc, err := wire.ClientTLSConfig(tlsOpts)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	id := uuid.NewString()
	conn, err := wire.Dial(ctx, addr, tc, wire.NodeInfo{ID: id, Hostname: "light-" + id[:8], Version: config.KongVersion},
		wire.NewBasicInfo(bundledPluginInfos(), nil, nil), nil)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	d := &lightDP{conn: conn, engine: proxy.New(proxy.Options{Logger: quietLog}), onNew: onNew, cancel: cancel, done: make(chan struct{}), recvOnly: recvOnly}
	d.hash.Store(wire.EmptyHash)
	empty := map[string]bool{}
	d.routes.Store(&empty)
	go func() { _ = conn.Keepalive(ctx, func() string { return d.hash.Load().(string) }) }()
	go func() {
		defer close(d.done)
		for {
			data, err := conn.ReadFrame(ctx)
			if err != nil {
				return
			}
			start := time.Now()
			m, err := wire.DecodeReconfigure(data, 0, 0)
			if err != nil {
				tb.Errorf("light DP: decode: %v", err)
				return
			}
			if d.recvOnly {
				d.recvOnlySeen(m)
				continue
			}
			cfg, err := config.Parse(m.ConfigTable, "config_table")
			if err != nil {
				tb.Errorf("light DP: parse: %v", err)
				return
			}
			if err := d.engine.Apply(cfg, m.ConfigHash); err != nil {
				tb.Errorf("light DP: apply: %v", err)
				return
			}
			d.applyTook.Store(int64(time.Since(start)))
			names := make(map[string]bool, len(cfg.Routes))
			for _, r := range cfg.Routes {
				if r.Name != nil {
					names[*r.Name] = true
				}
			}
			d.routes.Store(&names)
			d.hash.Store(m.ConfigHash)
			conn.PingNow()
			if d.onNew != nil {
				d.onNew(d, start)
			}
		}
	}()
	tb.Cleanup(func() {
		cancel()
		_ = conn.CloseNow()
		<-d.done
		_ = d.engine.Shutdown(context.Background())
	})
	return d
}

func (d *lightDP) has(route string) bool { return (*d.routes.Load())[route] }

// recvOnlySeen records the route names of a decoded frame by a cheap scan
// for `"name":"r<i>"`, as a stand-in for parsing.
func (d *lightDP) recvOnlySeen(m *wire.Reconfigure) {
	names := map[string]bool{}
	rest := m.ConfigTable
	key := []byte(`"name":"r`)
	for {
		i := bytes.Index(rest, key)
		if i < 0 {
			break
		}
		rest = rest[i+len(key)-1:]
		j := bytes.IndexByte(rest, '"')
		if j < 0 {
			break
		}
		names[string(rest[:j])] = true
		rest = rest[j:]
	}
	d.routes.Store(&names)
	d.hash.Store(m.ConfigHash)
	d.conn.PingNow()
	if d.onNew != nil {
		d.onNew(d, time.Now())
	}
}

var quietLog = slog.New(slog.DiscardHandler)

// waiter tracks one write: which DPs already serve the route, and when
// the last light DP received the frame carrying it.
type waiter struct {
	mu       sync.Mutex
	route    string
	pending  map[any]bool
	all      chan struct{}
	lastRecv time.Time
}

func (w *waiter) mark(who any, receivedAt time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if receivedAt.After(w.lastRecv) {
		w.lastRecv = receivedAt
	}
	if w.pending[who] {
		delete(w.pending, who)
		if len(w.pending) == 0 {
			close(w.all)
		}
	}
}

// benchCP is a CP with its Admin API on a real listener.
type benchCP struct {
	srv      *Server
	addr     string
	adminURL string
	tls      wire.TLSOptions
	st       store.Store
}

func startBenchCP(tb testing.TB, st store.Store) *benchCP {
	tb.Helper()
	tlsOpts := sharedTLS(tb)
	s, err := New(Options{Store: st, Listen: "127.0.0.1:0", TLS: tlsOpts, Logger: quietLog})
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(ctx) }()
	api, err := admin.New(admin.Options{Store: st, Logger: quietLog,
		Mount: map[string]http.Handler{"/clustering/": admin.ClusteringHandler(s.Registry().Rows)}})
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	hs := &http.Server{Handler: api}
	go func() { _ = hs.Serve(ln) }()
	tb.Cleanup(func() {
		_ = hs.Close()
		cancel()
		<-done
	})
	return &benchCP{srv: s, addr: s.Addr(), adminURL: "http://" + ln.Addr().String(), tls: tlsOpts, st: st}
}

func (c *benchCP) post(tb testing.TB, path string, body any) map[string]any {
	tb.Helper()
	b, _ := json.Marshal(body)
	res, err := http.Post(c.adminURL+path, "application/json", bytes.NewReader(b))
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusCreated {
		tb.Fatalf("POST %s: %d %s", path, res.StatusCode, out)
	}
	var m map[string]any
	_ = json.Unmarshal(out, &m)
	return m
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func reportLatencies(b *testing.B, lat []time.Duration) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(percentile(lat, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(lat, 0.99)), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
	b.ReportMetric(0, "ns/op") // wall time per op is meaningless here
}

// benchDPs are the DPs a propagation benchmark waits for: light ones
// in-process and, when realDPs > 0, real ones (see propagation_real_test.go).
type benchDPs struct {
	light []*lightDP
	real  []realDP
}

// realDP is a DP with a proxy listener; serving a route means a request to
// it answers 200.
type realDP interface {
	ProxyURL() string
}

func benchPropagation(b *testing.B, nLight, nReal int) { benchPropagationMode(b, nLight, nReal, false) }

func benchPropagationMode(b *testing.B, nLight, nReal int, recvOnly bool) {
	st := storetest.NewSQLite(b)
	cp := startBenchCP(b, st)
	upstream := startUpstream(b)
	host, port, _ := net.SplitHostPort(upstream)
	svc := cp.post(b, "/services", map[string]any{"name": "bench", "host": host, "port": mustAtoi(port)})

	var cur atomic.Pointer[waiter]
	onNew := func(d *lightDP, receivedAt time.Time) {
		if w := cur.Load(); w != nil && d.has(w.route) {
			w.mark(d, receivedAt)
		}
	}
	var dps benchDPs
	for i := 0; i < nLight; i++ {
		dps.light = append(dps.light, startDP(b, cp.addr, cp.tls, onNew, recvOnly))
	}
	for i := 0; i < nReal; i++ {
		dps.real = append(dps.real, startRealDP(b, cp.addr, cp.tls))
	}
	// Every DP has the initial config before timing starts.
	want := cp.srv.Current()
	deadline := time.Now().Add(30 * time.Second)
	for _, d := range dps.light {
		for d.hash.Load().(string) != want.Hash {
			if time.Now().After(deadline) {
				b.Fatal("light DPs did not get the initial config")
			}
			time.Sleep(time.Millisecond)
		}
	}
	for _, d := range dps.real {
		waitServing(b, d, "/", 404, 30*time.Second) // Kong's 404 for no route: the DP serves a config
	}

	lat := make([]time.Duration, 0, b.N)
	var (
		mu                        sync.Mutex
		postLat, pushLat, recvLat []time.Duration
	)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("r%d", i)
		w := &waiter{route: name, pending: map[any]bool{}, all: make(chan struct{})}
		for _, d := range dps.light {
			w.pending[d] = true
		}
		for _, d := range dps.real {
			w.pending[d] = true
		}
		cur.Store(w)
		exported := cp.srv.Exported()
		start := time.Now()
		cp.post(b, "/services/"+svc["id"].(string)+"/routes", map[string]any{"name": name, "paths": []any{"/" + name}})
		postLat = append(postLat, time.Since(start))
		go func() {
			<-exported
			mu.Lock()
			pushLat = append(pushLat, time.Since(start))
			mu.Unlock()
		}()
		for _, d := range dps.light {
			if d.has(name) {
				w.mark(d, time.Time{})
			}
		}
		for _, d := range dps.real {
			go func(d realDP) {
				waitServing(b, d, "/"+name, 200, 30*time.Second)
				w.mark(d, time.Time{})
			}(d)
		}
		select {
		case <-w.all:
		case <-time.After(30 * time.Second):
			b.Fatalf("write %d: not every DP serves %s after 30 s", i, name)
		}
		lat = append(lat, time.Since(start))
		w.mu.Lock()
		if !w.lastRecv.IsZero() {
			recvLat = append(recvLat, w.lastRecv.Sub(start))
		}
		w.mu.Unlock()
	}
	b.StopTimer()
	reportLatencies(b, lat)
	mu.Lock()
	med := func(x []time.Duration) float64 {
		sort.Slice(x, func(i, j int) bool { return x[i] < x[j] })
		return float64(percentile(x, 0.5).Microseconds()) / 1000
	}
	// Where the time goes: the Admin API write itself, and the CP's export
	// (both from the start of the write).
	b.ReportMetric(med(postLat), "write-p50-ms")
	b.ReportMetric(med(pushLat), "exported-p50-ms")
	if len(recvLat) > 0 {
		// When the last light DP had the frame in hand (before its own
		// decode, parse and apply): the CP's fan-out.
		b.ReportMetric(med(recvLat), "all-received-p50-ms")
		sort.Slice(recvLat, func(i, j int) bool { return recvLat[i] < recvLat[j] })
		b.ReportMetric(float64(percentile(recvLat, 0.99).Microseconds())/1000, "all-received-p99-ms")
	}
	mu.Unlock()
	s := cp.srv.Stats()
	b.ReportMetric(float64(s.Pushes), "pushes")
}

func mustAtoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

// startUpstream is a tiny HTTP upstream the routes point at.
func startUpstream(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })}
	go func() { _ = hs.Serve(ln) }()
	tb.Cleanup(func() { _ = hs.Close() })
	return ln.Addr().String()
}

var pollClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}

// waitServing polls a real DP until path answers status.
func waitServing(tb testing.TB, d realDP, path string, status int, within time.Duration) {
	deadline := time.Now().Add(within)
	for {
		res, err := pollClient.Get(d.ProxyURL() + path)
		if err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == status {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Errorf("DP %s: %s did not answer %d within %v (last: %v)", d.ProxyURL(), path, status, within, err)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func BenchmarkPropagation(b *testing.B) {
	b.Run("N=1", func(b *testing.B) { benchPropagation(b, 0, 1) })
	b.Run("N=50", func(b *testing.B) { benchPropagation(b, 47, 3) })
	b.Run("N=50-light", func(b *testing.B) { benchPropagation(b, 50, 0) })
	// The CP's fan-out alone: 50 clients that only receive and gunzip.
	b.Run("N=50-recv-only", func(b *testing.B) { benchPropagationMode(b, 50, 0, true) })
}

// BenchmarkLargeConfig: a 10,000-route configuration. Each iteration adds
// one route; reported are the CP's export time (read + convert + hash +
// gzip), the DP's decode+parse+apply time, push→applied latency, frame size,
// and the DP's heap held by the applied config.
func BenchmarkLargeConfig(b *testing.B) {
	const services, routesPer = 100, 100
	st := storetest.NewSQLite(b)
	colls := map[string][]store.Row{}
	for s := 0; s < services; s++ {
		row, verr := config.ValidateEntity("services", map[string]any{"id": uuid.NewString(), "name": fmt.Sprintf("s%d", s), "host": "127.0.0.1", "port": 9}, config.Insert)
		if verr != nil {
			b.Fatal(verr.Message())
		}
		colls["services"] = append(colls["services"], row)
		for r := 0; r < routesPer; r++ {
			rr, verr := config.ValidateEntity("routes", map[string]any{
				"id": uuid.NewString(), "name": fmt.Sprintf("s%d-r%d", s, r), "paths": []any{fmt.Sprintf("/s%d/r%d", s, r)},
				"service": map[string]any{"id": row["id"]},
			}, config.Insert)
			if verr != nil {
				b.Fatal(verr.Message())
			}
			colls["routes"] = append(colls["routes"], rr)
		}
	}
	if _, err := st.ReplaceAll(context.Background(), colls); err != nil {
		b.Fatal(err)
	}
	cp := startBenchCP(b, st)
	waitFor(b, "the initial export", func() bool { p := cp.srv.Current(); return p != nil && p.Entities >= services*(routesPer+1) })
	p := cp.srv.Current()

	heap := dpHeap(b, p)
	got := make(chan *lightDP, 16)
	start := time.Now()
	d := startLightDP(b, cp.addr, cp.tls, func(d *lightDP, _ time.Time) { got <- d })
	select {
	case <-got:
	case <-time.After(60 * time.Second):
		b.Fatal("no config applied")
	}
	first := time.Since(start)

	svcID := colls["services"][0]["id"].(string)
	var push, apply, export []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		insert(b, st, "routes", map[string]any{"name": fmt.Sprintf("extra-%d", i), "paths": []any{fmt.Sprintf("/extra/%d", i)}, "service": map[string]any{"id": svcID}})
		for {
			select {
			case <-got:
			case <-time.After(60 * time.Second):
				b.Fatal("change not applied")
			}
			if d.has(fmt.Sprintf("extra-%d", i)) {
				break
			}
		}
		push = append(push, time.Since(start))
		apply = append(apply, time.Duration(d.applyTook.Load()))
		export = append(export, cp.srv.Current().ExportTook)
	}
	b.StopTimer()
	med := func(x []time.Duration) float64 {
		sort.Slice(x, func(i, j int) bool { return x[i] < x[j] })
		return float64(percentile(x, 0.5).Microseconds()) / 1000
	}
	// ResetTimer drops metrics reported before it: report everything here.
	b.ReportMetric(float64(len(p.Frame))/1024, "frame-KiB")
	b.ReportMetric(float64(first.Microseconds())/1000, "connect-to-applied-ms")
	b.ReportMetric(heap/(1<<20), "dp-heap-MiB")
	b.ReportMetric(med(push), "write-to-applied-p50-ms")
	b.ReportMetric(med(apply), "dp-apply-p50-ms")
	b.ReportMetric(med(export), "cp-export-p50-ms")
	b.ReportMetric(0, "ns/op")
	if os.Getenv("KONGFB_BENCH_VERBOSE") != "" {
		b.Logf("frame %d bytes, entities %d", len(p.Frame), p.Entities)
	}
}

// dpHeap is the Go heap a DP holds for an applied configuration: the
// decoded config and the engine's compiled router and balancers, measured
// by applying the payload to a fresh engine in this (quiet) process.
func dpHeap(tb testing.TB, p *Payload) float64 {
	var m0, m1 runtime.MemStats
	// Twice: objects with finalizers are only freed by the second cycle.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m0)
	e := applyFrame(tb, p.Frame)
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	if h, _ := e.Current(); h != p.Hash {
		tb.Fatalf("engine holds %s, want %s", h, p.Hash)
	}
	runtime.KeepAlive(e)
	_ = e.Shutdown(context.Background())
	return float64(int64(m1.HeapAlloc) - int64(m0.HeapAlloc))
}

func applyFrame(tb testing.TB, frame []byte) *proxy.Engine {
	m, err := wire.DecodeReconfigure(frame, 0, 0)
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := config.Parse(m.ConfigTable, "config_table")
	if err != nil {
		tb.Fatal(err)
	}
	e := proxy.New(proxy.Options{Logger: quietLog})
	if err := e.Apply(cfg, m.ConfigHash); err != nil {
		tb.Fatal(err)
	}
	return e
}
