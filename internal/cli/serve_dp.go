package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/dp"
	"github.com/kongfb/kongfb/internal/dp/cache"
	"github.com/kongfb/kongfb/internal/dp/cpclient"
	"github.com/kongfb/kongfb/internal/proxy"
	"github.com/kongfb/kongfb/pkg/cluster"
)

func init() { registerServe(newServeDPCommand) }

// serveDPOptions are the settings of `kongfb serve dp`.
type serveDPOptions struct {
	ProxyListen      string
	StatusListen     string
	AllowDebugHeader bool
	Declarative      string
	DrainTimeout     time.Duration

	// Hybrid mode (data_plane role): the CP to sync from and the link's
	// settings. ControlPlane "" means DB-less.
	ControlPlane      string
	ClusterCert       string
	ClusterCertKey    string
	ClusterMTLS       string
	ClusterCACert     string
	ClusterServerName string
	ClusterMaxPayload int64
	PingInterval      time.Duration
	PingWait          time.Duration // 0: 1.5 x PingInterval, as Kong
	ReconnectMin      time.Duration
	ReconnectMax      time.Duration
	CPConnectTimeout  time.Duration
	Prefix            string
	NodeID            string
	CacheEncrypt      bool

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
	{"cp", "KONG_CLUSTER_CONTROL_PLANE"},
	{"cluster-cert", "KONG_CLUSTER_CERT"},
	{"cluster-cert-key", "KONG_CLUSTER_CERT_KEY"},
	{"cluster-mtls", "KONG_CLUSTER_MTLS"},
	{"cluster-ca-cert", "KONG_CLUSTER_CA_CERT"},
	{"cluster-server-name", "KONG_CLUSTER_SERVER_NAME"},
	{"cluster-max-payload", "KONG_CLUSTER_MAX_PAYLOAD"},
	{"prefix", "KONG_PREFIX"},
	{"node-id", "KONG_NODE_ID"},
}

// serveDPTestHook lets tests adjust the options the command built (to set
// Ready) before it runs; nil outside tests.
var serveDPTestHook func(*serveDPOptions)

func newServeDPCommand(a *app) *cobra.Command {
	o := serveDPOptions{}
	var allowDebug, cacheEncrypt kongBool
	drain := nginxDuration(10 * time.Second)
	pingInterval := nginxDuration(cluster.DefaultPingInterval)
	pingWait := nginxDuration(0)
	reconnectMin := nginxDuration(cpclient.DefaultReconnectMin)
	reconnectMax := nginxDuration(cpclient.DefaultReconnectMax)
	cpConnectTimeout := nginxDuration(cpclient.DefaultConnectTimeout)
	cmd := &cobra.Command{
		Use:   "dp",
		Short: "Run a data plane that proxies with Kong's routing semantics",
		Long: `Run a data plane. With --declarative it runs DB-less: the file (decK kong.yaml
or a Kong config.json export) is the configuration, validated before anything
listens. An invalid file is reported in full and the command exits 1.

With --cp it runs in hybrid mode (Kong's role = data_plane): it connects to the
control plane's cluster listener over mutual TLS (--cluster-cert and
--cluster-cert-key; --cluster-mtls shared or pki), receives every
configuration the CP pushes, validates it and serves it. A configuration that
fails validation is rejected: the running one stays, every error is logged and
/status shows it (kongfb.last_error). When the link breaks the node keeps
serving and reconnects after a random 5-10 s.

Every configuration from the CP is also written to <prefix>/config.cache
(atomically; checksummed; gzip'd JSON of Kong's export document). At start the
cache is served at once, before the CP is reached, so a restarted node serves
even while the CP is down (/status kongfb.config_source = "cache"); the CP's
configuration then replaces it. A corrupt cache is renamed to
config.cache.corrupt-<time>, reported, and never served. With --cache-encrypt
the cache is sealed with AES-256-GCM under a key derived (HKDF-SHA256) from
the cluster private key: the key never leaves the cluster key file, and a
cache written under another key is refused (renamed config.cache.unreadable-<time>).
The prefix also holds the node id (<prefix>/kong.id, as Kong) and a lock that
keeps two data planes from sharing it.

--declarative and --cp are mutually exclusive.

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
  kill -HUP <pid>

  # hybrid mode: sync from a control plane (shared cluster certificate)
  kongfb serve dp --cp cp.internal:8005 --cluster-cert cluster.crt \
    --cluster-cert-key cluster.key --prefix /var/lib/kongfb-dp

  # the same with Kong's environment names, PKI mode
  KONG_CLUSTER_CONTROL_PLANE=cp.internal:8005 KONG_CLUSTER_MTLS=pki \
    KONG_CLUSTER_CERT=dp.crt KONG_CLUSTER_CERT_KEY=dp.key KONG_CLUSTER_CA_CERT=ca.crt \
    KONG_CLUSTER_SERVER_NAME=cp.internal KONG_PREFIX=/var/lib/kongfb-dp kongfb serve dp`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := kongEnvDefaults(a, cmd, serveDPEnv); err != nil {
				return err
			}
			o.AllowDebugHeader = bool(allowDebug)
			o.DrainTimeout = time.Duration(drain)
			o.CacheEncrypt = bool(cacheEncrypt)
			o.PingInterval = time.Duration(pingInterval)
			o.PingWait = time.Duration(pingWait)
			o.ReconnectMin = time.Duration(reconnectMin)
			o.ReconnectMax = time.Duration(reconnectMax)
			o.CPConnectTimeout = time.Duration(cpConnectTimeout)
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

	f.StringVar(&o.ControlPlane, "cp", "", "hybrid mode: the control plane's cluster listener, host:port [KONG_CLUSTER_CONTROL_PLANE]")
	f.StringVar(&o.ClusterCert, "cluster-cert", "", "cluster certificate: a file, inline PEM or base64 PEM [KONG_CLUSTER_CERT]")
	f.StringVar(&o.ClusterCertKey, "cluster-cert-key", "", "cluster certificate's private key: a file, inline PEM or base64 PEM [KONG_CLUSTER_CERT_KEY]")
	f.StringVar(&o.ClusterMTLS, "cluster-mtls", string(cluster.TLSModeShared), "shared (CP and DPs hold the same certificate) or pki (certificates from --cluster-ca-cert) [KONG_CLUSTER_MTLS]")
	f.StringVar(&o.ClusterCACert, "cluster-ca-cert", "", "pki mode: the CA that issued the CP's certificate (empty: system roots) [KONG_CLUSTER_CA_CERT]")
	f.StringVar(&o.ClusterServerName, "cluster-server-name", "", "pki mode: SNI and the name the CP's certificate must carry (default: the --cp host) [KONG_CLUSTER_SERVER_NAME]")
	f.Int64Var(&o.ClusterMaxPayload, "cluster-max-payload", cluster.DefaultMaxPayload, "largest (compressed) frame accepted from the CP, bytes; at least 4194304 [KONG_CLUSTER_MAX_PAYLOAD]")
	f.Var(&pingInterval, "cluster-ping-interval", "how often the DP pings the CP with its config hash")
	f.Var(&pingWait, "cluster-ping-wait", "silence after which the link counts as dead and is re-established (default 1.5 x --cluster-ping-interval = 45s)")
	f.Var(&reconnectMin, "cluster-reconnect-min", "shortest random delay before reconnecting to the CP")
	f.Var(&reconnectMax, "cluster-reconnect-max", "longest random delay before reconnecting to the CP")
	f.Var(&cpConnectTimeout, "cp-connect-timeout", "how long the first connection attempt may take before the CP counts as unreachable")
	f.StringVar(&o.Prefix, "prefix", store.DefaultPrefix, "hybrid mode: data directory (node id kong.id, config.cache) [KONG_PREFIX]")
	f.StringVar(&o.NodeID, "node-id", "", "node id announced to the CP (default: generated once, kept in <prefix>/kong.id) [KONG_NODE_ID]")
	f.Var(&cacheEncrypt, "cache-encrypt", "encrypt the config cache with a key derived from --cluster-cert-key (AES-256-GCM)")
	f.Lookup("cache-encrypt").NoOptDefVal = "on"
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

	var hy *hybrid
	if o.ControlPlane != "" {
		if o.Declarative != "" {
			return &ExitError{Code: ExitUsage, Err: errors.New("--declarative (KONG_DECLARATIVE_CONFIG) and --cp (KONG_CLUSTER_CONTROL_PLANE) are mutually exclusive: " +
				"a data plane takes its configuration either from a file (DB-less) or from a control plane (hybrid)")}
		}
		if hy, err = setupHybrid(o, log); err != nil {
			return err
		}
		defer hy.close()
	}

	eng := proxy.New(proxy.Options{AllowDebugHeader: o.AllowDebugHeader, Logger: log})
	node := dp.NewNode(dp.Options{
		Engine:       eng,
		Logger:       log,
		ControlPlane: o.ControlPlane,
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
	switch {
	case o.Declarative != "":
		loader = dp.DeclarativeFile{Path: o.Declarative}
		if _, err := node.Load(ctx, loader); err != nil {
			return &ExitError{Code: ExitFailure, Err: err}
		}
	case hy != nil:
		// Like Kong with its LMDB store, serve the cached configuration at
		// once; the CP replaces it when it is reached.
		if cache.Restore(node, hy.cache, log) {
			hy.restoredHash = node.State().Hash
		} else {
			log.Warn("no usable cached configuration: every request gets 404 until the control plane sends one")
		}
	default:
		log.Warn("no declarative config (--declarative / KONG_DECLARATIVE_CONFIG): every request gets 404 and /status/ready reports not ready")
	}
	var client *cpclient.Client
	if hy != nil {
		if client, err = hy.client(node, log); err != nil {
			return &ExitError{Code: ExitUsage, Err: err}
		}
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
		"config_hash", node.State().Hash, "config_source", node.State().Source,
		"control_plane", o.ControlPlane, "allow_debug_header", o.AllowDebugHeader)

	rctx, cancelReload := context.WithCancel(ctx)
	defer cancelReload()
	go reloadLoop(rctx, node, loader, o.Reload, log)

	if client != nil {
		cctx, cancelClient := context.WithCancel(ctx)
		clientDone := make(chan struct{})
		go func() { defer close(clientDone); _ = client.Run(cctx) }()
		// The sync client must be gone before the cache is closed: an apply
		// in progress finishes and writes the cache first.
		defer func() { cancelClient(); <-clientDone }()
	}

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
			log.Warn("reload requested but there is no declarative config to re-read (in hybrid mode the control plane pushes every change)")
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

// hybrid is the set-up of a data plane in hybrid mode: the settings checked,
// the TLS loaded, the node id and the cache ready.
type hybrid struct {
	o            serveDPOptions
	tls          cluster.TLSOptions
	nodeID       string
	hostname     string
	cache        *cache.Cache
	restoredHash string
}

// setupHybrid checks the hybrid settings and prepares the prefix. Errors are
// *ExitError: 2 for bad settings, 1 for a prefix that cannot be used.
func setupHybrid(o serveDPOptions, log *slog.Logger) (*hybrid, error) {
	usage := func(err error) error { return &ExitError{Code: ExitUsage, Err: err} }
	if strings.TrimSpace(o.ClusterCert) == "" || strings.TrimSpace(o.ClusterCertKey) == "" {
		return nil, usage(errors.New("cluster certificate and key must be provided to use Hybrid mode " +
			"(--cluster-cert and --cluster-cert-key, or KONG_CLUSTER_CERT and KONG_CLUSTER_CERT_KEY)"))
	}
	mode, err := cluster.ParseTLSMode(o.ClusterMTLS)
	if err != nil {
		return nil, usage(err)
	}
	if err := cluster.ValidateMaxPayload(o.ClusterMaxPayload); err != nil {
		return nil, usage(err)
	}
	if o.PingInterval <= 0 {
		return nil, usage(errors.New("--cluster-ping-interval must be greater than 0"))
	}
	if o.PingWait == 0 {
		o.PingWait = o.PingInterval * 3 / 2
	}
	if o.PingWait <= o.PingInterval {
		return nil, usage(fmt.Errorf("--cluster-ping-wait (%s) must be longer than --cluster-ping-interval (%s)", o.PingWait, o.PingInterval))
	}
	if o.ReconnectMin <= 0 || o.ReconnectMax < o.ReconnectMin {
		return nil, usage(fmt.Errorf("reconnect delay: want 0 < --cluster-reconnect-min (%s) <= --cluster-reconnect-max (%s)", o.ReconnectMin, o.ReconnectMax))
	}
	if o.CPConnectTimeout <= 0 {
		return nil, usage(errors.New("--cp-connect-timeout must be greater than 0"))
	}
	if _, err := cluster.OutletURL(o.ControlPlane, cluster.NodeInfo{}); err != nil {
		return nil, usage(fmt.Errorf("cluster_control_plane: %w", err))
	}
	if o.NodeID != "" {
		if _, err := uuid.Parse(o.NodeID); err != nil {
			return nil, usage(fmt.Errorf("node_id %q is not a UUID", o.NodeID))
		}
	}
	if strings.TrimSpace(o.Prefix) == "" {
		return nil, usage(errors.New("prefix is empty"))
	}
	tlsOpts := cluster.TLSOptions{
		Mode: mode, Cert: o.ClusterCert, Key: o.ClusterCertKey,
		CA: o.ClusterCACert, ServerName: o.ClusterServerName,
	}
	// Load the certificates now so that a bad file stops the start with a
	// clear error instead of failing every connection attempt.
	if _, err := cluster.ClientTLSConfig(tlsOpts); err != nil {
		return nil, usage(err)
	}
	h := &hybrid{o: o, tls: tlsOpts}
	var key []byte
	if o.CacheEncrypt {
		pair, err := cluster.LoadKeyPair(o.ClusterCert, o.ClusterCertKey)
		if err != nil {
			return nil, usage(err)
		}
		if key, err = cache.DeriveKey(pair.PrivateKey); err != nil {
			return nil, usage(err)
		}
	}
	if h.nodeID = o.NodeID; h.nodeID == "" {
		if h.nodeID, err = dp.NodeID(o.Prefix); err != nil {
			return nil, &ExitError{Code: ExitFailure, Err: err}
		}
	}
	if h.hostname, err = os.Hostname(); err != nil {
		h.hostname = "unknown"
	}
	if h.cache, err = cache.Open(o.Prefix, cache.Options{Key: key, Logger: log}); err != nil {
		return nil, &ExitError{Code: ExitFailure, Err: err}
	}
	log.Info("hybrid mode", "control_plane", o.ControlPlane, "cluster_mtls", string(mode), "node_id", h.nodeID,
		"prefix", o.Prefix, "cache", h.cache.Path(), "cache_encrypted", h.cache.Encrypted())
	return h, nil
}

// client builds the sync client for node.
func (h *hybrid) client(node *dp.Node, log *slog.Logger) (*cpclient.Client, error) {
	tconf, err := cluster.ClientTLSConfig(h.tls)
	if err != nil {
		return nil, err
	}
	c, err := cpclient.New(cpclient.Options{
		Address: h.o.ControlPlane, TLS: tconf, Node: node, Cache: h.cache,
		NodeID: h.nodeID, Hostname: h.hostname,
		// kongfb's proxy runs no plugins yet (the engine refuses configs
		// that use any), so it announces none: a CP then skips configs
		// that use plugins (plugin_set_incompatible) rather than sending
		// what this node would reject.
		Plugins:    []cluster.PluginInfo{},
		MaxPayload: h.o.ClusterMaxPayload, PingInterval: h.o.PingInterval, PingWait: h.o.PingWait,
		ConnectTimeout: h.o.CPConnectTimeout, ReconnectMin: h.o.ReconnectMin, ReconnectMax: h.o.ReconnectMax,
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	if h.restoredHash != "" {
		c.SetCachedHash(h.restoredHash)
	}
	return c, nil
}

// close releases the prefix lock; every cache write is already on disk.
func (h *hybrid) close() { _ = h.cache.Close() }
