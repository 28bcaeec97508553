package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
)

func TestResponseTypeNegotiation(t *testing.T) {
	cases := []struct {
		accept string
		want   mimeKind
	}{
		{"", mimeJSON},
		{"*/*", mimeJSON},
		{"text/plain", mimePlain},
		{"text/html", mimeHTML},
		{"application/xml", mimeXML},
		{"application/json", mimeJSON},
		{"text/*", mimePlain},
		{"application/*", mimeJSON},
		{"image/png", mimeJSON},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", mimeHTML},
		{"application/xml;q=0.5, text/plain;q=0.9", mimePlain},
		{"text/plain;q=0, text/html;q=0.1", mimeHTML},
		{"text/plain; charset=utf-8", mimePlain},
		{"text/html;level=1;q=0.4, application/xml", mimeXML},
		{"text/plain;q=0.900, text/html;q=0.9", mimePlain}, // equal q: the first wins
		{"Text/HTML", mimeJSON},                            // Lua table keys are case-sensitive
		{"garbage", mimeJSON},
	}
	for _, c := range cases {
		if got := responseType(c.accept); got != c.want {
			t.Errorf("responseType(%q) = %v, want %v", c.accept, got, c.want)
		}
	}
	if got := errorMimeForNginx("", ""); got != mimePlain {
		t.Errorf("nginx default = %v, want text/plain", got)
	}
	if got := errorMimeForNginx("", "application/json"); got != mimeJSON {
		t.Errorf("nginx from content-type = %v", got)
	}
	if got := errorMimeForNginx("", "application/x-www-form-urlencoded"); got != mimeJSON {
		t.Errorf("unknown content-type = %v, want JSON (Kong's get_mime_type default)", got)
	}
	if got := errorMimeForNginx("text/html", "application/json"); got != mimeHTML {
		t.Errorf("Accept wins over Content-Type: %v", got)
	}
}

func TestKongErrorBodies(t *testing.T) {
	cfg := newCfg().
		route("r-nosvc", "", "", []string{"/nosvc"}).
		route("r-https", "", "", []string{"/secure"}, func(r *config.Route) { r.Protocols = []string{"https"} }).
		c
	p := startProxy(t, Options{}, cfg)

	r := p.get(t, "/nothing/here", nil)
	rid := r.header.Get("X-Kong-Request-Id")
	if !reqIDRe.MatchString(rid) {
		t.Fatalf("request id %q", rid)
	}
	want := "{\n  \"message\":\"no Route matched with those values\",\n  \"request_id\":\"" + rid + "\"\n}"
	if r.status != 404 || r.body != want {
		t.Errorf("404 body = %q, want %q", r.body, want)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("404 content-type %q", ct)
	}
	if r.header.Get("Server") != "kong/3.9.1" || r.header.Get("Via") != "" {
		t.Errorf("kong-generated headers: %v", r.header)
	}
	if _, err := strconv.Atoi(r.header.Get("X-Kong-Response-Latency")); err != nil {
		t.Errorf("X-Kong-Response-Latency = %q", r.header.Get("X-Kong-Response-Latency"))
	}

	r = p.get(t, "/nothing", map[string]string{"Accept": "text/plain"})
	rid = r.header.Get("X-Kong-Request-Id")
	if r.body != "no Route matched with those values\nrequest_id: "+rid+"\n" ||
		r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("text/plain 404: %q %q", r.header.Get("Content-Type"), r.body)
	}
	r = p.get(t, "/nothing", map[string]string{"Accept": "text/html"})
	rid = r.header.Get("X-Kong-Request-Id")
	wantHTML := "<!doctype html>\n<html>\n  <head>\n    <meta charset=\"utf-8\">\n    <title>Error</title>\n  </head>\n  <body>\n    <h1>Error</h1>\n    <p>no Route matched with those values.</p>\n    <p>request_id: " + rid + "</p>\n  </body>\n</html>\n"
	if r.body != wantHTML || r.header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("html 404: %q", r.body)
	}
	r = p.get(t, "/nothing", map[string]string{"Accept": "application/xml"})
	rid = r.header.Get("X-Kong-Request-Id")
	wantXML := "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<error>\n  <message>no Route matched with those values</message>\n  <requestid>" + rid + "</requestid>\n</error>\n"
	if r.body != wantXML {
		t.Errorf("xml 404: %q", r.body)
	}

	r = p.get(t, "/nosvc", nil)
	rid = r.header.Get("X-Kong-Request-Id")
	if r.status != 503 || r.body != "{\n  \"message\":\"no Service found with those values\",\n  \"request_id\":\""+rid+"\"\n}" {
		t.Errorf("503 no service: %d %q", r.status, r.body)
	}

	r = p.get(t, "/secure", nil)
	rid = r.header.Get("X-Kong-Request-Id")
	if r.status != 426 || r.body != "{\n  \"message\":\"Please use HTTPS protocol\",\n  \"request_id\":\""+rid+"\"\n}" {
		t.Errorf("426: %d %q", r.status, r.body)
	}
	if r.header.Get("Upgrade") != "TLS/1.2, HTTP/1.1" || !strings.EqualFold(r.header.Get("Connection"), "Upgrade") {
		t.Errorf("426 headers: %v", r.header)
	}
}

func TestHTTPSRedirects(t *testing.T) {
	b := newCfg()
	for _, code := range []int{301, 302, 307, 308} {
		c := code
		b.route("r"+strconv.Itoa(c), "", "", []string{"/r" + strconv.Itoa(c)}, func(r *config.Route) {
			r.Protocols = []string{"https"}
			r.HTTPSRedirectStatusCode = c
		})
	}
	p := startProxy(t, Options{}, b.c)
	for _, code := range []int{301, 302, 307, 308} {
		r := p.get(t, "/r"+strconv.Itoa(code)+"/x?a=1&b", map[string]string{"Host": "Shop.Example:8000"})
		if r.status != code || r.body != "" {
			t.Errorf("%d: got %d %q", code, r.status, r.body)
		}
		if loc := r.header.Get("Location"); loc != "https://shop.example/r"+strconv.Itoa(code)+"/x?a=1&b" {
			t.Errorf("%d: Location %q", code, loc)
		}
	}
}

func TestUpstreamFailures(t *testing.T) {
	slow := newUpstream(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
	})
	dead := closedAddr(t)
	dh, dp := splitAddr(t, dead)
	cfg := newCfg().
		service("s-dead", "", dh, dp, func(s *config.Service) { s.Retries = 0 }).
		route("r-dead", "", "s-dead", []string{"/dead"}).
		service("s-slow", "", slow.host, slow.port, func(s *config.Service) { s.ReadTimeout = 100; s.Retries = 0 }).
		route("r-slow", "", "s-slow", []string{"/slow"}).
		upstream("u-empty", "empty.upstream").
		service("s-empty", "", "empty.upstream", 80).
		route("r-empty", "", "s-empty", []string{"/empty"}).
		service("s-nxdomain", "", "no-such-host.test", 80).
		route("r-nx", "", "s-nxdomain", []string{"/nx"}).
		c
	p := startProxy(t, Options{}, cfg)
	p.e.dns.lookupFn = func(host string) ([]netip.Addr, error) {
		return nil, errNameResolution
	}

	r := p.get(t, "/dead", nil)
	rid := r.header.Get("X-Kong-Request-Id")
	if r.status != 502 || r.body != "An invalid response was received from the upstream server\nrequest_id: "+rid+"\n" ||
		r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("refused: %d %q %q", r.status, r.header.Get("Content-Type"), r.body)
	}
	if r.header.Get("Via") != "1.1 kong/3.9.1" || r.header.Get("Server") != "kong/3.9.1" || r.header.Get("X-Kong-Upstream-Latency") == "" {
		t.Errorf("502 headers: %v", r.header)
	}
	r = p.get(t, "/dead", map[string]string{"Accept": "application/json"})
	rid = r.header.Get("X-Kong-Request-Id")
	if r.body != "{\n  \"message\":\"An invalid response was received from the upstream server\",\n  \"request_id\":\""+rid+"\"\n}" {
		t.Errorf("502 json: %q", r.body)
	}

	start := time.Now()
	r = p.get(t, "/slow", nil)
	rid = r.header.Get("X-Kong-Request-Id")
	if r.status != 504 || r.body != "The upstream server is timing out\nrequest_id: "+rid+"\n" {
		t.Errorf("read timeout: %d %q", r.status, r.body)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("read timeout took %v", d)
	}

	r = p.get(t, "/empty", nil)
	rid = r.header.Get("X-Kong-Request-Id")
	if r.status != 503 || r.body != "{\n  \"message\":\"failure to get a peer from the ring-balancer\",\n  \"request_id\":\""+rid+"\"\n}" {
		t.Errorf("no targets: %d %q", r.status, r.body)
	}
	r = p.get(t, "/nx", nil)
	rid = r.header.Get("X-Kong-Request-Id")
	if r.status != 503 || r.body != "{\n  \"message\":\"name resolution failed\",\n  \"request_id\":\""+rid+"\"\n}" {
		t.Errorf("dns failure: %d %q", r.status, r.body)
	}
}

// TestConnectTimeout uses an https service whose upstream accepts TCP but
// never answers the TLS handshake: the handshake is part of connecting.
func TestConnectTimeout(t *testing.T) {
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
			defer c.Close()
		}
	}()
	h, port := splitAddr(t, ln.Addr().String())
	cfg := newCfg().service("s", "", h, port, func(s *config.Service) {
		s.Protocol = "https"
		s.ConnectTimeout = 100
		s.Retries = 1
	}).route("r", "", "s", []string{"/"}).c
	p := startProxy(t, Options{}, cfg)
	start := time.Now()
	r := p.get(t, "/", nil)
	if r.status != 504 || !strings.HasPrefix(r.body, "The upstream server is timing out\n") {
		t.Errorf("connect timeout: %d %q", r.status, r.body)
	}
	if d := time.Since(start); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("two tries of 100ms took %v", d)
	}
}

// TestServeTLS: a crypto/tls listener serves https: https-only routes
// proxy, X-Forwarded-Proto is https and the SNI takes part in routing.
func TestServeTLS(t *testing.T) {
	up := newUpstream(t, "a", nil)
	certSrv := httptest.NewTLSServer(http.NotFoundHandler())
	tlsCfg := certSrv.TLS.Clone()
	certSrv.Close()
	cfg := newCfg().service("s", "", up.host, up.port).
		route("r", "", "s", []string{"/secure"}, func(r *config.Route) { r.Protocols = []string{"https"} }).
		route("r-sni", "", "s", []string{"/sni"}, func(r *config.Route) {
			r.Protocols = []string{"https"}
			r.SNIs = []string{"sni.example"}
		}).c
	e := New(Options{})
	if err := e.Apply(cfg, "h"); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.Serve(tls.NewListener(ln, tlsCfg)) }()
	t.Cleanup(func() { _ = e.Shutdown(context.Background()) })
	client := func(sni string) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: sni}}}
	}
	resp, err := client("").Get("https://" + ln.Addr().String() + "/secure/x")
	if err != nil {
		t.Fatal(err)
	}
	var e1 echo
	decodeInto(t, resp, &e1)
	if got := http.Header(e1.Headers).Get("X-Forwarded-Proto"); got != "https" || e1.URI != "/x" {
		t.Errorf("over TLS: proto %q uri %q", got, e1.URI)
	}
	resp, err = client("other.example").Get("https://" + ln.Addr().String() + "/sni")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("wrong SNI matched: %d", resp.StatusCode)
	}
	resp, err = client("sni.example").Get("https://" + ln.Addr().String() + "/sni")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("SNI route: %d", resp.StatusCode)
	}
}

func TestHTTPSUpstream(t *testing.T) {
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{Name: "tls", Method: r.Method, URI: r.RequestURI, Host: r.Host, Headers: r.Header})
	}))
	t.Cleanup(ts.Close)
	h, port := splitAddr(t, ts.Listener.Addr().String())
	cfg := newCfg().
		service("s", "", h, port, func(s *config.Service) { s.Protocol = "https" }).
		route("r", "", "s", []string{"/tls"}).
		service("s-verify", "", h, port, func(s *config.Service) { s.Protocol = "https"; s.TLSVerify = bp(true); s.Retries = 0 }).
		route("r2", "", "s-verify", []string{"/verify"}).
		c
	p := startProxy(t, Options{}, cfg)
	r := p.get(t, "/tls/x", nil)
	e := decodeEcho(t, r)
	if r.status != 200 || e.Name != "tls" || e.Host != h+":"+strconv.Itoa(port) {
		t.Errorf("https upstream: %d %+v", r.status, e)
	}
	if r := p.get(t, "/verify", nil); r.status != 502 {
		t.Errorf("tls_verify against a self-signed upstream: %d (want 502)", r.status)
	}
}
