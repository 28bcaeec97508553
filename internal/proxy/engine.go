// Package proxy is kongfb's data-plane proxy engine: it serves HTTP traffic
// with Kong 3.9's proxy semantics (routing through internal/proxy/router,
// upstream/downstream headers, Kong's error bodies, retries and timeouts,
// load balancing with passive health checks) on top of fasthttp, and swaps
// configurations atomically without failing in-flight requests.
//
// Where kongfb knowingly differs from Kong 3.9.1:
//   - Plugins are not run: Apply refuses a config that enables any.
//   - Request and response bodies are buffered in memory (Kong's default
//     request/response_buffering); request bodies are capped at 64 MiB
//     (Kong: unlimited) and answered 413 beyond. WebSocket upgrades and
//     gRPC (HTTP/2) are not proxied: gRPC routes answer Kong's 426/415.
//   - write_timeout / read_timeout bound the whole request write / response
//     read, where nginx bounds the gap between two socket operations.
//   - Active health checks are not implemented. A target taken out by the
//     passive checker comes back after defaultHealthCooldown (10 s) with
//     cleared counters, or earlier through healthy.successes.
//   - The final failed try is reported to the passive checker as a TCP
//     failure or timeout (Kong reports its 502/504 status instead).
//   - DNS uses Go's resolver with fixed cache lifetimes (see dns.go), A
//     records first then AAAA, no SRV; any resolution failure of a
//     service host answers 503 "name resolution failed".
package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/kongfb/kongfb/pkg/config"
)

// Server-side limits. Kong's defaults: client_body_timeout /
// client_header_timeout 60 s, keepalive_timeout 60 s, large header buffers
// of 8 KiB per line. Kong's client_max_body_size is unlimited; kongfb
// buffers request bodies in memory, so it caps them.
const (
	serverReadTimeout    = 60 * time.Second
	serverIdleTimeout    = 60 * time.Second
	serverReadBufferSize = 16 << 10 // also the largest request header block accepted
	// A 4 KiB body plus Kong's headers must leave in one write(2): fasthttp's
	// default 4 KiB write buffer split such responses into two syscalls.
	serverWriteBufferSize = 16 << 10
	maxRequestBodySize    = 64 << 20
	// clientPruneIdle: HostClients unused for this long are dropped on Apply.
	clientPruneIdle = 10 * time.Minute
)

// Options configure an Engine.
type Options struct {
	// AllowDebugHeader is Kong's allow_debug_header: a request carrying a
	// Kong-Debug header gets Kong-Route-Id/-Name and Kong-Service-Id/-Name
	// response headers.
	AllowDebugHeader bool
	// Logger receives operational logs; nil = slog.Default().
	Logger *slog.Logger
}

// Stats are the connection and request counters behind Kong's /status.
type Stats struct {
	ConnectionsActive   int64  // open client connections
	ConnectionsReading  int64  // always 0: fasthttp does not expose it
	ConnectionsWriting  int64  // connections with a request being processed
	ConnectionsWaiting  int64  // idle keep-alive connections (active - writing)
	ConnectionsAccepted uint64 // client connections accepted
	ConnectionsHandled  uint64 // client connections handled (= accepted, as in nginx without limits hit)
	TotalRequests       uint64 // requests handled
}

// Engine is the proxy. Create it with New; it is safe for concurrent use.
type Engine struct {
	opts Options
	log  *slog.Logger
	srv  *fasthttp.Server

	state atomic.Pointer[state]
	apply sync.Mutex // serialises Apply

	dns     *dnsCache
	clients *clientPool

	regMu    sync.Mutex
	peers    map[peerKey]*peerState
	profiles map[string]*clientProfile

	// healthCooldown: see defaultHealthCooldown (tests shorten it).
	healthCooldown time.Duration

	connsAccepted atomic.Uint64
	connsClosed   atomic.Uint64
	inFlight      atomic.Int64
	totalRequests atomic.Uint64
}

// peerKey identifies the shared state of one balanced address: for an
// upstream ('u') its name, target and address; for a service host ('s')
// the host and address.
type peerKey struct {
	kind   byte
	owner  string
	target string
	addr   string
}

// New creates an engine that serves "no Route matched" until the first Apply.
func New(opts Options) *Engine {
	e := &Engine{
		opts:           opts,
		log:            opts.Logger,
		dns:            newDNSCache(),
		clients:        newClientPool(),
		peers:          map[peerKey]*peerState{},
		profiles:       map[string]*clientProfile{},
		healthCooldown: defaultHealthCooldown,
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	e.srv = &fasthttp.Server{
		Handler:                      e.handle,
		ErrorHandler:                 e.handleRequestError,
		Name:                         serverHeader,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		ReadBufferSize:               serverReadBufferSize,
		WriteBufferSize:              serverWriteBufferSize,
		MaxRequestBodySize:           maxRequestBodySize,
		ReadTimeout:                  serverReadTimeout,
		IdleTimeout:                  serverIdleTimeout,
		CloseOnShutdown:              true,
		ConnState:                    e.connState,
		Logger:                       fasthttpLogger{e.log},
	}
	return e
}

// Apply compiles cfg (routes, balancers, TLS material) and, if that
// succeeds, swaps it in atomically: requests already running finish on the
// configuration they started with. A config that enables any plugin is
// refused with an error naming each plugin. On error the current
// configuration keeps serving.
func (e *Engine) Apply(cfg *config.Config, hash string) error {
	if cfg == nil {
		return errors.New("apply config: nil config")
	}
	e.apply.Lock()
	defer e.apply.Unlock()
	// Plugins first: "plugins are not supported" is the actionable error
	// even when a plugin's own config would not validate either.
	if err := checkPlugins(cfg); err != nil {
		return fmt.Errorf("apply config %s: %w", hash, err)
	}
	// A config from config.Parse/FromEntities was validated as it was
	// built; validating it again would double the cost of every apply.
	if !cfg.Validated() {
		if err := cfg.Validate(); err != nil {
			return fmt.Errorf("apply config %s: %w", hash, err)
		}
	}
	st, err := e.compile(cfg, hash)
	if err != nil {
		return fmt.Errorf("apply config %s: %w", hash, err)
	}
	e.state.Store(st)
	e.prune(st)
	return nil
}

// prune forgets peer states, DNS entries and idle upstream clients that
// the new configuration no longer uses.
func (e *Engine) prune(st *state) {
	type owner struct {
		kind byte
		name string
	}
	keepOwners := map[owner]bool{}
	keepHosts := map[string]bool{}
	for _, ss := range st.services {
		b := ss.bal
		keepOwners[owner{b.kindByte(), b.name}] = true
		for _, t := range b.targets {
			if !t.ip.IsValid() {
				keepHosts[t.host] = true
			}
		}
	}
	e.regMu.Lock()
	for k := range e.peers {
		if !keepOwners[owner{k.kind, k.owner}] {
			delete(e.peers, k)
		}
	}
	e.regMu.Unlock()
	e.dns.prune(keepHosts)
	e.clients.prune(clientPruneIdle)
}

func (b *balancer) kindByte() byte {
	if b.direct {
		return 's'
	}
	return 'u'
}

// peerState returns the shared state for k, creating it on first use.
func (e *Engine) peerState(k peerKey) *peerState {
	e.regMu.Lock()
	defer e.regMu.Unlock()
	if p := e.peers[k]; p != nil {
		return p
	}
	p := &peerState{}
	e.peers[k] = p
	return p
}

func (e *Engine) internProfile(key string, connectTimeout time.Duration, useTLS, verify bool, tlsCfg *tls.Config) *clientProfile {
	e.regMu.Lock()
	defer e.regMu.Unlock()
	if p := e.profiles[key]; p != nil {
		return p
	}
	p := &clientProfile{key: key, connectTimeout: connectTimeout, tls: useTLS, tlsVerify: verify, tlsTemplate: tlsCfg}
	e.profiles[key] = p
	return p
}

// Serve proxies the traffic of ln until Shutdown (then it returns nil).
// It may be called for several listeners; a listener wrapped by
// crypto/tls serves https (X-Forwarded-Proto, https-only routes).
func (e *Engine) Serve(ln net.Listener) error {
	err := e.srv.Serve(ln)
	if err != nil && errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Shutdown stops accepting connections, lets in-flight requests finish and
// closes idle connections. It returns ctx's error if ctx ends first.
func (e *Engine) Shutdown(ctx context.Context) error {
	err := e.srv.ShutdownWithContext(ctx)
	e.clients.closeIdle()
	if err != nil {
		return fmt.Errorf("proxy shutdown: %w", err)
	}
	return nil
}

// Current returns the hash and config being served ("" and nil before the
// first successful Apply).
func (e *Engine) Current() (hash string, cfg *config.Config) {
	st := e.state.Load()
	if st == nil {
		return "", nil
	}
	return st.hash, st.cfg
}

// Stats returns the connection/request counters.
func (e *Engine) Stats() Stats {
	acc := e.connsAccepted.Load()
	closed := e.connsClosed.Load()
	active := int64(acc - closed)
	writing := e.inFlight.Load()
	waiting := max(active-writing, 0)
	return Stats{
		ConnectionsActive:   active,
		ConnectionsWriting:  writing,
		ConnectionsWaiting:  waiting,
		ConnectionsAccepted: acc,
		ConnectionsHandled:  acc,
		TotalRequests:       e.totalRequests.Load(),
	}
}

func (e *Engine) connState(_ net.Conn, cs fasthttp.ConnState) {
	switch cs {
	case fasthttp.StateNew:
		e.connsAccepted.Add(1)
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		e.connsClosed.Add(1)
	}
}

// fasthttpLogger routes fasthttp's own messages (connection-level errors)
// to slog at debug level: they are per-connection noise, not operator news.
type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) {
	if f.l.Enabled(context.Background(), slog.LevelDebug) {
		f.l.Debug("proxy: " + fmt.Sprintf(format, args...))
	}
}
