package router

import (
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// The index narrows the routes a request has to be checked against, without
// changing the outcome: every route that could match the request is in at
// least one of the candidate lists visited, each list is sorted by rank, and
// the winner is the lowest-ranked (= highest-priority) route that fully
// matches in any list. So the result is exactly the linear scan's
// (matchLinear), which the randomized test checks.
//
// Level 1 is the host: exact host names in a map, "*.x" wildcards in a map of
// suffixes (looked up at every '.' of the request host), "x.*" wildcards in a
// map of prefixes, and routes without hosts (or with unusual wildcards) in
// one "any host" bucket. Level 2, inside each bucket, is the path: a radix
// trie keyed by prefix paths (and by the literal prefixes of anchored regex
// paths), plus a list of the other regex routes and one of path-less routes.
// Small buckets are a flat list, which is faster than a trie walk.

const flatMax = 12 // buckets with at most this many routes are scanned flat

type index struct {
	exact  map[string]*bucket
	suffix map[string]*bucket // key ".example.com"
	prefix map[string]*bucket // key "example."
	any    *bucket
}

type bucket struct {
	members []*compiledRoute // all routes, rank order, during the build

	flat   []*compiledRoute // set when the bucket is small
	root   *trieNode        // prefix paths and literal regex prefixes
	regex  []*compiledRoute // regex routes without a usable literal prefix
	noPath []*compiledRoute
}

type trieNode struct {
	label    string // edge label from the parent
	routes   []*compiledRoute
	first    string // first byte of each child's label, same order as children
	children []*trieNode
}

func appendOnce(list []*compiledRoute, c *compiledRoute) []*compiledRoute {
	// Routes are added in rank order, so a duplicate can only be the last.
	if n := len(list); n > 0 && list[n-1] == c {
		return list
	}
	return append(list, c)
}

func bucketFor(m map[string]*bucket, key string) *bucket {
	b := m[key]
	if b == nil {
		b = &bucket{}
		m[key] = b
	}
	return b
}

func buildIndex(routes []*compiledRoute) *index {
	x := &index{
		exact:  map[string]*bucket{},
		suffix: map[string]*bucket{},
		prefix: map[string]*bucket{},
		any:    &bucket{},
	}
	for _, c := range routes { // rank order
		if len(c.hosts) == 0 {
			x.any.members = appendOnce(x.any.members, c)
			continue
		}
		for _, h := range c.hosts {
			var b *bucket
			switch {
			case h.kind == hostExact:
				b = bucketFor(x.exact, h.value)
			case h.kind == hostSuffix && strings.HasPrefix(h.value, "."):
				b = bucketFor(x.suffix, h.value)
			case h.kind == hostPrefix && strings.HasSuffix(h.value, "."):
				b = bucketFor(x.prefix, h.value)
			default:
				// Not a whole-label wildcard (the schema forbids it): the
				// dot-based lookups would miss it, so check it everywhere.
				b = x.any
			}
			b.members = appendOnce(b.members, c)
		}
	}
	x.any.build()
	for _, m := range []map[string]*bucket{x.exact, x.suffix, x.prefix} {
		for _, b := range m {
			b.build()
		}
	}
	return x
}

func (b *bucket) build() {
	if len(b.members) <= flatMax {
		b.flat = b.members
		b.members = nil
		return
	}
	b.root = &trieNode{}
	for _, c := range b.members {
		switch {
		case c.regex:
			for _, re := range c.regexes {
				lits, ok := anchoredLiteralPrefixes(re.String())
				if !ok {
					// Tried for every path; no need to file the others.
					b.regex = appendOnce(b.regex, c)
					break
				}
				for _, lit := range lits {
					b.root.insert(lit, c)
				}
			}
		case c.prefixes != nil:
			for _, p := range c.prefixes {
				b.root.insert(p, c)
			}
		default:
			b.noPath = appendOnce(b.noPath, c)
		}
	}
	b.members = nil
}

// maxPrefixSet bounds the number of trie keys one regex path is filed under;
// maxClassExpand the size of a character class expanded into literals (a
// wider class ends the prefix: filing "/x[a-z]" under 26 keys gains little).
const (
	maxPrefixSet   = 16
	maxClassExpand = 4
)

// anchoredLiteralPrefixes returns a set of literals such that every match of
// expr (as compiled, i.e. "^" + the route's regex) starts with one of them,
// derived from the leading literal / small alternation / small character
// class parts of an anchored concatenation: "^/users/\d+" → {"/users/"},
// "^/(orders|carts)/\d+" → {"/orders/", "/carts/"}. ok=false means no
// usable set (an empty prefix, or a regex that is not anchored as a whole:
// Kong does not group the user's regex, so "^/a|/b" can match "/b"
// anywhere); such a regex must be tried for every path.
func anchoredLiteralPrefixes(expr string) ([]string, bool) {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, false
	}
	re = re.Simplify()
	subs := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		subs = re.Sub
	}
	if len(subs) < 2 || subs[0].Op != syntax.OpBeginText {
		return nil, false
	}
	set := []string{""}
	for _, sub := range subs[1:] {
		exp, ok := expandFinite(sub, maxPrefixSet)
		if !ok || len(set)*len(exp) > maxPrefixSet {
			break
		}
		set = concatAll(set, exp)
	}
	for _, p := range set {
		if p == "" {
			return nil, false
		}
	}
	return set, true
}

// requiredLiteral returns the longest case-sensitive literal that is a
// mandatory element of expr's top-level concatenation, so that every match
// contains it ("" when there is none of at least two bytes).
func requiredLiteral(expr string) string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return ""
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat {
		return ""
	}
	best := ""
	for _, sub := range re.Sub {
		for sub.Op == syntax.OpCapture {
			sub = sub.Sub[0]
		}
		if sub.Op != syntax.OpLiteral || sub.Flags&syntax.FoldCase != 0 {
			continue
		}
		if lit := string(sub.Rune); len(lit) > len(best) {
			best = lit
		}
	}
	if len(best) < 2 {
		return ""
	}
	return best
}

// expandFinite returns every string re can match when that is a finite set of
// at most limit strings; ok=false otherwise.
func expandFinite(re *syntax.Regexp, limit int) ([]string, bool) {
	switch re.Op {
	case syntax.OpEmptyMatch:
		return []string{""}, true
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		return []string{string(re.Rune)}, true
	case syntax.OpCharClass:
		var out []string
		for i := 0; i+1 < len(re.Rune); i += 2 {
			for r := re.Rune[i]; r <= re.Rune[i+1]; r++ {
				if len(out) >= min(limit, maxClassExpand) || !utf8.ValidRune(r) {
					return nil, false
				}
				out = append(out, string(r))
			}
		}
		return out, len(out) > 0
	case syntax.OpCapture:
		return expandFinite(re.Sub[0], limit)
	case syntax.OpAlternate:
		var out []string
		for _, sub := range re.Sub {
			exp, ok := expandFinite(sub, limit)
			if !ok || len(out)+len(exp) > limit {
				return nil, false
			}
			out = append(out, exp...)
		}
		return out, true
	case syntax.OpConcat:
		out := []string{""}
		for _, sub := range re.Sub {
			exp, ok := expandFinite(sub, limit)
			if !ok || len(out)*len(exp) > limit {
				return nil, false
			}
			out = concatAll(out, exp)
		}
		return out, true
	}
	return nil, false
}

func commonPrefixLen(a, b string) int {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	return i
}

// insert adds c to the node for key (relative to n), splitting edges as
// needed.
func (n *trieNode) insert(key string, c *compiledRoute) {
	for {
		if key == "" {
			n.routes = appendOnce(n.routes, c)
			return
		}
		i := strings.IndexByte(n.first, key[0])
		if i < 0 {
			n.first += key[:1]
			n.children = append(n.children, &trieNode{label: key, routes: []*compiledRoute{c}})
			return
		}
		child := n.children[i]
		cp := commonPrefixLen(key, child.label)
		if cp < len(child.label) {
			// Split child: mid takes the common part, child keeps the rest.
			mid := &trieNode{label: child.label[:cp], first: child.label[cp : cp+1], children: []*trieNode{child}}
			child.label = child.label[cp:]
			n.children[i] = mid
			child = mid
		}
		n, key = child, key[cp:]
	}
}

// scan returns the first route of list (rank order) that matches q, unless
// best already outranks it.
func scan(list []*compiledRoute, q *reqInfo, best *compiledRoute) *compiledRoute {
	for _, c := range list {
		if best != nil && c.rank >= best.rank {
			return best
		}
		if c.match(q) {
			return c
		}
	}
	return best
}

func (b *bucket) find(q *reqInfo, best *compiledRoute) *compiledRoute {
	if b.root == nil {
		return scan(b.flat, q, best)
	}
	// Walk the trie along the path, remembering the lists met; they are
	// scanned deepest (longest prefix) first, which tends to find the
	// winner early and prune the rest.
	var stack [16][]*compiledRoute
	n := 0
	node, path := b.root, q.path
	for {
		if len(node.routes) > 0 {
			if n < len(stack) {
				stack[n] = node.routes
				n++
			} else {
				best = scan(node.routes, q, best)
			}
		}
		if path == "" {
			break
		}
		i := strings.IndexByte(node.first, path[0])
		if i < 0 {
			break
		}
		child := node.children[i]
		if !strings.HasPrefix(path, child.label) {
			break
		}
		node, path = child, path[len(child.label):]
	}
	for i := n - 1; i >= 0; i-- {
		best = scan(stack[i], q, best)
	}
	best = scan(b.regex, q, best)
	return scan(b.noPath, q, best)
}

func (x *index) find(q *reqInfo) *compiledRoute {
	var best *compiledRoute
	if h := q.host; h != "" {
		if b := x.exact[h]; b != nil {
			best = b.find(q, best)
		}
		if len(x.suffix) > 0 || len(x.prefix) > 0 {
			for i := 0; i < len(h); i++ {
				if h[i] != '.' {
					continue
				}
				if len(x.suffix) > 0 {
					if b := x.suffix[h[i:]]; b != nil {
						best = b.find(q, best)
					}
				}
				if len(x.prefix) > 0 {
					if b := x.prefix[h[:i+1]]; b != nil {
						best = b.find(q, best)
					}
				}
			}
		}
	}
	return x.any.find(q, best)
}

// concatAll is every a+b for a in as and b in bs: the strings a
// concatenation of two finite sets of alternatives matches.
func concatAll(as, bs []string) []string {
	out := make([]string, 0, len(as)*len(bs))
	for _, a := range as {
		for _, b := range bs {
			out = append(out, a+b)
		}
	}
	return out
}
