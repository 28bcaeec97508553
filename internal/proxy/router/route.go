package router

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/kongfb/kongfb/pkg/config"
)

type hostKind uint8

const (
	hostExact  hostKind = iota
	hostSuffix          // "*.example.com": value ".example.com"
	hostPrefix          // "example.*": value "example."
)

// hostMatcher is one entry of a route's `hosts` (or `snis`, with port 0).
type hostMatcher struct {
	kind  hostKind
	value string
	port  int // 0 = any destination port
}

func (h *hostMatcher) matchName(name string) bool {
	switch h.kind {
	case hostSuffix:
		return strings.HasSuffix(name, h.value)
	case hostPrefix:
		return strings.HasPrefix(name, h.value)
	}
	return name == h.value
}

// headerMatcher is one header name of a route's `headers`: values are OR-ed.
type headerMatcher struct {
	name    string           // lower-cased, '-' form (what Headers expects)
	values  []string         // ASCII-lower-cased exact values
	regexes []*regexp.Regexp // "~*" values, lower-cased like Kong does
}

// compiledRoute is one entry of the router. A Kong route whose paths mix
// regex and prefix paths, or prefix paths of different lengths, becomes one
// compiledRoute per group (Kong's split_routes_and_services_by_path) so that
// each group is prioritised on its own.
type compiledRoute struct {
	route   *config.Route
	service *config.Service
	id      string // effective id for the tie-break: route id, or uuid v5 of a split group
	rank    int    // position in priority order (0 = tried first)

	methods  []string
	hosts    []hostMatcher
	snis     []hostMatcher
	headers  []headerMatcher
	prefixes []string         // prefix paths, all of length prefixLen
	regexes  []*regexp.Regexp // regex paths, "^"-anchored
	needs    []string         // per regex: a literal every match contains ("" = none known)
	base     string           // service.path or "/"

	// Priority in the documented traditional_compatible order (§1.5).
	weight        int   // number of fields set among methods, hosts, headers, snis, paths
	plainHosts    bool  // has hosts, none with a wildcard
	headerCount   int   // capped at 255 like Kong
	regex         bool  // this group's paths are regexes
	regexPriority int64 // only meaningful when regex
	prefixLen     int   // only meaningful for prefix groups
}

// higher reports whether a is tried before b: documented priority first, then
// the lexicographically greater id (atc-router iterates its
// BTreeMap<(priority, uuid)> in reverse).
func higher(a, b *compiledRoute) bool {
	if a.weight != b.weight {
		return a.weight > b.weight
	}
	if a.plainHosts != b.plainHosts {
		return a.plainHosts
	}
	if a.headerCount != b.headerCount {
		return a.headerCount > b.headerCount
	}
	if a.regex != b.regex {
		return a.regex
	}
	if a.regex && a.regexPriority != b.regexPriority {
		return a.regexPriority > b.regexPriority
	}
	if a.prefixLen != b.prefixLen {
		return a.prefixLen > b.prefixLen
	}
	return a.id > b.id
}

func sortRoutes(rs []*compiledRoute) {
	sort.Slice(rs, func(i, j int) bool { return higher(rs[i], rs[j]) })
	for i, r := range rs {
		r.rank = i
	}
}

// splitNamespace is the uuid v5 namespace Kong uses for ids of split routes
// (kong/router/transform.lua).
var splitNamespace = [16]byte{0x7f, 0x14, 0x5b, 0xf9, 0x0d, 0xce, 0x4f, 0x91, 0x98, 0xeb, 0xde, 0xbb, 0xce, 0x4f, 0x9b, 0x6b}

// uuidV5 is RFC 4122 name-based (SHA-1) uuid, as resty.jit-uuid factory_v5.
func uuidV5(ns [16]byte, name string) string {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	sum := h.Sum(nil)
	sum[6] = sum[6]&0x0f | 0x50
	sum[8] = sum[8]&0x3f | 0x80
	var buf [36]byte
	hex.Encode(buf[0:8], sum[0:4])
	buf[8] = '-'
	hex.Encode(buf[9:13], sum[4:6])
	buf[13] = '-'
	hex.Encode(buf[14:18], sum[6:8])
	buf[18] = '-'
	hex.Encode(buf[19:23], sum[8:10])
	buf[23] = '-'
	hex.Encode(buf[24:36], sum[10:16])
	return string(buf[:])
}

// routeLabel names a route in error messages.
func routeLabel(r *config.Route) string {
	if r.Name != nil && *r.Name != "" {
		return fmt.Sprintf("route %q (%s)", *r.Name, r.ID)
	}
	return "route " + r.ID
}

// isHTTPRoute reports whether the route belongs to the http subsystem. Kong
// builds one router per subsystem; stream routes (tcp/tls/udp/
// tls_passthrough) never match HTTP traffic.
func isHTTPRoute(r *config.Route) bool {
	if len(r.Protocols) == 0 {
		return true // schema default ["http","https"]
	}
	for _, p := range r.Protocols {
		switch p {
		case "http", "https", "grpc", "grpcs":
			return true
		}
	}
	return false
}

// parseHostPort is Kong's split_host_port: split at the first ':' only when
// the rest is a number. ok=false when there is no port. A port that cannot be
// a TCP port yields -1 so that it never equals a route's port.
func parseHostPort(s string) (host string, port int, ok bool) {
	i := strings.IndexByte(s, ':')
	if i < 0 || i == len(s)-1 {
		return s, 0, false
	}
	n := 0
	for j := i + 1; j < len(s); j++ {
		c := s[j]
		if c < '0' || c > '9' {
			return s, 0, false
		}
		if n <= 65535 {
			n = n*10 + int(c-'0')
		}
	}
	if n > 65535 {
		n = -1
	}
	return s[:i], n, true
}

func compileHost(v string, allowPort bool) (hostMatcher, error) {
	h := hostMatcher{}
	name := v
	if allowPort {
		n, port, ok := parseHostPort(v)
		if ok {
			if port <= 0 {
				return h, fmt.Errorf("invalid port number in %q", v)
			}
			name, h.port = n, port
		}
	}
	switch {
	case name == "" || name == "*":
		return h, fmt.Errorf("invalid hostname %q", v)
	case name[0] == '*':
		h.kind, h.value = hostSuffix, name[1:]
	case name[len(name)-1] == '*':
		h.kind, h.value = hostPrefix, name[:len(name)-1]
	default:
		h.kind, h.value = hostExact, name
	}
	if strings.IndexByte(h.value, '*') >= 0 {
		return h, fmt.Errorf("invalid wildcard in %q: must have at most one wildcard", v)
	}
	return h, nil
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; 'A' <= c && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// compileRegexPath turns a Kong regex path ("~/users/\d+") into the
// expression the ATC router evaluates: "^" prepended (anchored at the start
// only, exactly as Kong concatenates it) and "?<" rewritten to "?P<".
func compileRegexPath(p string) (*regexp.Regexp, error) {
	expr := "^" + strings.ReplaceAll(p[1:], "?<", "?P<")
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("invalid regex %q: %w", p, err)
	}
	return re, nil
}

// compileRoute compiles one Kong route into one or more compiledRoutes.
func compileRoute(r *config.Route, svc *config.Service) ([]*compiledRoute, error) {
	label := routeLabel(r)
	if len(r.Sources) > 0 || len(r.Destinations) > 0 {
		return nil, fmt.Errorf("%s: sources/destinations are not supported on http routes in traditional_compatible mode", label)
	}
	c := &compiledRoute{route: r, service: svc, id: strings.ToLower(r.ID), base: "/"}
	if svc != nil && svc.Path != nil && *svc.Path != "" {
		c.base = *svc.Path
	}
	if len(r.Methods) > 0 {
		c.weight++
		c.methods = append([]string(nil), r.Methods...)
	}
	if len(r.Hosts) > 0 {
		c.weight++
		c.plainHosts = true
		for _, h := range r.Hosts {
			m, err := compileHost(h, true)
			if err != nil {
				return nil, fmt.Errorf("%s: hosts: %w", label, err)
			}
			if m.kind != hostExact {
				c.plainHosts = false
			}
			c.hosts = append(c.hosts, m)
		}
	}
	if len(r.SNIs) > 0 {
		c.weight++
		for _, s := range r.SNIs {
			// Kong drops the trailing dot of an FQDN SNI value.
			if len(s) > 1 && s[len(s)-1] == '.' {
				s = s[:len(s)-1]
			}
			m, err := compileHost(s, false)
			if err != nil {
				return nil, fmt.Errorf("%s: snis: %w", label, err)
			}
			c.snis = append(c.snis, m)
		}
	}
	if len(r.Headers) > 0 {
		c.weight++
		names := make([]string, 0, len(r.Headers))
		for n := range r.Headers {
			names = append(names, n)
		}
		sort.Strings(names) // deterministic evaluation order
		for _, n := range names {
			vals := r.Headers[n]
			if len(vals) == 0 {
				return nil, fmt.Errorf("%s: headers.%s: at least one value is required", label, n)
			}
			hm := headerMatcher{name: strings.ReplaceAll(lowerASCII(n), "_", "-")}
			for _, v := range vals {
				if strings.HasPrefix(v, "~*") {
					re, err := regexp.Compile(lowerASCII(v[2:]))
					if err != nil {
						return nil, fmt.Errorf("%s: headers.%s: invalid regex %q: %w", label, n, v, err)
					}
					hm.regexes = append(hm.regexes, re)
					continue
				}
				hm.values = append(hm.values, lowerASCII(v))
			}
			c.headers = append(c.headers, hm)
		}
		c.headerCount = min(len(r.Headers), 255)
	}
	if len(c.methods) == 0 && len(c.hosts) == 0 && len(c.snis) == 0 && len(c.headers) == 0 && len(r.Paths) == 0 {
		return nil, fmt.Errorf("%s: could not categorize route: one of methods, hosts, headers, paths or snis must be set", label)
	}
	if len(r.Paths) == 0 {
		return []*compiledRoute{c}, nil
	}
	c.weight++

	// Group paths: all regexes together, prefixes by length; keep the order
	// of first appearance for determinism. The group key is what Kong feeds
	// to uuid v5 ("true" for the regex group, else the prefix length).
	type group struct {
		key   string
		paths []string
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, p := range r.Paths {
		var key string
		switch {
		case strings.HasPrefix(p, "~"):
			key = "true"
		case strings.HasPrefix(p, "/"):
			key = strconv.Itoa(len(p))
		default:
			return nil, fmt.Errorf("%s: paths: %q should start with: / (fixed path) or ~/ (regex path)", label, p)
		}
		g := byKey[key]
		if g == nil {
			g = &group{key: key}
			byKey[key] = g
			groups = append(groups, g)
		}
		g.paths = append(g.paths, p)
	}
	out := make([]*compiledRoute, 0, len(groups))
	for _, g := range groups {
		gc := *c
		if len(r.Paths) > 1 {
			// Kong clones every route with more than one path, even when
			// all its paths land in one group.
			gc.id = uuidV5(splitNamespace, r.ID+"#"+g.key)
		}
		if g.key == "true" {
			gc.regex = true
			gc.regexPriority = r.RegexPriority
			for _, p := range g.paths {
				re, err := compileRegexPath(p)
				if err != nil {
					return nil, fmt.Errorf("%s: paths: %w", label, err)
				}
				gc.regexes = append(gc.regexes, re)
				gc.needs = append(gc.needs, requiredLiteral(re.String()))
			}
		} else {
			gc.prefixes = g.paths
			gc.prefixLen = len(g.paths[0])
		}
		out = append(out, &gc)
	}
	return out, nil
}

// reqInfo is the per-request view the predicates evaluate.
type reqInfo struct {
	method  string
	host    string
	port    int
	path    string // normalised
	https   bool
	sni     string
	headers Headers
}

// matchNonPath evaluates every predicate but the path one.
func (c *compiledRoute) matchNonPath(q *reqInfo) bool {
	if len(c.methods) > 0 {
		ok := false
		for _, m := range c.methods {
			if m == q.method {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	if len(c.hosts) > 0 {
		ok := false
		for i := range c.hosts {
			h := &c.hosts[i]
			if (h.port == 0 || h.port == q.port) && h.matchName(q.host) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	// SNIs only constrain https requests (Kong/kong#6425); an https request
	// without SNI has no tls.sni value and so matches none.
	if len(c.snis) > 0 && q.https {
		ok := false
		if q.sni != "" {
			for i := range c.snis {
				if c.snis[i].matchName(q.sni) {
					ok = true
					break
				}
			}
		}
		if !ok {
			return false
		}
	}
	for i := range c.headers {
		if !c.headers[i].match(q.headers) {
			return false
		}
	}
	return true
}

// matchPath evaluates the path predicate (true for routes without paths).
func (c *compiledRoute) matchPath(path string) bool {
	if c.regex {
		for i, re := range c.regexes {
			// The substring test is far cheaper than running the regex and
			// rejects most paths for regexes the index cannot narrow down.
			if need := c.needs[i]; need != "" && !strings.Contains(path, need) {
				continue
			}
			if re.MatchString(path) {
				return true
			}
		}
		return false
	}
	if c.prefixes == nil {
		return true
	}
	if len(path) < c.prefixLen {
		return false
	}
	head := path[:c.prefixLen]
	for _, p := range c.prefixes {
		if p == head {
			return true
		}
	}
	return false
}

// match evaluates all predicates, cheapest and most selective first: the
// prefix-path comparison, then methods/hosts/SNIs/headers, regexes last.
func (c *compiledRoute) match(q *reqInfo) bool {
	if c.regex {
		return c.matchNonPath(q) && c.matchPath(q.path)
	}
	return c.matchPath(q.path) && c.matchNonPath(q)
}

func (h *headerMatcher) match(hs Headers) bool {
	if hs == nil {
		return false
	}
	for _, v := range hs.HeaderValues(h.name) {
		for _, want := range h.values {
			if equalLower(v, want) {
				return true
			}
		}
		if len(h.regexes) > 0 {
			lv := strings.ToLower(v)
			for _, re := range h.regexes {
				if re.MatchString(lv) {
					return true
				}
			}
		}
	}
	return false
}

// equalLower reports whether lower(v) == want, want being already lower-cased.
// ASCII values are compared without allocating.
func equalLower(v, want string) bool {
	if len(v) != len(want) {
		// Unicode lower-casing can change the byte length.
		for i := 0; i < len(v); i++ {
			if v[i] >= 0x80 {
				return strings.ToLower(v) == want
			}
		}
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c >= 0x80 {
			return strings.ToLower(v) == want
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != want[i] {
			return false
		}
	}
	return true
}
