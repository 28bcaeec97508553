// Package storetest is the conformance suite every store backend passes,
// and helpers that give other packages' tests a real store: a SQLite file in
// a temporary directory, or a fresh schema in the PostgreSQL named by
// $KONGFB_TEST_PG_DSN (skipped when unset, unless
// KONGFB_TEST_REQUIRE_SERVICES=1 makes that a failure).
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kongfb/kongfb/internal/cp/store"
)

// PollInterval is the poll interval of test stores: short, so that
// cross-instance tests see changes quickly.
const PollInterval = 50 * time.Millisecond

// Harness opens stores of one backend for Run.
type Harness struct {
	// New returns a new, empty, migrated store on its own database, closed
	// (and its database removed) when the test ends.
	New func(tb testing.TB) store.Store
	// Peer opens a second Store on the same database as s, as another
	// process would.
	Peer func(tb testing.TB, s store.Store) store.Store
}

// configs remembers the Config each test store was opened with, for Peer.
var configs sync.Map // store.Store -> store.Config

func open(tb testing.TB, cfg store.Config) store.Store {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := store.Open(ctx, cfg)
	if err != nil {
		tb.Fatalf("open store %s: %v", cfg, err)
	}
	configs.Store(s, cfg)
	tb.Cleanup(func() {
		configs.Delete(s)
		if err := s.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	return s
}

func peer(tb testing.TB, s store.Store) store.Store {
	tb.Helper()
	cfg, ok := configs.Load(s)
	if !ok {
		tb.Fatalf("peer: store was not opened by storetest")
	}
	c := cfg.(store.Config)
	c.AutoMigrate = false // the database exists: a peer must not need to migrate
	return open(tb, c)
}

// SQLiteConfig returns the config of a new SQLite database in a temporary
// directory (not yet bootstrapped).
func SQLiteConfig(tb testing.TB) store.Config {
	return store.Config{
		Database:     store.BackendSQLite,
		Prefix:       filepath.Join(tb.TempDir(), "data"),
		PollInterval: PollInterval,
		Logger:       quiet,
	}
}

// quiet drops the store's logs (migrations applied…) in tests.
var quiet = slog.New(slog.DiscardHandler)

// NewSQLite returns a migrated SQLite store in a temporary directory.
func NewSQLite(tb testing.TB) store.Store {
	cfg := SQLiteConfig(tb)
	cfg.AutoMigrate = true
	return open(tb, cfg)
}

// SQLite is the harness for the SQLite backend.
func SQLite() Harness { return Harness{New: NewSQLite, Peer: peer} }

// PostgresDSN returns $KONGFB_TEST_PG_DSN, skipping the test when it is
// unset (failing under KONGFB_TEST_REQUIRE_SERVICES=1).
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv("KONGFB_TEST_PG_DSN")
	if dsn == "" {
		if os.Getenv("KONGFB_TEST_REQUIRE_SERVICES") == "1" {
			tb.Fatal("KONGFB_TEST_PG_DSN is not set but KONGFB_TEST_REQUIRE_SERVICES=1 requires PostgreSQL")
		}
		tb.Skip("KONGFB_TEST_PG_DSN not set: skipping PostgreSQL test")
	}
	return dsn
}

// AdminExec runs SQL on the test PostgreSQL server outside any store (to
// create/drop schemas, terminate backends…).
func AdminExec(tb testing.TB, sql string, args ...any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, PostgresDSN(tb))
	if err != nil {
		tb.Fatalf("connect to test postgres: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		tb.Fatalf("test postgres: %s: %v", sql, err)
	}
}

func randomSuffix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// PostgresConfig returns the config of a new, empty schema in the test
// PostgreSQL (created by Bootstrap, dropped when the test ends).
// ApplicationName is unique to the schema so that tests can find (and
// terminate) exactly this store's connections.
func PostgresConfig(tb testing.TB) store.Config {
	tb.Helper()
	dsn := PostgresDSN(tb)
	schema := "kongfb_test_" + randomSuffix()
	tb.Cleanup(func() { AdminExec(tb, `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`) })
	return store.Config{
		Database: store.BackendPostgres,
		Postgres: store.PostgresConfig{
			DSN:             dsn,
			Schema:          schema,
			ApplicationName: schema,
			ConnectTimeout:  5 * time.Second,
		},
		PollInterval: PollInterval,
		Logger:       quiet,
	}
}

// NewPostgres returns a migrated store in a new schema of the test
// PostgreSQL.
func NewPostgres(tb testing.TB) store.Store {
	cfg := PostgresConfig(tb)
	cfg.AutoMigrate = true
	return open(tb, cfg)
}

// Postgres is the harness for the PostgreSQL backend.
func Postgres() Harness { return Harness{New: NewPostgres, Peer: peer} }
