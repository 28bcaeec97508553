package dp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
)

// fakeEngine records what the node asks of it; Serve accepts and closes
// connections until Shutdown closes the listeners.
type fakeEngine struct {
	mu        sync.Mutex
	applyErr  error
	applied   []string
	lns       []net.Listener
	shutdowns int
}

func (f *fakeEngine) Apply(_ *config.Config, hash string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.applyErr != nil {
		return f.applyErr
	}
	f.applied = append(f.applied, hash)
	return nil
}

func (f *fakeEngine) Serve(ln net.Listener) error {
	f.mu.Lock()
	f.lns = append(f.lns, ln)
	f.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		_ = c.Close()
	}
}

func (f *fakeEngine) Shutdown(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shutdowns++
	for _, ln := range f.lns {
		_ = ln.Close()
	}
	return nil
}

func (f *fakeEngine) appliedHashes() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.applied...)
}

func strp(s string) *string { return &s }

func sampleConfig(host string) *config.Config {
	svcID := "5b1484f2-5209-49d9-b43e-92ba09dd9d52"
	return &config.Config{
		Services: []*config.Service{{
			ID: svcID, Name: strp("httpbin-service"), Protocol: "http", Host: host, Port: 80,
			Retries: 5, ConnectTimeout: 60000, ReadTimeout: 60000, WriteTimeout: 60000, Enabled: true,
		}},
		Routes: []*config.Route{{
			ID: "e3c0d7a4-1b6f-4b8e-9b5a-3f7f0c2a2d11", Name: strp("httpbin-route"),
			Protocols: []string{"http", "https"}, Paths: []string{"/mock"}, StripPath: true,
			PathHandling: "v0", HTTPSRedirectStatusCode: 426, RequestBuffering: true, ResponseBuffering: true,
			Service: strp(svcID),
		}},
	}
}

func get(t *testing.T, h http.Handler, method, target string, body io.Reader, ct string) (int, map[string]any, http.Header) {
	t.Helper()
	req := httptest.NewRequest(method, target, body)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var doc map[string]any
	if rec.Body.Len() > 0 {
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
			t.Fatalf("%s %s: body is not JSON: %v: %q", method, target, err, rec.Body.String())
		}
	}
	return rec.Code, doc, rec.Header()
}

func TestStatusBeforeAnyConfig(t *testing.T) {
	n := NewNode(Options{Engine: &fakeEngine{}, Stats: func() ServerStats {
		return ServerStats{ConnectionsActive: 3, ConnectionsAccepted: 10, ConnectionsHandled: 9, TotalRequests: 42}
	}})
	h := n.StatusHandler()

	code, doc, hdr := get(t, h, "GET", "/status", nil, "")
	if code != 200 {
		t.Fatalf("GET /status = %d", code)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	if doc["configuration_hash"] != config.EmptyHash {
		t.Errorf("configuration_hash = %v, want 32 zeros", doc["configuration_hash"])
	}
	if _, ok := doc["database"]; ok {
		t.Error("a data plane's /status must not have a database block")
	}
	server := doc["server"].(map[string]any)
	want := map[string]float64{"connections_active": 3, "connections_accepted": 10, "connections_handled": 9,
		"total_requests": 42, "connections_reading": 0, "connections_writing": 0, "connections_waiting": 0}
	for k, v := range want {
		if server[k] != v {
			t.Errorf("server.%s = %v, want %v", k, server[k], v)
		}
	}
	mem := doc["memory"].(map[string]any)
	vms := mem["workers_lua_vms"].([]any)
	vm := vms[0].(map[string]any)
	if !regexp.MustCompile(`^\d+\.\d\d MiB$`).MatchString(vm["http_allocated_gc"].(string)) {
		t.Errorf("http_allocated_gc = %q, want Kong's \"49.63 MiB\" form", vm["http_allocated_gc"])
	}
	if vm["pid"] != float64(os.Getpid()) {
		t.Errorf("pid = %v", vm["pid"])
	}
	dict := mem["lua_shared_dicts"].(map[string]any)["kong"].(map[string]any)
	if !strings.HasSuffix(dict["capacity"].(string), " MiB") || !strings.HasSuffix(dict["allocated_slabs"].(string), " MiB") {
		t.Errorf("lua_shared_dicts.kong = %v", dict)
	}
	kb := doc["kongfb"].(map[string]any)
	if kb["config_source"] != nil || kb["loaded_at"] != nil {
		t.Errorf("kongfb block before any config = %v, want nulls", kb)
	}

	code, doc, _ = get(t, h, "GET", "/status/ready", nil, "")
	if code != 503 || doc["message"] != MsgNoConfig {
		t.Errorf("GET /status/ready = %d %v, want 503 %q", code, doc, MsgNoConfig)
	}
}

func TestApplyAndReadiness(t *testing.T) {
	eng := &fakeEngine{}
	now := time.Date(2025, 12, 8, 9, 30, 0, 0, time.UTC)
	n := NewNode(Options{Engine: eng, Now: func() time.Time { return now }})
	h := n.StatusHandler()

	// An empty configuration is stored under the zero hash and is not ready.
	changed, err := n.Apply(&Snapshot{Config: &config.Config{}, Source: SourceDeclarative, Origin: "empty.yaml"})
	if err != nil || !changed {
		t.Fatalf("Apply(empty) = %v, %v", changed, err)
	}
	if code, doc, _ := get(t, h, "GET", "/status/ready", nil, ""); code != 503 || doc["message"] != MsgEmptyConfig {
		t.Errorf("ready with empty config = %d %v, want 503 %q", code, doc, MsgEmptyConfig)
	}
	// A CP-supplied hash for an empty config is still recorded as zeros.
	if _, err := n.Apply(&Snapshot{Config: &config.Config{Workspaces: []*config.Workspace{{ID: config.DefaultWorkspaceID, Name: "default"}}},
		Hash: "0123456789abcdef0123456789abcdef", Source: SourceCP}); err != nil {
		t.Fatal(err)
	}
	if st := n.State(); st.Hash != config.EmptyHash || st.Source != SourceCP {
		t.Errorf("state after empty CP config = %+v", st)
	}

	cfg := sampleConfig("127.0.0.1")
	wantHash, _ := config.Hash(cfg)
	if wantHash == config.EmptyHash {
		t.Fatal("sample config hashes to EmptyHash")
	}
	changed, err = n.Apply(&Snapshot{Config: cfg, Source: SourceDeclarative, Origin: "kong.yaml"})
	if err != nil || !changed {
		t.Fatalf("Apply(cfg) = %v, %v", changed, err)
	}
	if got := eng.appliedHashes(); got[len(got)-1] != wantHash {
		t.Errorf("engine got hash %s, want %s", got[len(got)-1], wantHash)
	}
	code, doc, _ := get(t, h, "GET", "/status", nil, "")
	if code != 200 || doc["configuration_hash"] != wantHash {
		t.Errorf("/status hash = %v, want %s", doc["configuration_hash"], wantHash)
	}
	kb := doc["kongfb"].(map[string]any)
	if kb["config_source"] != "declarative" || kb["config_origin"] != "kong.yaml" || kb["loaded_at"] != "2025-12-08T09:30:00Z" {
		t.Errorf("kongfb block = %v", kb)
	}
	if code, doc, _ := get(t, h, "GET", "/status/ready", nil, ""); code != 200 || doc["message"] != "ready" {
		t.Errorf("ready = %d %v, want 200 ready", code, doc)
	}

	// The same configuration again is not re-applied.
	applies := len(eng.appliedHashes())
	changed, err = n.Apply(&Snapshot{Config: sampleConfig("127.0.0.1"), Source: SourceDeclarative, Origin: "kong.yaml"})
	if err != nil || changed || len(eng.appliedHashes()) != applies {
		t.Errorf("re-applying the same config: changed=%v err=%v engine applies %d -> %d", changed, err, applies, len(eng.appliedHashes()))
	}

	// A configuration the engine refuses leaves the running one in place.
	eng.applyErr = errors.New(`plugin "rate-limiting" is not supported`)
	_, err = n.Apply(&Snapshot{Config: sampleConfig("10.0.0.1"), Source: SourceDeclarative, Origin: "kong.yaml"})
	if err == nil || !strings.Contains(err.Error(), "rate-limiting") {
		t.Fatalf("Apply with a refusing engine = %v", err)
	}
	if st := n.State(); st.Hash != wantHash {
		t.Errorf("hash after refused apply = %s, want the old %s", st.Hash, wantHash)
	}
}

func TestDraining(t *testing.T) {
	n := NewNode(Options{Engine: &fakeEngine{}})
	if _, err := n.Apply(&Snapshot{Config: sampleConfig("127.0.0.1"), Source: SourceDeclarative}); err != nil {
		t.Fatal(err)
	}
	h := n.StatusHandler()

	for _, tc := range []struct{ body, ct, query, want string }{
		{"status=ready", "application/x-www-form-urlencoded", "", `invalid status "ready"`},
		{"", "", "", "status is required"},
		{`{"status":`, "application/json", "", "Cannot parse JSON body"},
	} {
		code, doc, _ := get(t, h, "POST", "/status/ready"+tc.query, strings.NewReader(tc.body), tc.ct)
		if code != 400 || !strings.Contains(doc["message"].(string), tc.want) {
			t.Errorf("POST %q = %d %v, want 400 containing %q", tc.body, code, doc, tc.want)
		}
	}
	if n.Draining() {
		t.Fatal("a rejected POST set draining")
	}

	for _, tc := range []struct{ body, ct, query string }{
		{"status=draining", "application/x-www-form-urlencoded", ""},
		{`{"status":"draining"}`, "application/json", ""},
		{"", "", "?status=draining"},
	} {
		n.SetDraining(false)
		code, _, _ := get(t, h, "POST", "/status/ready"+tc.query, strings.NewReader(tc.body), tc.ct)
		if code != 204 {
			t.Errorf("POST %q%s = %d, want 204", tc.body, tc.query, code)
		}
		if code, doc, _ := get(t, h, "GET", "/status/ready", nil, ""); code != 503 || doc["message"] != "draining" {
			t.Errorf("after POST draining: GET = %d %v, want 503 draining", code, doc)
		}
	}
}

func TestStatusRouting(t *testing.T) {
	h := NewNode(Options{Engine: &fakeEngine{}}).StatusHandler()
	if code, doc, _ := get(t, h, "GET", "/nope", nil, ""); code != 404 || doc["message"] != "Not found" {
		t.Errorf("unknown path = %d %v", code, doc)
	}
	if code, _, _ := get(t, h, "GET", "/status/", nil, ""); code != 200 {
		t.Errorf("trailing slash = %d", code)
	}
	code, doc, hdr := get(t, h, "DELETE", "/status", nil, "")
	if code != 405 || doc["message"] != "Method not allowed" || hdr.Get("Allow") == "" {
		t.Errorf("DELETE /status = %d %v allow=%q", code, doc, hdr.Get("Allow"))
	}
}

func TestStatusUnitAndScale(t *testing.T) {
	h := NewNode(Options{Engine: &fakeEngine{}}).StatusHandler()
	_, doc, _ := get(t, h, "GET", "/status?unit=k&scale=0", nil, "")
	v := doc["memory"].(map[string]any)["workers_lua_vms"].([]any)[0].(map[string]any)["http_allocated_gc"].(string)
	if !regexp.MustCompile(`^\d+ KiB$`).MatchString(v) {
		t.Errorf("unit=k scale=0 gave %q", v)
	}
	_, doc, _ = get(t, h, "GET", "/status?unit=b", nil, "")
	v = doc["memory"].(map[string]any)["workers_lua_vms"].([]any)[0].(map[string]any)["http_allocated_gc"].(string)
	if !regexp.MustCompile(`^\d+$`).MatchString(v) {
		t.Errorf("unit=b gave %q", v)
	}
	code, doc, _ := get(t, h, "GET", "/status?unit=x", nil, "")
	if code != 400 || doc["message"] != "invalid unit 'x' (expected 'k/K', 'm/M', or 'g/G')" {
		t.Errorf("unit=x = %d %v", code, doc)
	}
	code, doc, _ = get(t, h, "GET", "/status?scale=-1", nil, "")
	if code != 400 || doc["message"] != "scale must be equal or greater than 0" {
		t.Errorf("scale=-1 = %d %v", code, doc)
	}
}

func TestFormatBytes(t *testing.T) {
	for _, tc := range []struct {
		v     uint64
		unit  string
		scale int
		want  string
	}{
		{52040417, "m", 2, "49.63 MiB"},
		{41943, "m", 2, "0.04 MiB"},
		{5 << 20, "M", 2, "5.00 MiB"},
		{1536, "k", 1, "1.5 KiB"},
		{3 << 30, "g", 3, "3.000 GiB"},
		{12345, "b", 2, "12345"},
	} {
		got, err := FormatBytes(tc.v, tc.unit, tc.scale)
		if err != nil || got != tc.want {
			t.Errorf("FormatBytes(%d, %q, %d) = %q, %v; want %q", tc.v, tc.unit, tc.scale, got, err, tc.want)
		}
	}
}

func TestRunServesAndDrains(t *testing.T) {
	eng := &fakeEngine{}
	n := NewNode(Options{Engine: eng})
	if _, err := n.Apply(&Snapshot{Config: sampleConfig("127.0.0.1"), Source: SourceDeclarative}); err != nil {
		t.Fatal(err)
	}
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- n.Run(ctx, RunOptions{Proxy: []net.Listener{pln}, Status: sln, DrainTimeout: 5 * time.Second})
	}()

	resp, err := http.Get("http://" + sln.Addr().String() + "/status/ready")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status/ready over the network = %d", resp.StatusCode)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if !n.Draining() || eng.shutdowns != 1 {
		t.Errorf("after Run: draining=%v engine shutdowns=%d", n.Draining(), eng.shutdowns)
	}
	if _, err := net.Dial("tcp", sln.Addr().String()); err == nil {
		t.Error("status listener still accepts after Run returned")
	}
}

func TestRunReportsListenerFailure(t *testing.T) {
	eng := &fakeEngine{}
	n := NewNode(Options{Engine: eng})
	pln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_ = pln.Close() // Serve fails at once
	err = n.Run(context.Background(), RunOptions{Proxy: []net.Listener{pln}, DrainTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "proxy listener") {
		t.Fatalf("Run with a dead listener = %v, want a proxy listener error", err)
	}
}

type fileLoader struct{ snap *Snapshot }

func (l fileLoader) Source() string                          { return SourceCache }
func (l fileLoader) Load(context.Context) (*Snapshot, error) { return l.snap, nil }

func TestLoadUsesLoaderSource(t *testing.T) {
	n := NewNode(Options{Engine: &fakeEngine{}})
	if _, err := n.Load(context.Background(), fileLoader{&Snapshot{Config: sampleConfig("x"), Origin: "/var/cache"}}); err != nil {
		t.Fatal(err)
	}
	if st := n.State(); st.Source != SourceCache || st.Origin != "/var/cache" || st.Services != 1 || st.Routes != 1 {
		t.Errorf("state = %+v", st)
	}
}

func TestDeclarativeFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "kong.yaml")
	if err := os.WriteFile(good, []byte(`_format_version: "3.0"
services:
  - name: httpbin-service
    url: http://127.0.0.1:8080
    routes:
      - name: httpbin-route
        paths: [/mock]
        strip_path: true
`), 0o600); err != nil {
		t.Fatal(err)
	}
	snap, err := DeclarativeFile{Path: good}.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if snap.Source != SourceDeclarative || snap.Origin != good || len(snap.Config.Services) != 1 || len(snap.Config.Routes) != 1 {
		t.Errorf("snapshot = %+v", snap)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`_format_version: "3.0"
services:
  - name: a
    port: 99999
  - name: b
    protocol: gopher
    host: example.com
`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = DeclarativeFile{Path: bad}.Load(context.Background())
	var ve *config.ValidationError
	if !errors.As(err, &ve) || len(ve.Errors) < 2 {
		t.Fatalf("Load(bad) = %v, want a ValidationError with every error", err)
	}
	if !strings.Contains(err.Error(), bad) {
		t.Errorf("error does not name the file: %v", err)
	}

	// LogConfigError writes one ERROR record per invalid field, then a summary.
	var buf bytes.Buffer
	LogConfigError(slog.New(slog.NewTextHandler(&buf, nil)), "reload failed", err)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != len(ve.Errors)+1 {
		t.Errorf("LogConfigError wrote %d records for %d errors:\n%s", len(lines), len(ve.Errors), buf.String())
	}
	for _, l := range lines {
		if !strings.Contains(l, "level=ERROR") {
			t.Errorf("record not at ERROR: %s", l)
		}
	}

	if _, err := (DeclarativeFile{Path: filepath.Join(dir, "missing.yaml")}).Load(context.Background()); err == nil ||
		!strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("Load(missing) = %v", err)
	}
}
