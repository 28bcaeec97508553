package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"
)

// Backend names, as accepted by Config.Database (Kong's KONG_DATABASE).
const (
	BackendSQLite   = "sqlite"
	BackendPostgres = "postgres"
)

// DefaultPrefix is the data directory when none is given: relative to the
// working directory. Kong's own default, /usr/local/kong, needs root; set
// --prefix / KONG_PREFIX to an absolute path for a service.
const DefaultPrefix = "kongfb-data"

// DefaultPollInterval is how often a store re-reads the version to notice
// changes made by other processes (SQLite always; PostgreSQL in addition
// to LISTEN/NOTIFY).
const DefaultPollInterval = time.Second

// Config says where the store is. The zero value is a SQLite store in
// DefaultPrefix.
type Config struct {
	// Database is "sqlite" (default) or "postgres" ("postgresql" and "pg"
	// are accepted too).
	Database string
	// Prefix is the data directory; the SQLite file is <Prefix>/kongfb.db.
	Prefix string
	// SQLitePath, if set, is the SQLite file to use instead.
	SQLitePath string
	// Postgres is used when Database is postgres.
	Postgres PostgresConfig
	// AutoMigrate makes Open bootstrap a new database and apply pending
	// migrations instead of failing with ErrNotBootstrapped /
	// ErrPendingMigrations.
	AutoMigrate bool
	// SQLiteBusyTimeout overrides DefaultSQLiteBusyTimeout.
	SQLiteBusyTimeout time.Duration
	// PollInterval overrides DefaultPollInterval.
	PollInterval time.Duration
	// Logger receives the store's diagnostics (default slog.Default()).
	Logger *slog.Logger
}

// PostgresConfig holds Kong's pg_* settings.
type PostgresConfig struct {
	// DSN, if set, is a libpq connection string or URL used instead of the
	// fields below (Schema, ApplicationName, ConnectTimeout and MaxConns
	// still apply).
	DSN      string
	Host     string // default 127.0.0.1
	Port     int    // default 5432
	User     string // default kong
	Password string // never logged nor printed
	Database string // default kong
	// Schema is the schema holding kongfb's tables (search_path); it is
	// created by Bootstrap. "" uses the server's default (public).
	Schema string
	// SSLMode is libpq's sslmode (default disable, like Kong's pg_ssl=off).
	SSLMode         string
	ApplicationName string        // default kongfb
	ConnectTimeout  time.Duration // default 5s (Kong's pg_timeout)
	MaxConns        int32         // default 8
}

// normalized fills defaults and checks the backend name.
func (c Config) normalized() (Config, error) {
	switch strings.ToLower(c.Database) {
	case "", BackendSQLite, "sqlite3":
		c.Database = BackendSQLite
	case BackendPostgres, "postgresql", "pg":
		c.Database = BackendPostgres
	case "off":
		return c, fmt.Errorf("database %q: the control plane needs a database (sqlite or postgres)", c.Database)
	default:
		return c, fmt.Errorf("database %q: want sqlite or postgres", c.Database)
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.SQLitePath == "" {
		c.SQLitePath = filepath.Join(c.Prefix, SQLiteFile)
	}
	p := &c.Postgres
	if p.Host == "" {
		p.Host = "127.0.0.1"
	}
	if p.Port == 0 {
		p.Port = 5432
	}
	if p.User == "" {
		p.User = "kong"
	}
	if p.Database == "" {
		p.Database = "kong"
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	return c, nil
}

// Location describes where the store is, without credentials.
func (c Config) Location() string {
	n, err := c.normalized()
	if err != nil {
		return c.Database
	}
	if n.Database == BackendSQLite {
		if abs, err := filepath.Abs(n.SQLitePath); err == nil {
			return abs
		}
		return n.SQLitePath
	}
	if _, loc, err := pgPoolConfig(n.Postgres); err == nil {
		return loc
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s", n.Postgres.User, n.Postgres.Host, n.Postgres.Port, n.Postgres.Database)
}

// String never includes the password.
func (c Config) String() string {
	n, err := c.normalized()
	if err != nil {
		return "store(" + c.Database + ")"
	}
	return n.Database + " " + c.Location()
}

// openDriver connects. create lets SQLite create a missing file.
func openDriver(ctx context.Context, c Config, create bool) (driver, error) {
	switch c.Database {
	case BackendSQLite:
		return openSQLite(c.SQLitePath, create, c.PollInterval, c.SQLiteBusyTimeout)
	case BackendPostgres:
		return openPostgres(ctx, c.Postgres, c.PollInterval, c.Logger)
	}
	return nil, fmt.Errorf("database %q: want sqlite or postgres", c.Database)
}

// Open connects to the store described by cfg and checks its schema: a
// database that is not bootstrapped or has pending migrations is refused
// (ErrNotBootstrapped / ErrPendingMigrations, naming the command to run)
// unless cfg.AutoMigrate is set. A database that cannot be reached yields an
// error matching ErrUnavailable.
func Open(ctx context.Context, cfg Config) (Store, error) {
	c, err := cfg.normalized()
	if err != nil {
		return nil, err
	}
	d, err := openDriver(ctx, c, c.AutoMigrate)
	if err != nil {
		if errors.Is(err, ErrNotBootstrapped) {
			return nil, fmt.Errorf("open store: %w (run `kongfb migrations bootstrap`)", err)
		}
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := checkSchema(ctx, d, c.AutoMigrate, c.Logger); err != nil {
		_ = d.close()
		return nil, fmt.Errorf("open store %s %s: %w", d.backend(), d.location(), err)
	}
	e, err := newEngine(ctx, d, c.Logger)
	if err != nil {
		_ = d.close()
		return nil, fmt.Errorf("open store %s %s: %w", d.backend(), d.location(), err)
	}
	c.Logger.Debug("store opened", "backend", d.backend(), "location", d.location())
	return e, nil
}

func checkSchema(ctx context.Context, d driver, migrate bool, log *slog.Logger) error {
	st, err := status(ctx, d)
	if err != nil {
		return err
	}
	if len(st.Unknown) > 0 {
		return fmt.Errorf("%w: it has migration %d (%s) this binary does not know", ErrSchemaTooNew,
			st.Unknown[0].Version, st.Unknown[0].Name)
	}
	switch {
	case !st.Bootstrapped && !migrate:
		return fmt.Errorf("%w (run `kongfb migrations bootstrap`)", ErrNotBootstrapped)
	case len(st.Pending) > 0 && !migrate:
		return fmt.Errorf("%w: %s (run `kongfb migrations up`)", ErrPendingMigrations, st.pendingNames())
	case !st.Bootstrapped || len(st.Pending) > 0:
		res, err := applyMigrations(ctx, d, !st.Bootstrapped)
		if err != nil {
			return err
		}
		for _, m := range res.Applied {
			log.Info("store: applied migration", "version", m.Version, "name", m.Name, "backend", d.backend())
		}
	}
	return nil
}
