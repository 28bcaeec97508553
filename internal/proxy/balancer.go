package proxy

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/kongfb/kongfb/pkg/config"
)

// Balancing algorithms (upstream.algorithm).
const (
	algoRoundRobin = iota
	algoConsistentHashing
	algoLeastConnections
	algoLatency
)

// Hash sources (upstream.hash_on / hash_fallback).
const (
	hashNone = iota
	hashConsumer
	hashIP
	hashHeader
	hashCookie
	hashPath
	hashQueryArg
	hashURICapture
)

// maxWheel caps the round-robin wheel. Kong gives each address weight/gcd
// slots; with large co-prime weights that is up to ~2^16 per target, so
// beyond maxWheel slots the weights are scaled down proportionally.
const maxWheel = 1 << 16

// pointsPerTarget is the number of continuum points per target of average
// weight for consistent hashing (Kong uses 160 per target as well).
const pointsPerTarget = 160

// hashSpec is one hash source with its parameter (header/cookie/arg name).
type hashSpec struct {
	kind int
	name string // header name (canonical), cookie, query arg or capture name
}

// targetSpec is a configured target, parsed.
type targetSpec struct {
	raw    string     // Target.Target as configured ("host:port")
	host   string     // host name or IP literal (IPv6 without brackets)
	port   int        // port
	weight int        // 0..65535; 0 = never selected
	ip     netip.Addr // valid when host is an IP literal
}

// peer is one address the balancer can pick: an ip:port of a target.
type peer struct {
	addr      string // "ip:port" to dial
	host      string // target host (for the Host header and TLS SNI)
	hostHTTP  string // Host header value for an http service
	hostHTTPS string // Host header value for an https service
	port      int
	weight    int
	st        *peerState
}

func (p *peer) hostHeader(https bool) string {
	if https {
		return p.hostHTTPS
	}
	return p.hostHTTP
}

// peerSet is the immutable set of peers a balancer currently picks from,
// rebuilt when DNS answers change.
type peerSet struct {
	peers     []*peer
	total     int      // sum of weights
	wheel     []uint32 // round-robin wheel of peer indexes
	points    []uint64 // consistent-hashing continuum (sorted)
	pointPeer []uint32 // peer index of each point
	expires   int64    // unix nanos after which DNS names must be re-resolved
	dnsErr    error    // the resolution error when there are no peers
}

// balancer picks peers for one upstream (or, for a service whose host is
// not an upstream, for that host:port: "direct").
type balancer struct {
	eng        *Engine
	name       string // upstream name, or service host for direct balancers
	direct     bool
	algo       int
	hashOn     hashSpec
	hashFb     hashSpec
	cookiePath string
	passive    passiveConfig
	hostHdr    string // upstream.host_header ("" = target host)
	targets    []*targetSpec
	hasNames   bool // some target needs DNS

	set atomic.Pointer[peerSet]
	mu  sync.Mutex // serialises rebuilds
	rr  atomic.Uint64
}

// Errors of pick, mapped to Kong's 503 messages by the handler.
var (
	errNoPeer = errors.New("failure to get a peer from the ring-balancer")
)

// parseTarget parses a target "host[:port]" (IPv6 in brackets); the port
// defaults to 8000 like Kong's targets DAO.
func parseTarget(s string) (host string, port int, err error) {
	if s == "" {
		return "", 0, errors.New("empty target")
	}
	port = 8000
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, fmt.Errorf("invalid target %q: missing ']'", s)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return "", 0, fmt.Errorf("invalid target %q", s)
			}
			if port, err = parsePort(rest[1:]); err != nil {
				return "", 0, fmt.Errorf("invalid target %q: %w", s, err)
			}
		}
		return host, port, nil
	}
	if strings.Count(s, ":") > 1 { // bare IPv6 literal
		if _, err := netip.ParseAddr(s); err != nil {
			return "", 0, fmt.Errorf("invalid target %q", s)
		}
		return s, port, nil
	}
	host = s
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host = s[:i]
		if port, err = parsePort(s[i+1:]); err != nil {
			return "", 0, fmt.Errorf("invalid target %q: %w", s, err)
		}
	}
	if host == "" {
		return "", 0, fmt.Errorf("invalid target %q: empty host", s)
	}
	return host, port, nil
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 0 || p > 65535 {
		return 0, fmt.Errorf("invalid port %q", s)
	}
	return p, nil
}

func newTargetSpec(raw, host string, port, weight int) *targetSpec {
	t := &targetSpec{raw: raw, host: host, port: port, weight: weight}
	if ip, err := netip.ParseAddr(host); err == nil {
		t.ip = ip.Unmap()
	}
	return t
}

func algoOf(u *config.Upstream) (int, error) {
	switch u.Algorithm {
	case "", "round-robin":
		if u.HashOn != "" && u.HashOn != "none" {
			// Kong: setting hash_on switches the algorithm (shorthand).
			return algoConsistentHashing, nil
		}
		return algoRoundRobin, nil
	case "consistent-hashing":
		return algoConsistentHashing, nil
	case "least-connections":
		return algoLeastConnections, nil
	case "latency":
		return algoLatency, nil
	}
	return 0, fmt.Errorf("algorithm: unknown value %q", u.Algorithm)
}

func hashSpecOf(kind string, header, cookie, arg, capture *string) (hashSpec, error) {
	str := func(p *string, field string) (string, error) {
		if p == nil || *p == "" {
			return "", fmt.Errorf("%s is required when hashing on %s", field, kind)
		}
		return *p, nil
	}
	var err error
	var h hashSpec
	switch kind {
	case "", "none":
		h.kind = hashNone
	case "consumer":
		h.kind = hashConsumer
	case "ip":
		h.kind = hashIP
	case "header":
		h.kind = hashHeader
		h.name, err = str(header, "header name")
		h.name = canonicalHeader(h.name)
	case "cookie":
		h.kind = hashCookie
		h.name, err = str(cookie, "hash_on_cookie")
	case "path":
		h.kind = hashPath
	case "query_arg":
		h.kind = hashQueryArg
		h.name, err = str(arg, "query arg name")
	case "uri_capture":
		h.kind = hashURICapture
		h.name, err = str(capture, "uri capture name")
	default:
		err = fmt.Errorf("unknown hash source %q", kind)
	}
	return h, err
}

// canonicalHeader converts a header name to fasthttp's canonical form
// ("x-api-key" -> "X-Api-Key").
func canonicalHeader(s string) string {
	b := []byte(strings.ToLower(s))
	upper := true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - 32
		}
		upper = c == '-'
	}
	return string(b)
}

// newUpstreamBalancer compiles an upstream and its targets.
func newUpstreamBalancer(e *Engine, u *config.Upstream, targets []*config.Target) (*balancer, error) {
	b := &balancer{eng: e, name: u.Name}
	var err error
	if b.algo, err = algoOf(u); err != nil {
		return nil, err
	}
	if b.algo == algoConsistentHashing {
		if b.hashOn, err = hashSpecOf(u.HashOn, u.HashOnHeader, u.HashOnCookie, u.HashOnQueryArg, u.HashOnURICapture); err != nil {
			return nil, fmt.Errorf("hash_on: %w", err)
		}
		if b.hashFb, err = hashSpecOf(u.HashFallback, u.HashFallbackHeader, nil, u.HashFallbackQueryArg, u.HashFallbackURICapture); err != nil {
			return nil, fmt.Errorf("hash_fallback: %w", err)
		}
		b.cookiePath = u.HashOnCookiePath
		if b.cookiePath == "" {
			b.cookiePath = "/"
		}
	}
	if b.passive, err = parsePassive(u.Healthchecks); err != nil {
		return nil, err
	}
	if u.HostHeader != nil {
		b.hostHdr = *u.HostHeader
	}
	seen := map[string]bool{}
	for _, t := range targets {
		host, port, err := parseTarget(t.Target)
		if err != nil {
			return nil, fmt.Errorf("target %s: %w", t.ID, err)
		}
		if t.Weight < 0 || t.Weight > 65535 {
			return nil, fmt.Errorf("target %s (%s): weight %d out of range 0..65535", t.ID, t.Target, t.Weight)
		}
		key := host + "\x00" + strconv.Itoa(port)
		if seen[key] {
			continue // Kong keeps one row per (upstream, target)
		}
		seen[key] = true
		ts := newTargetSpec(t.Target, host, port, t.Weight)
		b.targets = append(b.targets, ts)
		if !ts.ip.IsValid() {
			b.hasNames = true
		}
	}
	b.prebuild()
	return b, nil
}

// newDirectBalancer balances over the addresses of a service's host.
func newDirectBalancer(e *Engine, host string, port int) *balancer {
	b := &balancer{eng: e, name: host, direct: true, algo: algoRoundRobin}
	ts := newTargetSpec(host+":"+strconv.Itoa(port), host, port, 100)
	b.targets = []*targetSpec{ts}
	b.hasNames = !ts.ip.IsValid()
	b.prebuild()
	return b
}

// prebuild builds the peer set right away when no DNS is needed, so
// that Apply does all the work and the first request finds it ready.
func (b *balancer) prebuild() {
	if !b.hasNames {
		b.set.Store(b.build(time.Now().UnixNano()))
	}
}

// current returns the peer set, (re)resolving DNS names when due. Only the
// very first resolution blocks requests; later refreshes run in the
// background while the previous answer keeps serving.
func (b *balancer) current(now int64) *peerSet {
	s := b.set.Load()
	if s != nil && now < s.expires {
		return s
	}
	if s == nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		if s = b.set.Load(); s == nil {
			s = b.build(now)
			b.set.Store(s)
		}
		return s
	}
	if b.mu.TryLock() {
		go func() {
			defer b.mu.Unlock()
			if cur := b.set.Load(); cur != nil && time.Now().UnixNano() < cur.expires {
				return
			}
			b.set.Store(b.build(time.Now().UnixNano()))
		}()
	}
	return s
}

// build resolves the targets and lays out the wheel / continuum.
func (b *balancer) build(now int64) *peerSet {
	s := &peerSet{expires: math.MaxInt64}
	if b.hasNames {
		s.expires = now + int64(dnsTTL)
	}
	for _, t := range b.targets {
		if t.weight == 0 {
			continue // weight 0: never selected
		}
		addrs := []netip.Addr{t.ip}
		if !t.ip.IsValid() {
			var err error
			addrs, err = b.eng.dns.resolve(t.host)
			if err != nil {
				s.dnsErr = err
				if b.eng.log != nil {
					b.eng.log.Warn("proxy: target name resolution failed", "upstream", b.name, "target", t.raw, "error", err)
				}
				// Retry soon rather than after a full TTL.
				if exp := now + int64(dnsNotFoundTTL); exp < s.expires {
					s.expires = exp
				}
				continue
			}
		}
		for _, a := range addrs {
			addr := netip.AddrPortFrom(a, uint16(t.port)).String()
			p := &peer{addr: addr, host: t.host, port: t.port, weight: t.weight}
			p.hostHTTP = b.hostHeaderFor(t, false)
			p.hostHTTPS = b.hostHeaderFor(t, true)
			p.st = b.eng.peerState(b.stateKey(t, addr))
			s.peers = append(s.peers, p)
			s.total += t.weight
		}
	}
	if len(s.peers) > 0 {
		s.dnsErr = nil
	}
	switch b.algo {
	case algoRoundRobin:
		s.wheel = buildWheel(s.peers)
	case algoConsistentHashing:
		s.points, s.pointPeer = buildContinuum(s.peers, s.total)
	}
	return s
}

func (b *balancer) stateKey(t *targetSpec, addr string) peerKey {
	if b.direct {
		return peerKey{kind: 's', owner: b.name, addr: addr}
	}
	return peerKey{kind: 'u', owner: b.name, target: t.raw, addr: addr}
}

// hostHeaderFor is Kong's set_host_header for preserve_host=false: the
// upstream's host_header or the target host, plus ":port" unless the port
// is the scheme's default.
func (b *balancer) hostHeaderFor(t *targetSpec, https bool) string {
	h := b.hostHdr
	if h == "" {
		h = t.host
		if strings.IndexByte(h, ':') >= 0 {
			h = "[" + h + "]"
		}
	} else if _, _, err := splitHostPortLoose(h); err == nil {
		return h // host_header already names a port: keep it as configured
	}
	if https && t.port == 443 || !https && t.port == 80 {
		return h
	}
	return h + ":" + strconv.Itoa(t.port)
}

// splitHostPortLoose reports whether h carries an explicit numeric port.
func splitHostPortLoose(h string) (string, int, error) {
	i := strings.LastIndexByte(h, ':')
	if i < 0 || strings.HasSuffix(h, "]") {
		return h, 0, errors.New("no port")
	}
	p, err := parsePort(h[i+1:])
	if err != nil {
		return h, 0, err
	}
	return h[:i], p, nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// buildWheel lays out weight/gcd slots per peer, interleaved with the
// smooth weighted round-robin sequence (nginx's), so that a peer's picks
// are spread over the wheel rather than clumped. Kong shuffles its wheel
// randomly; over a full turn both give exactly the weight ratios.
func buildWheel(peers []*peer) []uint32 {
	if len(peers) == 0 {
		return nil
	}
	g := 0
	for _, p := range peers {
		g = gcd(g, p.weight)
	}
	w := make([]int, len(peers))
	total := 0
	for i, p := range peers {
		w[i] = p.weight / g
		total += w[i]
	}
	if total > maxWheel {
		scale := float64(maxWheel) / float64(total)
		total = 0
		for i := range w {
			w[i] = max(1, int(float64(w[i])*scale))
			total += w[i]
		}
	}
	wheel := make([]uint32, 0, total)
	cur := make([]int, len(peers))
	for range total {
		best := 0
		for i := range cur {
			cur[i] += w[i]
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= total
		wheel = append(wheel, uint32(best))
	}
	return wheel
}

// buildContinuum places points for each peer on a 64-bit ring, the number
// proportional to its weight, at xxhash64("<ip>:<port> <i>"). The layout
// depends only on the addresses and weights, so every node maps a given
// key to the same target.
func buildContinuum(peers []*peer, total int) ([]uint64, []uint32) {
	if len(peers) == 0 || total == 0 {
		return nil, nil
	}
	type pt struct {
		h uint64
		p uint32
	}
	var pts []pt
	for i, p := range peers {
		n := int(float64(p.weight) / float64(total) * float64(len(peers)) * pointsPerTarget)
		n = max(n, 1)
		for j := range n {
			pts = append(pts, pt{xxhash.Sum64String(p.addr + " " + strconv.Itoa(j)), uint32(i)})
		}
	}
	slices.SortFunc(pts, func(a, b pt) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return int(a.p) - int(b.p)
	})
	hs := make([]uint64, len(pts))
	ps := make([]uint32, len(pts))
	for i, x := range pts {
		hs[i], ps[i] = x.h, x.p
	}
	return hs, ps
}

// pickInput carries what a pick needs besides the balancer itself.
type pickInput struct {
	now    int64
	key    string // consistent-hashing key; "" = none
	hasKey bool
	tried  []*peer // peers that already failed for this request
}

func (in *pickInput) wasTried(p *peer) bool {
	for _, t := range in.tried {
		if t == p {
			return true
		}
	}
	return false
}

func (b *balancer) eligible(p *peer, now int64) bool {
	if !b.passive.enabled {
		return true
	}
	return p.st.takesTraffic(now, b.eng.healthCooldown)
}

// candidate reports whether p may take the request: eligible and not tried
// for it yet. The first eligible peer that was tried is kept in *fallback,
// the pick when no untried peer is left.
func (b *balancer) candidate(p *peer, in *pickInput, fallback **peer) bool {
	if !b.eligible(p, in.now) {
		return false
	}
	if in.wasTried(p) {
		if *fallback == nil {
			*fallback = p
		}
		return false
	}
	return true
}

// pick chooses a peer. A peer that already failed for this request is
// avoided while another one can take the request (Kong re-runs the
// balancer on every retry). The error is errNoPeer or a name-resolution
// error (direct balancers).
func (b *balancer) pick(in *pickInput) (*peer, error) {
	s := b.current(in.now)
	if len(s.peers) == 0 {
		if s.dnsErr != nil && b.direct {
			return nil, s.dnsErr
		}
		return nil, errNoPeer
	}
	// Any peer available at all? (Also the upstream threshold: below
	// `threshold` percent of healthy weight the whole upstream is down.)
	if b.passive.enabled {
		healthyW, n := 0, 0
		for _, p := range s.peers {
			if b.eligible(p, in.now) {
				healthyW += p.weight
				n++
			}
		}
		if n == 0 || b.passive.threshold > 0 && float64(healthyW)*100 < b.passive.threshold*float64(s.total) {
			return nil, errNoPeer
		}
	}
	switch b.algo {
	case algoConsistentHashing:
		return b.pickHash(s, in), nil
	case algoLeastConnections, algoLatency:
		return b.pickScore(s, in), nil
	default:
		return b.pickWheel(s, in), nil
	}
}

func (b *balancer) pickWheel(s *peerSet, in *pickInput) *peer {
	n := uint64(len(s.wheel))
	start := b.rr.Add(1)
	var fallback *peer
	for i := range n {
		if p := s.peers[s.wheel[(start+i)%n]]; b.candidate(p, in, &fallback) {
			return p
		}
	}
	return fallback
}

func (b *balancer) pickHash(s *peerSet, in *pickInput) *peer {
	var h uint64
	if in.hasKey {
		h = xxhash.Sum64String(in.key)
	} else {
		// No key: spread the requests around the ring.
		h = b.rr.Add(1) * 0x9E3779B97F4A7C15
	}
	m := len(s.points)
	i := sort.Search(m, func(i int) bool { return s.points[i] >= h })
	var fallback *peer
	for k := range m {
		if p := s.peers[s.pointPeer[(i+k)%m]]; b.candidate(p, in, &fallback) {
			return p
		}
	}
	return fallback
}

// pickScore is least-connections ((active+1)/weight, Kong's heap key) and
// latency (EWMA response time × (active+1) / weight). Ties go round-robin.
func (b *balancer) pickScore(s *peerSet, in *pickInput) *peer {
	n := uint64(len(s.peers))
	start := b.rr.Add(1)
	var best, fallback *peer
	bestScore := math.Inf(1)
	for i := range n {
		p := s.peers[(start+i)%n]
		if !b.candidate(p, in, &fallback) {
			continue
		}
		score := float64(p.st.active.Load()+1) / float64(p.weight)
		if b.algo == algoLatency {
			score *= float64(p.st.ewmaNano.Load())
		}
		if score < bestScore {
			best, bestScore = p, score
		}
	}
	if best == nil {
		return fallback
	}
	return best
}

// latencyDecay is the EWMA time constant of the latency algorithm (Kong:
// 10 s decay).
const latencyDecay = 10 * time.Second

// observeLatency feeds the latency algorithm's EWMA.
func (p *peer) observeLatency(d time.Duration, now int64) {
	prev := p.st.ewmaNano.Load()
	last := p.st.lastLat.Swap(now)
	if prev == 0 {
		p.st.ewmaNano.Store(max(int64(d), 1))
		return
	}
	w := math.Exp(-float64(now-last) / float64(latencyDecay))
	v := float64(prev)*w + float64(d)*(1-w)
	p.st.ewmaNano.Store(max(int64(v), 1))
}
