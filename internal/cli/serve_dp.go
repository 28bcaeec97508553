package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/internal/dp"
	"github.com/kongfb/kongfb/internal/proxy"
)

func init() { registerServe(newServeDPCommand) }

// serveDPOptions are the settings of `kongfb serve dp`.
type serveDPOptions struct {
	ProxyListen      string
	StatusListen     string
	AllowDebugHeader bool
	Declarative      string
	DrainTimeout     time.Duration

	Logger *slog.Logger
	// Reload receives one value per reload request (SIGHUP in the command).
	Reload <-chan struct{}
	// Ready, if set, is called once every listener is bound and the initial
	// configuration is applied, with the bound addresses (tests listen on
	// port 0 and learn the ports here).
	Ready func(serveDPAddrs)
}

// serveDPAddrs are the bound addresses of a running data plane.
type serveDPAddrs struct {
	Proxy  []string // empty when proxy_listen is off
	Status string   // "" when status_listen is off
}

// serveDPEnv maps flags to Kong's environment names.
var serveDPEnv = [][2]string{
	{"proxy-listen", "KONG_PROXY_LISTEN"},
	{"status-listen", "KONG_STATUS_LISTEN"},
	{"declarative", "KONG_DECLARATIVE_CONFIG"},
	{"allow-debug-header", "KONG_ALLOW_DEBUG_HEADER"},
	{"drain-timeout", "KONG_NGINX_MAIN_WORKER_SHUTDOWN_TIMEOUT"},
}

// serveDPTestHook lets tests adjust the options the command built (to set
// Ready) before it runs; nil outside tests.
var serveDPTestHook func(*serveDPOptions)

func newServeDPCommand(a *app) *cobra.Command {
	o := serveDPOptions{}
	var allowDebug kongBool
	drain := nginxDuration(10 * time.Second)
	cmd := &cobra.Command{
		Use:   "dp",
		Short: "Run a data plane that proxies with Kong's routing semantics",
		Long: `Run a data plane. With --declarative it runs DB-less: the file (decK kong.yaml
or a Kong config.json export) is the configuration, validated before anything
listens. An invalid file is reported in full and the command exits 1.

Signals:
  SIGHUP           re-read the declarative file; if it is invalid the running
                   configuration is kept and every error is logged
  SIGTERM, SIGINT  stop accepting, finish in-flight requests (--drain-timeout),
                   exit 0; /status/ready answers 503 "draining" meanwhile

Status API (--status-listen):
  GET  /status         Kong's shape, with configuration_hash
  GET  /status/ready   200 once a non-empty configuration is loaded, else 503
  POST /status/ready   status=draining: report not ready while still serving

Listen values use kong.conf's syntax: "ip:port [flags][, ...]" or "off".
Flags such as reuseport and backlog=N are accepted and ignored; ssl and
proxy_protocol are refused.`,
		Example: `  # DB-less data plane on Kong's default ports
  kongfb serve dp --declarative examples/kong.yaml

  # the same with Kong's environment names
  KONG_DECLARATIVE_CONFIG=kong.yaml KONG_PROXY_LISTEN="0.0.0.0:8000 reuseport backlog=16384" \
    KONG_STATUS_LISTEN=0.0.0.0:8100 kongfb serve dp

  # reload after editing the file
  kill -HUP <pid>`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := kongEnvDefaults(a, cmd, serveDPEnv); err != nil {
				return err
			}
			o.AllowDebugHeader = bool(allowDebug)
			o.DrainTimeout = time.Duration(drain)
			o.Logger = a.logger()

			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			// After the first signal, restore the default action so a second
			// Ctrl-C ends a drain that takes too long.
			go func() { <-ctx.Done(); stop() }()

			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			reload := make(chan struct{}, 1)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						select {
						case reload <- struct{}{}:
						default: // a reload is already pending; it will read the newest file
						}
					}
				}
			}()
			o.Reload = reload
			if serveDPTestHook != nil {
				serveDPTestHook(&o)
			}
			return runServeDP(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.ProxyListen, "proxy-listen", "0.0.0.0:8000", `proxy listeners, kong.conf syntax ("ip:port [flags], ..." or "off") [KONG_PROXY_LISTEN]`)
	f.StringVar(&o.StatusListen, "status-listen", "127.0.0.1:8100", `status API listener ("ip:port" or "off") [KONG_STATUS_LISTEN]`)
	f.StringVar(&o.Declarative, "declarative", "", "declarative config file (decK kong.yaml or Kong config.json) [KONG_DECLARATIVE_CONFIG]")
	f.Var(&allowDebug, "allow-debug-header", "honour the Kong-Debug request header (adds Kong-Route-Id/-Name, Kong-Service-Id/-Name) [KONG_ALLOW_DEBUG_HEADER]")
	f.Lookup("allow-debug-header").NoOptDefVal = "on"
	f.Var(&drain, "drain-timeout", "how long SIGTERM waits for in-flight requests [KONG_NGINX_MAIN_WORKER_SHUTDOWN_TIMEOUT]")
	return cmd
}

// runServeDP runs a data plane until ctx is cancelled (the SIGTERM path).
// Errors are *ExitError: 2 for bad settings, 1 for an invalid configuration
// or a listener that cannot be bound.
func runServeDP(ctx context.Context, o serveDPOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	proxyListens, err := dp.ParseListen("proxy_listen", o.ProxyListen)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	statusListens, err := dp.ParseListen("status_listen", o.StatusListen)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	if len(statusListens) > 1 {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("status_listen: one address expected, got %d in %q", len(statusListens), o.StatusListen)}
	}
	for _, l := range append(append([]dp.Listen{}, proxyListens...), statusListens...) {
		if len(l.Ignored) > 0 {
			log.Debug("ignoring listen flags kongfb has no use for", "address", l.Addr, "flags", l.Ignored)
		}
	}

	eng := proxy.New(proxy.Options{AllowDebugHeader: o.AllowDebugHeader, Logger: log})
	node := dp.NewNode(dp.Options{
		Engine: eng,
		Logger: log,
		Stats: func() dp.ServerStats {
			s := eng.Stats()
			return dp.ServerStats{
				ConnectionsActive:   s.ConnectionsActive,
				ConnectionsReading:  s.ConnectionsReading,
				ConnectionsWriting:  s.ConnectionsWriting,
				ConnectionsWaiting:  s.ConnectionsWaiting,
				ConnectionsAccepted: int64(s.ConnectionsAccepted),
				ConnectionsHandled:  int64(s.ConnectionsHandled),
				TotalRequests:       int64(s.TotalRequests),
			}
		},
	})

	// Load before listening: a node never answers traffic from a file that
	// has not been validated, and an invalid file stops the start.
	var loader dp.Loader
	if o.Declarative != "" {
		loader = dp.DeclarativeFile{Path: o.Declarative}
		if _, err := node.Load(ctx, loader); err != nil {
			return &ExitError{Code: ExitFailure, Err: err}
		}
	} else {
		log.Warn("no declarative config (--declarative / KONG_DECLARATIVE_CONFIG): every request gets 404 and /status/ready reports not ready")
	}

	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}
	addrs := serveDPAddrs{}
	for _, l := range proxyListens {
		ln, err := net.Listen("tcp", l.Addr)
		if err != nil {
			closeAll()
			return &ExitError{Code: ExitFailure, Err: fmt.Errorf("proxy_listen %s: %w", l.Addr, err)}
		}
		lns = append(lns, ln)
		addrs.Proxy = append(addrs.Proxy, ln.Addr().String())
	}
	var statusLn net.Listener
	if len(statusListens) == 1 {
		statusLn, err = net.Listen("tcp", statusListens[0].Addr)
		if err != nil {
			closeAll()
			return &ExitError{Code: ExitFailure, Err: fmt.Errorf("status_listen %s: %w", statusListens[0].Addr, err)}
		}
		addrs.Status = statusLn.Addr().String()
	}
	log.Info("data plane started", "proxy_listen", addrs.Proxy, "status_listen", addrs.Status,
		"config_hash", node.State().Hash, "allow_debug_header", o.AllowDebugHeader)

	rctx, cancelReload := context.WithCancel(ctx)
	defer cancelReload()
	go reloadLoop(rctx, node, loader, o.Reload, log)

	if o.Ready != nil {
		o.Ready(addrs)
	}
	if err := node.Run(ctx, dp.RunOptions{Proxy: lns, Status: statusLn, DrainTimeout: o.DrainTimeout}); err != nil {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	return nil
}

// reloadLoop re-reads the declarative file on every reload request. A file
// that fails to load or apply never replaces the running configuration.
func reloadLoop(ctx context.Context, node *dp.Node, loader dp.Loader, reload <-chan struct{}, log *slog.Logger) {
	if reload == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
		}
		if loader == nil {
			log.Warn("reload requested but there is no declarative config to re-read")
			continue
		}
		log.Info("reloading configuration", "source", loader.Source())
		if _, err := node.Load(ctx, loader); err != nil {
			if errors.Is(err, context.Canceled) {
				return
			}
			dp.LogConfigError(log, "reload failed, keeping the running configuration", err,
				"running_hash", node.State().Hash)
		}
	}
}
