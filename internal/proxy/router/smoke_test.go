package router

import (
	"testing"

	"github.com/kongfb/kongfb/pkg/config"
)

func TestSmoke(t *testing.T) {
	p := func(s string) *string { return &s }
	cfg := &config.Config{
		Services: []*config.Service{{ID: "s1", Enabled: true, Path: p("/svc")}},
		Routes: []*config.Route{
			{ID: "r1", Paths: []string{"/api"}, StripPath: true, Service: p("s1"), Protocols: []string{"http"}},
			{ID: "r2", Paths: []string{"/api"}, Hosts: []string{"a.com"}, StripPath: false, Service: p("s1")},
		},
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var m Match
	if !r.Match(&Request{Method: "GET", Host: "b.com", Path: "/api/x", Scheme: "http", Port: 8000}, &m) {
		t.Fatal("no match")
	}
	if m.Route.ID != "r1" || m.UpstreamPath != "/svc/x" || m.StrippedPrefix != "/api" {
		t.Fatalf("%+v", m)
	}
	if !r.Match(&Request{Method: "GET", Host: "a.com:8000", Path: "/api/x", Scheme: "http", Port: 8000}, &m) || m.Route.ID != "r2" || m.UpstreamPath != "/svc/api/x" {
		t.Fatalf("%+v", m)
	}
}
