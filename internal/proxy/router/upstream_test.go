package router

import (
	"fmt"
	"testing"

	"github.com/kongfb/kongfb/pkg/config"
)

// pathRow is one row of Kong's spec/fixtures/router_path_handling_tests.lua
// (reference §1.7), v0 column. routePath "" means the route matches by host
// only; strip lists the strip_path values the row applies to; reqs maps
// request path → expected upstream path.
type pathRow struct {
	service   string
	routePath string
	strip     []bool
	reqs      [][2]string
}

var (
	both  = []bool{false, true}
	fOnly = []bool{false}
	tOnly = []bool{true}
)

func same(paths ...string) [][2]string {
	out := make([][2]string, len(paths))
	for i, p := range paths {
		out[i] = [2]string{p, p}
	}
	return out
}

func to(want string, reqs ...string) [][2]string {
	out := make([][2]string, len(reqs))
	for i, p := range reqs {
		out[i] = [2]string{p, want}
	}
	return out
}

var pathHandlingTable = []pathRow{
	{"/", "/", both, same("/", "/route", "/route/", "/routereq", "/route/req")},
	{"/", "/route", fOnly, same("/route", "/route/", "/routereq")},
	{"/", "/route", tOnly, [][2]string{{"/route", "/"}, {"/route/", "/"}, {"/routereq", "/req"}}},
	{"/", "/route/", fOnly, same("/route/", "/route/req")},
	{"/", "/route/", tOnly, [][2]string{{"/route/", "/"}, {"/route/req", "/req"}}},
	{"/srv", "/rou", fOnly, [][2]string{{"/roureq", "/srv/roureq"}}},
	{"/srv", "/rou", tOnly, [][2]string{{"/roureq", "/srv/req"}}},
	{"/srv/", "/rou", fOnly, [][2]string{{"/rou", "/srv/rou"}}},
	{"/srv/", "/rou", tOnly, [][2]string{{"/rou", "/srv"}}},
	{"/service", "/", both, [][2]string{
		{"/", "/service"},
		{"/route", "/service/route"},
		{"/route/", "/service/route/"},
		{"/routereq", "/service/routereq"},
		{"/route/req", "/service/route/req"},
	}},
	{"/service", "/route", fOnly, [][2]string{
		{"/route", "/service/route"},
		{"/route/", "/service/route/"},
		{"/routereq", "/service/routereq"},
	}},
	{"/service", "/route", tOnly, [][2]string{
		{"/route", "/service"},
		{"/route/", "/service/"},
		{"/routereq", "/service/req"},
	}},
	{"/service", "/route/", fOnly, [][2]string{
		{"/route/", "/service/route/"},
		{"/route/req", "/service/route/req"},
	}},
	{"/service", "/route/", tOnly, [][2]string{
		{"/route/", "/service/"},
		{"/route/req", "/service/req"},
	}},
	{"/service/", "/", both, [][2]string{
		{"/", "/service/"},
		{"/route", "/service/route"},
		{"/route/", "/service/route/"},
		{"/routereq", "/service/routereq"},
		{"/route/req", "/service/route/req"},
	}},
	{"/service/", "/route", fOnly, [][2]string{
		{"/route", "/service/route"},
		{"/route/", "/service/route/"},
		{"/routereq", "/service/routereq"},
	}},
	{"/service/", "/route", tOnly, [][2]string{
		{"/route", "/service"},
		{"/route/", "/service/"},
		{"/routereq", "/service/req"},
	}},
	{"/service/", "/route/", fOnly, [][2]string{
		{"/route/", "/service/route/"},
		{"/route/req", "/service/route/req"},
	}},
	{"/service/", "/route/", tOnly, [][2]string{
		{"/route/", "/service/"},
		{"/route/req", "/service/req"},
	}},
	{"/", "", both, same("/", "/route", "/route/")},
	{"/service", "", both, [][2]string{
		{"/", "/service"},
		{"/route", "/service/route"},
		{"/route/", "/service/route/"},
	}},
	{"/service/", "", both, [][2]string{
		{"/", "/service/"},
		{"/route", "/service/route"},
		{"/route/", "/service/route/"},
	}},
	// Dot-segment rows: "/route" is a plain string prefix of "/route./req".
	{"/service", "/route", tOnly, to("/service/req",
		"/route./req", "/route%2E/req", "/route%2e/req", "/route../req", "/route%2E%2E/req", "/route%2e%2E/req")},
	{"/service/", "/route", tOnly, to("/service/req",
		"/route./req", "/route%2E/req", "/route%2e/req", "/route../req", "/route%2E%2E/req", "/route%2e%2E/req")},
	{"/service", "/route", fOnly, to("/service/route./req", "/route./req", "/route%2E/req", "/route%2e/req")},
	{"/service/", "/route", fOnly, to("/service/route./req", "/route./req", "/route%2E/req", "/route%2e/req")},
	{"/service", "/route", fOnly, to("/service/route../req", "/route../req", "/route%2E%2E/req", "/route%2e%2E/req")},
	{"/service/", "/route", fOnly, to("/service/route../req", "/route../req", "/route%2E%2E/req", "/route%2e%2E/req")},
}

func TestUpstreamPathTable(t *testing.T) {
	n := 0
	for _, row := range pathHandlingTable {
		for _, strip := range row.strip {
			// path_handling v1 must be ignored (traditional_compatible).
			for _, handling := range []string{"v0", "v1"} {
				route := mk("r", func(r *config.Route) {
					r.StripPath = strip
					r.PathHandling = handling
					if row.routePath == "" {
						r.Hosts = []string{"h.test"}
					} else {
						r.Paths = []string{row.routePath}
					}
				})
				path := row.service
				rt, err := New(&config.Config{Services: []*config.Service{svc(&path)}, Routes: []*config.Route{route}})
				if err != nil {
					t.Fatal(err)
				}
				for _, rq := range row.reqs {
					name := fmt.Sprintf("service=%s route=%q strip=%v %s req=%s", row.service, row.routePath, strip, handling, rq[0])
					var m Match
					if !rt.Match(get("h.test", rq[0]), &m) {
						t.Errorf("%s: no match", name)
						continue
					}
					if m.UpstreamPath != rq[1] {
						t.Errorf("%s: upstream %q, want %q", name, m.UpstreamPath, rq[1])
					}
					n++
				}
			}
		}
	}
	if n < 150 {
		t.Fatalf("only %d table cases ran", n)
	}
}

func TestStrippedPrefix(t *testing.T) {
	cases := []struct {
		routePath string
		strip     bool
		req       string
		want      string
	}{
		{"/api", true, "/api/x", "/api"},
		{"/api", false, "/api/x", ""},
		{"/", true, "/x", ""}, // only "/" stripped
		{"", true, "/x", ""},  // host-only route: nothing stripped
		{`~/v\d+`, true, "/v12/x", "/v12"},
	}
	for _, tc := range cases {
		route := mk("r", func(r *config.Route) {
			r.StripPath = tc.strip
			r.Hosts = []string{"h.test"}
			if tc.routePath != "" {
				r.Paths = []string{tc.routePath}
			}
		})
		rt := build(t, route)
		var m Match
		if !rt.Match(get("h.test", tc.req), &m) || m.StrippedPrefix != tc.want {
			t.Errorf("%+v: stripped %q, want %q", tc, m.StrippedPrefix, tc.want)
		}
	}
}

func TestSanitizePostfix(t *testing.T) {
	for in, want := range map[string]string{"": "", ".": "", "..": "", "./a": "a", "../a": "a", ".a": ".a", "/a": "/a"} {
		if got := sanitizePostfix(in); got != want {
			t.Errorf("sanitizePostfix(%q) = %q, want %q", in, got, want)
		}
	}
}
