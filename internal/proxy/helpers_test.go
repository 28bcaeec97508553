package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kongfb/kongfb/pkg/config"
)

func sp(s string) *string { return &s }

// uid maps a short test name to a stable UUID (Kong ids must be UUIDs).
func uid(name string) string {
	if _, err := uuid.Parse(name); err == nil {
		return name
	}
	return uuid.NewSHA1(uuid.NameSpaceOID, []byte("kongfb-proxy-test/"+name)).String()
}
func bp(b bool) *bool { return &b }

// cfgBuilder assembles a config.Config with Kong's defaults filled in.
type cfgBuilder struct{ c *config.Config }

func newCfg() *cfgBuilder { return &cfgBuilder{c: &config.Config{FormatVersion: "3.0"}} }

func (b *cfgBuilder) service(id, name, host string, port int, mod ...func(*config.Service)) *cfgBuilder {
	s := &config.Service{ID: uid(id), Protocol: "http", Host: host, Port: port, Retries: 5,
		ConnectTimeout: 60000, WriteTimeout: 60000, ReadTimeout: 60000, Enabled: true}
	if name != "" {
		s.Name = sp(name)
	}
	for _, m := range mod {
		m(s)
	}
	b.c.Services = append(b.c.Services, s)
	return b
}

func (b *cfgBuilder) route(id, name, service string, paths []string, mod ...func(*config.Route)) *cfgBuilder {
	r := &config.Route{ID: uid(id), Protocols: []string{"http", "https"}, Paths: paths, StripPath: true,
		PathHandling: "v0", HTTPSRedirectStatusCode: 426, RequestBuffering: true, ResponseBuffering: true}
	if name != "" {
		r.Name = sp(name)
	}
	if service != "" {
		r.Service = sp(uid(service))
	}
	for _, m := range mod {
		m(r)
	}
	b.c.Routes = append(b.c.Routes, r)
	return b
}

func (b *cfgBuilder) upstream(id, name string, mod ...func(*config.Upstream)) *cfgBuilder {
	u := &config.Upstream{ID: uid(id), Name: name, Algorithm: "round-robin", HashOn: "none", HashFallback: "none",
		HashOnCookiePath: "/", Slots: 10000}
	for _, m := range mod {
		m(u)
	}
	b.c.Upstreams = append(b.c.Upstreams, u)
	return b
}

func (b *cfgBuilder) target(id, upstream, target string, weight int) *cfgBuilder {
	b.c.Targets = append(b.c.Targets, &config.Target{ID: uid(id), Upstream: uid(upstream), Target: target, Weight: weight,
		CreatedAt: float64(len(b.c.Targets))})
	return b
}

func (b *cfgBuilder) plugin(p *config.Plugin) *cfgBuilder {
	b.c.Plugins = append(b.c.Plugins, p)
	return b
}

// upstreamServer is a test upstream that records what it received.
type upstreamServer struct {
	name string
	srv  *httptest.Server
	host string
	port int
	hits atomic.Int64
	mu   sync.Mutex
	last *http.Request
	body []byte
}

// echo is the JSON an echo upstream answers.
type echo struct {
	Name    string              `json:"name"`
	Method  string              `json:"method"`
	URI     string              `json:"uri"`
	Host    string              `json:"host"`
	Headers map[string][]string `json:"headers"`
	Body    string              `json:"body"`
}

func newUpstream(t testing.TB, name string, h http.HandlerFunc) *upstreamServer {
	t.Helper()
	u := &upstreamServer{name: name}
	if h == nil {
		h = func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Upstream", name)
			_ = json.NewEncoder(w).Encode(echo{Name: name, Method: r.Method, URI: r.RequestURI, Host: r.Host,
				Headers: r.Header, Body: string(b)})
		}
	}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		u.mu.Lock()
		u.last = r
		u.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(u.srv.Close)
	host, port, _ := net.SplitHostPort(u.srv.Listener.Addr().String())
	u.host = host
	u.port, _ = strconv.Atoi(port)
	return u
}

func (u *upstreamServer) addr() string { return u.host + ":" + strconv.Itoa(u.port) }

// proxyUnderTest is a running engine.
type proxyUnderTest struct {
	e    *Engine
	addr string
	port int
	c    *http.Client
}

func startProxy(t testing.TB, opts Options, cfg *config.Config) *proxyUnderTest {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e := New(opts)
	if cfg != nil {
		if err := e.Apply(cfg, "h1"); err != nil {
			t.Fatalf("apply: %v", err)
		}
	}
	return startProxyEngine(t, e)
}

// startProxyEngine serves e on a fresh 127.0.0.1 port until the test ends.
func startProxyEngine(t testing.TB, e *Engine) *proxyUnderTest {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	p := &proxyUnderTest{e: e, addr: ln.Addr().String(), port: ln.Addr().(*net.TCPAddr).Port}
	p.c = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(p.c.CloseIdleConnections)
	return p
}

func (p *proxyUnderTest) url(path string) string { return "http://" + p.addr + path }

type result struct {
	status int
	header http.Header
	body   string
}

func (p *proxyUnderTest) do(t testing.TB, method, path string, hdr map[string]string, body string) result {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, p.url(path), rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if strings.EqualFold(k, "host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := p.c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return result{resp.StatusCode, resp.Header, string(b)}
}

func (p *proxyUnderTest) get(t testing.TB, path string, hdr map[string]string) result {
	return p.do(t, "GET", path, hdr, "")
}

func decodeEcho(t testing.TB, r result) echo {
	t.Helper()
	var e echo
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("status %d, body %q: %v", r.status, r.body, err)
	}
	return e
}

// closedAddr returns an address on which nothing listens.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func splitAddr(t testing.TB, a string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(a)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
