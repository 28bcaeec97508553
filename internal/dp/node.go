// Package dp runs a kongfb data-plane node: it feeds configurations from its
// sources (a declarative file today; a control-plane sync client, a disk cache
// and a fallback importer are further sources) into the proxy engine, and
// serves Kong's status API (/status, /status/ready) on the status listener.
//
// Every source hands the node a whole configuration (a Snapshot). The node
// computes its hash, asks the engine to validate, compile and swap it, and
// only then records it as current: a configuration the engine refuses never
// replaces the one being served.
package dp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
)

// Config sources, as reported in /status (kongfb.config_source) and in logs.
const (
	SourceDeclarative = "declarative" // a kong.yaml / config.json file given at start (reloaded on SIGHUP)
	SourceCP          = "cp"          // pushed by the control plane
	SourceCache       = "cache"       // the node's own on-disk copy of the last CP config
	SourceFallback    = "fallback"    // imported from object storage when the CP is unreachable
)

// Engine is what a node drives: *proxy.Engine satisfies it. It is an
// interface so the status API and the source logic can be tested on their own.
type Engine interface {
	// Apply validates and compiles cfg and swaps it in atomically; on error
	// the previous configuration keeps serving.
	Apply(cfg *config.Config, hash string) error
	// Serve proxies traffic on ln until Shutdown.
	Serve(ln net.Listener) error
	// Shutdown stops accepting and drains in-flight requests.
	Shutdown(ctx context.Context) error
}

// ServerStats are the connection counters of Kong's /status `server` block.
type ServerStats struct {
	ConnectionsActive   int64
	ConnectionsReading  int64
	ConnectionsWriting  int64
	ConnectionsWaiting  int64
	ConnectionsAccepted int64
	ConnectionsHandled  int64
	TotalRequests       int64
}

// Snapshot is one whole configuration offered by a source.
type Snapshot struct {
	Config *config.Config
	// Hash is the configuration hash to record. A control plane supplies its
	// own (Kong stores the CP's config_hash verbatim); when empty the node
	// computes config.Hash. A configuration holding nothing but workspaces is
	// always recorded under config.EmptyHash, as Kong does.
	Hash string
	// Source is one of the Source* constants.
	Source string
	// Origin says where it came from for logs and /status: a file path, a CP
	// address, an object URL.
	Origin string
}

// Loader is a source that produces a whole configuration on demand: the
// declarative file, the disk cache, the fallback object. Pushing sources (the
// CP sync client) call Node.Apply directly instead.
type Loader interface {
	Source() string
	Load(ctx context.Context) (*Snapshot, error)
}

// Options configure a Node.
type Options struct {
	Engine Engine
	// Stats returns the proxy's connection counters; nil reports zeros.
	Stats func() ServerStats
	// Logger receives the node's logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock for loaded_at; nil means time.Now.
	Now func() time.Time
	// ControlPlane is the CP address in hybrid mode ("" for DB-less). It
	// makes /status report the link state (cp_connected, last_sync_at).
	ControlPlane string
	// OnServe, if set, is called each time a source vouches for the
	// configuration the node serves: after every successful Apply (changed
	// or not) and every ConfirmSource that matched. It runs on the
	// applying goroutine while no other source can apply (so events arrive
	// in the order configurations were served): it must not block nor call
	// back into Apply. A fallback exporter hooks here, so that it only ever
	// sees configurations this node validated and serves.
	OnServe func(ServeEvent)
	// ExporterStatus, if set, fills /status kongfb.exporter (null when
	// unset). kongfb.fallback is filled by NewFallbackImport.
	ExporterStatus func() ExporterStatus
}

// ServeEvent describes a configuration the node serves, for Options.OnServe.
type ServeEvent struct {
	Config *config.Config
	Hash   string
	Source string
	Origin string
	// Changed is false when the source re-sent the running configuration.
	Changed bool
}

// State is what the node currently serves.
type State struct {
	Hash     string    // "" before any configuration was applied
	Source   string    // "" before any configuration was applied
	Origin   string    // file path, CP address, ...
	LoadedAt time.Time // zero before any configuration was applied
	Services int
	Routes   int
}

// Node is a data-plane node: the configuration state around one engine and
// the status API describing it.
type Node struct {
	eng   Engine
	stats func() ServerStats
	log   *slog.Logger
	now   func() time.Time

	// applyMu serialises Apply so that two sources cannot interleave their
	// engine swap and state update (the state must describe what serves).
	applyMu sync.Mutex
	mu      sync.RWMutex
	state   State
	cfg     *config.Config // what state describes
	sync    SyncInfo
	lastErr errorInfo

	controlPlane string
	onServe      func(ServeEvent)
	fallbackSt   func() FallbackStatus // set by NewFallbackImport, under mu
	exporterSt   func() ExporterStatus

	// cpServed is closed the first time a configuration from the CP is
	// served (applied or confirmed): the fallback importer stops then.
	cpServed     chan struct{}
	cpServedOnce sync.Once

	draining atomic.Bool
}

// NewNode returns a node driving opts.Engine.
func NewNode(opts Options) *Node {
	if opts.Engine == nil {
		panic("dp.NewNode: Options.Engine is nil")
	}
	n := &Node{eng: opts.Engine, stats: opts.Stats, log: opts.Logger, now: opts.Now, controlPlane: opts.ControlPlane,
		onServe: opts.OnServe, exporterSt: opts.ExporterStatus,
		cpServed: make(chan struct{})}
	if n.stats == nil {
		n.stats = func() ServerStats { return ServerStats{} }
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if n.now == nil {
		n.now = time.Now
	}
	return n
}

// State returns what the node currently serves.
func (n *Node) State() State {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.state
}

// Draining reports whether the node was asked to drain (POST /status/ready
// status=draining, or shutdown started): /status/ready then answers 503.
func (n *Node) Draining() bool { return n.draining.Load() }

// SetDraining marks the node as draining. Traffic keeps being served; only
// readiness changes, so that load balancers stop sending new requests.
func (n *Node) SetDraining(v bool) { n.draining.Store(v) }

// isEmpty reports whether cfg holds nothing but workspaces, the case Kong
// records under the all-zero hash and reports as not ready.
func isEmpty(cfg *config.Config) bool {
	if len(cfg.Services)+len(cfg.Routes)+len(cfg.Upstreams)+len(cfg.Targets)+len(cfg.Consumers)+
		len(cfg.Plugins)+len(cfg.Certificates)+len(cfg.SNIs)+len(cfg.CACertificates) > 0 {
		return false
	}
	for _, rows := range cfg.Extra {
		if len(rows) > 0 {
			return false
		}
	}
	return true
}

// Apply hands a snapshot to the engine and, if the engine accepts it, records
// it as the current configuration. It reports whether anything changed: a
// snapshot whose hash equals the current one is not re-applied (like Kong's
// "same config received from control plane, no need to reload"), although its
// source is recorded. On error the previous configuration keeps serving.
func (n *Node) Apply(s *Snapshot) (changed bool, err error) {
	return n.ApplyIf(s, nil)
}

// ErrSuperseded is ApplyIf's error when its condition refused the snapshot.
var ErrSuperseded = errors.New("superseded by the configuration being served")

// ApplyIf is Apply, done only if cond (nil = always) holds for the state
// being served, checked under the same lock as the swap: a source that may
// lose a race to a better one (the fallback importer to the CP) cannot
// replace it. When cond refuses, the error wraps ErrSuperseded.
func (n *Node) ApplyIf(s *Snapshot, cond func(cur State) bool) (changed bool, err error) {
	if s == nil || s.Config == nil {
		return false, errors.New("apply configuration: no configuration given")
	}
	hash := s.Hash
	switch {
	case hash == "":
		// config.Hash gives EmptyHash for a config with nothing but workspaces.
		hash, _ = config.Hash(s.Config)
	case isEmpty(s.Config):
		// Kong records an empty config under the all-zero hash whatever
		// hash the control plane sent with it.
		hash = config.EmptyHash
	}

	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	cur := n.State()
	if cond != nil && !cond(cur) {
		return false, fmt.Errorf("%s configuration %s (hash %s) not applied: %w (source %s, hash %s)",
			s.Source, s.Origin, hash, ErrSuperseded, orNone(cur.Source), orEmpty(cur.Hash))
	}
	if cur.Hash == hash {
		n.mu.Lock()
		n.state.Source, n.state.Origin = s.Source, s.Origin
		cfg := n.cfg
		n.mu.Unlock()
		n.log.Info("configuration unchanged, not reloaded", "source", s.Source, "origin", s.Origin, "hash", hash)
		n.served(ServeEvent{Config: cfg, Hash: hash, Source: s.Source, Origin: s.Origin})
		return false, nil
	}
	if err := n.eng.Apply(s.Config, hash); err != nil {
		return false, fmt.Errorf("apply %s configuration %s (hash %s): %w", s.Source, s.Origin, hash, err)
	}
	st := State{
		Hash: hash, Source: s.Source, Origin: s.Origin, LoadedAt: n.now(),
		Services: len(s.Config.Services), Routes: len(s.Config.Routes),
	}
	n.mu.Lock()
	n.state = st
	n.cfg = s.Config
	n.mu.Unlock()
	n.served(ServeEvent{Config: s.Config, Hash: hash, Source: s.Source, Origin: s.Origin, Changed: true})
	n.log.Info("configuration loaded", "source", st.Source, "origin", st.Origin, "hash", hash,
		"previous_hash", orEmpty(cur.Hash), "services", st.Services, "routes", st.Routes)
	if hash == config.EmptyHash {
		n.log.Warn("the configuration is empty: every request gets 404 and /status/ready reports not ready",
			"source", st.Source, "origin", st.Origin)
	}
	return true, nil
}

// Load asks a loader for a configuration and applies it.
func (n *Node) Load(ctx context.Context, l Loader) (changed bool, err error) {
	s, err := l.Load(ctx)
	if err != nil {
		return false, err
	}
	if s.Source == "" {
		s.Source = l.Source()
	}
	return n.Apply(s)
}

// LogConfigError logs a failed load or apply at ERROR. A validation error is
// logged one record per invalid field, so every problem is visible in
// structured logs rather than folded into one multi-line string.
func LogConfigError(log *slog.Logger, msg string, err error, attrs ...any) {
	var ve *config.ValidationError
	if errors.As(err, &ve) && len(ve.Errors) > 0 {
		for _, e := range ve.Errors {
			a := []any{"file", ve.File, "entity_type", e.EntityType}
			if e.EntityName != "" {
				a = append(a, "entity_name", e.EntityName)
			}
			if e.EntityID != "" {
				a = append(a, "entity_id", e.EntityID)
			}
			if e.Field != "" && e.Field != "@entity" {
				a = append(a, "field", e.Field)
			}
			if e.Line > 0 {
				a = append(a, "line", e.Line)
			}
			a = append(append(a, "error", e.Message), attrs...)
			log.Error(msg, a...)
		}
		log.Error(msg, append(attrs, "file", ve.File, "errors", len(ve.Errors))...)
		return
	}
	log.Error(msg, append(attrs, "error", err)...)
}

// served tells the observers that a source vouches for what the node
// serves. The caller holds applyMu (not mu).
func (n *Node) served(ev ServeEvent) {
	if ev.Source == SourceCP {
		n.cpServedOnce.Do(func() { close(n.cpServed) })
	}
	if n.onServe != nil && ev.Config != nil {
		n.onServe(ev)
	}
}

// CPServed is closed once the node has served a configuration from its
// control plane (applied, or the running one confirmed by the CP).
func (n *Node) CPServed() <-chan struct{} { return n.cpServed }

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func orEmpty(h string) string {
	if h == "" {
		return config.EmptyHash
	}
	return h
}

// RunOptions are the listeners a node serves on.
type RunOptions struct {
	Proxy  []net.Listener // may be empty (proxy_listen = off)
	Status net.Listener   // nil when status_listen = off
	// DrainTimeout bounds the graceful drain at shutdown.
	DrainTimeout time.Duration
}

// Run serves proxy traffic and the status API until ctx is cancelled (the
// SIGTERM path) or a listener fails. It then marks the node draining, lets
// in-flight requests finish within DrainTimeout and returns. The error is nil
// for a requested shutdown, even when the drain timed out (that is logged).
func (n *Node) Run(ctx context.Context, ro RunOptions) error {
	var (
		stopping atomic.Bool
		wg       sync.WaitGroup
		errc     = make(chan error, len(ro.Proxy)+1)
	)
	var statusSrv *http.Server
	if ro.Status != nil {
		statusSrv = &http.Server{
			Handler:           n.StatusHandler(),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       60 * time.Second,
			ErrorLog:          slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := statusSrv.Serve(ro.Status)
			if !stopping.Load() && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("status listener %s: %w", ro.Status.Addr(), err)
			}
		}()
	}
	for _, ln := range ro.Proxy {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := n.eng.Serve(ln)
			if !stopping.Load() {
				if err == nil {
					err = errors.New("stopped unexpectedly")
				}
				errc <- fmt.Errorf("proxy listener %s: %w", ln.Addr(), err)
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
		n.log.Info("shutting down: draining in-flight requests", "timeout", ro.DrainTimeout)
	case runErr = <-errc:
		n.log.Error("shutting down after a listener failed", "error", runErr)
	}
	stopping.Store(true)
	n.SetDraining(true)

	dctx, cancel := context.WithTimeout(context.Background(), ro.DrainTimeout)
	defer cancel()
	if err := n.eng.Shutdown(dctx); err != nil {
		n.log.Warn("drain did not complete, in-flight requests were cut", "timeout", ro.DrainTimeout, "error", err)
	}
	if statusSrv != nil {
		// The status API stays up during the drain so probes see "draining";
		// it only has short requests, so close it once the proxy is done.
		sctx, scancel := context.WithTimeout(context.Background(), time.Second)
		if err := statusSrv.Shutdown(sctx); err != nil {
			_ = statusSrv.Close()
		}
		scancel()
	}
	// Serve goroutines return once their listeners are closed; bound the wait
	// so an engine that does not honour Shutdown cannot hang the process.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-dctx.Done():
	}
	n.log.Info("stopped")
	return runErr
}
