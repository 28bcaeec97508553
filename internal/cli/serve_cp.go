package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/internal/cp"
	"github.com/kongfb/kongfb/internal/cp/cluster"
	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/dp"
	wire "github.com/kongfb/kongfb/pkg/cluster"
)

func init() { registerServe(newServeCPCommand) }

// Default listeners of `serve cp`. The Admin API default is Kong's. The status
// API defaults to Kong's kong.conf status port 8007, not 8100 (the Kong
// images' and kongfb's data-plane default), so a CP and a DP can run on one
// host with their defaults.
const (
	defaultCPAdminListen  = "127.0.0.1:8001"
	defaultCPStatusListen = "127.0.0.1:8007"
)

// serveCPOptions are the settings of `kongfb serve cp`.
type serveCPOptions struct {
	AdminListen  string
	StatusListen string
	// storeOptions are the database flags, shared with `kongfb migrations`.
	storeOptions
	AdminToken      string
	NodeID          string
	ShutdownTimeout time.Duration
	LogLevel        string

	// Hybrid mode (Kong's cluster_* settings).
	ClusterListen     string
	ClusterCert       string
	ClusterCertKey    string
	ClusterMTLS       string
	ClusterCACert     string
	ClusterMaxPayload int64
	ClusterPurgeDelay time.Duration

	// Fallback configuration: a CP exporter (Kong's
	// cluster_fallback_config_export on a control plane).
	Fallback fallbackOptions

	Logger *slog.Logger
	// Ready, if set, is called once every listener is bound (tests listen on
	// port 0 and learn the ports here).
	Ready func(serveCPAddrs)
	// ReadyFile (--ready-file), if set, is written atomically with the
	// bound addresses (JSON) at the same moment, for a parent process
	// that started this one on port 0 (`kongfb drill`).
	ReadyFile string
}

// serveCPAddrs are the bound addresses of a running control plane. The
// JSON form is the content of --ready-file.
type serveCPAddrs struct {
	PID    int      `json:"pid"`
	Admin  []string `json:"admin_listen"`
	Status []string `json:"status_listen"`
	// Cluster is the cluster listener ("" for an Admin-only CP).
	Cluster string `json:"cluster_listen"`
}

// serveCPEnv maps flags to Kong's environment names.
var serveCPEnv = [][2]string{
	{"admin-listen", "KONG_ADMIN_LISTEN"},
	{"status-listen", "KONG_STATUS_LISTEN"},
	{"admin-token", "KONG_ADMIN_TOKEN"},
	{"node-id", "KONG_NODE_ID"},
	{"cluster-listen", "KONG_CLUSTER_LISTEN"},
	{"cluster-cert", "KONG_CLUSTER_CERT"},
	{"cluster-cert-key", "KONG_CLUSTER_CERT_KEY"},
	{"cluster-mtls", "KONG_CLUSTER_MTLS"},
	{"cluster-ca-cert", "KONG_CLUSTER_CA_CERT"},
	{"cluster-max-payload", "KONG_CLUSTER_MAX_PAYLOAD"},
	{"cluster-data-plane-purge-delay", "KONG_CLUSTER_DATA_PLANE_PURGE_DELAY"},
}

// serveCPTestHook lets tests adjust the options before the command runs.
var serveCPTestHook func(*serveCPOptions)

func newServeCPCommand(a *app) *cobra.Command {
	o := serveCPOptions{}
	shutdown := nginxDuration(cp.DefaultShutdownTimeout)
	purgeDelay := nginxDuration(cluster.DefaultPurgeDelay)
	cmd := &cobra.Command{
		Use:   "cp",
		Short: "Run a control plane: Kong's Admin API over SQLite or PostgreSQL",
		Long: `Run a control plane. It serves a Kong 3.9-compatible Admin API (decK, go-kong
and curl work unchanged) over a SQLite file or a PostgreSQL database, and
Kong's status API.

Database:
  sqlite     (default) one file, <prefix>/kongfb.db. A new file is created and
             bootstrapped on first start; nothing else to set up.
  postgres   shared by several control planes. Bootstrap the schema first
             with 'kongfb migrations bootstrap' (same --pg-* settings).

Security: the Admin API can rewrite the whole gateway. It listens on
127.0.0.1 by default; before binding it elsewhere set an admin token
(--admin-token or, better, KONG_ADMIN_TOKEN, which stays out of 'ps'): every
request must then carry it in the Kong-Admin-Token header. Without a token on
a non-loopback address kongfb starts but logs a warning.

Status API (--status-listen, default 127.0.0.1:8007 so that a data plane on
the same host can keep Kong's 8100):
  GET /status         Kong's shape, with database.reachable
  GET /status/ready   200 when the database answers, else 503

Signals: SIGTERM/SIGINT stop accepting and finish in-flight requests
(--shutdown-timeout), then exit 0.

Hybrid mode: with a cluster certificate (--cluster-cert and --cluster-cert-key,
e.g. from 'kongfb cert gen') the control plane also listens on
--cluster-listen (default 0.0.0.0:8005) for data planes ('kongfb serve dp
--cp host:8005'), over mutual TLS (--cluster-mtls shared or pki). Every change
is pushed to every connected data plane at once, as the whole configuration;
GET /clustering/data-planes lists them. Without a certificate the control
plane runs Admin-only and says so at start. Several control planes can share
one PostgreSQL database: a write through any of them reaches the data planes
of all. See docs/HYBRID.md.

Fallback configuration: with --export (KONG_CLUSTER_FALLBACK_CONFIG_EXPORT=on)
and --fallback-storage (s3://bucket/prefix or file:///dir) a hybrid-mode
control plane exports every configuration its push loop validated (at start
and after each change, whether or not data planes are connected), as Kong's
CP exporter does, taking part in the same exporters' election as exporter
data planes. Data planes started with --import read it when this control
plane is down. See 'kongfb serve dp --help' and docs/FALLBACK.md.

Listen values use kong.conf's syntax: "ip:port [flags][, ...]"; flags such as
reuseport and backlog=N are accepted and ignored, ssl is refused.`,
		Example: `  # a local control plane on SQLite (creates ./kongfb-data/kongfb.db)
  kongfb serve cp

  # PostgreSQL with Kong's environment names
  KONG_DATABASE=postgres KONG_PG_HOST=db KONG_PG_PASSWORD=secret kongfb migrations bootstrap
  KONG_DATABASE=postgres KONG_PG_HOST=db KONG_PG_PASSWORD=secret \
    KONG_ADMIN_TOKEN=s3cr3t KONG_ADMIN_LISTEN=0.0.0.0:8001 kongfb serve cp

  # then, e.g.
  deck gateway sync kong.yaml --kong-addr http://127.0.0.1:8001

  # hybrid mode: data planes connect on :8005 with the same certificate
  kongfb cert gen
  kongfb serve cp --cluster-cert cluster.crt --cluster-cert-key cluster.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := kongEnvDefaults(a, cmd, append(append(append([][2]string{}, serveCPEnv...), storeEnv...), fallbackEnv...)); err != nil {
				return err
			}
			o.ShutdownTimeout = time.Duration(shutdown)
			o.ClusterPurgeDelay = time.Duration(purgeDelay)
			o.Logger = a.logger()
			o.LogLevel = a.global.LogLevel
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			go func() { <-ctx.Done(); stop() }()
			if serveCPTestHook != nil {
				serveCPTestHook(&o)
			}
			return runServeCP(ctx, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.AdminListen, "admin-listen", defaultCPAdminListen, `Admin API listeners, kong.conf syntax ("ip:port [flags], ...") [KONG_ADMIN_LISTEN]`)
	f.StringVar(&o.StatusListen, "status-listen", defaultCPStatusListen, `status API listeners ("ip:port, ..." or "off") [KONG_STATUS_LISTEN]`)
	addStoreFlags(f, &o.storeOptions)
	f.StringVar(&o.AdminToken, "admin-token", "", "require this token in the Kong-Admin-Token header; prefer the environment variable [KONG_ADMIN_TOKEN]")
	f.StringVar(&o.NodeID, "node-id", "", "node id reported by GET / (default: generated once, kept in <prefix>/node_id) [KONG_NODE_ID]")
	f.Var(&shutdown, "shutdown-timeout", "how long SIGTERM waits for in-flight Admin API requests")
	f.StringVar(&o.ClusterListen, "cluster-listen", cluster.DefaultListen, `hybrid mode: listener for data planes ("ip:port" or "off") [KONG_CLUSTER_LISTEN]`)
	f.StringVar(&o.ClusterCert, "cluster-cert", "", "hybrid mode: cluster certificate, a file, inline PEM or base64 PEM; without it the CP is Admin-only [KONG_CLUSTER_CERT]")
	f.StringVar(&o.ClusterCertKey, "cluster-cert-key", "", "hybrid mode: the cluster certificate's private key [KONG_CLUSTER_CERT_KEY]")
	f.StringVar(&o.ClusterMTLS, "cluster-mtls", string(wire.TLSModeShared), "shared (data planes present the CP's own certificate) or pki (certificates issued by --cluster-ca-cert) [KONG_CLUSTER_MTLS]")
	f.StringVar(&o.ClusterCACert, "cluster-ca-cert", "", "pki mode: the CA that issues the data planes' certificates [KONG_CLUSTER_CA_CERT]")
	f.Int64Var(&o.ClusterMaxPayload, "cluster-max-payload", wire.DefaultMaxPayload, "largest (compressed) configuration frame, bytes; at least 4194304 [KONG_CLUSTER_MAX_PAYLOAD]")
	f.Var(&purgeDelay, "cluster-data-plane-purge-delay", "how long a data plane stays in /clustering/data-planes after it was last seen (seconds or a duration; at least 60) [KONG_CLUSTER_DATA_PLANE_PURGE_DELAY]")
	addFallbackFlags(f, &o.Fallback, false)
	f.StringVar(&o.ReadyFile, "ready-file", "", "once every listener is bound, write the bound addresses and the pid to this file as JSON (atomically), for a parent that starts the CP on port 0")
	return cmd
}

// writeReadyFile replaces path atomically with v as JSON (--ready-file of
// serve cp and serve dp): a reader sees no file or the whole document.
func writeReadyFile(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("ready file %s: %w", path, err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("ready file %s: %w", path, err)
	}
	_, werr := f.Write(append(b, '\n'))
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), path)
	}
	if werr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("ready file %s: %w", path, werr)
	}
	return nil
}

// prepareReadyFile checks that the ready file's directory exists (a usage
// error otherwise) and removes a ready file left by an earlier process, so
// that the file never announces addresses nobody listens on any more.
func prepareReadyFile(path string) error {
	if path == "" {
		return nil
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || !fi.IsDir() {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--ready-file %s: directory %s does not exist", path, filepath.Dir(path))}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return &ExitError{Code: ExitFailure, Err: fmt.Errorf("--ready-file %s: remove the stale one: %w", path, err)}
	}
	return nil
}

// runServeCP runs a control plane until ctx is cancelled. Errors are
// *ExitError: 2 for bad settings, 1 for a database or listener failure.
func runServeCP(ctx context.Context, o serveCPOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	adminListens, err := dp.ParseListen("admin_listen", o.AdminListen)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	if len(adminListens) == 0 {
		return &ExitError{Code: ExitUsage, Err: errors.New("admin_listen: a control plane needs an Admin API listener (\"off\" is not allowed)")}
	}
	statusListens, err := dp.ParseListen("status_listen", o.StatusListen)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	for _, l := range append(append([]dp.Listen{}, adminListens...), statusListens...) {
		if len(l.Ignored) > 0 {
			log.Debug("ignoring listen flags kongfb has no use for", "address", l.Addr, "flags", l.Ignored)
		}
	}

	if err := prepareReadyFile(o.ReadyFile); err != nil {
		return err
	}
	clusterOpts, err := clusterOptions(o, log)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	fb, err := checkFallback(o.Fallback, clusterOpts != nil, "control_plane", log)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}

	scfg := store.Config{
		Database: o.Database,
		Prefix:   o.Prefix,
		Logger:   log,
		Postgres: store.PostgresConfig{
			DSN: o.PGDSN, Host: o.PGHost, Port: o.PGPort, User: o.PGUser,
			Password: o.PGPassword, Database: o.PGDatabase, Schema: o.PGSchema,
		},
	}
	backend := strings.ToLower(o.Database)
	switch backend {
	case "", "sqlite", "sqlite3":
		backend = store.BackendSQLite
		// A newcomer's first start creates and bootstraps the SQLite file.
		// An existing file with pending migrations is left to `kongfb
		// migrations up`: upgrading a database stays a deliberate step.
		if _, err := os.Stat(filepath.Join(o.Prefix, store.SQLiteFile)); errors.Is(err, os.ErrNotExist) {
			scfg.AutoMigrate = true
			if err := os.MkdirAll(o.Prefix, 0o700); err != nil {
				return &ExitError{Code: ExitFailure, Err: fmt.Errorf("create prefix %s: %w", o.Prefix, err)}
			}
			log.Info("creating a new SQLite database", "path", filepath.Join(o.Prefix, store.SQLiteFile))
		}
	case "postgres", "postgresql", "pg":
		backend = store.BackendPostgres
	case "off":
		return &ExitError{Code: ExitUsage, Err: errors.New("database=off: a control plane needs a database (sqlite or postgres); for DB-less use 'kongfb serve dp --declarative'")}
	default:
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("database %q: want sqlite or postgres", o.Database)}
	}

	st, err := store.Open(ctx, scfg)
	if err != nil {
		if errors.Is(err, store.ErrNotBootstrapped) || errors.Is(err, store.ErrPendingMigrations) {
			cmd := "up"
			if errors.Is(err, store.ErrNotBootstrapped) {
				cmd = "bootstrap"
			}
			return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%w\nthe control plane never changes a database schema by itself: run `kongfb migrations %s` with the same --database/--pg-* settings, then start it again", err, cmd)}
		}
		return &ExitError{Code: ExitFailure, Err: err}
	}
	defer func() {
		if err := st.Close(); err != nil {
			log.Warn("closing the store", "err", err)
		}
	}()

	nodeID := o.NodeID
	if nodeID == "" {
		if nodeID, err = cp.NodeID(o.Prefix); err != nil {
			return &ExitError{Code: ExitFailure, Err: err}
		}
	}
	if fb != nil {
		// The CP exports every configuration its push loop validated and
		// cached (Kong's CP exporter: at start and after each change),
		// whether or not data planes are connected.
		fbStore, err := fb.openStore(ctx, log)
		if err != nil {
			return &ExitError{Code: ExitUsage, Err: err}
		}
		defer fbStore.Close()
		exporter, err := fb.startExport(ctx, fbStore, nodeID, log)
		if err != nil {
			return &ExitError{Code: ExitUsage, Err: err}
		}
		defer exporter.stop()
		clusterOpts.OnExport = exporter.exporter.Offer
	}
	hostname, _ := os.Hostname()
	srv, err := cp.New(cp.Options{
		Store:           st,
		AdminListen:     listenAddrs(adminListens),
		StatusListen:    listenAddrs(statusListens),
		Token:           o.AdminToken,
		NodeID:          nodeID,
		Hostname:        hostname,
		Configuration:   cpConfiguration(o, backend, st),
		ShutdownTimeout: o.ShutdownTimeout,
		Cluster:         clusterOpts,
		Logger:          log,
	})
	if err != nil {
		// Certificates are loaded here: a bad file is a settings error.
		return &ExitError{Code: ExitUsage, Err: err}
	}
	if err := srv.Listen(); err != nil {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	log.Info("control plane started", "admin_listen", srv.AdminAddrs(), "status_listen", srv.StatusAddrs(),
		"cluster_listen", srv.ClusterAddr(),
		"database", st.Backend(), "location", st.Location(), "node_id", nodeID, "admin_token", o.AdminToken != "")
	if clusterOpts != nil && st.Backend() == store.BackendSQLite {
		log.Info("hybrid mode on SQLite: run one control plane per database file; for several control planes use PostgreSQL")
	}
	ready := serveCPAddrs{PID: os.Getpid(), Admin: srv.AdminAddrs(), Status: srv.StatusAddrs(), Cluster: srv.ClusterAddr()}
	if o.ReadyFile != "" {
		if err := writeReadyFile(o.ReadyFile, ready); err != nil {
			// Serve on an ended context only shuts the bound listeners.
			sctx, cancel := context.WithCancel(ctx)
			cancel()
			_ = srv.Serve(sctx)
			return &ExitError{Code: ExitFailure, Err: err}
		}
	}
	if o.Ready != nil {
		o.Ready(ready)
	}
	if err := srv.Serve(ctx); err != nil {
		return &ExitError{Code: ExitFailure, Err: err}
	}
	log.Info("control plane stopped")
	return nil
}

// clusterOptions checks the hybrid-mode settings: nil (and a log line
// saying so) for an Admin-only control plane.
func clusterOptions(o serveCPOptions, log *slog.Logger) (*cluster.Options, error) {
	cert, key := strings.TrimSpace(o.ClusterCert), strings.TrimSpace(o.ClusterCertKey)
	switch {
	case cert == "" && key == "":
		log.Info("no cluster certificate (--cluster-cert/--cluster-cert-key, KONG_CLUSTER_CERT/KONG_CLUSTER_CERT_KEY): " +
			"running without the cluster listener, data planes cannot connect (Admin-only control plane)")
		return nil, nil
	case cert == "" || key == "":
		return nil, errors.New("cluster certificate and key must be provided to use Hybrid mode " +
			"(--cluster-cert and --cluster-cert-key, or KONG_CLUSTER_CERT and KONG_CLUSTER_CERT_KEY)")
	}
	if o.ClusterListen == "" {
		o.ClusterListen = cluster.DefaultListen
	}
	listens, err := dp.ParseListen("cluster_listen", o.ClusterListen)
	if err != nil {
		return nil, err
	}
	if len(listens) > 1 {
		return nil, fmt.Errorf("cluster_listen: one address expected, got %d in %q", len(listens), o.ClusterListen)
	}
	if len(listens) == 0 {
		log.Info("cluster_listen is off: running without the cluster listener, data planes cannot connect (Admin-only control plane)")
		return nil, nil
	}
	mode, err := wire.ParseTLSMode(o.ClusterMTLS)
	if err != nil {
		return nil, err
	}
	if o.ClusterMaxPayload == 0 {
		o.ClusterMaxPayload = wire.DefaultMaxPayload
	}
	if err := wire.ValidateMaxPayload(o.ClusterMaxPayload); err != nil {
		return nil, err
	}
	if o.ClusterPurgeDelay == 0 {
		o.ClusterPurgeDelay = cluster.DefaultPurgeDelay
	}
	if o.ClusterPurgeDelay < cluster.MinPurgeDelay {
		return nil, errors.New("cluster_data_plane_purge_delay must be 60 or greater")
	}
	if mode == wire.TLSModePKI && strings.TrimSpace(o.ClusterCACert) == "" {
		return nil, errors.New(`cluster_ca_cert must be specified when cluster_mtls = "pki"`)
	}
	return &cluster.Options{
		Listen:     listens[0].Addr,
		TLS:        wire.TLSOptions{Mode: mode, Cert: o.ClusterCert, Key: o.ClusterCertKey, CA: o.ClusterCACert},
		MaxPayload: o.ClusterMaxPayload,
		PurgeDelay: o.ClusterPurgeDelay,
	}, nil
}

func listenAddrs(ls []dp.Listen) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Addr
	}
	return out
}

// cpConfiguration is what GET / reports under "configuration", in
// kong.conf's names and types (decK decodes `database` as a string). The
// admin token is not listed; the pg password is masked by the Admin API.
func cpConfiguration(o serveCPOptions, backend string, st store.Store) map[string]any {
	split := func(v string) []any {
		out := []any{}
		if strings.EqualFold(strings.TrimSpace(v), "off") {
			return out
		}
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return out
	}
	prefix, _ := filepath.Abs(o.Prefix)
	c := map[string]any{
		"role":          "control_plane",
		"database":      backend,
		"prefix":        prefix,
		"admin_listen":  split(o.AdminListen),
		"status_listen": split(o.StatusListen),
		"plugins":       []any{"bundled"},
		"router_flavor": "traditional_compatible",
		"log_level":     o.LogLevel,
	}
	if strings.TrimSpace(o.ClusterCert) != "" {
		c["cluster_listen"] = split(o.ClusterListen)
		c["cluster_mtls"] = o.ClusterMTLS
		c["cluster_max_payload"] = o.ClusterMaxPayload
		c["cluster_data_plane_purge_delay"] = int64(o.ClusterPurgeDelay / time.Second)
	}
	if o.Fallback.Export {
		c["cluster_fallback_config_export"] = true
		c["cluster_fallback_config_storage"] = o.Fallback.Storage
		c["cluster_fallback_config_export_delay"] = o.Fallback.ExportDelay.Seconds()
	}
	if backend == store.BackendPostgres {
		c["pg_host"] = o.PGHost
		c["pg_port"] = o.PGPort
		c["pg_user"] = o.PGUser
		c["pg_database"] = o.PGDatabase
		c["pg_password"] = o.PGPassword
		if o.PGSchema != "" {
			c["pg_schema"] = o.PGSchema
		}
	} else {
		c["sqlite_path"] = st.Location()
	}
	return c
}
