package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kongfb/kongfb/internal/proxy/router"
	"github.com/kongfb/kongfb/pkg/config"
)

// state is one compiled configuration. It is immutable once built and
// swapped in atomically; a request uses the state it loaded at its start
// until it ends.
type state struct {
	hash     string
	cfg      *config.Config
	router   *router.Router
	services map[*config.Service]*serviceState
	routes   map[*config.Route]*routeState
}

// routeState is what the handler needs about a route beyond the router.
type routeState struct {
	httpsOnly    bool
	redirectCode int  // https_redirect_status_code
	grpcOnly     bool // protocols are grpc/grpcs only
	preserveHost bool
	debugID      string
	debugName    string // "" = no name
	hasDebugName bool
}

// serviceState is a service compiled for proxying.
type serviceState struct {
	svc            *config.Service
	bal            *balancer
	https          bool
	profile        *clientProfile
	connectTimeout time.Duration
	writeTimeout   time.Duration
	readTimeout    time.Duration
	retries        int
	debugID        string
	debugName      string
	hasDebugName   bool
}

// pluginsError lists every enabled plugin of a config kongfb refuses.
type pluginsError struct{ plugins []string }

func (e *pluginsError) Error() string {
	return "plugins are not supported yet; the config enables " + strconv.Itoa(len(e.plugins)) +
		" plugin(s): " + strings.Join(e.plugins, "; ")
}

// checkPlugins refuses a config that enables any plugin: silently ignoring
// e.g. an authentication plugin would expose what it protects.
func checkPlugins(cfg *config.Config) error {
	names := func(kind string, id *string, label func(string) string) string {
		if id == nil || *id == "" {
			return ""
		}
		return kind + " " + label(*id)
	}
	svcLabel := map[string]string{}
	for _, s := range cfg.Services {
		if s.Name != nil && *s.Name != "" {
			svcLabel[s.ID] = fmt.Sprintf("%q (%s)", *s.Name, s.ID)
		}
	}
	routeLabel := map[string]string{}
	for _, r := range cfg.Routes {
		if r.Name != nil && *r.Name != "" {
			routeLabel[r.ID] = fmt.Sprintf("%q (%s)", *r.Name, r.ID)
		}
	}
	consLabel := map[string]string{}
	for _, c := range cfg.Consumers {
		if c.Username != nil && *c.Username != "" {
			consLabel[c.ID] = fmt.Sprintf("%q (%s)", *c.Username, c.ID)
		}
	}
	lookup := func(m map[string]string) func(string) string {
		return func(id string) string {
			if l, ok := m[id]; ok {
				return l
			}
			return id
		}
	}
	var list []string
	for _, p := range cfg.Plugins {
		if p == nil || !p.Enabled {
			continue
		}
		var scope []string
		for _, s := range []string{
			names("service", p.Service, lookup(svcLabel)),
			names("route", p.Route, lookup(routeLabel)),
			names("consumer", p.Consumer, lookup(consLabel)),
		} {
			if s != "" {
				scope = append(scope, s)
			}
		}
		sc := "global"
		if len(scope) > 0 {
			sc = strings.Join(scope, ", ")
		}
		list = append(list, fmt.Sprintf("plugin %q (id %s, scope: %s)", p.Name, p.ID, sc))
	}
	if len(list) > 0 {
		return &pluginsError{plugins: list}
	}
	return nil
}

// compile builds the state for cfg. Nothing it does is visible to traffic
// until the engine swaps the result in.
func (e *Engine) compile(cfg *config.Config, hash string) (*state, error) {
	rt, err := router.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("compile routes: %w", err)
	}
	st := &state{
		hash:     hash,
		cfg:      cfg,
		router:   rt,
		services: make(map[*config.Service]*serviceState, len(cfg.Services)),
		routes:   make(map[*config.Route]*routeState, len(cfg.Routes)),
	}

	// Upstreams by name, targets by upstream id (or name, leniently).
	upByName := map[string]*config.Upstream{}
	upByID := map[string]*config.Upstream{}
	for _, u := range cfg.Upstreams {
		if u == nil {
			continue
		}
		upByName[u.Name] = u
		upByID[u.ID] = u
	}
	targets := map[*config.Upstream][]*config.Target{}
	for _, t := range cfg.Targets {
		if t == nil {
			continue
		}
		u := upByID[t.Upstream]
		if u == nil {
			u = upByName[t.Upstream]
		}
		if u == nil {
			return nil, fmt.Errorf("target %s (%s): upstream %s not found", t.ID, t.Target, t.Upstream)
		}
		targets[u] = append(targets[u], t)
	}
	balancers := map[string]*balancer{}
	for _, u := range cfg.Upstreams {
		if u == nil {
			continue
		}
		ts := targets[u]
		// Kong lists targets oldest first.
		sort.SliceStable(ts, func(i, j int) bool { return ts[i].CreatedAt < ts[j].CreatedAt })
		b, err := newUpstreamBalancer(e, u, ts)
		if err != nil {
			return nil, fmt.Errorf("upstream %q (%s): %w", u.Name, u.ID, err)
		}
		if b.passive.activeConfigured && e.log != nil {
			e.log.Warn("proxy: active health checks are not implemented; passive checks and a cool-down apply",
				"upstream", u.Name, "cooldown", e.healthCooldown)
		}
		balancers[u.Name] = b
	}

	certs := map[string]*config.Certificate{}
	for _, c := range cfg.Certificates {
		if c != nil {
			certs[c.ID] = c
		}
	}
	cas := map[string]*config.CACertificate{}
	for _, c := range cfg.CACertificates {
		if c != nil {
			cas[c.ID] = c
		}
	}
	direct := map[string]*balancer{}
	for _, s := range cfg.Services {
		if s == nil || !s.Enabled {
			continue
		}
		ss, err := e.compileService(s, balancers, upByName, direct, certs, cas)
		if err != nil {
			name := s.ID
			if s.Name != nil && *s.Name != "" {
				name = fmt.Sprintf("%q (%s)", *s.Name, s.ID)
			}
			return nil, fmt.Errorf("service %s: %w", name, err)
		}
		st.services[s] = ss
	}
	for _, r := range cfg.Routes {
		if r == nil {
			continue
		}
		rs := &routeState{
			redirectCode: r.HTTPSRedirectStatusCode,
			preserveHost: r.PreserveHost,
			debugID:      r.ID,
		}
		if rs.redirectCode == 0 {
			rs.redirectCode = 426
		}
		if r.Name != nil {
			rs.debugName, rs.hasDebugName = *r.Name, true
		}
		protos := r.Protocols
		if len(protos) == 0 {
			protos = []string{"http", "https"}
		}
		has := map[string]bool{}
		for _, p := range protos {
			has[p] = true
		}
		rs.httpsOnly = has["https"] && !has["http"]
		rs.grpcOnly = (has["grpc"] || has["grpcs"]) && !has["http"] && !has["https"]
		st.routes[r] = rs
	}
	return st, nil
}

func (e *Engine) compileService(s *config.Service, balancers map[string]*balancer, ups map[string]*config.Upstream,
	direct map[string]*balancer, certs map[string]*config.Certificate, cas map[string]*config.CACertificate) (*serviceState, error) {
	ss := &serviceState{
		svc:            s,
		connectTimeout: msDuration(s.ConnectTimeout),
		writeTimeout:   msDuration(s.WriteTimeout),
		readTimeout:    msDuration(s.ReadTimeout),
		retries:        s.Retries,
		debugID:        s.ID,
	}
	if s.Name != nil {
		ss.debugName, ss.hasDebugName = *s.Name, true
	}
	if ss.retries < 0 {
		return nil, fmt.Errorf("retries: %d is negative", s.Retries)
	}
	switch s.Protocol {
	case "", "http":
	case "https":
		ss.https = true
	case "grpcs":
		ss.https = true
	default:
		// grpc: kongfb speaks HTTP/1.1 upstream (no gRPC/HTTP/2 proxying);
		// tcp/tls/udp services are only reachable from stream routes,
		// which kongfb's HTTP proxy does not serve.
	}
	if s.Host == "" {
		return nil, errors.New("host: required field missing")
	}
	if b, ok := balancers[s.Host]; ok {
		ss.bal = b
	} else {
		port := s.Port
		if port == 0 {
			port = 80
			if ss.https {
				port = 443
			}
		}
		key := s.Host + ":" + strconv.Itoa(port)
		if b := direct[key]; b != nil {
			ss.bal = b
		} else {
			ss.bal = newDirectBalancer(e, s.Host, port)
			direct[key] = ss.bal
		}
	}

	// Connection profile: connect timeout + TLS.
	var tlsCfg *tls.Config
	verify := false
	profKey := "ct=" + ss.connectTimeout.String()
	if ss.https {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		if s.TLSVerify != nil && *s.TLSVerify {
			verify = true
		}
		profKey += ";tls;verify=" + strconv.FormatBool(verify)
		if len(s.CACertificates) > 0 {
			pool := x509.NewCertPool()
			for _, id := range s.CACertificates {
				ca := cas[id]
				if ca == nil {
					return nil, fmt.Errorf("ca_certificates: %s not found", id)
				}
				if !pool.AppendCertsFromPEM([]byte(ca.Cert)) {
					return nil, fmt.Errorf("ca_certificates: %s: no PEM certificate", id)
				}
			}
			tlsCfg.RootCAs = pool
			profKey += ";ca=" + strings.Join(s.CACertificates, ",")
		}
		ccID := ""
		if s.ClientCertificate != nil && *s.ClientCertificate != "" {
			ccID = *s.ClientCertificate
		} else if u := ups[s.Host]; u != nil && u.ClientCertificate != nil && *u.ClientCertificate != "" {
			ccID = *u.ClientCertificate
		}
		if ccID != "" {
			c := certs[ccID]
			if c == nil {
				return nil, fmt.Errorf("client_certificate: %s not found", ccID)
			}
			pair, err := tls.X509KeyPair([]byte(c.Cert), []byte(c.Key))
			if err != nil {
				return nil, fmt.Errorf("client_certificate %s: %w", ccID, err)
			}
			tlsCfg.Certificates = []tls.Certificate{pair}
			// Certificates are immutable in Kong; the id plus content hash
			// tells two versions apart across configs.
			profKey += ";cc=" + ccID + "/" + strconv.Itoa(len(c.Cert)) + "/" + shortHash(c.Cert)
		}
	}
	ss.profile = e.internProfile(profKey, ss.connectTimeout, ss.https, verify, tlsCfg)
	return ss, nil
}

func msDuration(ms int) time.Duration {
	if ms <= 0 {
		ms = 60000 // Kong's default
	}
	return time.Duration(ms) * time.Millisecond
}

func shortHash(s string) string {
	var h uint32 = 2166136261
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return strconv.FormatUint(uint64(h), 16)
}

// isIPLiteral reports whether h is an IP address.
func isIPLiteral(h string) bool {
	_, err := netip.ParseAddr(h)
	return err == nil
}
