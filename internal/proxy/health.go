package proxy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// defaultHealthCooldown is how long a target taken out by the passive
// health checker stays out. Kong relies on active probes (or a manual
// PUT …/healthy) to bring a passively-failed target back; kongfb has no
// active probes yet, so without a cool-down a target would stay out until
// the next config change. After the cool-down the target is put back with
// cleared counters and is taken out again if it keeps failing.
const defaultHealthCooldown = 10 * time.Second

// statusSet is a set of HTTP status codes (100..639).
type statusSet [10]uint64

func (s *statusSet) add(code int) {
	if code >= 0 && code < 640 {
		s[code/64] |= 1 << (code % 64)
	}
}

func (s *statusSet) has(code int) bool {
	return code >= 0 && code < 640 && s[code/64]&(1<<(code%64)) != 0
}

// passiveConfig is upstream.healthchecks.passive (+ threshold), compiled.
type passiveConfig struct {
	healthyStatuses   statusSet
	unhealthyStatuses statusSet
	successes         int // healthy.successes
	tcpFailures       int // unhealthy.tcp_failures
	timeouts          int // unhealthy.timeouts
	httpFailures      int // unhealthy.http_failures
	threshold         float64
	// enabled is false when every counter is 0 (Kong's default): nothing
	// is ever counted then.
	enabled bool
	// activeConfigured records that active probing was asked for (an
	// interval > 0); kongfb does not probe, see defaultHealthCooldown.
	activeConfigured bool
}

var (
	defaultPassiveHealthy   = []int{200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 306, 307, 308}
	defaultPassiveUnhealthy = []int{429, 500, 503}
)

// parsePassive reads Kong's healthchecks record (as config.Upstream keeps
// it: generic JSON values, defaults normally filled in). Missing fields take
// Kong's defaults; wrongly-typed ones are an error naming the field.
func parsePassive(hc map[string]any) (passiveConfig, error) {
	var pc passiveConfig
	var err error
	get := func(path ...string) (any, bool) {
		var cur any = hc
		for _, p := range path {
			m, ok := cur.(map[string]any)
			if !ok {
				return nil, false
			}
			cur, ok = m[p]
			if !ok || cur == nil {
				return nil, false
			}
		}
		return cur, true
	}
	num := func(def float64, path ...string) float64 {
		v, ok := get(path...)
		if !ok || err != nil {
			return def
		}
		f, ok := toFloat(v)
		if !ok {
			err = fmt.Errorf("healthchecks.%s: expected a number, got %T", joinPath(path), v)
			return def
		}
		return f
	}
	statuses := func(dst *statusSet, def []int, path ...string) {
		v, ok := get(path...)
		if !ok || err != nil {
			for _, c := range def {
				dst.add(c)
			}
			return
		}
		list, ok := v.([]any)
		if !ok {
			if ints, ok2 := v.([]int); ok2 {
				for _, c := range ints {
					dst.add(c)
				}
				return
			}
			err = fmt.Errorf("healthchecks.%s: expected an array, got %T", joinPath(path), v)
			return
		}
		for _, e := range list {
			f, ok := toFloat(e)
			if !ok {
				err = fmt.Errorf("healthchecks.%s: expected integers, got %T", joinPath(path), e)
				return
			}
			dst.add(int(f))
		}
	}
	statuses(&pc.healthyStatuses, defaultPassiveHealthy, "passive", "healthy", "http_statuses")
	statuses(&pc.unhealthyStatuses, defaultPassiveUnhealthy, "passive", "unhealthy", "http_statuses")
	pc.successes = int(num(0, "passive", "healthy", "successes"))
	pc.tcpFailures = int(num(0, "passive", "unhealthy", "tcp_failures"))
	pc.timeouts = int(num(0, "passive", "unhealthy", "timeouts"))
	pc.httpFailures = int(num(0, "passive", "unhealthy", "http_failures"))
	pc.threshold = num(0, "threshold")
	pc.enabled = pc.successes > 0 || pc.tcpFailures > 0 || pc.timeouts > 0 || pc.httpFailures > 0
	pc.activeConfigured = num(0, "active", "healthy", "interval") > 0 || num(0, "active", "unhealthy", "interval") > 0
	if err != nil {
		return passiveConfig{}, err
	}
	return pc, nil
}

func joinPath(p []string) string {
	s := ""
	for i, e := range p {
		if i > 0 {
			s += "."
		}
		s += e
	}
	return s
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case uint64:
		return float64(n), true
	case uint32:
		return float64(n), true
	}
	return 0, false
}

// Health states of lua-resty-healthcheck: healthy and mostly-healthy
// targets take traffic, the two others do not.
const (
	stHealthy int32 = iota
	stMostlyHealthy
	stMostlyUnhealthy
	stUnhealthy
)

// Counter kinds of lua-resty-healthcheck's multi-counter.
const (
	ctrSuccess = iota
	ctrTCP
	ctrHTTP
	ctrTimeout
)

// peerState is the mutable, shared state of one balanced address (one
// ip:port of one target of one upstream). It is kept in the engine's
// registry, not in the compiled config, so that health and in-flight
// counts survive a hot swap when the target is still there.
type peerState struct {
	active   atomic.Int64 // requests in flight (least-connections)
	state    atomic.Int32 // stHealthy…stUnhealthy
	downAt   atomic.Int64 // unix nanos when it went unhealthy
	ewmaNano atomic.Int64 // latency EWMA (latency algorithm), 0 = unknown
	lastLat  atomic.Int64 // unix nanos of the last EWMA update

	mu   sync.Mutex
	ctrs [4]int
}

// takesTraffic reports whether the balancer may pick the peer. A peer out
// for longer than cooldown is put back (state reset) here, lazily.
func (p *peerState) takesTraffic(now int64, cooldown time.Duration) bool {
	st := p.state.Load()
	if st <= stMostlyHealthy {
		return true
	}
	if now-p.downAt.Load() < int64(cooldown) {
		return false
	}
	p.mu.Lock()
	if p.state.Load() >= stMostlyUnhealthy && now-p.downAt.Load() >= int64(cooldown) {
		p.ctrs = [4]int{}
		p.state.Store(stHealthy)
	}
	p.mu.Unlock()
	return true
}

// report is lua-resty-healthcheck's incr_counter: a report in the
// direction of the current state is ignored; a success clears the failure
// counters and a failure clears the success counter; reaching the limit
// flips the state, otherwise a healthy target becomes "mostly healthy"
// (and an unhealthy one "mostly unhealthy").
func (p *peerState) report(healthy bool, limit int, ctr int, now int64) {
	if limit <= 0 {
		return
	}
	st := p.state.Load()
	if healthy && st == stHealthy || !healthy && st == stUnhealthy {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	st = p.state.Load()
	if healthy && st == stHealthy || !healthy && st == stUnhealthy {
		return
	}
	p.ctrs[ctr]++
	n := p.ctrs[ctr]
	if ctr == ctrSuccess {
		p.ctrs[ctrTCP], p.ctrs[ctrHTTP], p.ctrs[ctrTimeout] = 0, 0, 0
	} else {
		p.ctrs[ctrSuccess] = 0
	}
	next := st
	switch {
	case n >= limit && healthy:
		next = stHealthy
	case n >= limit:
		next = stUnhealthy
	case st == stHealthy && p.ctrs[ctrTCP]+p.ctrs[ctrHTTP]+p.ctrs[ctrTimeout] > 0:
		next = stMostlyHealthy
	case st == stUnhealthy && p.ctrs[ctrSuccess] > 0:
		next = stMostlyUnhealthy
	}
	if next != st {
		if next >= stMostlyUnhealthy && st <= stMostlyHealthy {
			p.downAt.Store(now)
		}
		p.state.Store(next)
	}
}

// outcome of one try against a peer, for the passive health checker.
type outcome uint8

const (
	outcomeStatus  outcome = iota // got an HTTP response (status given)
	outcomeTCP                    // connect/send/receive failure or invalid response
	outcomeTimeout                // connect/send/receive timeout
)

func (pc *passiveConfig) record(p *peerState, o outcome, status int, now int64) {
	if !pc.enabled {
		return
	}
	switch o {
	case outcomeTCP:
		p.report(false, pc.tcpFailures, ctrTCP, now)
	case outcomeTimeout:
		p.report(false, pc.timeouts, ctrTimeout, now)
	default:
		if pc.healthyStatuses.has(status) {
			p.report(true, pc.successes, ctrSuccess, now)
		} else if pc.unhealthyStatuses.has(status) {
			p.report(false, pc.httpFailures, ctrHTTP, now)
		}
	}
}
