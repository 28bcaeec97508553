package store_test

import (
	"database/sql"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/cp/store/storetest"
)

// migrationBackend gives the migration tests a fresh database and a way to
// run SQL on it behind the store's back.
type migrationBackend struct {
	name string
	cfg  func(tb testing.TB) store.Config
	exec func(t *testing.T, cfg store.Config, sql string)
}

var migrationBackends = []migrationBackend{
	{
		name: "sqlite",
		cfg:  storetest.SQLiteConfig,
		exec: func(t *testing.T, cfg store.Config, q string) {
			db, err := sql.Open("sqlite", filepath.Join(cfg.Prefix, store.SQLiteFile))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		},
	},
	{
		name: "postgres",
		cfg:  storetest.PostgresConfig,
		exec: func(t *testing.T, cfg store.Config, q string) {
			storetest.AdminExec(t, `SET search_path = "`+cfg.Postgres.Schema+`"; `+q)
		},
	},
}

func TestMigrations(t *testing.T) {
	for _, b := range migrationBackends {
		t.Run(b.name, func(t *testing.T) {
			if b.name == "postgres" {
				storetest.PostgresDSN(t)
			}
			testMigrations(t, b)
		})
	}
}

func testMigrations(t *testing.T, b migrationBackend) {
	ctx := ctxFor(t)
	cfg := b.cfg(t)
	all, err := store.Migrations(b.name)
	if err != nil || len(all) == 0 || all[0].Version != 1 || all[0].Name != "init" {
		t.Fatalf("migrations: %v %v", all, err)
	}

	st, err := store.Status(ctx, cfg)
	if err != nil {
		t.Fatalf("status of a new database: %v", err)
	}
	if st.Bootstrapped || st.UpToDate() || len(st.Pending) != len(all) || len(st.Executed) != 0 {
		t.Fatalf("status of a new database: %+v", st)
	}
	if b.name == "sqlite" {
		if _, err := os.Stat(cfg.Prefix); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("status created the data directory: %v", err)
		}
	}
	if _, err := store.Open(ctx, cfg); !errors.Is(err, store.ErrNotBootstrapped) {
		t.Fatalf("open a new database: want ErrNotBootstrapped, got %v", err)
	}
	if _, err := store.Up(ctx, cfg); !errors.Is(err, store.ErrNotBootstrapped) {
		t.Fatalf("up on a new database: want ErrNotBootstrapped, got %v", err)
	}

	// Concurrent bootstraps (several CPs starting at once) apply each
	// migration exactly once and all succeed.
	var wg sync.WaitGroup
	results := make([]*store.MigrationResult, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i], errs[i] = store.Bootstrap(ctx, cfg)
		}(i)
	}
	wg.Wait()
	applied := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("bootstrap %d: %v", i, errs[i])
		}
		applied += len(r.Applied)
	}
	if applied != len(all) {
		t.Fatalf("concurrent bootstraps applied %d migrations, want %d", applied, len(all))
	}

	st, err = store.Status(ctx, cfg)
	if err != nil || !st.UpToDate() || len(st.Executed) != len(all) || st.Executed[0].AppliedAt.IsZero() {
		t.Fatalf("status after bootstrap: %+v %v", st, err)
	}
	r, err := store.Bootstrap(ctx, cfg)
	if err != nil || !r.AlreadyBootstrapped || len(r.Applied) != 0 {
		t.Fatalf("second bootstrap: %+v %v", r, err)
	}
	r, err = store.Up(ctx, cfg)
	if err != nil || len(r.Applied) != 0 {
		t.Fatalf("up when up to date: %+v %v", r, err)
	}
	s, err := store.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("open after bootstrap: %v", err)
	}
	if _, err := s.Insert(ctx, "services", storetest.Service("x")); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A database migrated by a newer kongfb is refused.
	b.exec(t, cfg, "INSERT INTO kongfb_schema_migrations (version, name, applied_at) VALUES (9999, 'future', '2030-01-01T00:00:00Z')")
	if _, err := store.Open(ctx, cfg); !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("open a newer schema: want ErrSchemaTooNew, got %v", err)
	}
	st, err = store.Status(ctx, cfg)
	if err != nil || st.UpToDate() || len(st.Unknown) != 1 || st.Unknown[0].Name != "future" {
		t.Fatalf("status of a newer schema: %+v %v", st, err)
	}
	b.exec(t, cfg, "DELETE FROM kongfb_schema_migrations WHERE version = 9999")

	// A database missing a migration is refused until `up`.
	b.exec(t, cfg, "DELETE FROM kongfb_schema_migrations WHERE version = 1")
	if _, err := store.Open(ctx, cfg); !errors.Is(err, store.ErrPendingMigrations) {
		t.Fatalf("open with pending migrations: want ErrPendingMigrations, got %v", err)
	}
}

func TestOpenDefaults(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	cfg := store.Config{AutoMigrate: true, Logger: slog.New(slog.DiscardHandler)}
	s, err := store.Open(ctxFor(t), cfg)
	if err != nil {
		t.Fatalf("open default store: %v", err)
	}
	defer s.Close()
	want, _ := filepath.Abs(filepath.Join(store.DefaultPrefix, store.SQLiteFile))
	if s.Backend() != "sqlite" || s.Location() != want {
		t.Fatalf("default store: %s %s, want sqlite %s", s.Backend(), s.Location(), want)
	}
	if _, err := os.Stat(want); err != nil {
		t.Fatalf("database file: %v", err)
	}
	for _, bad := range []string{"off", "cassandra"} {
		if _, err := store.Open(ctxFor(t), store.Config{Database: bad}); err == nil {
			t.Fatalf("database %q accepted", bad)
		}
	}
}

func TestSQLiteFileMode(t *testing.T) {
	cfg := storetest.SQLiteConfig(t)
	if _, err := store.Bootstrap(ctxFor(t), cfg); err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(ctxFor(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Insert(ctxFor(t), "services", storetest.Service("x")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{store.SQLiteFile, store.SQLiteFile + "-wal"} {
		fi, err := os.Stat(filepath.Join(cfg.Prefix, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Fatalf("%s mode %v: readable by others", name, fi.Mode())
		}
	}
	if fi, err := os.Stat(cfg.Prefix); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data directory mode: %v %v", fi.Mode(), err)
	}
}
