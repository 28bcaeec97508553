package router

import (
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

var (
	fuzzOnce   sync.Once
	fuzzRouter *Router
)

func fuzzRouterFor(t *testing.T) *Router {
	fuzzOnce.Do(func() {
		r, err := New(genConfig(rand.New(rand.NewPCG(3, 3)), 400))
		if err != nil {
			t.Fatal(err)
		}
		fuzzRouter = r
	})
	return fuzzRouter
}

// FuzzMatch: no panic on any request, and the index agrees with the linear
// reference.
func FuzzMatch(f *testing.F) {
	f.Add("GET", "h1.test", "/api/v1/users/7", true, "s1.test", "1")
	f.Add("POST", "a.h1.test:9000", "/a/../b/%2e%2E/c", false, "", "x")
	f.Add("", "", "", false, "", "")
	f.Add("PUT", "h2.x:", "%%32%65/..", true, "s2.y", "~*")
	f.Fuzz(func(t *testing.T, method, host, path string, https bool, sni, hv string) {
		r := fuzzRouterFor(t)
		scheme := "http"
		if https {
			scheme = "https"
		}
		req := &Request{Method: method, Host: host, Path: path, Scheme: scheme, SNI: sni, Port: 8000,
			Headers: hdrs{"x-a": {hv}, "x-b": {strings.ToUpper(hv)}}}
		var m, ml Match
		ok, okl := r.Match(req, &m), r.matchLinear(req, &ml)
		if ok != okl || !sameMatch(&m, &ml) {
			t.Fatalf("index %v %+v, linear %v %+v", ok, m, okl, ml)
		}
		if ok && m.UpstreamPath == "" {
			t.Fatalf("empty upstream path for %+v", req)
		}
	})
}

// hasDecodableTriplet reports whether s contains a %XX triplet that
// NormalizePath would rewrite (decode a non-reserved byte, or upper-case the
// hex of a reserved one).
func hasDecodableTriplet(s string) bool {
	return strings.IndexByte(s, '%') >= 0 && decodeUnreserved(s) != s
}

// FuzzNormalize: no panic; idempotent (except when decoding created a new
// triplet, e.g. "%2%61" -> "%2a", which Kong's single pass leaves as is); no "//" and no
// dot segments left in paths starting with '/'; the fast path agrees with
// the full algorithm.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"/", "/a/./b/../c", "//x//", "/%2e%2E/", "/%41%2f", "a/../b", "/.well-known", "%", "/%%41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		n1 := NormalizePath(p)
		if !hasDecodableTriplet(n1) {
			if n2 := NormalizePath(n1); n2 != n1 {
				t.Fatalf("not idempotent: %q -> %q -> %q", p, n1, n2)
			}
		}
		if strings.HasPrefix(p, "/") {
			if strings.Contains(n1, "//") || strings.Contains(n1, "/./") || strings.Contains(n1, "/../") ||
				strings.HasSuffix(n1, "/.") || strings.HasSuffix(n1, "/..") {
				t.Fatalf("%q -> %q keeps a dot segment or //", p, n1)
			}
			if n1 == "" || n1[0] != '/' {
				t.Fatalf("%q -> %q lost the leading slash", p, n1)
			}
		}
		if !needsNormalize(p) && n1 != p {
			t.Fatalf("fast path wrong for %q", p)
		}
		slow := p
		if strings.IndexByte(slow, '%') >= 0 {
			slow = decodeUnreserved(slow)
		}
		if p != "" && p != "/" && (strings.IndexByte(slow, '.') >= 0 || strings.Contains(slow, "//")) {
			slow = removeDotSegments(slow)
		}
		if slow != n1 {
			t.Fatalf("NormalizePath(%q) = %q, full algorithm %q", p, n1, slow)
		}
		_ = EscapePath(n1)
	})
}
