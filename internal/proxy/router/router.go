// Package router matches HTTP requests to Kong routes with the semantics of
// Kong 3.9's default `traditional_compatible` router flavor:
//
//   - request values: the path is normalised like Kong (NormalizePath), the
//     Host header is split at ':' only when a numeric port follows (the
//     listening port is used otherwise), host names compare case-sensitively,
//     header values compare lower-cased, SNIs are checked only for https;
//   - per route, fields are AND-ed and the values of a field OR-ed; wildcard
//     hosts/SNIs ("*.x" suffix, "x.*" prefix), "host:port" entries, regex
//     paths ("~" prefix, anchored at the start only) and "~*" header regexes;
//   - routes whose paths mix regexes and prefixes of different lengths are
//     split into one entry per group, with Kong's uuid v5 ids;
//   - priority follows the DOCUMENTED order (match weight, plain hosts,
//     header count, regex + regex_priority, prefix length, then the greater
//     id first), not the 32-bit shift artefact of the 3.9.1 Lua code;
//   - the upstream path is built with path_handling "v0" — the only
//     behaviour of the ATC flavors: a route's `path_handling: v1` is ignored
//     exactly as Kong ignores it in traditional_compatible.
//
// A Router is immutable after New and safe for concurrent use.
package router

import (
	"fmt"

	"github.com/kongfb/kongfb/pkg/config"
)

// Headers gives access to the request headers.
type Headers interface {
	// HeaderValues returns all values of a header, given its lower-cased
	// name in '-' form (e.g. "x-api-version"). nil when absent.
	HeaderValues(lowerName string) []string
}

// Request carries the values the router matches on.
type Request struct {
	Method  string
	Host    string // raw Host header (may carry :port)
	Path    string // raw request path without the query string; the router normalises it like Kong
	Scheme  string // "http" | "https"
	SNI     string
	Port    int // listening port: the destination port when Host carries none
	Headers Headers
}

// Match is the result of a successful match. To avoid copies its strings
// may share memory with Request.Path (e.g. NormalizedPath, StrippedPrefix,
// Captures, and UpstreamPath when it equals the request path): a caller that
// passes unsafe views of reusable buffers must copy them before reusing the
// buffers.
type Match struct {
	Route   *config.Route
	Service *config.Service // nil => the route has no service (proxy answers 503)
	// UpstreamPath is the path (no query) to send upstream: strip_path +
	// service.path + path_handling v0 per Kong's table, already escaped like
	// Kong's escape() (a space goes out as %20); send it verbatim.
	UpstreamPath string
	// StrippedPrefix is the matched prefix removed by strip_path, for
	// X-Forwarded-Prefix; "" when nothing (or only "/") was stripped.
	StrippedPrefix string
	// NormalizedPath is the normalised request path the route matched on.
	NormalizedPath string
	// Captures is set when the route matched through a regex path that has
	// capture groups: Captures[0] is the whole match, Captures[i] group i
	// ("" when the group did not participate). nil otherwise.
	Captures []string
	// CaptureNames[i] is the name of group i ("" when unnamed); shared with
	// the router, do not modify. nil when Captures is nil.
	CaptureNames []string
}

// NamedCapture returns the value of the named capture group of a regex path
// match (Kong's uri_captures[name]).
func (m *Match) NamedCapture(name string) (string, bool) {
	for i, n := range m.CaptureNames {
		if n == name && n != "" && i < len(m.Captures) {
			return m.Captures[i], true
		}
	}
	return "", false
}

// Router is a compiled, immutable set of routes.
type Router struct {
	routes  []*compiledRoute // in priority order
	nRoutes int              // Kong routes (before path splitting)
	idx     *index
}

// New compiles the http routes of cfg. Routes whose service is disabled are
// left out (like Kong); routes without service are kept. Stream routes are
// ignored. The error names the route and the bad value.
func New(cfg *config.Config) (*Router, error) {
	r := &Router{}
	if cfg == nil {
		r.idx = buildIndex(nil)
		return r, nil
	}
	services := make(map[string]*config.Service, len(cfg.Services))
	for _, s := range cfg.Services {
		if s != nil {
			services[s.ID] = s
		}
	}
	for _, rt := range cfg.Routes {
		if rt == nil || !isHTTPRoute(rt) {
			continue
		}
		var svc *config.Service
		if rt.Service != nil && *rt.Service != "" {
			svc = services[*rt.Service]
			if svc == nil {
				return nil, fmt.Errorf("%s: service %s not found", routeLabel(rt), *rt.Service)
			}
			if !svc.Enabled {
				continue
			}
		}
		crs, err := compileRoute(rt, svc)
		if err != nil {
			return nil, err
		}
		r.routes = append(r.routes, crs...)
		r.nRoutes++
	}
	sortRoutes(r.routes)
	r.idx = buildIndex(r.routes)
	return r, nil
}

// Len returns the number of Kong routes in the router (a route split into
// several path groups counts once).
func (r *Router) Len() int { return r.nRoutes }

func (r *Router) prepare(req *Request, q *reqInfo) {
	q.method = req.Method
	q.path = NormalizePath(req.Path)
	host, port, ok := parseHostPort(req.Host)
	if !ok {
		port = req.Port
	}
	q.host, q.port = host, port
	q.https = req.Scheme == "https"
	q.sni = req.SNI
	q.headers = req.Headers
}

// Match finds the highest-priority route matching req and fills out. It
// returns false (and leaves out zeroed) when no route matches. It does not
// allocate unless the path needs normalising, the upstream path differs from
// the request path, or a regex route must report its match.
func (r *Router) Match(req *Request, out *Match) bool {
	var q reqInfo
	r.prepare(req, &q)
	best := r.idx.find(&q)
	if best == nil {
		*out = Match{}
		return false
	}
	r.fill(best, &q, out)
	return true
}

// matchLinear is the reference implementation: try every route in priority
// order. Used by tests to check the index.
func (r *Router) matchLinear(req *Request, out *Match) bool {
	var q reqInfo
	r.prepare(req, &q)
	for _, c := range r.routes {
		if c.match(&q) {
			r.fill(c, &q, out)
			return true
		}
	}
	*out = Match{}
	return false
}

func (r *Router) fill(c *compiledRoute, q *reqInfo, out *Match) {
	*out = Match{Route: c.route, Service: c.service, NormalizedPath: q.path}
	strip := c.route.StripPath
	prefix := "" // matched path part; "" = none (Kong's nil)
	switch {
	case c.regex:
		for _, re := range c.regexes {
			if !strip && re.NumSubexp() == 0 {
				break
			}
			loc := re.FindStringSubmatchIndex(q.path)
			if loc == nil {
				continue
			}
			prefix = q.path[loc[0]:loc[1]]
			if n := re.NumSubexp(); n > 0 {
				caps := make([]string, n+1)
				for i := 0; i <= n; i++ {
					if loc[2*i] >= 0 {
						caps[i] = q.path[loc[2*i]:loc[2*i+1]]
					}
				}
				out.Captures = caps
				out.CaptureNames = re.SubexpNames()
			}
			break
		}
	case c.prefixes != nil:
		prefix = q.path[:c.prefixLen]
	}
	if !strip || prefix == "" {
		// Kong: match_t.prefix is nil unless strip_path matched a path; the
		// postfix is then computed as if "/" had been stripped.
		out.UpstreamPath = UpstreamPath(c.base, q.path, "/", strip)
		return
	}
	if prefix != "/" {
		out.StrippedPrefix = prefix
	}
	out.UpstreamPath = UpstreamPath(c.base, q.path, prefix, strip)
}
