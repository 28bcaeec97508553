package cli

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/cp/store/storetest"
)

func newTestLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// cpRequest sends a request to a running control plane.
func cpRequest(t *testing.T, method, url, body, token string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Kong-Admin-Token", token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return res.StatusCode, m
}

// startCP runs runServeCP until the returned stop is called.
func startCP(t *testing.T, o serveCPOptions) (serveCPAddrs, func() error) {
	t.Helper()
	ready := make(chan serveCPAddrs, 1)
	o.Ready = func(a serveCPAddrs) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runServeCP(ctx, o) }()
	select {
	case a := <-ready:
		stopped := false
		stop := func() error {
			if stopped {
				return nil
			}
			stopped = true
			cancel()
			select {
			case err := <-done:
				return err
			case <-time.After(15 * time.Second):
				t.Fatal("control plane did not stop")
				return nil
			}
		}
		t.Cleanup(func() { _ = stop() })
		return a, stop
	case err := <-done:
		cancel()
		t.Fatalf("control plane did not start: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("control plane did not become ready")
	}
	return serveCPAddrs{}, nil
}

func cpTestOptions(t *testing.T) serveCPOptions {
	return serveCPOptions{
		AdminListen:  "127.0.0.1:0",
		StatusListen: "127.0.0.1:0",
		storeOptions: storeOptions{Database: "sqlite", Prefix: filepath.Join(t.TempDir(), "data")},
	}
}

func TestServeCPSQLiteBootstrapAndRestart(t *testing.T) {
	o := cpTestOptions(t)
	addrs, stop := startCP(t, o)
	admin := "http://" + addrs.Admin[0]
	code, root := cpRequest(t, "GET", admin+"/", "", "")
	if code != 200 || root["version"] != "3.9.1" {
		t.Fatalf("GET /: %d %v", code, root)
	}
	conf := root["configuration"].(map[string]any)
	if conf["database"] != "sqlite" || conf["role"] != "control_plane" {
		t.Errorf("configuration: %v", conf)
	}
	nodeID := root["node_id"]
	if code, _ := cpRequest(t, "POST", admin+"/services", `{"name":"kept","host":"kept.test"}`, ""); code != 201 {
		t.Fatalf("POST /services: %d", code)
	}
	if code, s := cpRequest(t, "GET", "http://"+addrs.Status[0]+"/status/ready", "", ""); code != 200 || s["message"] != "ready" {
		t.Errorf("/status/ready: %d %v", code, s)
	}
	if code, s := cpRequest(t, "GET", "http://"+addrs.Status[0]+"/status", "", ""); code != 200 ||
		s["database"].(map[string]any)["reachable"] != true {
		t.Errorf("/status: %d %v", code, s)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(o.Prefix, "kongfb.db")); err != nil {
		t.Fatalf("no SQLite file: %v", err)
	}

	// A restart finds the data and keeps its node id.
	addrs, _ = startCP(t, o)
	admin = "http://" + addrs.Admin[0]
	if code, _ := cpRequest(t, "GET", admin+"/services/kept", "", ""); code != 200 {
		t.Errorf("service lost across restart: %d", code)
	}
	if _, root := cpRequest(t, "GET", admin+"/", "", ""); root["node_id"] != nodeID {
		t.Errorf("node id changed: %v -> %v", nodeID, root["node_id"])
	}
}

func TestServeCPPostgresNeedsBootstrap(t *testing.T) {
	cfg := storetest.PostgresConfig(t) // a fresh schema: not bootstrapped
	o := cpTestOptions(t)
	o.Database = "postgres"
	o.PGDSN = cfg.Postgres.DSN
	o.PGSchema = cfg.Postgres.Schema
	err := runServeCP(context.Background(), o)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != ExitFailure || !strings.Contains(err.Error(), "kongfb migrations bootstrap") {
		t.Fatalf("unbootstrapped postgres: %v, want exit 1 naming `kongfb migrations bootstrap`", err)
	}
}

func TestServeCPPostgres(t *testing.T) {
	cfg := storetest.PostgresConfig(t)
	cfg.AutoMigrate = true // what `kongfb migrations bootstrap` does
	st, err := store.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	o := cpTestOptions(t)
	o.Database = "postgres"
	o.PGDSN = cfg.Postgres.DSN
	o.PGSchema = cfg.Postgres.Schema
	addrs, _ := startCP(t, o)
	admin := "http://" + addrs.Admin[0]
	code, root := cpRequest(t, "GET", admin+"/", "", "")
	if code != 200 || root["configuration"].(map[string]any)["database"] != "postgres" {
		t.Fatalf("GET /: %d %v", code, root)
	}
	if code, _ := cpRequest(t, "PUT", admin+"/services/pg-svc", `{"host":"pg.test"}`, ""); code != 200 {
		t.Fatalf("PUT: %d", code)
	}
	if code, _ := cpRequest(t, "GET", admin+"/services/pg-svc", "", ""); code != 200 {
		t.Fatalf("GET: %d", code)
	}
}

func TestServeCPBadSettings(t *testing.T) {
	cases := []struct {
		mod  func(*serveCPOptions)
		want string
	}{
		{func(o *serveCPOptions) { o.AdminListen = "off" }, "needs an Admin API listener"},
		{func(o *serveCPOptions) { o.AdminListen = "127.0.0.1:8444 ssl" }, "ssl flag is not supported"},
		{func(o *serveCPOptions) { o.Database = "off" }, "needs a database"},
		{func(o *serveCPOptions) { o.Database = "mysql" }, "want sqlite or postgres"},
	}
	for _, c := range cases {
		o := cpTestOptions(t)
		c.mod(&o)
		err := runServeCP(context.Background(), o)
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Code != ExitUsage || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want exit 2 with %q", o, err, c.want)
		}
	}
}

// TestServeCPCommandEnvTokenAndSignal runs the real command with Kong's
// environment names, checks the admin token and the insecure-bind warning,
// and stops it with SIGTERM.
func TestServeCPCommandEnvTokenAndSignal(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "data")
	t.Setenv("KONG_ADMIN_LISTEN", "0.0.0.0:0 reuseport backlog=16384")
	t.Setenv("KONG_STATUS_LISTEN", "off")
	t.Setenv("KONG_PREFIX", prefix)
	t.Setenv("KONG_DATABASE", "sqlite")
	t.Setenv("KONG_ADMIN_TOKEN", "tok-123")

	ready := make(chan serveCPAddrs, 1)
	var got serveCPOptions
	serveCPTestHook = func(o *serveCPOptions) {
		got = *o
		o.Ready = func(a serveCPAddrs) { ready <- a }
	}
	t.Cleanup(func() { serveCPTestHook = nil })

	var out, errw syncBuffer
	root := NewRootCommand(Streams{In: strings.NewReader(""), Out: &out, Err: &errw})
	root.SetArgs([]string{"serve", "cp"})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(context.Background()) }()
	var addrs serveCPAddrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("command returned before ready: %v\n%s", err, errw.String())
	case <-time.After(30 * time.Second):
		t.Fatal("command did not become ready")
	}
	if got.Prefix != prefix || got.AdminToken != "tok-123" || got.StatusListen != "off" || len(addrs.Status) != 0 {
		t.Errorf("options from the environment: %+v, status %v", got, addrs.Status)
	}
	_, port, _ := strings.Cut(addrs.Admin[0], "]:")
	if port == "" {
		_, port, _ = strings.Cut(addrs.Admin[0], ":")
	}
	admin := "http://127.0.0.1:" + port
	if code, body := cpRequest(t, "GET", admin+"/", "", ""); code != 401 ||
		body["message"] != "Invalid credentials. Token or User credentials required" {
		t.Errorf("no token: %d %v", code, body)
	}
	if code, _ := cpRequest(t, "GET", admin+"/", "", "tok-123"); code != 200 {
		t.Errorf("with token: %d", code)
	}
	logs := errw.String()
	if strings.Contains(logs, "tok-123") {
		t.Errorf("the admin token appears in the logs:\n%s", logs)
	}
	if strings.Contains(logs, "INSECURE") {
		t.Errorf("insecure-bind warning although a token is set:\n%s", logs)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("command after SIGTERM = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("command did not stop on SIGTERM")
	}
}

func TestServeCPInsecureBindWarns(t *testing.T) {
	var logs syncBuffer
	o := cpTestOptions(t)
	o.AdminListen = "0.0.0.0:0"
	o.Logger = newTestLogger(&logs)
	startCP(t, o)
	if !strings.Contains(logs.String(), "INSECURE") {
		t.Errorf("no warning for a non-loopback admin listener without token:\n%s", logs.String())
	}
}
