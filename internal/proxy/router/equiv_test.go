package router

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/kongfb/kongfb/pkg/config"
)

// Pools for random configurations: small enough that routes collide (same
// host, same prefix, equal priority) and requests often match several.
var (
	genHosts = []string{
		"h0.test", "h1.test", "h2.test", "h3.test", "H3.test",
		"*.test", "*.h1.test", "h2.*", "h0.test:8000", "*.h1.test:9000", "h4.*:8000",
	}
	genReqHosts = []string{
		"h0.test", "h1.test", "h2.test", "h3.test", "H3.test", "a.h1.test", "b.a.h1.test",
		"h2.example", "h4.x", "h0.test:8000", "h0.test:9000", "a.h1.test:9000", "other.test", "", "h2.test:80",
	}
	genSegs    = []string{"a", "b", "c", "api", "v1", "users", "x", "ab"}
	genRegexes = []string{
		`~/api/v\d+`, `~/users/\d+$`, `~/(a|b)/c`, `~/a|/b`, `~(?i)/A/B`, `~/x/[a-z]+/y`,
		`~/users/(?<id>\d+)`, `~/ab?/c`, `~/api/v1/users`, `~.*x`, `~/(orders|carts)/\d+`, `~/ab[cd]/x`,
	}
	genMethods = []string{"GET", "POST", "PUT"}
	genSNIs    = []string{"s1.test", "*.s.test", "s2.*"}
)

func pick[T any](rng *rand.Rand, xs []T) T { return xs[rng.IntN(len(xs))] }

func genPrefix(rng *rand.Rand) string {
	var b strings.Builder
	n := 1 + rng.IntN(3)
	for i := 0; i < n; i++ {
		b.WriteByte('/')
		b.WriteString(pick(rng, genSegs))
	}
	if rng.IntN(4) == 0 {
		b.WriteByte('/')
	}
	if rng.IntN(8) == 0 {
		return "/"
	}
	return b.String()
}

func genID(rng *rand.Rand) string {
	// A small alphabet makes equal-priority ties by id frequent.
	return fmt.Sprintf("%08x-0000-4000-8000-%012x", rng.IntN(1<<20), rng.IntN(1<<8))
}

func genConfig(rng *rand.Rand, n int) *config.Config {
	cfg := &config.Config{Services: []*config.Service{svc(sp("/svc")), {ID: "root", Enabled: true}}}
	for i := 0; i < n; i++ {
		r := &config.Route{ID: genID(rng), Protocols: []string{"http", "https"}, StripPath: rng.IntN(2) == 0}
		switch rng.IntN(3) {
		case 0:
			r.Service = sp("svc")
		case 1:
			r.Service = sp("root")
		}
		if rng.IntN(2) == 0 {
			for k := rng.IntN(3); k >= 0; k-- {
				r.Hosts = append(r.Hosts, pick(rng, genHosts))
			}
		}
		if rng.IntN(4) != 0 {
			for k := rng.IntN(3); k >= 0; k-- {
				if rng.IntN(4) == 0 {
					r.Paths = append(r.Paths, pick(rng, genRegexes))
				} else {
					r.Paths = append(r.Paths, genPrefix(rng))
				}
			}
			r.RegexPriority = int64(rng.IntN(5) - 1)
		}
		if rng.IntN(3) == 0 {
			r.Methods = append(r.Methods, pick(rng, genMethods))
		}
		if rng.IntN(5) == 0 {
			r.Headers = map[string][]string{"x-a": {pick(rng, []string{"1", "2", "~*^[0-9]$"})}}
			if rng.IntN(2) == 0 {
				r.Headers["X_B"] = []string{"B"}
			}
		}
		if rng.IntN(6) == 0 {
			r.SNIs = []string{pick(rng, genSNIs)}
		}
		if len(r.Hosts)+len(r.Paths)+len(r.Methods)+len(r.Headers)+len(r.SNIs) == 0 {
			r.Paths = []string{genPrefix(rng)}
		}
		cfg.Routes = append(cfg.Routes, r)
	}
	return cfg
}

func genRequest(rng *rand.Rand) *Request {
	var path string
	switch rng.IntN(6) {
	case 0:
		path = pick(rng, []string{"/", "/users/12", "/api/v2/x", "/a/c", "/b/c/d", "/A/b", "/x/abc/y", "/ab/c", "/c/x", "/orders/1", "/carts/x", "/abd/x", "/abc/x/y"})
	case 1:
		path = genPrefix(rng) + pick(rng, []string{"", "/", "/./a", "/../b", "%2Fz", "%61", "//c", "/%2e%2e/a"})
	default:
		path = genPrefix(rng) + pick(rng, []string{"", "x", "/1", "/users/7"})
	}
	req := &Request{
		Method: pick(rng, genMethods),
		Host:   pick(rng, genReqHosts),
		Path:   path,
		Scheme: pick(rng, []string{"http", "https"}),
		SNI:    pick(rng, []string{"", "s1.test", "a.s.test", "s2.x", "z.test"}),
		Port:   pick(rng, []int{8000, 9000}),
	}
	h := hdrs{}
	if rng.IntN(2) == 0 {
		h["x-a"] = []string{pick(rng, []string{"1", "2", "3", "x"})}
	}
	if rng.IntN(2) == 0 {
		h["x-b"] = []string{pick(rng, []string{"b", "B", "c"})}
	}
	req.Headers = h
	return req
}

func sameMatch(a, b *Match) bool {
	return a.Route == b.Route && a.Service == b.Service && a.UpstreamPath == b.UpstreamPath &&
		a.StrippedPrefix == b.StrippedPrefix && a.NormalizedPath == b.NormalizedPath &&
		slices.Equal(a.Captures, b.Captures)
}

// TestIndexEquivalence checks that the indexed Match returns exactly what the
// linear scan over the priority-sorted routes returns.
func TestIndexEquivalence(t *testing.T) {
	configs, requests := 40, 3000
	if testing.Short() {
		configs, requests = 8, 1000
	}
	matched := 0
	for seed := 0; seed < configs; seed++ {
		rng := rand.New(rand.NewPCG(uint64(seed), 42))
		n := []int{5, 30, 200, 600}[seed%4]
		r, err := New(genConfig(rng, n))
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		for i := 0; i < requests; i++ {
			req := genRequest(rng)
			var m, ml Match
			ok, okl := r.Match(req, &m), r.matchLinear(req, &ml)
			if ok != okl || !sameMatch(&m, &ml) {
				t.Fatalf("seed %d request %+v:\n index  %v %+v\n linear %v %+v", seed, req, ok, m, okl, ml)
			}
			if ok {
				matched++
			}
		}
	}
	// Guard against a generator that never matches anything.
	if matched < configs*requests/5 {
		t.Fatalf("only %d of %d requests matched", matched, configs*requests)
	}
}

// TestTrieSplitting exercises edge splits and lookups in a large bucket.
func TestTrieSplitting(t *testing.T) {
	var routes []*config.Route
	paths := []string{"/abc", "/abd", "/ab", "/a", "/abcdef", "/abx/y", "/b", "/", "/abc/"}
	for i := 0; i < 4; i++ {
		for j, p := range paths {
			routes = append(routes, mk(fmt.Sprintf("%02d-%02d", i, j), func(r *config.Route) {
				r.Paths = []string{p}
				r.Methods = []string{genMethods[i%3]}
			}))
		}
	}
	r := build(t, routes...)
	if r.idx.any.root == nil {
		t.Fatal("bucket should be a trie")
	}
	for _, p := range []string{"/", "/a", "/ab", "/abc", "/abcd", "/abcdefg", "/abc/", "/abx/y/z", "/abx", "/b/c", "/c"} {
		for _, m := range genMethods {
			req := get("h", p)
			req.Method = m
			matchID(t, r, req)
		}
	}
	if got := matchID(t, r, get("h", "/abcdefg")); got != "03-04" {
		t.Fatalf("/abcdefg matched %q", got)
	}
}

func TestAnchoredLiteralPrefixes(t *testing.T) {
	cases := []struct {
		expr string
		want []string // nil = not indexable
	}{
		{`^/users/\d+`, []string{"/users/"}},
		{`^/api`, []string{"/api"}},
		{`^/a|/b`, nil},
		{`^(?i)/a`, nil},
		{`^.*x`, nil},
		{`^(/a)`, []string{"/a"}},
		{`^/(orders|carts)/\d+`, []string{"/orders/", "/carts/"}},
		{`^/ab[cd]/x`, []string{"/abc/x", "/abd/x"}},
		{`^/v[0-9]+`, []string{"/v"}},
		{`^/x\w`, []string{"/x"}}, // class too large: the prefix stops before it
		{`^/(a|b)+/c`, []string{"/"}},
		{`^/x[a-z]`, []string{"/x"}},
		{`^/ü/x`, []string{"/ü/x"}},
		{`^(?:)`, nil},
	}
	for _, tc := range cases {
		got, ok := anchoredLiteralPrefixes(tc.expr)
		if ok != (tc.want != nil) || !slices.Equal(got, tc.want) {
			t.Errorf("anchoredLiteralPrefixes(%q) = %q %v, want %q", tc.expr, got, ok, tc.want)
		}
	}
}

func TestRequiredLiteral(t *testing.T) {
	cases := map[string]string{
		`^/.+/legacy5$`:     "/legacy5",
		`^/users/(\d+)/x`:   "/users/",
		`^/a|/bcd`:          "",
		`^(?i)/abc`:         "",
		`^/x(/abc)`:         "/abc",
		`^/x(/abc)?`:        "/x",
		`^/x`:               "/x",
		`^.*`:               "",
		`^/(?:ab|cd)/efg/h`: "/efg/h",
	}
	for expr, want := range cases {
		if got := requiredLiteral(expr); got != want {
			t.Errorf("requiredLiteral(%q) = %q, want %q", expr, got, want)
		}
	}
}

// TestConcurrentMatch: a Router is shared by all proxy goroutines (run with
// -race).
func TestConcurrentMatch(t *testing.T) {
	r, err := New(genConfig(rand.New(rand.NewPCG(9, 9)), 300))
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan string, 4)
	for g := 0; g < 4; g++ {
		go func(seed uint64) {
			rng := rand.New(rand.NewPCG(seed, 1))
			for i := 0; i < 500; i++ {
				req := genRequest(rng)
				var m, ml Match
				if ok, okl := r.Match(req, &m), r.matchLinear(req, &ml); ok != okl || !sameMatch(&m, &ml) {
					errs <- fmt.Sprintf("mismatch for %+v", req)
					return
				}
			}
			errs <- ""
		}(uint64(g))
	}
	for g := 0; g < 4; g++ {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}
