package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kongfb/kongfb/internal/cp/store"
	wire "github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
)

// DefaultListen is cluster_listen's default.
const DefaultListen = "0.0.0.0:8005"

// Retry bounds for a failed export: the first retry comes quickly (a
// transient database error), later ones back off so that a CP whose store
// stays broken does not hammer it or flood the log.
const (
	DefaultRetryMin = 200 * time.Millisecond
	DefaultRetryMax = 15 * time.Second
)

// Options configure a cluster Server.
type Options struct {
	// Store is the configuration store the pushes are read from. Required.
	Store store.Store
	// Listen is cluster_listen (host:port; port 0 picks a free one).
	Listen string
	// TLS are the cluster_cert, cluster_cert_key, cluster_mtls and
	// cluster_ca_cert settings. Cert and Key are required.
	TLS wire.TLSOptions
	// MaxPayload is cluster_max_payload: the largest compressed frame sent
	// or read (0 = 16 MiB).
	MaxPayload int64
	// PurgeDelay is cluster_data_plane_purge_delay (0 = 14 days).
	PurgeDelay time.Duration
	// Version is the CP's Kong version for the compatibility checks
	// (default config.KongVersion); Plugins the CP's plugins (default: the
	// bundled plugins at that version).
	Version string
	Plugins []wire.PluginInfo
	// PingWait is the silence after which a DP is dropped (0 = 45 s).
	PingWait time.Duration
	// RetryMin and RetryMax bound the backoff after a failed export.
	RetryMin, RetryMax time.Duration
	Logger             *slog.Logger
	// Parser turns the stored rows into the configuration on every export,
	// reusing the rows unchanged since its last parse; a control plane
	// shares it with the Admin API's GET /config. nil: the server's own.
	Parser *config.Reparser
	// OnExport, if set, is called from the push loop after every successful
	// export with the validated configuration (disabled entities dropped,
	// as pushed) and its config_hash; the fallback exporter of `serve cp
	// --export` hooks here. It must not block.
	OnExport func(cfg *config.Config, hash string)
}

// Stats count what the push loop did.
type Stats struct {
	// Exports counts successful exports; ExportErrors failed ones.
	Exports      uint64
	ExportErrors uint64
	// Pushes counts exports whose configuration changed and was handed to
	// the connected DPs; Sends counts frames written to DPs.
	Pushes uint64
	Sends  uint64
	// Connected is the number of DPs connected now.
	Connected int
}

// Server is the CP's side of hybrid mode: the cluster listener DPs connect
// to, the push loop that sends them the configuration, and the registry of
// DPs.
type Server struct {
	opts    Options
	log     *slog.Logger
	tlsConf *tls.Config
	reg     *Registry

	mu      sync.Mutex
	payload *Payload
	clients map[*client]struct{}
	ln      net.Listener
	srv     *http.Server
	ctx     context.Context // set by Serve; the connections' parent

	// kick asks the push loop to export now (a DP connected while no
	// payload exists).
	kick chan struct{}
	// pushed is signalled after every successful export (tests, benchmarks).
	pushedMu sync.Mutex
	pushed   chan struct{}

	conns sync.WaitGroup

	exports, exportErrors, pushes, sends atomic.Uint64

	// plugins is opts.Plugins with the versions parsed, for the per-push
	// plugin checks.
	plugins *wire.PluginSet
}

// New checks the options and loads the certificates; nothing listens until
// Listen.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("cluster: no store")
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxPayload == 0 {
		opts.MaxPayload = wire.DefaultMaxPayload
	}
	if err := wire.ValidateMaxPayload(opts.MaxPayload); err != nil {
		return nil, err
	}
	if opts.PurgeDelay == 0 {
		opts.PurgeDelay = DefaultPurgeDelay
	}
	if opts.PurgeDelay < MinPurgeDelay {
		return nil, fmt.Errorf("cluster_data_plane_purge_delay must be 60 or greater")
	}
	if opts.Version == "" {
		opts.Version = config.KongVersion
	}
	if _, err := wire.ParseVersion(opts.Version); err != nil {
		return nil, fmt.Errorf("cluster: control plane version %q: %w", opts.Version, err)
	}
	if opts.Plugins == nil {
		for _, p := range config.BundledPlugins() {
			opts.Plugins = append(opts.Plugins, wire.PluginInfo{Name: p, Version: opts.Version})
		}
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = DefaultRetryMin
	}
	if opts.Parser == nil {
		opts.Parser = &config.Reparser{}
	}
	if opts.RetryMax < opts.RetryMin {
		opts.RetryMax = max(DefaultRetryMax, opts.RetryMin)
	}
	if opts.TLS.Cert == "" || opts.TLS.Key == "" {
		return nil, errors.New("cluster certificate and key must be provided to use Hybrid mode (cluster_cert, cluster_cert_key)")
	}
	tlsOpts := opts.TLS
	if tlsOpts.Logger == nil {
		tlsOpts.Logger = opts.Logger
	}
	tlsConf, err := wire.ServerTLSConfig(tlsOpts)
	if err != nil {
		return nil, fmt.Errorf("cluster listener: %w", err)
	}
	return &Server{
		opts:    opts,
		plugins: wire.NewPluginSet(opts.Plugins),
		log:     opts.Logger,
		tlsConf: tlsConf,
		reg:     NewRegistry(opts.PurgeDelay),
		clients: map[*client]struct{}{},
		kick:    make(chan struct{}, 1),
		pushed:  make(chan struct{}),
	}, nil
}

// Registry is the list of DPs seen by this CP.
func (s *Server) Registry() *Registry { return s.reg }

// Listen binds the cluster listener, so that a port conflict is reported
// before the node claims to be up.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return nil
	}
	ln, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		return fmt.Errorf("cluster_listen %s: %w", s.opts.Listen, err)
	}
	s.ln = ln
	return nil
}

// Addr is the bound cluster listener address ("" before Listen).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Current returns the cached payload (nil before the first good export).
func (s *Server) Current() *Payload {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.payload
}

// Stats returns the push loop's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.clients)
	s.mu.Unlock()
	return Stats{
		Exports: s.exports.Load(), ExportErrors: s.exportErrors.Load(),
		Pushes: s.pushes.Load(), Sends: s.sends.Load(), Connected: n,
	}
}

// Exported returns a channel closed at the next successful export.
func (s *Server) Exported() <-chan struct{} {
	s.pushedMu.Lock()
	defer s.pushedMu.Unlock()
	return s.pushed
}

func (s *Server) signalExported() {
	s.pushedMu.Lock()
	close(s.pushed)
	s.pushed = make(chan struct{})
	s.pushedMu.Unlock()
}

// Serve accepts DPs and runs the push loop until ctx ends, then closes every
// DP connection (telling each DP the CP is going away) and returns. It calls
// Listen if that was not done.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mux := http.NewServeMux()
	mux.HandleFunc(wire.OutletPath, s.handleOutlet)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: wire.DefaultTimeout,
		MaxHeaderBytes:    64 << 10,
		// Refused certificates are logged by the TLS config with Kong's
		// message; net/http's own line about the same handshake would only
		// repeat it.
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	s.mu.Lock()
	s.srv = srv
	s.ctx = ctx
	ln := s.ln
	s.mu.Unlock()

	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		s.pushLoop(ctx)
	}()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, s.tlsConf)) }()

	var serveErr error
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			serveErr = fmt.Errorf("cluster listener %s: %w", ln.Addr(), err)
		}
	}
	cancel()
	// Upgraded connections are hijacked: Shutdown does not wait for them.
	// Cancelling ctx ends their read loops, which close them.
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	<-loopDone
	s.conns.Wait()
	return serveErr
}

// pushLoop exports the configuration whenever the store's version moves and
// hands the result to every connected DP.
//
// Leading edge: the first change after a quiet period is exported at once.
// While an export runs, the store's Watch channel keeps only the newest
// version, so any number of changes arriving meanwhile become exactly one
// follow-up export of the newest state. Kong instead sleeps
// db_update_frequency (5 s) after every push.
//
// A failed export keeps the last good payload (DPs keep what they have) and
// is retried with backoff even if no further change arrives.
func (s *Server) pushLoop(ctx context.Context) {
	watch := s.opts.Store.Watch(ctx)
	var (
		wanted  uint64
		pending = true // export once at start, as Kong does
		backoff time.Duration
		retry   *time.Timer
		retryC  <-chan time.Time
	)
	for {
		if pending {
			pending = false
			p, cfg, err := exportPayload(ctx, s.opts.Store, s.opts.Parser, s.opts.MaxPayload)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				s.exportErrors.Add(1)
				if backoff == 0 {
					backoff = s.opts.RetryMin
				} else {
					backoff = min(backoff*2, s.opts.RetryMax)
				}
				// Jitter spreads the retries of several CPs on one database.
				wait := backoff/2 + rand.N(backoff/2+1)
				attrs := []any{"error", err, "retry_in", wait.Round(time.Millisecond).String()}
				if cur := s.Current(); cur != nil {
					attrs = append(attrs, "serving_hash", cur.Hash, "serving_version", cur.Version)
				}
				s.log.Error("[clustering] unable to export config from database; data planes keep their current configuration", attrs...)
				if retry == nil {
					retry = time.NewTimer(wait)
				} else {
					retry.Reset(wait)
				}
				retryC = retry.C
			} else {
				backoff = 0
				if retry != nil {
					retry.Stop()
				}
				retryC = nil
				s.install(p)
				if s.opts.OnExport != nil && s.Current() == p {
					s.opts.OnExport(cfg, p.Hash)
				}
			}
		}
		select {
		case <-ctx.Done():
			if retry != nil {
				retry.Stop()
			}
			return
		case v, ok := <-watch:
			if !ok {
				if ctx.Err() == nil {
					s.log.Error("[clustering] the store stopped reporting changes (closed); no further configuration will be pushed")
				}
				watch = nil
				continue
			}
			if v > wanted {
				wanted = v
			}
			if cur := s.Current(); cur == nil || cur.Version < wanted {
				// While a retry is scheduled, a new change exports at once:
				// it may well succeed, and it is what the user just did.
				pending = true
			}
		case <-s.kick:
			// A DP is waiting for its first configuration. While a retry is
			// scheduled the store is known to be failing: the retry serves
			// it, and reconnecting DPs must not bypass the backoff.
			if s.Current() == nil && retryC == nil {
				pending = true
			}
		case <-retryC:
			retryC = nil
			pending = true
		}
	}
}

// install caches a new payload and hands it to every connected DP if the
// configuration changed.
func (s *Server) install(p *Payload) {
	s.exports.Add(1)
	s.mu.Lock()
	prev := s.payload
	if prev != nil && p.Version < prev.Version {
		// Never go back to an older state (cannot happen with one loop, but
		// a store may report versions out of order across reconnects).
		s.mu.Unlock()
		return
	}
	s.payload = p
	changed := prev == nil || prev.Hash != p.Hash
	var targets []*client
	if changed {
		targets = make([]*client, 0, len(s.clients))
		for c := range s.clients {
			targets = append(targets, c)
		}
	}
	s.mu.Unlock()
	defer s.signalExported()
	if !changed {
		s.log.Debug("[clustering] configuration unchanged, nothing to push", "version", p.Version, "config_hash", p.Hash)
		return
	}
	s.pushes.Add(1)
	for _, c := range targets {
		c.deliver(p)
	}
	s.log.Info("[clustering] config pushed", "data_planes", len(targets), "version", p.Version, "config_hash", p.Hash,
		"entities", p.Entities, "bytes", len(p.Frame), "export_ms", ms(p.ExportTook),
		"read_ms", ms(p.Stages.Read), "convert_ms", ms(p.Stages.Convert), "hash_ms", ms(p.Stages.Hash), "encode_ms", ms(p.Stages.Encode))
}

func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
