package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Migrations are versioned SQL files per backend:
// migrations/<backend>/<NNNN>_<name>.sql. Each runs in its own transaction
// together with its row in kongfb_schema_migrations, so a failed migration
// leaves nothing behind. Never edit a released migration; add a new one.
//
//go:embed migrations
var migrationFS embed.FS

const migrationsTable = "kongfb_schema_migrations"

// MigrationInfo names one migration.
type MigrationInfo struct {
	Version int    `json:"version"`
	Name    string `json:"name"`
}

// AppliedMigration is a migration recorded in the database.
type AppliedMigration struct {
	Version   int       `json:"version"`
	Name      string    `json:"name"`
	AppliedAt time.Time `json:"applied_at"`
}

// MigrationStatus is the state of a database's schema.
type MigrationStatus struct {
	Backend      string             `json:"database"`
	Location     string             `json:"location"`
	Bootstrapped bool               `json:"bootstrapped"`
	Executed     []AppliedMigration `json:"executed"`
	Pending      []MigrationInfo    `json:"pending"`
	// Unknown are applied migrations this binary does not know (the
	// database was migrated by a newer kongfb).
	Unknown []AppliedMigration `json:"unknown,omitempty"`
}

// UpToDate reports a bootstrapped database with nothing pending.
func (s *MigrationStatus) UpToDate() bool {
	return s.Bootstrapped && len(s.Pending) == 0 && len(s.Unknown) == 0
}

func (s *MigrationStatus) pendingNames() string {
	names := make([]string, len(s.Pending))
	for i, m := range s.Pending {
		names[i] = fmt.Sprintf("%04d_%s", m.Version, m.Name)
	}
	return strings.Join(names, ", ")
}

// MigrationResult is what Bootstrap or Up did.
type MigrationResult struct {
	Backend  string          `json:"database"`
	Location string          `json:"location"`
	Applied  []MigrationInfo `json:"applied"`
	// AlreadyBootstrapped: Bootstrap found an existing schema and did
	// nothing (run Up for pending migrations), like `kong migrations bootstrap`.
	AlreadyBootstrapped bool `json:"already_bootstrapped,omitempty"`
}

type migration struct {
	MigrationInfo
	sql string
}

// Migrations lists the migrations of a backend, in order.
func Migrations(backend string) ([]MigrationInfo, error) {
	ms, err := loadMigrations(backend)
	if err != nil {
		return nil, err
	}
	out := make([]MigrationInfo, len(ms))
	for i, m := range ms {
		out[i] = m.MigrationInfo
	}
	return out, nil
}

func loadMigrations(backend string) ([]migration, error) {
	dir := path.Join("migrations", backend)
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, fmt.Errorf("migrations for %s: %w", backend, err)
	}
	var out []migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, rest, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %s/%s: want NNNN_name.sql", dir, name)
		}
		b, err := migrationFS.ReadFile(path.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("migration file %s/%s: %w", dir, name, err)
		}
		out = append(out, migration{MigrationInfo{Version: v, Name: rest}, string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migrations for %s: version %d appears twice", backend, out[i].Version)
		}
	}
	return out, nil
}

// Bootstrap creates kongfb's schema in a new database and applies every
// migration. On a bootstrapped database it does nothing and reports
// AlreadyBootstrapped. SQLite creates the data directory and file.
func Bootstrap(ctx context.Context, cfg Config) (*MigrationResult, error) {
	return runMigrationCmd(ctx, cfg, true)
}

// Up applies pending migrations; ErrNotBootstrapped on a new database.
func Up(ctx context.Context, cfg Config) (*MigrationResult, error) {
	return runMigrationCmd(ctx, cfg, false)
}

func runMigrationCmd(ctx context.Context, cfg Config, bootstrap bool) (*MigrationResult, error) {
	c, err := cfg.normalized()
	if err != nil {
		return nil, err
	}
	d, err := openDriver(ctx, c, bootstrap)
	if err != nil {
		if errors.Is(err, ErrNotBootstrapped) {
			return nil, fmt.Errorf("%w (run `kongfb migrations bootstrap`)", err)
		}
		return nil, err
	}
	defer d.close()
	res, err := applyMigrations(ctx, d, bootstrap)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", d.backend(), d.location(), err)
	}
	return res, nil
}

// Status reports the schema state without changing anything (a missing
// SQLite file is reported as not bootstrapped, not created).
func Status(ctx context.Context, cfg Config) (*MigrationStatus, error) {
	c, err := cfg.normalized()
	if err != nil {
		return nil, err
	}
	d, err := openDriver(ctx, c, false)
	if errors.Is(err, ErrNotBootstrapped) {
		ms, lerr := Migrations(c.Database)
		if lerr != nil {
			return nil, lerr
		}
		return &MigrationStatus{Backend: c.Database, Location: c.Location(), Pending: ms, Executed: []AppliedMigration{}}, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.close()
	return status(ctx, d)
}

func status(ctx context.Context, d driver) (*MigrationStatus, error) {
	ms, err := loadMigrations(d.dialect())
	if err != nil {
		return nil, err
	}
	st := &MigrationStatus{Backend: d.backend(), Location: d.location(), Executed: []AppliedMigration{}, Pending: []MigrationInfo{}}
	err = d.read(ctx, true, func(q querier) error {
		st.Executed = st.Executed[:0]
		ok, err := d.tableExists(ctx, q, migrationsTable)
		if err != nil {
			return fmt.Errorf("check schema: %w", err)
		}
		st.Bootstrapped = ok
		if !ok {
			return nil
		}
		st.Executed, err = appliedMigrations(ctx, q)
		return err
	})
	if err != nil {
		return nil, err
	}
	done := map[int]bool{}
	known := map[int]bool{}
	for _, m := range ms {
		known[m.Version] = true
	}
	for _, a := range st.Executed {
		done[a.Version] = true
		if !known[a.Version] {
			st.Unknown = append(st.Unknown, a)
		}
	}
	for _, m := range ms {
		if !done[m.Version] {
			st.Pending = append(st.Pending, m.MigrationInfo)
		}
	}
	return st, nil
}

func appliedMigrations(ctx context.Context, q querier) ([]AppliedMigration, error) {
	rows, err := q.Query(ctx, "SELECT version, name, applied_at FROM "+migrationsTable+" ORDER BY version")
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", migrationsTable, err)
	}
	defer rows.Close()
	out := []AppliedMigration{}
	for rows.Next() {
		var a AppliedMigration
		var v int64
		var at string
		if err := rows.Scan(&v, &a.Name, &at); err != nil {
			return nil, fmt.Errorf("read %s: %w", migrationsTable, err)
		}
		a.Version = int(v)
		a.AppliedAt, _ = time.Parse(time.RFC3339Nano, at)
		out = append(out, a)
	}
	return out, rows.Err()
}

var errAlreadyBootstrapped = errors.New("already bootstrapped")

// applyMigrations runs the pending migrations one transaction each; the
// checks are repeated inside each transaction, under the migration lock,
// so concurrent migrators apply every migration exactly once.
func applyMigrations(ctx context.Context, d driver, bootstrap bool) (*MigrationResult, error) {
	ms, err := loadMigrations(d.dialect())
	if err != nil {
		return nil, err
	}
	res := &MigrationResult{Backend: d.backend(), Location: d.location(), Applied: []MigrationInfo{}}
	for i, m := range ms {
		applied := false
		err := d.migrationTx(ctx, func(q querier) error {
			applied = false
			ok, err := d.tableExists(ctx, q, migrationsTable)
			if err != nil {
				return fmt.Errorf("check schema: %w", err)
			}
			if !ok {
				if !bootstrap {
					return ErrNotBootstrapped
				}
				if err := q.Exec(ctx, "CREATE TABLE "+migrationsTable+
					" (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"); err != nil {
					return fmt.Errorf("create %s: %w", migrationsTable, err)
				}
			} else if bootstrap && i == 0 {
				return errAlreadyBootstrapped
			}
			var one int
			err = q.QueryRow(ctx, "SELECT 1 FROM "+migrationsTable+" WHERE version = ?", m.Version).Scan(&one)
			if err == nil {
				return nil
			}
			if !errors.Is(err, errNoRows) {
				return fmt.Errorf("read %s: %w", migrationsTable, err)
			}
			if err := q.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %04d_%s: %w", m.Version, m.Name, err)
			}
			if err := q.Exec(ctx, "INSERT INTO "+migrationsTable+" (version, name, applied_at) VALUES (?, ?, ?)",
				m.Version, m.Name, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
				return fmt.Errorf("record migration %04d_%s: %w", m.Version, m.Name, err)
			}
			applied = true
			return nil
		})
		if errors.Is(err, errAlreadyBootstrapped) {
			res.AlreadyBootstrapped = true
			return res, nil
		}
		if errors.Is(err, ErrNotBootstrapped) {
			return nil, fmt.Errorf("%w (run `kongfb migrations bootstrap`)", ErrNotBootstrapped)
		}
		if err != nil {
			return nil, err
		}
		if applied {
			res.Applied = append(res.Applied, m.MigrationInfo)
		}
	}
	return res, nil
}
