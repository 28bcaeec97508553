package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kongfb/kongfb/internal/testutil"
	"github.com/kongfb/kongfb/pkg/config"
)

// syncBuffer collects log lines for assertions.
type syncBuffer = testutil.SyncBuffer

// upstream answers with the path it received, so tests see strip_path at work.
func newUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "upstream saw %s", r.URL.Path)
	}))
	t.Cleanup(up.Close)
	return up
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func declarative(upstreamURL, routePath string) string {
	return fmt.Sprintf(`_format_version: "3.0"
services:
  - name: httpbin-service
    url: %s
    routes:
      - name: httpbin-route
        paths:
          - %s
        strip_path: true
`, upstreamURL, routePath)
}

// invalidDeclarative has two independent errors; both must be reported.
const invalidDeclarative = `_format_version: "3.0"
services:
  - name: bad-port
    host: example.com
    port: 99999
  - name: bad-protocol
    host: example.com
    protocol: gopher
`

func fileHash(t *testing.T, path string) string {
	t.Helper()
	cfg, err := config.ParseFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := config.Hash(cfg)
	return h
}

func httpGet(t *testing.T, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body), resp.Header
}

func statusDoc(t *testing.T, statusAddr string) map[string]any {
	t.Helper()
	code, body, _ := httpGet(t, "http://"+statusAddr+"/status")
	if code != 200 {
		t.Fatalf("/status = %d %s", code, body)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("/status body: %v: %s", err, body)
	}
	return doc
}

func readyState(t *testing.T, statusAddr string) (int, string) {
	t.Helper()
	code, body, _ := httpGet(t, "http://"+statusAddr+"/status/ready")
	var doc map[string]string
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("/status/ready body: %v: %s", err, body)
	}
	return code, doc["message"]
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type runningDP struct {
	addrs  serveDPAddrs
	reload chan struct{}
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

func startDP(t *testing.T, o serveDPOptions) *runningDP {
	t.Helper()
	r := &runningDP{reload: make(chan struct{}), logs: &syncBuffer{}, done: make(chan error, 1)}
	o.Logger = slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.Reload = r.reload
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 5 * time.Second
	}
	ready := make(chan serveDPAddrs, 1)
	o.Ready = func(a serveDPAddrs) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	// A failed test shows what the node logged (at debug level).
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("DP %s logs:\n%s", o.Prefix, r.logs)
		}
	})
	go func() { r.done <- runServeDP(ctx, o) }()
	select {
	case r.addrs = <-ready:
	case err := <-r.done:
		cancel()
		t.Fatalf("runServeDP returned before it was ready: %v\nlogs:\n%s", err, r.logs)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("runServeDP did not become ready")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("runServeDP did not stop")
		}
	})
	return r
}

func (r *runningDP) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("runServeDP did not stop after cancel")
		return nil
	}
}

func TestServeDPEndToEnd(t *testing.T) {
	up := newUpstream(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "kong.yaml")
	writeFile(t, file, declarative(up.URL, "/mock"))
	firstHash := fileHash(t, file)

	dp := startDP(t, serveDPOptions{Declarative: file, ProxyListen: "127.0.0.1:0", StatusListen: "127.0.0.1:0"})
	proxyURL := "http://" + dp.addrs.Proxy[0]
	statusAddr := dp.addrs.Status

	code, body, _ := httpGet(t, proxyURL+"/mock/status/200")
	if code != 200 || body != "upstream saw /status/200" {
		t.Fatalf("GET /mock/status/200 = %d %q, want 200 with the stripped path", code, body)
	}
	code, body, hdr := httpGet(t, proxyURL+"/nothing")
	if code != 404 || !strings.Contains(body, `"message":"no Route matched with those values"`) {
		t.Fatalf("GET /nothing = %d %q, want Kong's 404", code, body)
	}
	if !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") {
		t.Errorf("404 Content-Type = %q", hdr.Get("Content-Type"))
	}

	doc := statusDoc(t, statusAddr)
	if doc["configuration_hash"] != firstHash {
		t.Errorf("configuration_hash = %v, want %s", doc["configuration_hash"], firstHash)
	}
	if kb := doc["kongfb"].(map[string]any); kb["config_source"] != "declarative" || kb["loaded_at"] == nil {
		t.Errorf("kongfb block = %v", kb)
	}
	if tr := doc["server"].(map[string]any)["total_requests"].(float64); tr < 2 {
		t.Errorf("server.total_requests = %v after 2 proxied requests", tr)
	}
	if code, msg := readyState(t, statusAddr); code != 200 || msg != "ready" {
		t.Errorf("/status/ready = %d %q", code, msg)
	}

	// A reload with an invalid file keeps the running configuration and
	// logs every error at ERROR.
	writeFile(t, file, invalidDeclarative)
	dp.reload <- struct{}{}
	eventually(t, "the failed reload to be logged", func() bool {
		return strings.Contains(dp.logs.String(), "msg=\"reload failed, keeping the running configuration\" file=")
	})
	logs := dp.logs.String()
	for _, want := range []string{"bad-port", "bad-protocol", "level=ERROR"} {
		if !strings.Contains(logs, want) {
			t.Errorf("reload logs lack %q:\n%s", want, logs)
		}
	}
	if h := statusDoc(t, statusAddr)["configuration_hash"]; h != firstHash {
		t.Errorf("hash after a bad reload = %v, want the old %s", h, firstHash)
	}
	if code, _, _ := httpGet(t, proxyURL+"/mock/x"); code != 200 {
		t.Errorf("traffic after a bad reload = %d, want 200 from the old config", code)
	}

	// A valid file swaps in.
	writeFile(t, file, declarative(up.URL, "/other"))
	secondHash := fileHash(t, file)
	if secondHash == firstHash {
		t.Fatal("the two configurations hash the same")
	}
	dp.reload <- struct{}{}
	eventually(t, "the new hash in /status", func() bool {
		return statusDoc(t, statusAddr)["configuration_hash"] == secondHash
	})
	if code, body, _ := httpGet(t, proxyURL+"/other/y"); code != 200 || body != "upstream saw /y" {
		t.Errorf("GET /other/y after reload = %d %q", code, body)
	}
	if code, _, _ := httpGet(t, proxyURL+"/mock/x"); code != 404 {
		t.Errorf("GET /mock/x after reload = %d, want 404", code)
	}
	if !strings.Contains(dp.logs.String(), "hash="+secondHash) {
		t.Errorf("the new hash is not logged:\n%s", dp.logs.String())
	}

	// Draining via the status API: not ready, traffic still flows.
	resp, err := http.Post("http://"+statusAddr+"/status/ready", "application/x-www-form-urlencoded", strings.NewReader("status=draining"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 204 {
		t.Errorf("POST /status/ready draining = %d", resp.StatusCode)
	}
	if code, msg := readyState(t, statusAddr); code != 503 || msg != "draining" {
		t.Errorf("/status/ready while draining = %d %q", code, msg)
	}
	if code, _, _ := httpGet(t, proxyURL+"/other/z"); code != 200 {
		t.Errorf("traffic while draining = %d", code)
	}

	if err := dp.stop(t); err != nil {
		t.Errorf("shutdown returned %v, want nil (exit 0)", err)
	}
}

func TestServeDPWithoutConfig(t *testing.T) {
	dp := startDP(t, serveDPOptions{ProxyListen: "127.0.0.1:0", StatusListen: "127.0.0.1:0"})
	if h := statusDoc(t, dp.addrs.Status)["configuration_hash"]; h != config.EmptyHash {
		t.Errorf("hash without config = %v", h)
	}
	if code, msg := readyState(t, dp.addrs.Status); code != 503 || msg != "no configuration available (configuration hash is not initialized)" {
		t.Errorf("/status/ready without config = %d %q", code, msg)
	}
	if code, _, _ := httpGet(t, "http://"+dp.addrs.Proxy[0]+"/mock"); code != 404 {
		t.Errorf("proxy without config = %d, want 404", code)
	}
	if !strings.Contains(dp.logs.String(), "level=WARN") {
		t.Errorf("no warning about running without config:\n%s", dp.logs.String())
	}
}

func TestServeDPEmptyConfigNotReady(t *testing.T) {
	file := filepath.Join(t.TempDir(), "empty.yaml")
	writeFile(t, file, "_format_version: \"3.0\"\n")
	dp := startDP(t, serveDPOptions{Declarative: file, ProxyListen: "off", StatusListen: "127.0.0.1:0"})
	if len(dp.addrs.Proxy) != 0 {
		t.Errorf("proxy_listen off bound %v", dp.addrs.Proxy)
	}
	if code, msg := readyState(t, dp.addrs.Status); code != 503 || msg != "no configuration available (empty configuration present)" {
		t.Errorf("/status/ready with empty config = %d %q", code, msg)
	}
}

func TestServeDPInvalidFileAtStart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, file, invalidDeclarative)
	var out, errw bytes.Buffer
	code := Main([]string{"serve", "dp", "--declarative", file, "--proxy-listen", "127.0.0.1:0", "--status-listen", "off"},
		strings.NewReader(""), &out, &errw)
	if code != ExitFailure {
		t.Fatalf("exit code = %d, want 1; stderr:\n%s", code, errw.String())
	}
	// Every error is printed, naming the file, the entities and the fields.
	cfgErr := func() error { _, err := config.ParseFile(file); return err }()
	var ve *config.ValidationError
	if !errors.As(cfgErr, &ve) || len(ve.Errors) < 2 {
		t.Fatalf("config.ParseFile(bad) = %v, want a ValidationError with both errors", cfgErr)
	}
	for _, want := range []string{file, "bad-port", "bad-protocol", "port", "protocol"} {
		if !strings.Contains(errw.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, errw.String())
		}
	}
	for _, e := range ve.Errors {
		if !strings.Contains(errw.String(), e.Message) {
			t.Errorf("stderr lacks the error %q:\n%s", e.Message, errw.String())
		}
	}
}

func TestServeDPBadSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"ssl listener", map[string]string{"KONG_PROXY_LISTEN": "0.0.0.0:8443 ssl"}, nil, "ssl flag is not supported"},
		{"bad bool", map[string]string{"KONG_ALLOW_DEBUG_HEADER": "maybe"}, nil, "KONG_ALLOW_DEBUG_HEADER"},
		{"bad status listen", nil, []string{"--status-listen", "nowhere"}, "status_listen"},
		{"bad drain timeout", map[string]string{"KONG_NGINX_MAIN_WORKER_SHUTDOWN_TIMEOUT": "soon"}, nil, "KONG_NGINX_MAIN_WORKER_SHUTDOWN_TIMEOUT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errw bytes.Buffer
			args := append([]string{"serve", "dp", "--proxy-listen", "127.0.0.1:0"}, tc.args...)
			if _, ok := tc.env["KONG_PROXY_LISTEN"]; ok {
				args = []string{"serve", "dp"}
			}
			code := Main(args, strings.NewReader(""), &out, &errw)
			if code != ExitUsage || !strings.Contains(errw.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 mentioning %q", code, errw.String(), tc.want)
			}
		})
	}
}

// TestServeDPCommandEnvAndSignals runs the real command: settings from Kong's
// environment names, SIGHUP reloads, SIGTERM drains and exits 0.
func TestServeDPCommandEnvAndSignals(t *testing.T) {
	up := newUpstream(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "kong.yaml")
	writeFile(t, file, declarative(up.URL, "/mock"))

	t.Setenv("KONG_DECLARATIVE_CONFIG", file)
	t.Setenv("KONG_PROXY_LISTEN", "127.0.0.1:0 reuseport backlog=16384")
	t.Setenv("KONG_ALLOW_DEBUG_HEADER", "on")
	t.Setenv("KONG_NGINX_MAIN_WORKER_SHUTDOWN_TIMEOUT", "7")
	// KONGFB_* wins over the KONG_* name of the same setting.
	t.Setenv("KONG_STATUS_LISTEN", "not-an-address")
	t.Setenv("KONGFB_STATUS_LISTEN", "127.0.0.1:0")

	var got serveDPOptions
	ready := make(chan serveDPAddrs, 1)
	serveDPTestHook = func(o *serveDPOptions) {
		got = *o
		o.Ready = func(a serveDPAddrs) { ready <- a }
	}
	t.Cleanup(func() { serveDPTestHook = nil })

	var out, errw syncBuffer
	root := NewRootCommand(Streams{In: strings.NewReader(""), Out: &out, Err: &errw})
	root.SetArgs([]string{"serve", "dp", "--log-level", "debug"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	var addrs serveDPAddrs
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("command returned before ready: %v\n%s", err, errw.String())
	case <-time.After(10 * time.Second):
		t.Fatal("command did not become ready")
	}
	if got.Declarative != file || !got.AllowDebugHeader || got.DrainTimeout != 7*time.Second ||
		got.ProxyListen != "127.0.0.1:0 reuseport backlog=16384" || got.StatusListen != "127.0.0.1:0" {
		t.Errorf("options from the environment = %+v", got)
	}
	if !strings.Contains(errw.String(), "ignoring listen flags") {
		t.Errorf("ignored listen flags are not logged at debug:\n%s", errw.String())
	}

	proxyURL := "http://" + addrs.Proxy[0]
	code, _, hdr := httpGet(t, proxyURL+"/mock/a", "Kong-Debug", "1")
	if code != 200 || hdr.Get("Kong-Route-Name") != "httpbin-route" || hdr.Get("Kong-Service-Name") != "httpbin-service" {
		t.Errorf("debug headers with KONG_ALLOW_DEBUG_HEADER=on: %d route=%q service=%q",
			code, hdr.Get("Kong-Route-Name"), hdr.Get("Kong-Service-Name"))
	}

	// SIGHUP re-reads the file.
	writeFile(t, file, declarative(up.URL, "/other"))
	newHash := fileHash(t, file)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, "SIGHUP to load the new file", func() bool {
		return statusDoc(t, addrs.Status)["configuration_hash"] == newHash
	})

	// SIGTERM drains and the command succeeds (exit 0).
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
	if !strings.Contains(errw.String(), "shutting down") {
		t.Errorf("no shutdown log:\n%s", errw.String())
	}
}
