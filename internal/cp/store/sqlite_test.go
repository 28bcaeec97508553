package store_test

import (
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/kongfb/kongfb/internal/cp/store"

	"github.com/kongfb/kongfb/internal/cp/store/storetest"
)

func TestSQLiteConformance(t *testing.T) {
	storetest.Run(t, storetest.SQLite())
}

// Another process holding the write lock beyond the busy timeout makes
// writes fail with ErrUnavailable (503), not hang; reads keep working (WAL),
// and writes work again once the lock is released.
func TestSQLiteBusy(t *testing.T) {
	cfg := storetest.SQLiteConfig(t)
	cfg.AutoMigrate = true
	cfg.SQLiteBusyTimeout = 200 * time.Millisecond
	s, err := store.Open(ctxFor(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	svc, err := s.Insert(ctxFor(t), "services", storetest.Service("a"))
	if err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("sqlite", filepath.Join(cfg.Prefix, store.SQLiteFile))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctxFor(t), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Insert(ctxFor(t), "services", storetest.Service("b")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("insert while another process writes: want ErrUnavailable, got %v", err)
	}
	if _, err := s.Get(ctxFor(t), "services", svc["id"].(string)); err != nil {
		t.Fatalf("read while another process writes: %v", err)
	}
	if _, err := conn.ExecContext(ctxFor(t), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Insert(ctxFor(t), "services", storetest.Service("b")); err != nil {
		t.Fatalf("insert after the lock was released: %v", err)
	}
	if v, _ := s.Version(ctxFor(t)); v != 2 {
		t.Fatalf("version %d, want 2", v)
	}
}
