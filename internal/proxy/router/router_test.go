package router

import (
	"strings"
	"testing"

	"github.com/kongfb/kongfb/pkg/config"
)

// Each case has routes that all match the request; the rule under test decides.
func TestPriorityRules(t *testing.T) {
	cases := []struct {
		name   string
		routes []*config.Route
		req    *Request
		want   string
	}{
		{
			name: "1 match weight: paths+methods beats paths",
			routes: []*config.Route{
				mk("f-paths", func(r *config.Route) { r.Paths = []string{"/a/b/c"} }),
				mk("a-paths-methods", func(r *config.Route) { r.Paths = []string{"/a"}; r.Methods = []string{"GET"} }),
			},
			req: get("x", "/a/b/c"), want: "a-paths-methods",
		},
		{
			// §1.6 example: the 3.9.1 Lua would pick the regex route.
			name: "1 match weight beats regex (documented order)",
			routes: []*config.Route{
				mk("f-regex", func(r *config.Route) { r.Paths = []string{`~/users/\d+`} }),
				mk("a-prefix-get", func(r *config.Route) { r.Paths = []string{"/users"}; r.Methods = []string{"GET"} }),
			},
			req: get("x", "/users/123"), want: "a-prefix-get",
		},
		{
			// §1.6 example: the 3.9.1 Lua would pick the plain-host route.
			name: "1 match weight beats plain host (documented order)",
			routes: []*config.Route{
				mk("f-host", func(r *config.Route) { r.Hosts = []string{"example.com"} }),
				mk("a-path-get", func(r *config.Route) { r.Paths = []string{"/foo"}; r.Methods = []string{"GET"} }),
			},
			req: get("example.com", "/foo"), want: "a-path-get",
		},
		{
			name: "1 snis count in match weight even for http requests",
			routes: []*config.Route{
				mk("f-path", func(r *config.Route) { r.Paths = []string{"/a/b"} }),
				mk("a-path-sni", func(r *config.Route) { r.Paths = []string{"/a"}; r.SNIs = []string{"x.test"} }),
			},
			req: get("x", "/a/b"), want: "a-path-sni",
		},
		{
			name: "2 plain hosts beat wildcard hosts",
			routes: []*config.Route{
				mk("f-wild", func(r *config.Route) { r.Hosts = []string{"*.example.com"}; r.Paths = []string{"/long/path"} }),
				mk("a-plain", func(r *config.Route) { r.Hosts = []string{"api.example.com"}; r.Paths = []string{"/"} }),
			},
			req: get("api.example.com", "/long/path"), want: "a-plain",
		},
		{
			name: "2 a single wildcard entry makes the route non-plain",
			routes: []*config.Route{
				mk("f-mixed", func(r *config.Route) {
					r.Hosts = []string{"api.example.com", "*.test"}
					r.Paths = []string{"/long/path"}
				}),
				mk("a-plain", func(r *config.Route) { r.Hosts = []string{"api.example.com"}; r.Paths = []string{"/"} }),
			},
			req: get("api.example.com", "/long/path"), want: "a-plain",
		},
		{
			name: "3 more header names win",
			routes: []*config.Route{
				mk("f-one", func(r *config.Route) { r.Headers = map[string][]string{"x-a": {"1"}} }),
				mk("a-two", func(r *config.Route) { r.Headers = map[string][]string{"x-a": {"1"}, "x-b": {"2"}} }),
			},
			req:  &Request{Method: "GET", Host: "x", Path: "/", Scheme: "http", Port: 80, Headers: hdrs{"x-a": {"1"}, "x-b": {"2"}}},
			want: "a-two",
		},
		{
			name: "3 header count beats regex",
			routes: []*config.Route{
				mk("f-regex-1h", func(r *config.Route) { r.Paths = []string{"~/a"}; r.Headers = map[string][]string{"x-a": {"1"}} }),
				mk("a-prefix-2h", func(r *config.Route) {
					r.Paths = []string{"/"}
					r.Headers = map[string][]string{"x-a": {"1"}, "x-b": {"2"}}
				}),
			},
			req:  &Request{Method: "GET", Host: "x", Path: "/a", Scheme: "http", Port: 80, Headers: hdrs{"x-a": {"1"}, "x-b": {"2"}}},
			want: "a-prefix-2h",
		},
		{
			name: "4 regex path beats longer prefix path",
			routes: []*config.Route{
				mk("f-prefix", func(r *config.Route) { r.Paths = []string{"/api/v1/users/long"} }),
				mk("a-regex", func(r *config.Route) { r.Paths = []string{`~/api/v\d`} }),
			},
			req: get("x", "/api/v1/users/long"), want: "a-regex",
		},
		{
			name: "4 higher regex_priority wins among regex routes",
			routes: []*config.Route{
				mk("f-rp0", func(r *config.Route) { r.Paths = []string{"~/a/b"} }),
				mk("a-rp5", func(r *config.Route) { r.Paths = []string{"~/a/.*"}; r.RegexPriority = 5 }),
			},
			req: get("x", "/a/b"), want: "a-rp5",
		},
		{
			name: "4 negative regex_priority loses",
			routes: []*config.Route{
				mk("f-neg", func(r *config.Route) { r.Paths = []string{"~/a"}; r.RegexPriority = -1 }),
				mk("a-zero", func(r *config.Route) { r.Paths = []string{"~/a"} }),
			},
			req: get("x", "/a"), want: "a-zero",
		},
		{
			name: "4 regex_priority is ignored for prefix paths",
			routes: []*config.Route{
				mk("f-short-rp100", func(r *config.Route) { r.Paths = []string{"/abc"}; r.RegexPriority = 100 }),
				mk("a-long", func(r *config.Route) { r.Paths = []string{"/abcd"} }),
			},
			req: get("x", "/abcd"), want: "a-long",
		},
		{
			name: "5 longest prefix wins",
			routes: []*config.Route{
				mk("f-short", func(r *config.Route) { r.Paths = []string{"/a"} }),
				mk("a-long", func(r *config.Route) { r.Paths = []string{"/a/b"} }),
			},
			req: get("x", "/a/b/c"), want: "a-long",
		},
		{
			name: "6 tie: greater id first",
			routes: []*config.Route{
				mk("aaaaaaaa-0000-4000-8000-000000000000", func(r *config.Route) { r.Paths = []string{"/a"} }),
				mk("bbbbbbbb-0000-4000-8000-000000000000", func(r *config.Route) { r.Paths = []string{"/a"} }),
			},
			req: get("x", "/a"), want: "bbbbbbbb-0000-4000-8000-000000000000",
		},
		{
			name: "6 tie: greater id first regardless of config order",
			routes: []*config.Route{
				mk("bbbbbbbb-0000-4000-8000-000000000000", func(r *config.Route) { r.Paths = []string{"/a"} }),
				mk("aaaaaaaa-0000-4000-8000-000000000000", func(r *config.Route) { r.Paths = []string{"/a"} }),
			},
			req: get("x", "/a"), want: "bbbbbbbb-0000-4000-8000-000000000000",
		},
		{
			// The /a/b/c group of "split" outranks /a/b; without splitting
			// the route would be ranked by one path only.
			name: "split: each prefix length is ranked on its own (long group)",
			routes: []*config.Route{
				mk("split", func(r *config.Route) { r.Paths = []string{"/a", "/a/b/c"} }),
				mk("mid", func(r *config.Route) { r.Paths = []string{"/a/b"} }),
			},
			req: get("x", "/a/b/c/d"), want: "split",
		},
		{
			name: "split: each prefix length is ranked on its own (short group)",
			routes: []*config.Route{
				mk("split", func(r *config.Route) { r.Paths = []string{"/a", "/a/b/c"} }),
				mk("mid", func(r *config.Route) { r.Paths = []string{"/a/b"} }),
			},
			req: get("x", "/a/b/x"), want: "mid",
		},
		{
			name: "split: regex group of a mixed route outranks prefixes",
			routes: []*config.Route{
				mk("mixed", func(r *config.Route) { r.Paths = []string{"/z", `~/a/\d+`} }),
				mk("long", func(r *config.Route) { r.Paths = []string{"/a/1/long"} }),
			},
			req: get("x", "/a/1/long"), want: "mixed",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := build(t, tc.routes...)
			if got := matchID(t, r, tc.req); got != tc.want {
				t.Fatalf("matched %q, want %q", got, tc.want)
			}
			// The outcome must not depend on the configuration order.
			rev := make([]*config.Route, len(tc.routes))
			for i, rt := range tc.routes {
				rev[len(rev)-1-i] = rt
			}
			if got := matchID(t, build(t, rev...), tc.req); got != tc.want {
				t.Fatalf("reversed config: matched %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSplitIDs(t *testing.T) {
	// RFC 4122 / Python uuid.uuid5(NAMESPACE_DNS, "python.org").
	dns := [16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}
	if got, want := uuidV5(dns, "python.org"), "886313e1-3b8a-5372-9b90-0c9aee199e5d"; got != want {
		t.Fatalf("uuidV5 = %s, want %s", got, want)
	}
	r := build(t,
		mk("11111111-1111-4111-8111-111111111111", func(r *config.Route) { r.Paths = []string{"/a", "/bb", "~/c", "/d", "~/e"} }),
		mk("22222222-2222-4222-8222-222222222222", func(r *config.Route) { r.Paths = []string{"/x", "/y"} }),
		mk("33333333-3333-4333-8333-333333333333", func(r *config.Route) { r.Paths = []string{"/z"} }),
	)
	if r.Len() != 3 {
		t.Fatalf("Len = %d", r.Len())
	}
	ids := map[string]bool{}
	for _, c := range r.routes {
		ids[c.id] = true
	}
	want := []string{
		uuidV5(splitNamespace, "11111111-1111-4111-8111-111111111111#2"),
		uuidV5(splitNamespace, "11111111-1111-4111-8111-111111111111#3"),
		uuidV5(splitNamespace, "11111111-1111-4111-8111-111111111111#true"),
		// more than one path, one group: Kong still clones it with a new id
		uuidV5(splitNamespace, "22222222-2222-4222-8222-222222222222#2"),
		"33333333-3333-4333-8333-333333333333",
	}
	if len(ids) != len(want) || len(r.routes) != len(want) {
		t.Fatalf("got ids %v", ids)
	}
	for _, w := range want {
		if !ids[w] {
			t.Fatalf("missing id %s in %v", w, ids)
		}
	}
}

func TestHosts(t *testing.T) {
	r := build(t,
		mk("exact", func(r *config.Route) { r.Hosts = []string{"example.com"} }),
		mk("suffix", func(r *config.Route) { r.Hosts = []string{"*.example.com"} }),
		mk("prefix", func(r *config.Route) { r.Hosts = []string{"example.*"} }),
		mk("port", func(r *config.Route) { r.Hosts = []string{"ported.test:8443"} }),
		mk("wport", func(r *config.Route) { r.Hosts = []string{"*.wild.test:9000"} }),
	)
	cases := []struct {
		host string
		port int
		want string
	}{
		{"example.com", 80, "exact"},
		{"example.com:1234", 80, "exact"}, // an entry without port matches any port
		{"Example.com", 80, ""},           // case-sensitive (as Kong)
		{"a.example.com", 80, "suffix"},
		{"a.b.example.com", 80, "suffix"},
		{"xexample.com", 80, ""},
		{"example.org", 80, "prefix"},
		{"example.co.uk", 80, "prefix"},
		{"www.example.org", 80, ""},
		{"ported.test:8443", 80, "port"},
		{"ported.test", 8443, "port"}, // no port in Host: the listening port
		{"ported.test", 443, ""},
		{"ported.test:443", 8443, ""},
		{"a.wild.test", 9000, "wport"},
		{"a.wild.test:9000", 1, "wport"},
		{"a.wild.test:9001", 9000, ""},
		{"example.com:abc", 80, "prefix"}, // not a port: the whole value is the host
		{"", 80, ""},
	}
	for _, tc := range cases {
		req := &Request{Method: "GET", Host: tc.host, Path: "/", Scheme: "http", Port: tc.port}
		if got := matchID(t, r, req); got != tc.want {
			t.Errorf("Host %q port %d: matched %q, want %q", tc.host, tc.port, got, tc.want)
		}
	}
}

func TestParseHostPort(t *testing.T) {
	cases := []struct {
		in   string
		host string
		port int
		ok   bool
	}{
		{"a.test", "a.test", 0, false},
		{"a.test:80", "a.test", 80, true},
		{"a.test:", "a.test:", 0, false},
		{"a.test:8x", "a.test:8x", 0, false},
		{"[::1]:80", "[::1]:80", 0, false}, // Kong splits at the first ':' only
		{"a.test:99999999999999999999", "a.test", -1, true},
	}
	for _, tc := range cases {
		h, p, ok := parseHostPort(tc.in)
		if h != tc.host || p != tc.port || ok != tc.ok {
			t.Errorf("parseHostPort(%q) = %q %d %v", tc.in, h, p, ok)
		}
	}
}

func TestMethods(t *testing.T) {
	r := build(t, mk("gp", func(r *config.Route) { r.Methods = []string{"GET", "POST"} }))
	for m, want := range map[string]string{"GET": "gp", "POST": "gp", "PUT": "", "get": ""} {
		req := get("x", "/")
		req.Method = m
		if got := matchID(t, r, req); got != want {
			t.Errorf("%s: matched %q, want %q", m, got, want)
		}
	}
}

func TestHeaders(t *testing.T) {
	r := build(t,
		mk("exact", func(r *config.Route) { r.Headers = map[string][]string{"X-Version": {"V1", "v2"}} }),
		mk("regex", func(r *config.Route) { r.Headers = map[string][]string{"x_api": {"~*^Beta-[0-9]+$"}} }),
		mk("both", func(r *config.Route) {
			r.Headers = map[string][]string{"x-a": {"1"}, "x-b": {"~*b"}}
		}),
	)
	cases := []struct {
		h    hdrs
		want string
	}{
		{hdrs{"x-version": {"v1"}}, "exact"},
		{hdrs{"x-version": {"V2"}}, "exact"},
		{hdrs{"x-version": {"v3", "v2"}}, "exact"}, // any request value may match
		{hdrs{"x-version": {"v1 "}}, ""},
		{hdrs{"x-api": {"BETA-12"}}, "regex"}, // route name '_' form, values lower-cased
		{hdrs{"x-api": {"beta-x"}}, ""},
		{hdrs{"x-a": {"1"}, "x-b": {"ABC"}}, "both"}, // un-anchored regex search
		{hdrs{"x-a": {"1"}}, ""},                     // names are AND-ed
		{hdrs{"x-version": {"\u212a"}}, ""},          // non-ASCII value, no panic
		{nil, ""},
	}
	for _, tc := range cases {
		req := get("x", "/")
		if tc.h != nil {
			req.Headers = tc.h
		}
		if got := matchID(t, r, req); got != tc.want {
			t.Errorf("%v: matched %q, want %q", tc.h, got, tc.want)
		}
	}
}

func TestSNIs(t *testing.T) {
	r := build(t,
		mk("sni", func(r *config.Route) { r.SNIs = []string{"api.test."}; r.Paths = []string{"/"} }),
		mk("wild", func(r *config.Route) { r.SNIs = []string{"*.wild.test"}; r.Paths = []string{"/"} }),
	)
	cases := []struct {
		scheme, sni, want string
	}{
		{"http", "", "wild"}, // not checked for http: both match, "wild" has the greater id
		{"http", "other.test", "wild"},
		{"https", "api.test", "sni"}, // trailing dot of the route value dropped
		{"https", "a.wild.test", "wild"},
		{"https", "other.test", ""},
		{"https", "", ""}, // https without SNI matches no sni route
	}
	for _, tc := range cases {
		req := &Request{Method: "GET", Host: "h", Path: "/", Scheme: tc.scheme, SNI: tc.sni, Port: 443}
		if got := matchID(t, r, req); got != tc.want {
			t.Errorf("%s sni %q: matched %q, want %q", tc.scheme, tc.sni, got, tc.want)
		}
	}
}

func TestRegexPaths(t *testing.T) {
	p := func(s string) *string { return &s }
	cfg := &config.Config{
		Services: []*config.Service{svc(p("/svc"))},
		Routes: []*config.Route{
			mk("users", func(r *config.Route) { r.Paths = []string{`~/users/(?<id>\d+)`} }),
			mk("alt", func(r *config.Route) { r.Paths = []string{`~/alt|/other`}; r.StripPath = false }),
			mk("nocap", func(r *config.Route) { r.Paths = []string{`~/files/\w+`}; r.StripPath = false }),
		},
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var m Match
	if !r.Match(get("x", "/users/123/profile"), &m) || m.Route.ID != "users" {
		t.Fatalf("users: %+v", m)
	}
	if m.UpstreamPath != "/svc/profile" || m.StrippedPrefix != "/users/123" {
		t.Fatalf("users strip: %+v", m)
	}
	if id, ok := m.NamedCapture("id"); !ok || id != "123" || len(m.Captures) != 2 || m.Captures[0] != "/users/123" {
		t.Fatalf("captures: %q %v %v", id, ok, m.Captures)
	}
	// Anchored at the start only.
	if matchID(t, r, get("x", "/v1/users/123")) != "" {
		t.Fatal("regex must be anchored at the start")
	}
	// Kong prepends "^" without grouping: "^/alt|/other" finds /other anywhere.
	if got := matchID(t, r, get("x", "/x/other")); got != "alt" {
		t.Fatalf("alternation: %q", got)
	}
	if !r.Match(get("x", "/files/abc"), &m) || m.Captures != nil || m.UpstreamPath != "/svc/files/abc" {
		t.Fatalf("nocap: %+v", m)
	}
}

func TestNormalizePath(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{"/", "/"},
		{"/plain/path", "/plain/path"},
		{"/%41%62%63", "/Abc"},         // unreserved decoded
		{"/a%20b", "/a b"},             // "other" decoded
		{"/a%2fb", "/a%2Fb"},           // reserved kept, hex upper-cased
		{"/a%3a%3A%25", "/a%3A%3A%25"}, // ':' and '%' are reserved
		{"/%7e%2D%5f", "/~-_"},
		{"/a%zz%4", "/a%zz%4"}, // invalid triplets kept
		{"/%%41", "/%A"},       // scanning resumes after a lone '%'
		{"/a/./b", "/a/b"},     // dot segments
		{"/a/../b", "/b"},      // parent segment
		{"/../a", "/a"},        // cannot climb above the root
		{"/a/b/..", "/a/"},     // trailing parent
		{"/a/.", "/a/"},        // trailing dot
		{"/a/%2e%2E/b", "/b"},  // "/%2e./" is "/../"
		{"/a/.b/..c", "/a/.b/..c"},
		{"//a///b//", "/a/b/"}, // merged slashes
		{"/a//../b", "/b"},     // "//" merged first, then ".." drops "/a"
		{"/.well-known/x", "/.well-known/x"},
		{"a/../b", "/b"},
	}
	for _, tc := range cases {
		if got := NormalizePath(tc.in); got != tc.want {
			t.Errorf("NormalizePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestEscapePath(t *testing.T) {
	cases := []struct{ in, want string }{
		{"/a b", "/a%20b"},
		{"/a%2Fb", "/a%2Fb"},
		{"/ü", "/%C3%BC"},
		{"/!#$&'()*+,/:;=?@[]-_.~AZaz09", "/!#$&'()*+,/:;=?@[]-_.~AZaz09"},
		{"/\"<>\\^`{|}", "/%22%3C%3E%5C%5E%60%7B%7C%7D"},
	}
	for _, tc := range cases {
		if got := EscapePath(tc.in); got != tc.want {
			t.Errorf("EscapePath(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRequestPathNormalisedForMatching(t *testing.T) {
	r := build(t, mk("api", func(r *config.Route) { r.Paths = []string{"/api/v1"}; r.StripPath = false }))
	var m Match
	for _, p := range []string{"/api/v1/x", "//api//v1/x", "/%61pi/v1/x", "/api/v2/../v1/x", "/x/../api/./v1/x"} {
		if !r.Match(get("h", p), &m) || m.NormalizedPath != "/api/v1/x" || m.UpstreamPath != "/api/v1/x" {
			t.Errorf("%s: %v %+v", p, m.Route != nil, m)
		}
	}
	if r.Match(get("h", "/api%2Fv1/x"), &m) {
		t.Error("an encoded slash must not match a path separator")
	}
	if !r.Match(get("h", "/api/v1/a%20b"), &m) || m.UpstreamPath != "/api/v1/a%20b" || m.NormalizedPath != "/api/v1/a b" {
		t.Errorf("space: %+v", m)
	}
}

func TestServiceHandling(t *testing.T) {
	disabled := &config.Service{ID: "off", Enabled: false}
	cfg := &config.Config{
		Services: []*config.Service{svc(nil), disabled},
		Routes: []*config.Route{
			mk("to-disabled", func(r *config.Route) { r.Paths = []string{"/d"}; r.Service = sp("off") }),
			mk("no-service", func(r *config.Route) { r.Paths = []string{"/n"}; r.Service = nil }),
			mk("stream", func(r *config.Route) { r.Protocols = []string{"tcp"}; r.Paths = nil; r.SNIs = []string{"s.test"} }),
			mk("grpc", func(r *config.Route) { r.Protocols = []string{"grpc"}; r.Paths = []string{"/g"}; r.StripPath = false }),
		},
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Len() != 2 {
		t.Fatalf("Len = %d, want 2", r.Len())
	}
	if got := matchID(t, r, get("h", "/d")); got != "" {
		t.Errorf("route of a disabled service matched")
	}
	var m Match
	if !r.Match(get("h", "/n/x"), &m) || m.Service != nil || m.Route.ID != "no-service" || m.UpstreamPath != "/x" {
		t.Errorf("no-service: %+v", m)
	}
	if got := matchID(t, r, get("h", "/g.Svc/M")); got != "grpc" {
		t.Errorf("grpc: %q", got)
	}
	empty, err := New(nil)
	if err != nil || empty.Len() != 0 || empty.Match(get("h", "/"), &m) {
		t.Errorf("nil config: %v %+v", err, m)
	}
}

func TestNewErrors(t *testing.T) {
	cases := []struct {
		name  string
		route *config.Route
		want  []string
	}{
		{"bad regex", mk("r1", func(r *config.Route) { r.Name = sp("bad"); r.Paths = []string{"~/a(b"} }), []string{`"bad"`, "r1", "~/a(b"}},
		{"bad header regex", mk("r2", func(r *config.Route) { r.Headers = map[string][]string{"x": {"~*("}} }), []string{"r2", "headers.x"}},
		{"nothing to match", mk("r3", nil), []string{"r3", "could not categorize"}},
		{"bad path", mk("r4", func(r *config.Route) { r.Paths = []string{"api"} }), []string{"r4", `"api"`}},
		{"missing service", mk("r5", func(r *config.Route) { r.Paths = []string{"/"}; r.Service = sp("nope") }), []string{"r5", "nope"}},
		{"bad host", mk("r6", func(r *config.Route) { r.Hosts = []string{"a.*.b"} }), []string{"r6", "a.*.b"}},
		{"bad port", mk("r7", func(r *config.Route) { r.Hosts = []string{"a:0"} }), []string{"r7", "a:0"}},
		{"sources", mk("r8", func(r *config.Route) { r.Paths = []string{"/"}; r.Sources = []config.CIDRPort{{IP: sp("10.0.0.0/8")}} }), []string{"r8", "sources"}},
		{"empty header values", mk("r9", func(r *config.Route) { r.Headers = map[string][]string{"x": {}} }), []string{"r9", "headers.x"}},
	}
	for _, tc := range cases {
		_, err := New(&config.Config{Services: []*config.Service{svc(nil)}, Routes: []*config.Route{tc.route}})
		if err == nil {
			t.Errorf("%s: no error", tc.name)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q does not mention %q", tc.name, err, w)
			}
		}
	}
}

// A reused Match must not keep fields of a previous match.
func TestMatchResetsOut(t *testing.T) {
	r := build(t,
		mk("re", func(r *config.Route) { r.Paths = []string{`~/(\d+)`} }),
		mk("plain", func(r *config.Route) { r.Paths = []string{"/a"} }),
	)
	var m Match
	if !r.Match(get("h", "/1"), &m) || m.Captures == nil {
		t.Fatalf("%+v", m)
	}
	if !r.Match(get("h", "/a"), &m) || m.Captures != nil || m.Route.ID != "plain" {
		t.Fatalf("%+v", m)
	}
	if r.Match(get("h", "/zzz"), &m) || m.Route != nil {
		t.Fatalf("%+v", m)
	}
}
