package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/dp"
	"github.com/kongfb/kongfb/internal/dp/cache"
	"github.com/kongfb/kongfb/internal/dp/cpclient"
	"github.com/kongfb/kongfb/internal/fallback"
	"github.com/kongfb/kongfb/internal/proxy"
	"github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
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
	// ClusterUseProxy tunnels the link to the CP through ProxyServer with
	// HTTP CONNECT (Kong's cluster_use_proxy and proxy_server).
	ClusterUseProxy bool
	ProxyServer     string

	// Fallback configuration (Kong's cluster_fallback_config_*).
	Fallback fallbackOptions

	Logger *slog.Logger
	// Reload receives one value per reload request (SIGHUP in the command).
	Reload <-chan struct{}
	// Ready, if set, is called once every listener is bound and the initial
	// configuration is applied, with the bound addresses (tests listen on
	// port 0 and learn the ports here).
	Ready func(serveDPAddrs)
	// onServe, if set (benchmarks), is also called with every configuration
	// the node starts serving, under the node's apply lock: it must not
	// block.
	onServe func(dp.ServeEvent)
	// ReadyFile (--ready-file), if set, is written atomically with the
	// bound addresses (JSON) at the same moment, for a parent process
	// that started this one on port 0 (`kongfb drill`).
	ReadyFile string
}

// serveDPAddrs are the bound addresses of a running data plane. The JSON
// form is the content of --ready-file.
type serveDPAddrs struct {
	PID    int      `json:"pid"`
	Proxy  []string `json:"proxy_listen"`  // empty when proxy_listen is off
	Status string   `json:"status_listen"` // "" when status_listen is off
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
	{"cluster-use-proxy", "KONG_CLUSTER_USE_PROXY"},
	{"proxy-server", "KONG_PROXY_SERVER"},
}

// serveDPTestHook lets tests adjust the options the command built (to set
// Ready) before it runs; nil outside tests.
var serveDPTestHook func(*serveDPOptions)

func newServeDPCommand(a *app) *cobra.Command {
	o := serveDPOptions{}
	var allowDebug, cacheEncrypt, useProxy kongBool
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

Fallback configuration (Kong's cluster_fallback_config_*, docs/FALLBACK.md):
  --export  the node joins the exporters' election (a lease in the storage);
            the leader writes every configuration it got from the CP and
            serves (never one that failed validation) to --fallback-storage
            (s3://bucket/prefix or file:///dir): a checksummed snapshot under
            <prefix>/<version>/snapshots/ and Kong's plain
            <prefix>/<version>/config.json. The first change goes out at
            once, later ones at most every --export-delay; failed uploads are
            retried. A dedicated exporter may run with --proxy-listen off.
  --import  when the CP cannot be reached at start (refused, failed, or no
            answer within --cp-connect-timeout) and no cache is served (or,
            with --prefer-newest, the snapshot is newer than the cache), the
            node imports the newest snapshot that verifies (checksum,
            signature with --snapshot-trusted-key, decryption with
            --snapshot-identity-file, schema) and serves it (/status
            kongfb.config_source "fallback"). It retries while the storage is
            down or holds nothing valid, and stays not ready meanwhile. The
            CP's configuration replaces the imported one once the CP is
            reached. /status kongfb.fallback and kongfb.exporter report both
            sides. S3 credentials come from the AWS chain (AWS_ACCESS_KEY_ID,
            AWS_SECRET_ACCESS_KEY, AWS_REGION, roles); an S3-compatible server
            is set with --s3-endpoint / AWS_CONFIG_STORAGE_ENDPOINT.

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

  # a backup node (exporter only) and a data plane that can start from it
  AWS_CONFIG_STORAGE_ENDPOINT=http://minio:9000 kongfb serve dp --cp cp:8005 \
    --cluster-cert cluster.crt --cluster-cert-key cluster.key \
    --proxy-listen off --export --fallback-storage s3://kong-backup/kong
  KONG_CLUSTER_FALLBACK_CONFIG_IMPORT=on KONG_CLUSTER_FALLBACK_CONFIG_STORAGE=s3://kong-backup/kong \
    kongfb serve dp --cp cp:8005 --cluster-cert cluster.crt --cluster-cert-key cluster.key

  # the same with Kong's environment names, PKI mode
  KONG_CLUSTER_CONTROL_PLANE=cp.internal:8005 KONG_CLUSTER_MTLS=pki \
    KONG_CLUSTER_CERT=dp.crt KONG_CLUSTER_CERT_KEY=dp.key KONG_CLUSTER_CA_CERT=ca.crt \
    KONG_CLUSTER_SERVER_NAME=cp.internal KONG_PREFIX=/var/lib/kongfb-dp kongfb serve dp`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := kongEnvDefaults(a, cmd, append(append([][2]string{}, serveDPEnv...), fallbackEnv...)); err != nil {
				return err
			}
			o.AllowDebugHeader = bool(allowDebug)
			o.DrainTimeout = time.Duration(drain)
			o.CacheEncrypt = bool(cacheEncrypt)
			o.ClusterUseProxy = bool(useProxy)
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
	f.Var(&useProxy, "cluster-use-proxy", "hybrid mode: reach the CP through --proxy-server (HTTP CONNECT) [KONG_CLUSTER_USE_PROXY]")
	f.Lookup("cluster-use-proxy").NoOptDefVal = "on"
	f.StringVar(&o.ProxyServer, "proxy-server", "", "HTTP proxy for --cluster-use-proxy, http://[user:password@]host:port [KONG_PROXY_SERVER]")
	addFallbackFlags(f, &o.Fallback, true)
	f.StringVar(&o.ReadyFile, "ready-file", "", "once every listener is bound, write the bound addresses and the pid to this file as JSON (atomically), for a parent that starts the DP on port 0")
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
	if err := prepareReadyFile(o.ReadyFile); err != nil {
		return err
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

	if o.ControlPlane != "" && len(proxyListens) == 0 && !o.Fallback.Export {
		// Kong's rule: a data plane that proxies nothing only makes sense
		// as a dedicated exporter (a backup node).
		return &ExitError{Code: ExitUsage, Err: errors.New(msgProxyListenOff)}
	}
	fb, err := checkFallback(o.Fallback, o.ControlPlane != "", "data_plane", log)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}

	// The storage client is built while the rest starts (building an S3
	// client reads the AWS configuration chain): a cold start from the
	// storage is on the critical path of a node without its CP.
	var (
		fbStore  *storeFuture
		importer *fallback.Importer
		prefetch *dp.Prefetch
	)
	if fb != nil {
		fbStore = fb.openStoreAsync(ctx, log)
		defer fbStore.Close()
		if fb.fo.Import {
			if importer, err = fallback.NewImporter(fallback.ImporterOptions{
				Store: fbStore, Verify: fb.verify, RetryMin: fb.fo.RetryMin, RetryMax: fb.fo.RetryMax, Logger: log,
			}); err != nil {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			// A node without a cache that will need the storage if its CP
			// is down reads it from now on; the result is applied only if
			// the first CP attempt fails (see dp.FallbackImport).
			if _, serr := os.Stat(filepath.Join(o.Prefix, cache.FileName)); serr != nil || fb.fo.PreferNewest {
				prefetch = dp.StartPrefetch(ctx, importer)
				defer prefetch.Stop()
			}
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

	// Fallback storage, exporter and importer (hybrid mode only, checked
	// above). The exporter runs before the node exists so that the node can
	// offer it every configuration it serves from the CP.
	var exporter *fallbackExport
	if fb != nil {
		if fb.fo.Export {
			st, err := fbStore.wait()
			if err != nil {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			if exporter, err = fb.startExport(ctx, st, hy.nodeID, log); err != nil {
				return &ExitError{Code: ExitUsage, Err: err}
			}
			defer exporter.stop()
		}
	}

	var exporterStatus func() dp.ExporterStatus
	if exporter != nil {
		exporterStatus = func() dp.ExporterStatus {
			return dp.ExporterStatusFrom(fbStore.String(), exporter.exporter.Status())
		}
	}
	eng := proxy.New(proxy.Options{AllowDebugHeader: o.AllowDebugHeader, Logger: log})
	var node *dp.Node
	node = dp.NewNode(dp.Options{
		Engine:         eng,
		Logger:         log,
		ControlPlane:   o.ControlPlane,
		ExporterStatus: exporterStatus,
		OnServe: func(ev dp.ServeEvent) {
			switch ev.Source {
			case dp.SourceCP:
				// Only what the CP sent and this node validated and
				// serves: a cached or imported config may be older than
				// what the storage holds already. The node's hash is the
				// one the CP sent; the exporter checks it against the
				// config's own hash (what the snapshot's manifest records)
				// when it encodes the snapshot.
				if exporter != nil {
					exporter.exporter.Offer(ev.Config, ev.Hash)
				}
			case dp.SourceFallback:
				// Keep the imported config like one from the CP (Kong
				// writes it to LMDB), so a restart without CP or storage
				// serves it. This runs under the node's apply lock, so a
				// CP config applied right after cannot be overwritten in
				// the cache by this write.
				if ev.Changed && hy != nil {
					persistFallback(hy.cache, ev, log, node)
				}
			}
			if o.onServe != nil {
				o.onServe(ev)
			}
		},
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
		if hy.cachedAt, hy.cacheServed = restoreCache(node, hy.cache, log); hy.cacheServed {
			hy.restoredHash = node.State().Hash
		} else if importer != nil {
			log.Warn("no usable cached configuration: every request gets 404 until the control plane sends one, or one is imported from the fallback storage if the control plane cannot be reached")
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
	if importer != nil {
		// Started now: it reads the storage while the listeners are bound
		// and the first CP attempt runs, and applies only once that
		// attempt has failed.
		fi, err := dp.NewFallbackImport(node, dp.FallbackImportOptions{
			Importer: importer, Storage: fb.loc.String(),
			FirstAttempt: client.FirstAttempt(), FirstAttemptErr: client.FirstAttemptErr,
			Cached: hy.cacheServed, CacheWrittenAt: hy.cachedAt, PreferNewest: fb.fo.PreferNewest,
			Prefetch: prefetch, RetryMin: fb.fo.RetryMin, RetryMax: fb.fo.RetryMax, Logger: log,
		})
		if err != nil {
			return &ExitError{Code: ExitFailure, Err: err}
		}
		ictx, cancelImport := context.WithCancel(ctx)
		importDone := make(chan struct{})
		go func() { defer close(importDone); fi.Run(ictx) }()
		// Like the sync client: an import being applied (and written to
		// the cache) finishes before the cache is closed.
		defer func() { cancelImport(); <-importDone }()
	}
	if fbStore != nil {
		// A storage that cannot even be set up is a settings error.
		if _, err := fbStore.wait(); err != nil {
			return &ExitError{Code: ExitUsage, Err: err}
		}
	}

	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}
	addrs := serveDPAddrs{PID: os.Getpid()}
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
	if o.ReadyFile != "" {
		if err := writeReadyFile(o.ReadyFile, addrs); err != nil {
			closeAll()
			if statusLn != nil {
				_ = statusLn.Close()
			}
			return &ExitError{Code: ExitFailure, Err: err}
		}
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
	proxy        *url.URL // nil: connect to the CP directly
	nodeID       string
	hostname     string
	cache        *cache.Cache
	restoredHash string
	// cacheServed says the cache was served at start, written at cachedAt
	// (the fallback importer compares snapshots with it).
	cacheServed bool
	cachedAt    time.Time
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
	proxyURL, err := clusterProxy(o.ClusterUseProxy, o.ProxyServer)
	if err != nil {
		return nil, usage(err)
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
	h := &hybrid{o: o, tls: tlsOpts, proxy: proxyURL}
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
	attrs := []any{"control_plane", o.ControlPlane, "cluster_mtls", string(mode), "node_id", h.nodeID,
		"prefix", o.Prefix, "cache", h.cache.Path(), "cache_encrypted", h.cache.Encrypted()}
	if proxyURL != nil {
		attrs = append(attrs, "cluster_proxy", proxyURL.Redacted()) // never the proxy password
	}
	log.Info("hybrid mode", attrs...)
	return h, nil
}

// clusterProxy checks Kong's cluster_use_proxy and proxy_server, with Kong's
// messages, and returns the proxy to tunnel through (nil: none).
func clusterProxy(use bool, server string) (*url.URL, error) {
	server = strings.TrimSpace(server)
	var u *url.URL
	if server != "" {
		var err error
		switch u, err = url.Parse(server); {
		case err != nil:
			return nil, fmt.Errorf("proxy_server is invalid: %w", err)
		case u.Scheme == "":
			return nil, errors.New("proxy_server missing scheme")
		case u.Scheme != "http" && u.Scheme != "https":
			return nil, fmt.Errorf(`proxy_server only supports "http" and "https", got %s`, u.Scheme)
		case u.Host == "":
			return nil, errors.New("proxy_server missing host")
		case u.Fragment != "" || u.RawQuery != "" || strings.Contains(u.Path, ";"):
			return nil, errors.New("fragments, query strings or parameters are meaningless in proxy configuration")
		case u.Scheme == "https":
			// Kong can speak TLS to the proxy; gorilla/websocket, which the DP
			// side is built on, dials http:// proxies only.
			return nil, fmt.Errorf("proxy_server %s: kongfb reaches the control plane through http:// proxies only "+
				"(the tunnelled link to the CP is mTLS either way)", u.Redacted())
		}
	}
	if !use {
		return nil, nil
	}
	if u == nil {
		return nil, errors.New("cluster_use_proxy is turned on but no proxy_server is configured")
	}
	return u, nil
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
		Proxy:  h.proxy,
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

// restoreCache serves the cached configuration on n, as cache.Restore does,
// and also returns when the cache was written (for --prefer-newest).
func restoreCache(n *dp.Node, c *cache.Cache, log *slog.Logger) (time.Time, bool) {
	e, err := c.Load()
	if errors.Is(err, fs.ErrNotExist) {
		log.Info("no cached configuration yet", "path", c.Path())
		return time.Time{}, false
	}
	if err != nil {
		var ue *cache.UnusableError
		if errors.As(err, &ue) {
			dp.LogConfigError(log, "cached configuration is unusable and is not served", err,
				"path", ue.Path, "reason", ue.Reason.Error(), "moved_to", ue.SetAside)
		} else {
			log.Error("cannot read the cached configuration", "path", c.Path(), "error", err)
		}
		n.ReportError(err)
		return time.Time{}, false
	}
	log.Info("found cached configuration, loading", "path", c.Path(), "hash", e.Header.ConfigHash,
		"written_at", e.Header.WrittenAt, "from", e.Header.Source, "origin", e.Header.Origin,
		"encrypted", e.Header.Encryption != cache.EncryptionNone)
	if _, err := n.Apply(&dp.Snapshot{
		Config: e.Config, Hash: e.Header.ConfigHash, Source: dp.SourceCache, Origin: c.Path(),
	}); err != nil {
		// Valid when written but refused now (e.g. by a newer engine): keep
		// the file, the CP will replace it.
		err = fmt.Errorf("cached configuration %s: %w", c.Path(), err)
		dp.LogConfigError(log, "cannot serve the cached configuration", err)
		n.ReportError(err)
		return time.Time{}, false
	}
	return e.Header.WrittenAt, true
}

// persistFallback writes an imported configuration to the node's cache.
func persistFallback(c *cache.Cache, ev dp.ServeEvent, log *slog.Logger, n *dp.Node) {
	doc, err := ev.Config.MarshalJSON()
	if err == nil {
		err = c.Write(doc, cache.Meta{ConfigHash: ev.Hash, Source: dp.SourceFallback, Origin: ev.Origin})
	}
	if err != nil {
		log.Error("[fallback config] cannot write the imported config to the cache; a restart would need the control plane or the storage again",
			"path", c.Path(), "error", err)
		n.ReportError(fmt.Errorf("write imported fallback config to the cache %s: %w", c.Path(), err))
	}
}

// --- fallback configuration (shared with serve cp) ---------------------------

// fallbackOptions are the fallback-configuration settings (Kong's
// cluster_fallback_config_* and kongfb's snapshot security). serve dp uses
// all of them; serve cp only the exporter's.
type fallbackOptions struct {
	Export         bool
	Import         bool
	Storage        string
	ExportDelay    time.Duration // 0 = no delay
	S3Endpoint     string
	ExportS3Config string
	ElectionTTL    time.Duration
	PreferNewest   bool
	RetryMin       time.Duration
	RetryMax       time.Duration

	Recipients              []string
	RecipientsFile          string
	PassphraseFile          string
	IdentityFiles           []string
	SigningKeyFile          string
	TrustedKeys             []string
	KongCompatiblePlaintext bool
	VersionPolicy           string

	// StorageBase is where the storage options start from. It is not a
	// flag: the command leaves it zero so that credentials come from the
	// AWS chain (AWS_ACCESS_KEY_ID, ..., roles); tests put a test server's
	// credentials here.
	StorageBase storage.Options
}

// fallbackEnv maps the fallback flags to Kong's environment names.
var fallbackEnv = [][2]string{
	{"export", "KONG_CLUSTER_FALLBACK_CONFIG_EXPORT"},
	{"import", "KONG_CLUSTER_FALLBACK_CONFIG_IMPORT"},
	{"fallback-storage", "KONG_CLUSTER_FALLBACK_CONFIG_STORAGE"},
	{"export-delay", "KONG_CLUSTER_FALLBACK_CONFIG_EXPORT_DELAY"},
	{"export-s3-config", storage.EnvExtraPutParams},
	{"s3-endpoint", storage.EnvEndpoint},
}

// Default fallback settings.
const (
	defaultExportDelay = fallback.DefaultExportDelay
	defaultElectionTTL = fallback.DefaultLeaseTTL
)

// kongSeconds is a duration flag in Kong's number-of-seconds form ("60",
// "0.5") that also takes Go durations ("100ms", "2m").
type kongSeconds time.Duration

func (d *kongSeconds) Set(s string) error {
	s = strings.TrimSpace(s)
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && f < 1e9 {
		*d = kongSeconds(time.Duration(f * float64(time.Second)))
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("want a number of seconds (60, 0.5) or a duration (100ms, 2m), got %q", s)
	}
	*d = kongSeconds(v)
	return nil
}

func (d *kongSeconds) String() string { return time.Duration(*d).String() }
func (d *kongSeconds) Type() string   { return "seconds" }

// optDuration is an nginxDuration whose zero value means "the default",
// which the flag's usage text states.
type optDuration time.Duration

func (d *optDuration) Set(s string) error { return (*nginxDuration)(d).Set(s) }
func (d *optDuration) Type() string       { return "duration" }
func (d *optDuration) String() string {
	if *d == 0 {
		return "0" // pflag shows no "(default ...)" for "0"
	}
	return time.Duration(*d).String()
}

// addFallbackFlags registers the fallback flags. dataPlane adds the
// importer's (the CP only exports).
func addFallbackFlags(f *pflag.FlagSet, fo *fallbackOptions, dataPlane bool) {
	fo.ExportDelay = defaultExportDelay
	fo.ElectionTTL = defaultElectionTTL
	f.Var((*kongBool)(&fo.Export), "export", "fallback config: export every validated configuration to --fallback-storage (one leader among the exporters) [KONG_CLUSTER_FALLBACK_CONFIG_EXPORT]")
	f.Lookup("export").NoOptDefVal = "on"
	if dataPlane {
		f.Var((*kongBool)(&fo.Import), "import", "fallback config: when the CP cannot be reached at start and no cache is served, import the newest snapshot that verifies [KONG_CLUSTER_FALLBACK_CONFIG_IMPORT]")
	} else {
		// Only so that Kong's environment name gets Kong's error on a CP.
		f.Var((*kongBool)(&fo.Import), "import", "fallback config import (data planes only)")
		_ = f.MarkHidden("import")
	}
	f.Lookup("import").NoOptDefVal = "on"
	f.StringVar(&fo.Storage, "fallback-storage", "", "fallback config storage: s3://bucket/prefix or file:///dir [KONG_CLUSTER_FALLBACK_CONFIG_STORAGE]")
	f.Var((*kongSeconds)(&fo.ExportDelay), "export-delay", "minimum gap between two exports, seconds or a duration; the first change goes out at once, later ones are coalesced (0: no gap) [KONG_CLUSTER_FALLBACK_CONFIG_EXPORT_DELAY]")
	f.StringVar(&fo.S3Endpoint, "s3-endpoint", "", "S3-compatible server, e.g. http://minio:9000 (default: AWS S3) [AWS_CONFIG_STORAGE_ENDPOINT]")
	f.StringVar(&fo.ExportS3Config, "export-s3-config", "", `extra S3 PutObject parameters as JSON, e.g. {"ServerSideEncryption":"aws:kms"} [KONG_CLUSTER_FALLBACK_EXPORT_S3_CONFIG]`)
	f.Var((*nginxDuration)(&fo.ElectionTTL), "election-ttl", "exporter election TTL, the failover bound: a dead leader is replaced within this long")
	f.Var((*optDuration)(&fo.RetryMin), "fallback-retry-min", "shortest wait before retrying a failed export or import (default 1s)")
	f.Var((*optDuration)(&fo.RetryMax), "fallback-retry-max", "longest wait between retries of a failed export (default 1m) or import (default 30s)")
	f.StringArrayVar(&fo.Recipients, "snapshot-recipient", nil, "exporter: encrypt snapshots to this age recipient (age1...); repeatable")
	f.StringVar(&fo.RecipientsFile, "snapshot-recipients-file", "", "exporter: file of age recipients, one per line ('#' comments)")
	f.StringVar(&fo.PassphraseFile, "snapshot-passphrase-file", "", "file holding a passphrase that encrypts (exporter) or decrypts (importer) snapshots")
	f.StringVar(&fo.SigningKeyFile, "snapshot-signing-key", "", "exporter: ed25519 key file that signs every snapshot")
	f.BoolVar(&fo.KongCompatiblePlaintext, "kong-compatible-plaintext", false, "exporter: also write Kong's plain <prefix>/<version>/config.json when snapshots are encrypted (it is always written when they are not)")
	if dataPlane {
		f.BoolVar(&fo.PreferNewest, "prefer-newest", false, "importer: also import when the cache is served, if the newest snapshot was captured after the cache was written")
		f.StringArrayVar(&fo.IdentityFiles, "snapshot-identity-file", nil, "importer: age identity file that decrypts snapshots; repeatable")
		f.StringArrayVar(&fo.TrustedKeys, "snapshot-trusted-key", nil, "importer: accept only snapshots signed by this key (a file of keys, or ed25519:<base64>); repeatable")
		f.StringVar(&fo.VersionPolicy, "snapshot-version-policy", "same-minor", "importer: which gateway versions' snapshots to accept: same-minor, exact (Kong's rule) or any")
	}
}

// Kong's validation messages (EE conf_loader), verbatim.
const (
	msgFallbackHybridOnly   = "cluster_fallback_config_import and cluster_fallback_config_export can only be enabled for hybrid mode"
	msgFallbackImportDPOnly = `cluster_fallback_config_import can only be enabled when role = "data_plane"`
	msgFallbackNoStorage    = "cluster_fallback_config_storage must be set when either cluster_fallback_config_import or cluster_fallback_config_export is enabled"
	msgFallbackScheme       = "cluster_fallback_config_storage must be set to an S3 or GCP storage location (the scheme must be s3 or gcs)"
	msgS3ConfigNoStorage    = "cluster_fallback_config_storage must be set when cluster_fallback_export_s3_config is enabled"
	msgS3ConfigScheme       = "cluster_fallback_config_storage must be set to an S3 storage location (the scheme must be s3)"
	msgProxyListenOff       = `proxy_listen must be specified when role = "data_plane" and cluster_fallback_config_export is not configured`
)

// fallbackSetup is the checked fallback configuration of a node.
type fallbackSetup struct {
	fo       fallbackOptions
	loc      storage.Location
	snapOpts snapshot.Options       // exporter
	verify   snapshot.VerifyOptions // importer
}

// checkFallback validates the settings with Kong's messages (kongfb also
// accepts file:// storage). hybrid says the node runs in hybrid mode (a DP
// with --cp, a CP with a cluster listener); role is "data_plane" or
// "control_plane".
func checkFallback(fo fallbackOptions, hybrid bool, role string, log *slog.Logger) (*fallbackSetup, error) {
	if !fo.Export && !fo.Import {
		if fo.ExportS3Config != "" && strings.TrimSpace(fo.Storage) == "" {
			return nil, errors.New(msgS3ConfigNoStorage)
		}
		return nil, nil
	}
	if !hybrid {
		return nil, errors.New(msgFallbackHybridOnly)
	}
	if fo.Import && role != "data_plane" {
		return nil, errors.New(msgFallbackImportDPOnly)
	}
	if strings.TrimSpace(fo.Storage) == "" {
		return nil, errors.New(msgFallbackNoStorage)
	}
	scheme, _, _ := strings.Cut(fo.Storage, ":")
	switch strings.ToLower(scheme) {
	case "s3", "file":
	case "gcs":
		return nil, fmt.Errorf("cluster_fallback_config_storage %q: Google Cloud Storage (gcs://) is not supported by kongfb yet; use s3://bucket/prefix or file:///dir", fo.Storage)
	default:
		return nil, fmt.Errorf("%s (kongfb also accepts file:///dir), got %q", msgFallbackScheme, fo.Storage)
	}
	loc, err := storage.ParseURL(fo.Storage)
	if err != nil {
		return nil, fmt.Errorf("cluster_fallback_config_storage: %w", err)
	}
	if fo.ExportS3Config != "" {
		if loc.Scheme != "s3" {
			return nil, errors.New(msgS3ConfigScheme)
		}
		var js any
		if err := json.Unmarshal([]byte(fo.ExportS3Config), &js); err != nil {
			return nil, fmt.Errorf("cluster_fallback_export_s3_config must be valid json or not set: %v - %s", err, loc)
		}
		if _, err := storage.ParseExtraPutParams(fo.ExportS3Config); err != nil {
			return nil, fmt.Errorf("cluster_fallback_export_s3_config: %w", err)
		}
	}
	if fo.ElectionTTL <= 0 {
		fo.ElectionTTL = defaultElectionTTL
	}
	if fo.RetryMax > 0 && fo.RetryMax < fo.RetryMin {
		return nil, fmt.Errorf("--fallback-retry-max (%s) is shorter than --fallback-retry-min (%s)", fo.RetryMax, fo.RetryMin)
	}
	s := &fallbackSetup{fo: fo, loc: loc}

	// Keys and secrets: load them now so that a bad file stops the start.
	snapOpts, verify, err := loadSnapshotKeys(fo, log)
	if err != nil {
		return nil, err
	}
	s.snapOpts, s.verify = snapOpts, verify
	return s, nil
}

// readRecipientsFile reads age recipients, one per line; blank lines and
// '#' comments are skipped (age's own recipients-file format).
func readRecipientsFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--snapshot-recipients-file: %w", err)
	}
	var out []string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if _, _, err := snapshot.ParseRecipients([]string{line}); err != nil {
			return nil, fmt.Errorf("--snapshot-recipients-file %s line %d: %w", path, i+1, err)
		}
		out = append(out, line)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--snapshot-recipients-file %s holds no recipient", path)
	}
	return out, nil
}

// openStore opens the fallback storage. An exporter on file:// creates the
// directory; S3 buckets are never created (that needs a permission Kong's
// exporters do not have).
func (s *fallbackSetup) openStore(ctx context.Context, log *slog.Logger) (storage.Store, error) {
	opts := s.fo.StorageBase
	if s.fo.S3Endpoint != "" {
		opts.Endpoint = s.fo.S3Endpoint
	}
	if s.fo.Export {
		opts.ExtraPutParams = s.fo.ExportS3Config
		opts.CreateBucket = opts.CreateBucket || s.loc.Scheme == "file"
	}
	opts.Logger = log
	st, err := storage.Open(ctx, s.fo.Storage, opts)
	if err != nil {
		return nil, fmt.Errorf("cluster_fallback_config_storage: %w", err)
	}
	return st, nil
}

// openStoreAsync opens the fallback storage in the background; the
// returned store waits for it on every call.
func (s *fallbackSetup) openStoreAsync(ctx context.Context, log *slog.Logger) *storeFuture {
	f := &storeFuture{done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.st, f.err = s.openStore(ctx, log)
	}()
	return f
}

// storeFuture is a storage.Store being opened: every method waits for the
// open and fails with its error, if any.
type storeFuture struct {
	done chan struct{}
	st   storage.Store
	err  error
}

func (f *storeFuture) wait() (storage.Store, error) {
	<-f.done
	return f.st, f.err
}

func (f *storeFuture) Put(ctx context.Context, key string, body []byte, opts storage.PutOptions) (storage.ObjectInfo, error) {
	st, err := f.wait()
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return st.Put(ctx, key, body, opts)
}

func (f *storeFuture) Get(ctx context.Context, key string) ([]byte, storage.ObjectInfo, error) {
	st, err := f.wait()
	if err != nil {
		return nil, storage.ObjectInfo{}, err
	}
	return st.Get(ctx, key)
}

func (f *storeFuture) Head(ctx context.Context, key string) (storage.ObjectInfo, error) {
	st, err := f.wait()
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return st.Head(ctx, key)
}

func (f *storeFuture) Delete(ctx context.Context, key string, opts storage.DeleteOptions) error {
	st, err := f.wait()
	if err != nil {
		return err
	}
	return st.Delete(ctx, key, opts)
}

func (f *storeFuture) List(ctx context.Context, prefix string, opts storage.ListOptions) (storage.ListPage, error) {
	st, err := f.wait()
	if err != nil {
		return storage.ListPage{}, err
	}
	return st.List(ctx, prefix, opts)
}

func (f *storeFuture) String() string {
	st, err := f.wait()
	if err != nil {
		return "(storage not opened: " + err.Error() + ")"
	}
	return st.String()
}

func (f *storeFuture) Close() error {
	st, err := f.wait()
	if err != nil {
		return nil
	}
	return st.Close()
}

// fallbackExport is a running exporter: its election and exporter loops.
type fallbackExport struct {
	store    storage.Store
	election *fallback.Election
	exporter *fallback.Exporter
	log      *slog.Logger
	cancel   context.CancelFunc
	done     chan struct{}
}

// startExport joins the export election and starts the exporter; stop ends
// both and hands the lease over.
func (s *fallbackSetup) startExport(ctx context.Context, st storage.Store, nodeID string, log *slog.Logger) (*fallbackExport, error) {
	el, err := fallback.NewElection(fallback.ElectionOptions{Store: st, NodeID: nodeID, TTL: s.fo.ElectionTTL, Logger: log})
	if err != nil {
		return nil, err
	}
	delay := s.fo.ExportDelay
	if delay == 0 {
		delay = -1 // the library's "no delay"
	}
	ex, err := fallback.NewExporter(fallback.ExporterOptions{
		Store: st, Election: el, Snapshot: s.snapOpts, KongCompatiblePlaintext: s.fo.KongCompatiblePlaintext,
		Delay: delay, RetryMin: s.fo.RetryMin, RetryMax: s.fo.RetryMax, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	fx := &fallbackExport{store: st, election: el, exporter: ex, log: log, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = el.Run(rctx) }()
	go func() { defer wg.Done(); _ = ex.Run(rctx) }()
	go func() { wg.Wait(); close(fx.done) }()
	log.Info("[fallback config] exporter enabled", "storage", st.String(), "node_id", nodeID,
		"export_delay", s.fo.ExportDelay, "election_ttl", s.fo.ElectionTTL,
		"encrypted", s.snapOpts.Encrypted(), "signed", s.snapOpts.SigningKey != nil)
	return fx, nil
}

// stop ends the exporter and the election, then releases the lease so that
// another exporter takes over at once instead of after the TTL.
func (x *fallbackExport) stop() {
	x.cancel()
	<-x.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := x.election.Release(ctx); err != nil {
		x.log.Warn("[fallback config] could not release the export lease; another exporter takes over after the TTL", "error", err)
	}
}
