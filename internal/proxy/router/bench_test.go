package router

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/kongfb/kongfb/pkg/config"
)

// benchConfig builds a realistic mix of n routes over n/10 services:
// 55% exact host + prefix path (a third also with methods), 20% path only,
// 10% regex paths (one in ten of them, i.e. 0.5% of all routes, without
// any literal prefix, the others with a literal prefix or an alternation of
// literals),
// 10% wildcard host + path, 5% header-based. It returns requests that hit
// routes of every kind plus some misses.
func benchConfig(n int) (*config.Config, []*Request) {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	cfg := &config.Config{}
	nsvc := max(1, n/10)
	for i := 0; i < nsvc; i++ {
		cfg.Services = append(cfg.Services, &config.Service{ID: fmt.Sprintf("svc-%d", i), Enabled: true, Path: sp(fmt.Sprintf("/backend%d", i))})
	}
	nhosts := max(1, n/10)
	var reqs []*Request
	for i := 0; i < n; i++ {
		r := &config.Route{
			ID:        fmt.Sprintf("%08x-0000-4000-8000-%012x", rng.Uint32(), i),
			Protocols: []string{"http", "https"},
			StripPath: i%2 == 0,
			Service:   sp(fmt.Sprintf("svc-%d", i%nsvc)),
		}
		host := fmt.Sprintf("api%d.example.com", i%nhosts)
		var req *Request
		switch k := i % 20; {
		case k < 11:
			r.Hosts = []string{host}
			r.Paths = []string{fmt.Sprintf("/v%d/resource%d", i%3, i)}
			if k < 4 {
				r.Methods = []string{"GET", "POST"}
			}
			req = &Request{Method: "GET", Host: host, Path: fmt.Sprintf("/v%d/resource%d/items/42", i%3, i)}
		case k < 15:
			r.Paths = []string{fmt.Sprintf("/svc%d/", i)}
			req = &Request{Method: "GET", Host: "whatever.test", Path: fmt.Sprintf("/svc%d/list", i)}
		case k < 16:
			r.Paths = []string{fmt.Sprintf(`~/users%d/(?<id>\d+)/profile$`, i)}
			req = &Request{Method: "GET", Host: host, Path: fmt.Sprintf("/users%d/123/profile", i)}
		case k < 17 && i%200 == 16:
			// No literal prefix: tried for every request it could outrank.
			r.Paths = []string{fmt.Sprintf(`~/.+/legacy%d$`, i)}
			req = &Request{Method: "GET", Host: host, Path: fmt.Sprintf("/x/legacy%d", i)}
		case k < 17:
			r.Paths = []string{fmt.Sprintf(`~/(orders|carts)%d/\d+`, i)}
			req = &Request{Method: "GET", Host: host, Path: fmt.Sprintf("/orders%d/77", i)}
		case k < 19:
			r.Hosts = []string{fmt.Sprintf("*.tenant%d.example.net", i%nhosts)}
			r.Paths = []string{"/app"}
			req = &Request{Method: "GET", Host: fmt.Sprintf("acme.tenant%d.example.net", i%nhosts), Path: "/app/home"}
		default:
			r.Headers = map[string][]string{"x-route": {fmt.Sprintf("r%d", i)}}
			r.Paths = []string{"/hdr"}
			req = &Request{Method: "GET", Host: host, Path: "/hdr/x", Headers: hdrs{"x-route": {fmt.Sprintf("r%d", i)}}}
		}
		cfg.Routes = append(cfg.Routes, r)
		req.Scheme, req.Port = "http", 8000
		if req.Headers == nil {
			req.Headers = hdrs{"user-agent": {"bench"}}
		}
		reqs = append(reqs, req)
	}
	rng.Shuffle(len(reqs), func(i, j int) { reqs[i], reqs[j] = reqs[j], reqs[i] })
	if len(reqs) > 1000 {
		reqs = reqs[:1000]
	}
	// 10% misses.
	for i := 0; i < len(reqs)/10+1; i++ {
		reqs = append(reqs, &Request{Method: "GET", Host: "unknown.test", Path: fmt.Sprintf("/nothing/%d", i), Scheme: "http", Port: 8000, Headers: hdrs{}})
	}
	return cfg, reqs
}

func benchMatch(b *testing.B, n int, linear bool) {
	cfg, reqs := benchConfig(n)
	r, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	var m Match
	hits := 0
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := reqs[i%len(reqs)]
		var ok bool
		if linear {
			ok = r.matchLinear(req, &m)
		} else {
			ok = r.Match(req, &m)
		}
		if ok {
			hits++
		}
	}
	b.StopTimer()
	if b.N >= len(reqs) && hits == 0 {
		b.Fatal("no request matched")
	}
}

func BenchmarkMatch(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) { benchMatch(b, n, false) })
	}
}

// BenchmarkMatchLinear is the reference scan, for comparison with the index.
func BenchmarkMatchLinear(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) { benchMatch(b, n, true) })
	}
}

// BenchmarkMatchStaticPath measures the common case in isolation: exact
// host, normalised path, prefix route, upstream path differs (one alloc).
func BenchmarkMatchStaticPath(b *testing.B) {
	cfg, _ := benchConfig(10000)
	r, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	req := &Request{Method: "GET", Host: "api0.example.com", Path: "/v0/resource0/items/42", Scheme: "http", Port: 8000, Headers: hdrs{}}
	var m Match
	if !r.Match(req, &m) {
		b.Fatal("no match")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Match(req, &m)
	}
}

// BenchmarkMatchSamePath: the upstream path is the request path itself
// (service without path; a host-only route with strip_path, and a path
// route without it), so Match has nothing to build.
func BenchmarkMatchSamePath(b *testing.B) {
	cfg := &config.Config{
		Services: []*config.Service{{ID: "svc", Enabled: true}},
		Routes: []*config.Route{
			{ID: "host-only", Protocols: []string{"http"}, Hosts: []string{"api.example.com"}, StripPath: true, Service: sp("svc")},
			{ID: "path", Protocols: []string{"http"}, Paths: []string{"/app"}, Service: sp("svc")},
		},
	}
	r, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	for _, req := range []*Request{
		{Method: "GET", Host: "api.example.com", Path: "/v1/users/42"},
		{Method: "GET", Host: "other.test", Path: "/app/home"},
	} {
		req.Scheme, req.Port, req.Headers = "http", 8000, hdrs{}
		b.Run(req.Host, func(b *testing.B) {
			var m Match
			if !r.Match(req, &m) || m.UpstreamPath != req.Path {
				b.Fatalf("match: %+v", m)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r.Match(req, &m)
			}
		})
	}
}

func BenchmarkBuild(b *testing.B) {
	cfg, _ := benchConfig(10000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := New(cfg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, p := range []string{"/api/v1/users/42", "/api/./v1//users/%34%32"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				NormalizePath(p)
			}
		})
	}
}
