// Package cp is kongfb's control plane: it wires the configuration store to
// the Kong-compatible Admin API, the status API and, in hybrid mode, the
// cluster listener that pushes the configuration to data planes
// (internal/cp/cluster), and owns their listeners and graceful shutdown.
package cp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kongfb/kongfb/internal/cp/admin"
	"github.com/kongfb/kongfb/internal/cp/cluster"
	"github.com/kongfb/kongfb/internal/cp/store"
	wire "github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
)

// DefaultShutdownTimeout bounds how long Serve waits for in-flight Admin API
// requests after its context ends.
const DefaultShutdownTimeout = 10 * time.Second

// Options configure a control plane Server.
type Options struct {
	// Store is the configuration store (opened by the caller, closed by it
	// too). Required.
	Store store.Store
	// AdminListen and StatusListen are host:port addresses to bind ("" port
	// 0 picks a free one). StatusListen may be empty (status API off).
	AdminListen  []string
	StatusListen []string
	// Token, when set, is required in the Kong-Admin-Token header.
	Token string
	// NodeID and Hostname are reported by GET /.
	NodeID   string
	Hostname string
	// Configuration is reported by GET / (kong.conf-style keys).
	Configuration map[string]any
	// MaxBodyBytes bounds Admin API request bodies (0 = admin default).
	MaxBodyBytes int64
	// ShutdownTimeout overrides DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Mount adds Admin API handlers by path prefix (see admin.Options).
	Mount map[string]http.Handler
	// Cluster, when set, runs the hybrid-mode cluster listener over Store
	// (its Store and Logger are filled from these options). Nil makes an
	// Admin-only control plane: GET /clustering/data-planes answers 400.
	Cluster *cluster.Options
	Logger  *slog.Logger
}

// Server is a running control plane node.
type Server struct {
	opts    Options
	log     *slog.Logger
	admin   *admin.Handler
	stats   *admin.Stats
	cluster *cluster.Server
	mu      sync.Mutex
	servers []*http.Server
	lns     []net.Listener
	adminA  []string
	statusA []string
}

// New builds the server; nothing listens until Listen.
func New(opts Options) (*Server, error) {
	if opts.Store == nil {
		return nil, errors.New("control plane: no store")
	}
	if len(opts.AdminListen) == 0 {
		return nil, errors.New("control plane: no admin listen address")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	// One Reparser for the push loop and GET /config: both parse the
	// same stored rows, and a large configuration is then kept once.
	parser := &config.Reparser{}
	var cs *cluster.Server
	mount := map[string]http.Handler{}
	for p, h := range opts.Mount {
		mount[p] = h
	}
	if opts.Cluster != nil {
		co := *opts.Cluster
		co.Store = opts.Store
		if co.Parser == nil {
			co.Parser = parser
		}
		if co.Logger == nil {
			co.Logger = opts.Logger
		}
		var err error
		if cs, err = cluster.New(co); err != nil {
			return nil, err
		}
	}
	if _, ok := mount["/clustering/"]; !ok {
		var rows admin.DataPlaneRows
		if cs != nil {
			rows = cs.Registry().Rows
		}
		mount["/clustering/"] = admin.ClusteringHandler(rows)
	}
	stats := &admin.Stats{}
	h, err := admin.New(admin.Options{
		Store:         opts.Store,
		Logger:        opts.Logger,
		NodeID:        opts.NodeID,
		Hostname:      opts.Hostname,
		Token:         opts.Token,
		MaxBodyBytes:  opts.MaxBodyBytes,
		Configuration: opts.Configuration,
		Stats:         stats,
		Mount:         mount,
		Parser:        parser,
	})
	if err != nil {
		return nil, err
	}
	return &Server{opts: opts, log: opts.Logger, admin: h, stats: stats, cluster: cs}, nil
}

// Admin returns the Admin API handler (for tests and embedding).
func (s *Server) Admin() *admin.Handler { return s.admin }

// Cluster returns the hybrid-mode cluster server, nil for an Admin-only
// control plane.
func (s *Server) Cluster() *cluster.Server { return s.cluster }

// ClusterAddr is the bound cluster listener address ("" without one or
// before Listen).
func (s *Server) ClusterAddr() string {
	if s.cluster == nil {
		return ""
	}
	return s.cluster.Addr()
}

// Listen binds every listener, so that a port conflict is reported before
// the node claims to be up. It warns when the Admin API is reachable from
// other hosts without a token: anyone who can connect could then rewrite the
// gateway's configuration.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	bind := func(kind, addr string, h http.Handler) (string, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return "", fmt.Errorf("%s %s: %w", kind, addr, err)
		}
		srv := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       120 * time.Second,
			MaxHeaderBytes:    1 << 20,
			ConnState:         s.stats.ConnState,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		s.lns = append(s.lns, ln)
		s.servers = append(s.servers, srv)
		return ln.Addr().String(), nil
	}
	for _, a := range s.opts.AdminListen {
		bound, err := bind("admin_listen", a, s.admin)
		if err != nil {
			s.closeListeners()
			return err
		}
		s.adminA = append(s.adminA, bound)
		if s.opts.Token == "" && !IsLoopback(a) {
			s.log.Warn("INSECURE: the Admin API listens on a non-loopback address without an admin token; "+
				"anyone who can reach it can change the whole gateway configuration. "+
				"Set --admin-token / KONG_ADMIN_TOKEN or bind to 127.0.0.1.", "admin_listen", a)
		}
	}
	for _, a := range s.opts.StatusListen {
		bound, err := bind("status_listen", a, s.admin.StatusHandler())
		if err != nil {
			s.closeListeners()
			return err
		}
		s.statusA = append(s.statusA, bound)
	}
	if s.cluster != nil {
		if err := s.cluster.Listen(); err != nil {
			s.closeListeners()
			return err
		}
	}
	return nil
}

func (s *Server) closeListeners() {
	for _, ln := range s.lns {
		_ = ln.Close()
	}
	s.lns, s.servers, s.adminA, s.statusA = nil, nil, nil, nil
}

// AdminAddrs and StatusAddrs are the bound addresses (after Listen).
func (s *Server) AdminAddrs() []string  { return append([]string(nil), s.adminA...) }
func (s *Server) StatusAddrs() []string { return append([]string(nil), s.statusA...) }

// Serve serves every listener until ctx ends, then stops accepting and
// waits up to ShutdownTimeout for in-flight requests. It calls Listen if
// that was not done.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	bound := len(s.lns) > 0
	s.mu.Unlock()
	if !bound {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	errc := make(chan error, len(s.servers)+1)
	// The cluster server stops with this context, after the Admin API
	// listeners (a write accepted during shutdown is still pushed if the
	// push loop is running).
	cctx, ccancel := context.WithCancel(context.Background())
	defer ccancel()
	clusterDone := make(chan struct{})
	if s.cluster != nil {
		go func() {
			defer close(clusterDone)
			if err := s.cluster.Serve(cctx); err != nil {
				errc <- err
				return
			}
			if cctx.Err() == nil {
				errc <- errors.New("cluster listener stopped")
			}
		}()
	} else {
		close(clusterDone)
	}
	for i, srv := range s.servers {
		go func(srv *http.Server, ln net.Listener) {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", ln.Addr(), err)
				return
			}
			errc <- nil
		}(srv, s.lns[i])
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		// A listener failed: stop the others too, the node is not whole.
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	var shutErr error
	for _, srv := range s.servers {
		if err := srv.Shutdown(sctx); err != nil && shutErr == nil {
			shutErr = fmt.Errorf("shutdown: %w", err)
			_ = srv.Close()
		}
	}
	ccancel()
	<-clusterDone
	if serveErr != nil {
		return serveErr
	}
	return shutErr
}

// IsLoopback reports whether a listen address only accepts local
// connections (127.0.0.0/8, ::1, localhost). An empty host, 0.0.0.0 and ::
// listen on every interface.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// NodeID returns the node id stored in <prefix>/node_id, creating it (a
// random UUID) on first use, so that GET / reports a stable id across
// restarts as Kong does.
func NodeID(prefix string) (string, error) {
	return wire.LoadOrCreateNodeID(filepath.Join(prefix, "node_id"))
}
