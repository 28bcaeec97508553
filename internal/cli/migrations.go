package cli

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kongfb/kongfb/internal/cp/store"
)

func init() { register(newMigrationsCommand) }

// Exit codes of `migrations status`, the ones `kong migrations list` uses,
// so that scripts written for Kong keep working.
const (
	exitNeedsBootstrap    = 3
	exitPendingMigrations = 5
)

// storeOptions are the database settings shared by the commands that open
// the control plane's store.
type storeOptions struct {
	Database   string
	Prefix     string
	PGHost     string
	PGPort     int
	PGUser     string
	PGPassword string
	PGDatabase string
	PGSchema   string
	PGDSN      string
}

// storeEnv maps the store flags to Kong's environment names. KONGFB_<FLAG>
// (e.g. KONGFB_PG_DSN) works for every flag through the root command.
var storeEnv = [][2]string{
	{"database", "KONG_DATABASE"},
	{"prefix", "KONG_PREFIX"},
	{"pg-host", "KONG_PG_HOST"},
	{"pg-port", "KONG_PG_PORT"},
	{"pg-user", "KONG_PG_USER"},
	{"pg-password", "KONG_PG_PASSWORD"},
	{"pg-database", "KONG_PG_DATABASE"},
	{"pg-schema", "KONG_PG_SCHEMA"},
}

func addStoreFlags(f *pflag.FlagSet, o *storeOptions) {
	f.StringVar(&o.Database, "database", store.BackendSQLite, "database backend: sqlite or postgres [KONG_DATABASE]")
	f.StringVar(&o.Prefix, "prefix", store.DefaultPrefix, "data directory holding the SQLite file kongfb.db [KONG_PREFIX]")
	f.StringVar(&o.PGHost, "pg-host", "127.0.0.1", "PostgreSQL host [KONG_PG_HOST]")
	f.IntVar(&o.PGPort, "pg-port", 5432, "PostgreSQL port [KONG_PG_PORT]")
	f.StringVar(&o.PGUser, "pg-user", "kong", "PostgreSQL user [KONG_PG_USER]")
	f.StringVar(&o.PGPassword, "pg-password", "", "PostgreSQL password; prefer the environment variable [KONG_PG_PASSWORD]")
	f.StringVar(&o.PGDatabase, "pg-database", "kong", "PostgreSQL database [KONG_PG_DATABASE]")
	f.StringVar(&o.PGSchema, "pg-schema", "", "PostgreSQL schema for kongfb's tables, created by bootstrap (default: the server's) [KONG_PG_SCHEMA]")
	f.StringVar(&o.PGDSN, "pg-dsn", "", "PostgreSQL connection string or URL, instead of the --pg-* fields [KONGFB_PG_DSN]")
}

func (o storeOptions) config(a *app) (store.Config, error) {
	switch strings.ToLower(o.Database) {
	case "", "sqlite", "sqlite3", "postgres", "postgresql", "pg":
	case "off":
		return store.Config{}, usageErrorf("database=off: migrations need a database (sqlite or postgres)")
	default:
		return store.Config{}, usageErrorf("database %q: want sqlite or postgres", o.Database)
	}
	if o.PGPort <= 0 || o.PGPort > 65535 {
		return store.Config{}, usageErrorf("pg-port %d: want 1-65535", o.PGPort)
	}
	return store.Config{
		Database: o.Database,
		Prefix:   o.Prefix,
		Logger:   a.logger(),
		Postgres: store.PostgresConfig{
			DSN: o.PGDSN, Host: o.PGHost, Port: o.PGPort, User: o.PGUser,
			Password: o.PGPassword, Database: o.PGDatabase, Schema: o.PGSchema,
		},
	}, nil
}

func newMigrationsCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrations",
		Short: "Create or upgrade the control plane's database schema",
		Long: `Manage the schema of the control plane's database, like 'kong migrations':

  bootstrap   create the schema in a new database (SQLite: creates <prefix>/kongfb.db)
  up          apply the migrations a newer kongfb brings
  status      show applied and pending migrations (alias: list)

The database settings are the same as 'kongfb serve cp': --database sqlite
(default; the file <prefix>/kongfb.db, prefix ./kongfb-data unless --prefix or
KONG_PREFIX says otherwise: Kong's /usr/local/kong needs root) or --database
postgres with the --pg-* flags or Kong's KONG_PG_* environment variables.
Several control planes can run these commands at once: a lock makes each
migration run exactly once. The password is never printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(
		newMigrationsSubcommand(a, "bootstrap", nil, "Create kongfb's schema in a new database",
			`Create kongfb's schema in a new database and apply every migration. On a
database that is already bootstrapped it changes nothing and says so (exit 0);
use 'kongfb migrations up' for pending migrations.`, runMigrationsBootstrap),
		newMigrationsSubcommand(a, "up", nil, "Apply pending migrations",
			`Apply the migrations this kongfb has and the database has not. Fails on a
database that was never bootstrapped.`, runMigrationsUp),
		newMigrationsSubcommand(a, "status", []string{"list"}, "Show applied and pending migrations",
			`Show each migration and whether the database has it.

Exit codes (those of 'kong migrations list'):
  0  the database is up to date
  1  the database cannot be read, or was migrated by a newer kongfb
  3  the database needs bootstrapping
  5  the database has pending migrations`, runMigrationsStatus),
	)
	return cmd
}

type migrationsRun func(ctx context.Context, a *app, cfg store.Config) error

func newMigrationsSubcommand(a *app, use string, aliases []string, short, long string, run migrationsRun) *cobra.Command {
	o := storeOptions{}
	cmd := &cobra.Command{
		Use:     use,
		Aliases: aliases,
		Short:   short,
		Long:    long,
		Example: `  kongfb migrations ` + use + `
  kongfb migrations ` + use + ` --prefix /var/lib/kongfb
  KONG_DATABASE=postgres KONG_PG_HOST=db KONG_PG_PASSWORD=secret kongfb migrations ` + use,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := kongEnvDefaults(a, cmd, storeEnv); err != nil {
				return err
			}
			cfg, err := o.config(a)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmdContext(cmd), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return run(ctx, a, cfg)
		},
	}
	addStoreFlags(cmd.Flags(), &o)
	return cmd
}

func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// migrationFailure wraps a store error, which already names the database
// and where it is (never the password) and what to run.
func migrationFailure(what string, err error) error {
	return &ExitError{Code: ExitFailure, Err: fmt.Errorf("%s: %w", what, err)}
}

func runMigrationsBootstrap(ctx context.Context, a *app, cfg store.Config) error {
	p, err := a.printer()
	if err != nil {
		return err
	}
	res, err := store.Bootstrap(ctx, cfg)
	if err != nil {
		return migrationFailure("bootstrap", err)
	}
	return p.Data(res, func(w io.Writer) error {
		if res.AlreadyBootstrapped {
			_, err := fmt.Fprintf(w, "Database already bootstrapped (%s %s); run 'kongfb migrations up' for pending migrations\n", res.Backend, res.Location)
			return err
		}
		fmt.Fprintf(w, "Bootstrapped %s %s\n", res.Backend, res.Location)
		printApplied(w, res.Applied)
		_, err := fmt.Fprintln(w, p.OK("Database is up-to-date"))
		return err
	})
}

func runMigrationsUp(ctx context.Context, a *app, cfg store.Config) error {
	p, err := a.printer()
	if err != nil {
		return err
	}
	res, err := store.Up(ctx, cfg)
	if err != nil {
		return migrationFailure("migrations up", err)
	}
	return p.Data(res, func(w io.Writer) error {
		if len(res.Applied) == 0 {
			_, err := fmt.Fprintf(w, "Database is already up-to-date (%s %s)\n", res.Backend, res.Location)
			return err
		}
		fmt.Fprintf(w, "Migrated %s %s\n", res.Backend, res.Location)
		printApplied(w, res.Applied)
		_, err := fmt.Fprintln(w, p.OK("Database is up-to-date"))
		return err
	})
}

func printApplied(w io.Writer, ms []store.MigrationInfo) {
	for _, m := range ms {
		fmt.Fprintf(w, "  applied %04d_%s\n", m.Version, m.Name)
	}
}

// migrationStatusJSON is the --output json|yaml document of `status`.
type migrationStatusJSON struct {
	*store.MigrationStatus
	UpToDate bool `json:"up_to_date"`
}

func runMigrationsStatus(ctx context.Context, a *app, cfg store.Config) error {
	p, err := a.printer()
	if err != nil {
		return err
	}
	st, err := store.Status(ctx, cfg)
	if err != nil {
		return migrationFailure("migrations status", err)
	}
	err = p.Data(migrationStatusJSON{st, st.UpToDate()}, func(w io.Writer) error {
		fmt.Fprintf(w, "Database: %s %s\n", st.Backend, st.Location)
		var rows [][]string
		for _, m := range st.Executed {
			state := "executed"
			for _, u := range st.Unknown {
				if u.Version == m.Version {
					state = "unknown (newer kongfb)"
				}
			}
			rows = append(rows, []string{fmt.Sprintf("%04d", m.Version), m.Name, state, m.AppliedAt.Local().Format(time.RFC3339)})
		}
		for _, m := range st.Pending {
			rows = append(rows, []string{fmt.Sprintf("%04d", m.Version), m.Name, "pending", ""})
		}
		if err := p.Table([]string{"version", "name", "state", "applied at"}, rows); err != nil {
			return err
		}
		_, err := fmt.Fprintln(w, statusSummary(p.OK, p.Fail, st))
		return err
	})
	if err != nil {
		return err
	}
	switch {
	case len(st.Unknown) > 0:
		return &ExitError{Code: ExitFailure}
	case !st.Bootstrapped:
		return &ExitError{Code: exitNeedsBootstrap}
	case len(st.Pending) > 0:
		return &ExitError{Code: exitPendingMigrations}
	}
	return nil
}

func statusSummary(ok, fail func(string) string, st *store.MigrationStatus) string {
	switch {
	case len(st.Unknown) > 0:
		return fail("Database schema is newer than this kongfb") + ": upgrade kongfb (unknown migration " +
			strconv.Itoa(st.Unknown[0].Version) + " " + st.Unknown[0].Name + ")"
	case !st.Bootstrapped:
		return fail("Database needs bootstrapping") + ": run 'kongfb migrations bootstrap'"
	case len(st.Pending) > 0:
		n := len(st.Pending)
		return fail(fmt.Sprintf("Database has %d pending migration%s", n, map[bool]string{true: "", false: "s"}[n == 1])) +
			": run 'kongfb migrations up'"
	}
	return ok("Database is up-to-date")
}
