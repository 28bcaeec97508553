package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
)

func TestApplyRefusesPlugins(t *testing.T) {
	up := newUpstream(t, "a", nil)
	good := newCfg().service("s", "svc", up.host, up.port).route("r", "rt", "s", []string{"/"}).c
	p := startProxy(t, Options{}, good)

	bad := newCfg().service("s", "svc", up.host, up.port).route("r", "rt", "s", []string{"/"}).
		plugin(&config.Plugin{ID: uid("p1"), Name: "key-auth", Route: sp(uid("r")), Enabled: true,
			Protocols: []string{"http", "https"}, Config: map[string]any{}}).
		plugin(&config.Plugin{ID: uid("p2"), Name: "rate-limiting", Enabled: true,
			Protocols: []string{"http", "https"}, Config: map[string]any{"minute": 5.0}}).
		plugin(&config.Plugin{ID: uid("p3"), Name: "cors", Service: sp(uid("s")), Enabled: false,
			Protocols: []string{"http", "https"}, Config: map[string]any{}}).c
	err := p.e.Apply(bad, "bad")
	if err == nil {
		t.Fatal("a config with plugins was applied")
	}
	msg := err.Error()
	for _, want := range []string{"plugins are not supported yet", `"key-auth"`, uid("p1"), `route "rt"`,
		`"rate-limiting"`, uid("p2"), "scope: global"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
	if strings.Contains(msg, "cors") {
		t.Errorf("a disabled plugin was reported: %q", msg)
	}
	if h, _ := p.e.Current(); h != "h1" {
		t.Errorf("current hash %q after a refused apply", h)
	}
	if r := p.get(t, "/", nil); r.status != 200 {
		t.Errorf("old config stopped serving: %d", r.status)
	}
}

func TestApplyInvalidKeepsOld(t *testing.T) {
	up := newUpstream(t, "a", nil)
	good := newCfg().service("s", "", up.host, up.port).route("r", "", "s", []string{"/"}).c
	p := startProxy(t, Options{}, good)
	bad := newCfg().service("s", "", "", up.port).route("r", "", "s", []string{"/"}).c
	if err := p.e.Apply(bad, "bad"); err == nil {
		t.Fatal("a service without host was applied")
	}
	badTarget := newCfg().upstream("u", "x.upstream").target("t", "u", "[::1", 100).
		service("s", "", up.host, up.port).route("r", "", "s", []string{"/"}).c
	if err := p.e.Apply(badTarget, "bad2"); err == nil {
		t.Fatal("a bad target was applied")
	}
	if err := p.e.Apply(nil, "nil"); err == nil {
		t.Fatal("nil config applied")
	}
	if h, cfg := p.e.Current(); h != "h1" || cfg != good {
		t.Errorf("Current = %q", h)
	}
	if r := p.get(t, "/", nil); r.status != 200 {
		t.Errorf("old config stopped serving: %d", r.status)
	}
}

func TestCurrentBeforeApply(t *testing.T) {
	e := New(Options{})
	if h, c := e.Current(); h != "" || c != nil {
		t.Errorf("Current before Apply = %q, %v", h, c)
	}
	p := startProxyEngine(t, e)
	if r := p.get(t, "/", nil); r.status != 404 || !strings.Contains(r.body, "no Route matched with those values") {
		t.Errorf("before any config: %d %q", r.status, r.body)
	}
}

// TestHotSwapUnderLoad hammers the proxy while configs alternate: no
// request may fail, and each answer comes from one of the two configs.
func TestHotSwapUnderLoad(t *testing.T) {
	mk := func(name string) *upstreamServer {
		return newUpstream(t, name, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Upstream", name)
			fmt.Fprint(w, name)
		})
	}
	v1, v2 := mk("v1"), mk("v2")
	cfgFor := func(u *upstreamServer, extraRoute bool) *config.Config {
		b := newCfg().
			upstream("u", "swap.upstream").target("t", "u", u.addr(), 100).
			service("s", "", "swap.upstream", 80).route("r", "", "s", []string{"/"})
		if extraRoute {
			b.route("r-extra", "", "s", []string{"/extra"})
		}
		return b.c
	}
	p := startProxy(t, Options{}, cfgFor(v1, false))

	var stop atomic.Bool
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 5 * time.Second}
			defer c.CloseIdleConnections()
			for !stop.Load() {
				resp, err := c.Get(p.url("/x"))
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || (string(b) != "v1" && string(b) != "v2") {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %q", resp.StatusCode, b))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	for i := 0; i < 60; i++ {
		u := v1
		if i%2 == 0 {
			u = v2
		}
		if err := p.e.Apply(cfgFor(u, i%3 == 0), fmt.Sprintf("h%d", i)); err != nil {
			t.Fatal(err)
		}
		// Let some requests through on this config before the next swap.
		target := ok.Load() + 20
		waitFor(t, 5*time.Second, "requests to flow", func() bool { return ok.Load() >= target || failed.Load() > 0 })
	}
	stop.Store(true)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d failed requests during hot swaps (first: %v); %d ok", failed.Load(), firstErr.Load(), ok.Load())
	}
	if v1.hits.Load() == 0 || v2.hits.Load() == 0 {
		t.Errorf("hits v1=%d v2=%d", v1.hits.Load(), v2.hits.Load())
	}
	// The last config (i=59: v1) is what serves now.
	if got := nameOf(t, p.get(t, "/", nil)); got != "v1" {
		t.Errorf("after the last swap: %s", got)
	}
}

// TestInFlightFinishesOnOldConfig: a request running during a swap
// completes against the target it started with.
func TestInFlightFinishesOnOldConfig(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	old := newUpstream(t, "old", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		fmt.Fprint(w, "old")
	})
	nu := newUpstream(t, "new", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "new") })
	p := startProxy(t, Options{}, newCfg().service("s", "", old.host, old.port).route("r", "", "s", []string{"/"}).c)
	done := make(chan result, 1)
	go func() { done <- p.get(t, "/", nil) }()
	<-arrived
	if err := p.e.Apply(newCfg().service("s", "", nu.host, nu.port).route("r", "", "s", []string{"/"}).c, "h2"); err != nil {
		t.Fatal(err)
	}
	if r := p.get(t, "/", nil); r.body != "new" {
		t.Errorf("new request: %q", r.body)
	}
	close(release)
	if r := <-done; r.status != 200 || r.body != "old" {
		t.Errorf("in-flight request: %d %q", r.status, r.body)
	}
}

func TestShutdownDrains(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	up := newUpstream(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		fmt.Fprint(w, "done")
	})
	e := New(Options{})
	if err := e.Apply(newCfg().service("s", "", up.host, up.port).route("r", "", "s", []string{"/"}).c, "h"); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.Serve(ln) }()

	got := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	<-arrived
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- e.Shutdown(ctx)
	}()
	// New connections are refused once the listener is closed.
	waitFor(t, 2*time.Second, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 100*time.Millisecond)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
	default:
	}
	close(release)
	if b := <-got; b != "done" {
		t.Errorf("in-flight request got %q", b)
	}
	if err := <-shut; err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-served; err != nil {
		t.Errorf("serve: %v", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	arrived := make(chan struct{}, 1)
	up := newUpstream(t, "stuck", func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
	})
	e := New(Options{})
	if err := e.Apply(newCfg().service("s", "", up.host, up.port).route("r", "", "s", []string{"/"}).c, "h"); err != nil {
		t.Fatal(err)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go func() { _ = e.Serve(ln) }()
	go func() {
		if resp, err := http.Get("http://" + ln.Addr().String() + "/"); err == nil {
			resp.Body.Close()
		}
	}()
	<-arrived
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := e.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a stuck request: %v", err)
	}
}

// TestStaleKeepAliveConnection: an upstream that closes every connection
// after one response without saying "Connection: close". The pooled
// connection is dead on the next request; idempotent requests are resent
// on a fresh connection.
func TestStaleKeepAliveConnection(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}(c)
		}
	}()
	h, port := splitAddr(t, ln.Addr().String())
	p := startProxy(t, Options{}, newCfg().service("s", "", h, port, func(s *config.Service) { s.Retries = 0 }).
		route("r", "", "s", []string{"/"}).c)
	for i := 0; i < 20; i++ {
		if r := p.get(t, "/", nil); r.status != 200 || r.body != "ok" {
			t.Fatalf("request %d: %d %q", i, r.status, r.body)
		}
	}
}

func TestRequestErrorsAnsweredLikeKong(t *testing.T) {
	p := startProxy(t, Options{}, nil)
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", maxRequestBodySize+1)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	rid := resp.Header.Get("X-Kong-Request-Id")
	if resp.StatusCode != 413 || string(b) != "Payload too large\nrequest_id: "+rid+"\n" || resp.Header.Get("Server") != "kong/3.9.1" {
		t.Errorf("oversized body: %d %q %v", resp.StatusCode, b, resp.Header)
	}

	conn2, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	fmt.Fprintf(conn2, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", serverReadBufferSize+10))
	resp, err = http.ReadResponse(bufio.NewReader(conn2), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != 400 || !strings.HasPrefix(string(b), "Request header or cookie too large\n") {
		t.Errorf("oversized header: %d %q", resp.StatusCode, b)
	}
}
