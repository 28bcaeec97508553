package proxy

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kongfb/kongfb/pkg/config"
)

// benchUpstream serves a fixed body with fasthttp on 127.0.0.1:0.
func benchUpstream(b *testing.B, size int) (host string, port int) {
	b.Helper()
	body := bytes.Repeat([]byte("x"), size)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain")
		ctx.SetBody(body)
	}}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	a := ln.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

func benchClient(addr string) *fasthttp.HostClient {
	return &fasthttp.HostClient{Addr: addr, MaxConns: 1024, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
}

func runBench(b *testing.B, hc *fasthttp.HostClient, uri string, size int) {
	b.ReportAllocs()
	b.SetBytes(int64(size))
	// 16 concurrent clients per GOMAXPROCS: throughput, like wrk -c, rather
	// than the latency of one request at a time.
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			req.SetRequestURI(uri)
			req.Header.SetHost("bench.test")
			if err := hc.Do(req, resp); err != nil {
				b.Error(err)
				return
			}
			if resp.StatusCode() != 200 || len(resp.Body()) != size {
				b.Errorf("status %d, %d bytes", resp.StatusCode(), len(resp.Body()))
				return
			}
		}
	})
}

// BenchmarkProxy measures client → engine → fasthttp upstream over
// loopback TCP with keep-alive on both sides. allocs/op counts the whole
// process: the benchmark client, the engine and the upstream server.
func BenchmarkProxy(b *testing.B) {
	for _, size := range []int{100, 4096} {
		b.Run("body="+strconv.Itoa(size), func(b *testing.B) {
			host, port := benchUpstream(b, size)
			cfg := newCfg().service("s", "bench", host, port).
				route("r", "bench", "s", []string{"/"}, func(r *config.Route) { r.StripPath = false }).c
			e := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err := e.Apply(cfg, "bench"); err != nil {
				b.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			go func() { _ = e.Serve(ln) }()
			b.Cleanup(func() { _ = e.Shutdown(b.Context()) })
			runBench(b, benchClient(ln.Addr().String()), "/bench/item?id=42", size)
		})
	}
}

// BenchmarkDirect is the baseline: the same client straight to the upstream.
func BenchmarkDirect(b *testing.B) {
	for _, size := range []int{100, 4096} {
		b.Run("body="+strconv.Itoa(size), func(b *testing.B) {
			host, port := benchUpstream(b, size)
			runBench(b, benchClient(net.JoinHostPort(host, strconv.Itoa(port))), "/bench/item?id=42", size)
		})
	}
}

// BenchmarkHandler runs the engine's handler alone on a reused
// RequestCtx against a real upstream, to count the engine's own
// allocations per request.
func BenchmarkHandler(b *testing.B) {
	host, port := benchUpstream(b, 100)
	cfg := newCfg().service("s", "bench", host, port).
		route("r", "bench", "s", []string{"/"}, func(r *config.Route) { r.StripPath = false }).c
	e := New(Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := e.Apply(cfg, "bench"); err != nil {
		b.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	raddr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
	laddr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8000}
	ctx.Init2(fakeConn{laddr: laddr, raddr: raddr}, nil, false)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.Request.Header.SetMethod("GET")
		ctx.Request.SetRequestURI("/bench/item?id=42")
		ctx.Request.Header.SetHost("bench.test")
		ctx.Request.Header.Set("User-Agent", "bench")
		e.handle(&ctx)
		if ctx.Response.StatusCode() != 200 {
			b.Fatalf("status %d %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}

type fakeConn struct {
	net.Conn
	laddr, raddr net.Addr
}

func (c fakeConn) LocalAddr() net.Addr  { return c.laddr }
func (c fakeConn) RemoteAddr() net.Addr { return c.raddr }
