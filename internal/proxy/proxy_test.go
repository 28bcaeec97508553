package proxy

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
)

var reqIDRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestProxyUpstreamHeaders(t *testing.T) {
	up := newUpstream(t, "a", nil)
	cfg := newCfg().
		service("s1", "svc", up.host, up.port, func(s *config.Service) { s.Path = sp("/base") }).
		route("r1", "r", "s1", []string{"/api"}).
		c
	p := startProxy(t, Options{}, cfg)

	r := p.get(t, "/api/items?x=1&y=%20", map[string]string{
		"Host":              "Example.COM:8443",
		"X-Forwarded-For":   "10.0.0.1",
		"X-Forwarded-Proto": "https", // untrusted client: overwritten
		"X-Forwarded-Host":  "evil",
		"X-Forwarded-Port":  "1",
		"X-Forwarded-Path":  "/evil",
		"Connection":        "keep-alive, X-Hop",
		"X-Hop":             "drop me",
		"Keep-Alive":        "timeout=5",
		"Proxy-Connection":  "keep-alive",
		"Via":               "1.1 other",
		"X-Custom":          "kept",
	})
	if r.status != 200 {
		t.Fatalf("status %d body %s", r.status, r.body)
	}
	e := decodeEcho(t, r)
	if e.URI != "/base/items?x=1&y=%20" {
		t.Errorf("upstream uri = %q", e.URI)
	}
	if want := up.addr(); e.Host != want {
		t.Errorf("Host = %q, want %q", e.Host, want)
	}
	h := http.Header(e.Headers)
	checks := map[string]string{
		"X-Real-Ip":          "127.0.0.1",
		"X-Forwarded-For":    "10.0.0.1, 127.0.0.1",
		"X-Forwarded-Proto":  "http",
		"X-Forwarded-Host":   "example.com",
		"X-Forwarded-Port":   strconv.Itoa(p.port),
		"X-Forwarded-Path":   "/api/items",
		"X-Forwarded-Prefix": "/api",
		"Via":                "1.1 other, 1.1 kong/3.9.1",
		"X-Custom":           "kept",
	}
	for k, want := range checks {
		if got := h.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("upstream %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Connection", "Connection"} {
		if v := h.Get(k); v != "" {
			t.Errorf("hop-by-hop %s forwarded: %q", k, v)
		}
	}
	rid := h.Get("X-Kong-Request-Id")
	if !reqIDRe.MatchString(rid) {
		t.Errorf("upstream X-Kong-Request-Id = %q", rid)
	}
	// Downstream.
	if got := r.header.Get("X-Kong-Request-Id"); got != rid {
		t.Errorf("downstream request id %q != upstream %q", got, rid)
	}
	if got := r.header.Get("Via"); got != "1.1 kong/3.9.1" {
		t.Errorf("downstream Via = %q", got)
	}
	if got := r.header.Get("Server"); got != "kong/3.9.1" {
		t.Errorf("Server = %q (upstream sent none)", got)
	}
	for _, k := range []string{"X-Kong-Upstream-Latency", "X-Kong-Proxy-Latency"} {
		if _, err := strconv.Atoi(r.header.Get(k)); err != nil {
			t.Errorf("%s = %q", k, r.header.Get(k))
		}
	}
	if r.header.Get("X-Kong-Response-Latency") != "" {
		t.Errorf("proxied response has X-Kong-Response-Latency")
	}
	if r.header.Get("X-Upstream") != "a" || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("upstream headers not relayed: %v", r.header)
	}
}

func TestProxyNoXFFAndPreserveHostAndBareQuery(t *testing.T) {
	up := newUpstream(t, "a", nil)
	cfg := newCfg().
		service("s1", "", up.host, up.port).
		route("r1", "", "s1", []string{"/keep"}, func(r *config.Route) { r.PreserveHost = true; r.StripPath = false }).
		c
	p := startProxy(t, Options{}, cfg)
	r := p.get(t, "/keep/x?", map[string]string{"Host": "my.host:9999"})
	e := decodeEcho(t, r)
	if e.Host != "my.host:9999" {
		t.Errorf("preserve_host: Host = %q", e.Host)
	}
	if e.URI != "/keep/x?" {
		t.Errorf("bare '?' lost: %q", e.URI)
	}
	h := http.Header(e.Headers)
	if got := h.Get("X-Forwarded-For"); got != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	if got := h.Values("X-Forwarded-Prefix"); len(got) != 0 {
		t.Errorf("X-Forwarded-Prefix without strip: %q", got)
	}
	if got := h.Get("Via"); got != "1.1 kong/3.9.1" {
		t.Errorf("Via = %q", got)
	}
}

func TestProxyUpstreamServerAndViaPassThrough(t *testing.T) {
	up := newUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "upstream-srv/1")
		w.Header().Set("Via", "1.0 inner")
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "hop")
		w.WriteHeader(201)
		fmt.Fprint(w, "created")
	})
	cfg := newCfg().service("s1", "", up.host, up.port).route("r1", "", "s1", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	r := p.do(t, "POST", "/x", nil, "payload")
	if r.status != 201 || r.body != "created" {
		t.Fatalf("got %d %q", r.status, r.body)
	}
	if got := r.header.Get("Server"); got != "upstream-srv/1" {
		t.Errorf("Server = %q", got)
	}
	if got := r.header.Get("Via"); got != "1.0 inner, 1.1 kong/3.9.1" {
		t.Errorf("Via = %q", got)
	}
	if got := r.header.Get("X-Secret"); got != "" {
		t.Errorf("hop-by-hop response header relayed: %q", got)
	}
}

func TestProxyBodies(t *testing.T) {
	up := newUpstream(t, "a", nil)
	cfg := newCfg().service("s1", "", up.host, up.port).route("r1", "", "s1", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	big := strings.Repeat("0123456789abcdef", 64*1024) // 1 MiB
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "GET"} {
		e := decodeEcho(t, p.do(t, m, "/b", map[string]string{"Content-Type": "text/plain"}, big))
		if e.Method != m || e.Body != big {
			t.Errorf("%s: method %q, body %d bytes (want %d)", m, e.Method, len(e.Body), len(big))
		}
	}
	// Chunked request body.
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	var e echo
	decodeInto(t, resp, &e)
	if e.Body != "hello world" || len(e.Headers["Transfer-Encoding"]) != 0 {
		t.Errorf("chunked body: %q, headers %v", e.Body, e.Headers)
	}
}

func TestProxyChunkedAndClosingUpstream(t *testing.T) {
	up := newUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		w.Header().Set("Content-Type", "text/plain")
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "part%d;", i)
			w.(http.Flusher).Flush() // chunked transfer encoding
		}
	})
	cfg := newCfg().service("s1", "", up.host, up.port).route("r1", "", "s1", []string{"/"}, func(r *config.Route) { r.StripPath = false }).c
	p := startProxy(t, Options{}, cfg)
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	// Several requests on one client connection: an upstream closing its
	// connection must not close the client's.
	for i, path := range []string{"/chunked", "/close", "/chunked", "/close"} {
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b := new(strings.Builder)
		if _, err := bufio.NewReader(resp.Body).WriteTo(b); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if b.String() != "part0;part1;part2;" || resp.Close || len(resp.TransferEncoding) > 1 {
			t.Fatalf("request %d: %q close=%v te=%v", i, b.String(), resp.Close, resp.TransferEncoding)
		}
	}
}

func TestProxyLargeUpstreamHeader(t *testing.T) {
	big := strings.Repeat("v", 20000)
	up := newUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", big)
		fmt.Fprint(w, "ok")
	})
	cfg := newCfg().service("s1", "", up.host, up.port).route("r1", "", "s1", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	r := p.get(t, "/", nil)
	if r.status != 200 || r.header.Get("X-Big") != big {
		t.Errorf("20 kB response header: %d, %d bytes", r.status, len(r.header.Get("X-Big")))
	}
}

func TestProxyHEAD(t *testing.T) {
	up := newUpstream(t, "a", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1234")
		w.WriteHeader(200)
	})
	cfg := newCfg().service("s1", "", up.host, up.port).route("r1", "", "s1", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	for i := 0; i < 3; i++ { // several on one keep-alive connection
		r := p.do(t, "HEAD", "/h", nil, "")
		if r.status != 200 || r.body != "" {
			t.Fatalf("HEAD: %d %q", r.status, r.body)
		}
	}
}

func TestProxyHTTP10Client(t *testing.T) {
	up := newUpstream(t, "a", nil)
	cfg := newCfg().service("s1", "", up.host, up.port).route("r1", "", "s1", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	conn, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /v HTTP/1.0\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	var e echo
	decodeInto(t, resp, &e)
	if got := http.Header(e.Headers).Get("Via"); got != "1 kong/3.9.1" {
		t.Errorf("Via for an HTTP/1.0 client = %q", got)
	}
}

func TestDebugHeaders(t *testing.T) {
	up := newUpstream(t, "a", nil)
	cfg := newCfg().service("s1", "svc-name", up.host, up.port).
		route("r1", "route-name", "s1", []string{"/d"}).
		route("r2", "", "", []string{"/noservice"}).c
	p := startProxy(t, Options{AllowDebugHeader: true}, cfg)
	r := p.get(t, "/d", map[string]string{"Kong-Debug": "1"})
	want := map[string]string{"Kong-Route-Id": uid("r1"), "Kong-Route-Name": "route-name",
		"Kong-Service-Id": uid("s1"), "Kong-Service-Name": "svc-name"}
	for k, v := range want {
		if got := r.header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	r = p.get(t, "/d", nil)
	if r.header.Get("Kong-Route-Id") != "" {
		t.Errorf("debug headers without Kong-Debug")
	}
	r = p.get(t, "/noservice", map[string]string{"Kong-Debug": "1"})
	if r.status != 503 || r.header.Get("Kong-Route-Id") != uid("r2") || r.header.Get("Kong-Route-Name") != "" ||
		r.header.Get("Kong-Service-Id") != "" {
		t.Errorf("route without service: %d %v", r.status, r.header)
	}

	// Not allowed by the options: ignored.
	p2 := startProxy(t, Options{}, cfg)
	if r := p2.get(t, "/d", map[string]string{"Kong-Debug": "1"}); r.header.Get("Kong-Route-Id") != "" {
		t.Errorf("debug headers while allow_debug_header is off")
	}
}

func decodeInto(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	b := new(strings.Builder)
	if _, err := bufio.NewReader(resp.Body).WriteTo(b); err != nil {
		t.Fatal(err)
	}
	if err := jsonUnmarshal(b.String(), v); err != nil {
		t.Fatalf("status %d body %q: %v", resp.StatusCode, b.String(), err)
	}
}

func TestStatsCount(t *testing.T) {
	up := newUpstream(t, "a", nil)
	cfg := newCfg().service("s1", "", up.host, up.port).route("r1", "", "s1", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	for i := 0; i < 5; i++ {
		p.get(t, "/", nil)
	}
	s := p.e.Stats()
	if s.TotalRequests != 5 || s.ConnectionsAccepted < 1 || s.ConnectionsHandled != s.ConnectionsAccepted || s.ConnectionsActive < 1 {
		t.Errorf("stats %+v", s)
	}
	p.c.CloseIdleConnections()
	waitFor(t, 2*time.Second, "connection close to be counted", func() bool { return p.e.Stats().ConnectionsActive == 0 })
}
