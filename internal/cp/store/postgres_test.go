package store_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/cp/store/storetest"
)

func TestPostgresConformance(t *testing.T) {
	storetest.PostgresDSN(t)
	storetest.Run(t, storetest.Postgres())
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func openStore(t *testing.T, cfg store.Config) store.Store {
	t.Helper()
	s, err := store.Open(ctxFor(t), cfg)
	if err != nil {
		t.Fatalf("open %s: %v", cfg, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func waitFor(t *testing.T, ch <-chan uint64, want uint64, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case v, ok := <-ch:
			if !ok {
				t.Fatal("watch channel closed")
			}
			if v >= want {
				return
			}
		case <-deadline:
			t.Fatalf("version %d not seen within %s", want, within)
		}
	}
}

// A peer that never polls (1h interval) still sees another instance's
// commit at once: LISTEN/NOTIFY works.
func TestPostgresNotify(t *testing.T) {
	cfg := storetest.PostgresConfig(t)
	cfg.AutoMigrate = true
	a := openStore(t, cfg)
	slow := cfg
	slow.PollInterval = time.Hour
	b := openStore(t, slow)
	ch := b.Watch(ctxFor(t))
	waitFor(t, ch, 0, 10*time.Second)
	for i := 1; i <= 3; i++ {
		if _, err := a.Insert(ctxFor(t), "services", storetest.Service("n"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
		waitFor(t, ch, uint64(i), 10*time.Second)
	}
}

// A change that sends no notification (made by hand in SQL) is found by
// polling.
func TestPostgresPollFallback(t *testing.T) {
	cfg := storetest.PostgresConfig(t)
	cfg.AutoMigrate = true
	s := openStore(t, cfg)
	ch := s.Watch(ctxFor(t))
	waitFor(t, ch, 0, 10*time.Second)
	storetest.AdminExec(t, `UPDATE "`+cfg.Postgres.Schema+`".kongfb_meta SET version = 41 WHERE id = 1`)
	waitFor(t, ch, 41, 10*time.Second)
}

func closedPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

func TestPostgresUnreachable(t *testing.T) {
	const secret = "s3cr3t-Pa55word"
	cfg := store.Config{Database: "postgres", Postgres: store.PostgresConfig{
		Host: "127.0.0.1", Port: closedPort(t), User: "kong", Password: secret, Database: "kong",
		ConnectTimeout: 2 * time.Second}}
	_, err := store.Open(ctxFor(t), cfg)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("open on a closed port: want ErrUnavailable, got %v", err)
	}
	for _, s := range []string{err.Error(), cfg.String(), cfg.Location()} {
		if strings.Contains(s, secret) {
			t.Fatalf("password leaked: %s", s)
		}
	}
	if _, err := store.Status(ctxFor(t), cfg); !errors.Is(err, store.ErrUnavailable) || strings.Contains(err.Error(), secret) {
		t.Fatalf("status on a closed port: %v", err)
	}
	if _, err := store.Bootstrap(ctxFor(t), cfg); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("bootstrap on a closed port: %v", err)
	}
}

// proxy is a TCP forwarder that can be stopped (every connection cut) and
// restarted on the same port: a database outage without touching the
// shared PostgreSQL server.
type proxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = struct{}{}, struct{}{}
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close(); c.Close() }()
			go func() { _, _ = io.Copy(c, up); up.Close(); c.Close() }()
		}
	}()
}

func (p *proxy) stop() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *proxy) start() {
	var ln net.Listener
	var err error
	// The port was just released by stop; rebinding it can briefly fail.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ln, err = net.Listen("tcp", p.addr)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("restart proxy on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// proxiedConfig points a test schema's config at a proxy in front of the
// test server, with the connection settings as separate fields.
func proxiedConfig(t *testing.T) (store.Config, *proxy) {
	cfg := storetest.PostgresConfig(t)
	pc, err := pgconn.ParseConfig(cfg.Postgres.DSN)
	if err != nil {
		t.Fatalf("parse KONGFB_TEST_PG_DSN: %v", err)
	}
	p := newProxy(t, net.JoinHostPort(pc.Host, strconv.Itoa(int(pc.Port))))
	host, port, _ := net.SplitHostPort(p.addr)
	cfg.Postgres.DSN = ""
	cfg.Postgres.Host = host
	cfg.Postgres.Port, _ = strconv.Atoi(port)
	cfg.Postgres.User = pc.User
	cfg.Postgres.Password = pc.Password
	cfg.Postgres.Database = pc.Database
	cfg.Postgres.ConnectTimeout = 2 * time.Second
	cfg.AutoMigrate = true
	return cfg, p
}

func TestPostgresOutageAndRecovery(t *testing.T) {
	cfg, p := proxiedConfig(t)
	s := openStore(t, cfg)
	ctx := ctxFor(t)
	svc, err := s.Insert(ctx, "services", storetest.Service("before"))
	if err != nil {
		t.Fatal(err)
	}
	ch := s.Watch(ctx)
	waitFor(t, ch, 1, 10*time.Second)

	p.stop()
	if err := s.Ping(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("ping during outage: want ErrUnavailable, got %v", err)
	}
	if _, err := s.Get(ctx, "services", svc["id"].(string)); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("get during outage: want ErrUnavailable, got %v", err)
	}
	if _, err := s.Insert(ctx, "services", storetest.Service("during")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("insert during outage: want ErrUnavailable, got %v", err)
	}
	if _, err := s.Export(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("export during outage: want ErrUnavailable, got %v", err)
	}

	p.start()
	// The first calls after the outage succeed: dead pooled connections are
	// replaced instead of failing one call each.
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping after recovery: %v", err)
	}
	if _, err := s.Insert(ctx, "services", storetest.Service("after")); err != nil {
		t.Fatalf("insert after recovery: %v", err)
	}
	if v, err := s.Version(ctx); err != nil || v != 2 {
		t.Fatalf("version after recovery: %d %v (the failed insert must not count)", v, err)
	}
	// The LISTEN connection comes back too: a change by another instance
	// (direct, not proxied) reaches the watcher.
	direct := storetest.PostgresConfig(t)
	direct.Postgres.Schema = cfg.Postgres.Schema
	direct.Postgres.ApplicationName = cfg.Postgres.Schema
	other := openStore(t, direct)
	if _, err := other.Insert(ctx, "services", storetest.Service("other")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, 3, 15*time.Second)
}

func TestPostgresTerminatedBackends(t *testing.T) {
	cfg := storetest.PostgresConfig(t)
	cfg.AutoMigrate = true
	slow := cfg
	slow.PollInterval = time.Hour // only NOTIFY can wake the watcher
	s := openStore(t, slow)
	ctx := ctxFor(t)
	for i := 0; i < 4; i++ { // fill the pool
		if _, err := s.Insert(ctx, "services", storetest.Service("s"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	ch := s.Watch(ctx)
	waitFor(t, ch, 4, 10*time.Second)
	storetest.AdminExec(t, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()", cfg.Postgres.Schema)

	if _, err := s.List(ctx, "services", store.ListOptions{}); err != nil {
		t.Fatalf("list after terminate: %v", err)
	}
	if _, err := s.Insert(ctx, "services", storetest.Service("after")); err != nil {
		t.Fatalf("insert after terminate: %v", err)
	}
	waitFor(t, ch, 5, 10*time.Second)
	// The listener reconnected: another instance's change is notified.
	other := openStore(t, cfg)
	if _, err := other.Insert(ctx, "services", storetest.Service("other")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ch, 6, 15*time.Second)
}
