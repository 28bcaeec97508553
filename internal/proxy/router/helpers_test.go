package router

import (
	"testing"

	"github.com/kongfb/kongfb/pkg/config"
)

type hdrs map[string][]string

func (h hdrs) HeaderValues(n string) []string { return h[n] }

func sp(s string) *string { return &s }

// mk builds a route with Kong's schema defaults (protocols http/https,
// strip_path true) attached to service "svc".
func mk(id string, set func(r *config.Route)) *config.Route {
	r := &config.Route{
		ID:        id,
		Protocols: []string{"http", "https"},
		StripPath: true,
		Service:   sp("svc"),
	}
	if set != nil {
		set(r)
	}
	return r
}

func svc(path *string) *config.Service {
	return &config.Service{ID: "svc", Enabled: true, Protocol: "http", Host: "upstream", Port: 80, Path: path}
}

func build(t testing.TB, routes ...*config.Route) *Router {
	t.Helper()
	r, err := New(&config.Config{Services: []*config.Service{svc(nil)}, Routes: routes})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func get(host, path string) *Request {
	return &Request{Method: "GET", Host: host, Path: path, Scheme: "http", Port: 8000}
}

// matchID matches req with both the index and the linear reference and
// returns the matched route id ("" for no match), failing when they differ.
func matchID(t testing.TB, r *Router, req *Request) string {
	t.Helper()
	var m, ml Match
	ok := r.Match(req, &m)
	okl := r.matchLinear(req, &ml)
	if ok != okl || m.Route != ml.Route || m.UpstreamPath != ml.UpstreamPath {
		t.Fatalf("index and linear disagree for %+v: %v %+v vs %v %+v", req, ok, m.Route, okl, ml.Route)
	}
	if !ok {
		return ""
	}
	return m.Route.ID
}
