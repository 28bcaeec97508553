package cli

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kongfb/kongfb/internal/dp/cpclient/cptest"
	"github.com/kongfb/kongfb/internal/testutil"
	"github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
)

// hybridDP returns the options of a hybrid DP with test-sized timings.
func hybridDP(cpAddr, prefix, cert, key string) serveDPOptions {
	return serveDPOptions{
		ProxyListen: "127.0.0.1:0", StatusListen: "127.0.0.1:0",
		ControlPlane: cpAddr, ClusterCert: cert, ClusterCertKey: key, ClusterMTLS: "shared",
		ClusterMaxPayload: cluster.DefaultMaxPayload,
		PingInterval:      50 * time.Millisecond, PingWait: 2 * time.Second,
		ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond,
		CPConnectTimeout: 2 * time.Second, Prefix: prefix,
	}
}

func hyParseYAML(t *testing.T, y string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(y), "kong.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func hyStartCP(t *testing.T, addr, cert, key string) *cptest.Server {
	t.Helper()
	cp, err := cptest.Start(cptest.Options{Addr: addr, TLS: cluster.TLSOptions{Mode: cluster.TLSModeShared, Cert: cert, Key: key}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Kill)
	return cp
}

func hyKongfb(t *testing.T, statusAddr string) map[string]any {
	t.Helper()
	return statusDoc(t, statusAddr)["kongfb"].(map[string]any)
}

// freeAddr returns a loopback address nothing listens on.
func hyFreeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestServeDPHybrid walks a data plane through its life in hybrid mode:
// sync, a rejected push, CP loss, restart from the cache without a CP, and
// the CP's return.
func TestServeDPHybrid(t *testing.T) {
	up := newUpstream(t)
	cert, key, err := cptest.SharedCert()
	if err != nil {
		t.Fatal(err)
	}
	prefix := t.TempDir()
	cp := hyStartCP(t, "", cert, key)
	cpAddr := cp.Addr()
	firstHash, err := cp.SetConfigFrom(hyParseYAML(t, declarative(up.URL, "/mock")))
	if err != nil {
		t.Fatal(err)
	}

	d := startDP(t, hybridDP(cpAddr, prefix, cert, key))
	proxyURL, statusAddr := "http://"+d.addrs.Proxy[0], d.addrs.Status
	eventually(t, "the CP's config to be served", func() bool {
		return statusDoc(t, statusAddr)["configuration_hash"] == firstHash
	})
	if code, body, _ := httpGet(t, proxyURL+"/mock/x"); code != 200 || body != "upstream saw /x" {
		t.Fatalf("GET /mock/x = %d %q", code, body)
	}
	kb := hyKongfb(t, statusAddr)
	if kb["config_source"] != "cp" || kb["cp_connected"] != true || kb["last_sync_at"] == nil || kb["control_plane"] != cpAddr {
		t.Errorf("kongfb block = %v", kb)
	}
	if code, msg := readyState(t, statusAddr); code != 200 || msg != "ready" {
		t.Errorf("/status/ready = %d %q", code, msg)
	}
	// The node id is Kong's <prefix>/kong.id and is what the CP sees.
	idb, err := os.ReadFile(filepath.Join(prefix, "kong.id"))
	if err != nil {
		t.Fatal(err)
	}
	nodeID := strings.TrimSpace(string(idb))
	hyWaitCP(t, cp, "the DP's hash", func(s *cptest.Server) bool { return s.Hash(nodeID) == firstHash })

	// A bad push is rejected; the old config keeps serving.
	badHash := strings.Repeat("e", 32)
	if err := cp.SetConfig([]byte(`{"_format_version":"3.0","_transform":false,"services":[{"id":"0c5b8a2e-1c0a-4e6a-9a55-6ad1b4c7b2a1","name":"broken","protocol":"http","host":"h","port":99999}]}`), badHash); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the rejection in /status", func() bool { return hyKongfb(t, statusAddr)["last_error"] != nil })
	kb = hyKongfb(t, statusAddr)
	if msg := kb["last_error"].(string); !strings.Contains(msg, badHash) || !strings.Contains(msg, "broken") || kb["last_error_at"] == nil {
		t.Errorf("last_error = %v", kb["last_error"])
	}
	if !strings.Contains(d.logs.String(), "bad config received from control plane") || !strings.Contains(d.logs.String(), "entity_name=broken") {
		t.Errorf("the rejection is not logged with its errors:\n%s", d.logs)
	}
	if h := statusDoc(t, statusAddr)["configuration_hash"]; h != firstHash {
		t.Errorf("hash after a bad push = %v", h)
	}
	if code, _, _ := httpGet(t, proxyURL+"/mock/y"); code != 200 {
		t.Errorf("traffic after a bad push = %d", code)
	}

	// The CP dies: the DP keeps serving.
	cp.Kill()
	eventually(t, "cp_connected false and cp_error", func() bool {
		kb := hyKongfb(t, statusAddr)
		return kb["cp_connected"] == false && kb["cp_error"] != nil
	})
	if code, _, _ := httpGet(t, proxyURL+"/mock/z"); code != 200 {
		t.Errorf("traffic without a CP = %d", code)
	}
	if code, _ := readyState(t, statusAddr); code != 200 {
		t.Errorf("/status/ready without a CP = %d, want 200 (Kong's readiness does not depend on the CP)", code)
	}
	if err := d.stop(t); err != nil {
		t.Fatalf("stop: %v", err)
	}

	// Restart in the same prefix with no CP: the cache serves at once.
	d2 := startDP(t, hybridDP(cpAddr, prefix, cert, key))
	proxyURL, statusAddr = "http://"+d2.addrs.Proxy[0], d2.addrs.Status
	doc := statusDoc(t, statusAddr)
	kb = doc["kongfb"].(map[string]any)
	if doc["configuration_hash"] != firstHash || kb["config_source"] != "cache" || kb["cp_connected"] != false {
		t.Errorf("after restart without a CP: hash %v, kongfb %v", doc["configuration_hash"], kb)
	}
	if code, body, _ := httpGet(t, proxyURL+"/mock/cached"); code != 200 || body != "upstream saw /cached" {
		t.Errorf("GET from the cache = %d %q", code, body)
	}
	if code, _ := readyState(t, statusAddr); code != 200 {
		t.Errorf("/status/ready from the cache = %d", code)
	}

	// The CP returns with a new config: the DP converges to it.
	cp2 := hyStartCP(t, cpAddr, cert, key)
	newHash, err := cp2.SetConfigFrom(hyParseYAML(t, declarative(up.URL, "/new")))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new CP's config", func() bool {
		return statusDoc(t, statusAddr)["configuration_hash"] == newHash
	})
	hyWaitCP(t, cp2, "the DP's new hash", func(s *cptest.Server) bool { return s.Hash(nodeID) == newHash })
	kb = hyKongfb(t, statusAddr)
	if kb["config_source"] != "cp" || kb["cp_connected"] != true || kb["cp_error"] != nil {
		t.Errorf("kongfb block after the CP returned = %v", kb)
	}
	if code, _, _ := httpGet(t, proxyURL+"/new/a"); code != 200 {
		t.Errorf("GET /new/a = %d", code)
	}
	if code, _, _ := httpGet(t, proxyURL+"/mock/a"); code != 404 {
		t.Errorf("GET /mock/a = %d, want 404 under the new config", code)
	}
	if err := d2.stop(t); err != nil {
		t.Errorf("stop: %v", err)
	}
	hyWaitCP(t, cp2, "the DP to leave", func(s *cptest.Server) bool { return s.Connected() == 0 })
}

func hyWaitCP(t *testing.T, cp *cptest.Server, what string, cond func(*cptest.Server) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cp.Await(ctx, cond); err != nil {
		t.Fatalf("timed out waiting for the CP to see %s", what)
	}
}

// seedCache runs a DP against a CP until cfg is served and cached, then
// stops both. It returns the config's hash.
func hySeedCache(t *testing.T, o serveDPOptions, cfg *config.Config) string {
	t.Helper()
	cp := hyStartCP(t, "", o.ClusterCert, o.ClusterCertKey)
	hash, err := cp.SetConfigFrom(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o.ControlPlane = cp.Addr()
	d := startDP(t, o)
	eventually(t, "the config to be cached", func() bool {
		return statusDoc(t, d.addrs.Status)["configuration_hash"] == hash &&
			strings.Contains(d.logs.String(), "config cache written")
	})
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
	cp.Kill()
	return hash
}

func TestServeDPHybridCorruptCacheNotServed(t *testing.T) {
	up := newUpstream(t)
	cert, key, err := cptest.SharedCert()
	if err != nil {
		t.Fatal(err)
	}
	prefix := t.TempDir()
	o := hybridDP("", prefix, cert, key)
	hySeedCache(t, o, hyParseYAML(t, declarative(up.URL, "/mock")))

	path := filepath.Join(prefix, "config.cache")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-3] ^= 0x55 // bit rot in the payload
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	o.ControlPlane = hyFreeAddr(t)
	d := startDP(t, o)
	doc := statusDoc(t, d.addrs.Status)
	kb := doc["kongfb"].(map[string]any)
	if doc["configuration_hash"] != config.EmptyHash || kb["config_source"] != nil {
		t.Errorf("a corrupt cache was served: %v %v", doc["configuration_hash"], kb)
	}
	if msg, _ := kb["last_error"].(string); !strings.Contains(msg, "checksum mismatch") || !strings.Contains(msg, "config.cache.corrupt-") {
		t.Errorf("last_error = %v", kb["last_error"])
	}
	if !strings.Contains(d.logs.String(), "level=ERROR") || !strings.Contains(d.logs.String(), "cached configuration is unusable") {
		t.Errorf("no ERROR log for the corrupt cache:\n%s", d.logs)
	}
	if code, msg := readyState(t, d.addrs.Status); code != 503 || msg != "no configuration available (configuration hash is not initialized)" {
		t.Errorf("/status/ready = %d %q", code, msg)
	}
	if code, _, _ := httpGet(t, "http://"+d.addrs.Proxy[0]+"/mock/x"); code != 404 {
		t.Errorf("GET /mock/x = %d, want 404 (nothing served)", code)
	}
	if m, _ := filepath.Glob(filepath.Join(prefix, "config.cache.corrupt-*")); len(m) != 1 {
		t.Errorf("corrupt cache set aside as %v", m)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("the corrupt cache is still in place: %v", err)
	}
}

// A DP killed while writing its cache leaves a temporary file; the next
// start serves the last complete cache.
func TestServeDPHybridCrashMidWrite(t *testing.T) {
	up := newUpstream(t)
	cert, key, err := cptest.SharedCert()
	if err != nil {
		t.Fatal(err)
	}
	prefix := t.TempDir()
	o := hybridDP("", prefix, cert, key)
	hash := hySeedCache(t, o, hyParseYAML(t, declarative(up.URL, "/good")))

	good, err := os.ReadFile(filepath.Join(prefix, "config.cache"))
	if err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(prefix, "config.cache.tmp-4242")
	if err := os.WriteFile(leftover, good[:len(good)/3], 0o600); err != nil {
		t.Fatal(err)
	}
	o.ControlPlane = hyFreeAddr(t)
	d := startDP(t, o)
	doc := statusDoc(t, d.addrs.Status)
	if doc["configuration_hash"] != hash || doc["kongfb"].(map[string]any)["config_source"] != "cache" {
		t.Errorf("after a crashed write: %v %v", doc["configuration_hash"], doc["kongfb"])
	}
	if code, _, _ := httpGet(t, "http://"+d.addrs.Proxy[0]+"/good/x"); code != 200 {
		t.Errorf("GET /good/x = %d", code)
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Errorf("leftover temp file not cleaned: %v", err)
	}
}

func TestServeDPHybridEncryptedCache(t *testing.T) {
	up := newUpstream(t)
	cert, key, err := cptest.SharedCert()
	if err != nil {
		t.Fatal(err)
	}
	prefix := t.TempDir()
	o := hybridDP("", prefix, cert, key)
	o.CacheEncrypt = true
	hash := hySeedCache(t, o, hyParseYAML(t, declarative(up.URL, "/very-secret-route")))
	raw, err := os.ReadFile(filepath.Join(prefix, "config.cache"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("very-secret-route")) || !bytes.Contains(raw, []byte(`"encryption":"aes-256-gcm"`)) {
		t.Fatal("the cache is not encrypted")
	}

	// Same key: served from the cache.
	o.ControlPlane = hyFreeAddr(t)
	d := startDP(t, o)
	if h := statusDoc(t, d.addrs.Status)["configuration_hash"]; h != hash {
		t.Errorf("encrypted cache not served: %v", h)
	}
	if code, _, _ := httpGet(t, "http://"+d.addrs.Proxy[0]+"/very-secret-route/x"); code != 200 {
		t.Errorf("GET from the encrypted cache = %d", code)
	}
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}

	// Another cluster key: refused, reported, not served.
	cert2, key2, err := cptest.SharedCert()
	if err != nil {
		t.Fatal(err)
	}
	o.ClusterCert, o.ClusterCertKey = cert2, key2
	d = startDP(t, o)
	doc := statusDoc(t, d.addrs.Status)
	if doc["configuration_hash"] != config.EmptyHash {
		t.Errorf("a cache under another key was served: %v", doc["configuration_hash"])
	}
	if msg, _ := doc["kongfb"].(map[string]any)["last_error"].(string); !strings.Contains(msg, "encrypted with another key") {
		t.Errorf("last_error = %v", msg)
	}
	if m, _ := filepath.Glob(filepath.Join(prefix, "config.cache.unreadable-*")); len(m) != 1 {
		t.Errorf("unreadable cache set aside as %v", m)
	}
}

// A DP whose certificate the CP does not trust is refused during the TLS
// handshake; the DP logs the refusal and reports it in /status.
func TestServeDPHybridRefusedCert(t *testing.T) {
	ca, err := cptest.NewCA("cluster CA")
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := cptest.NewCA("rogue CA")
	if err != nil {
		t.Fatal(err)
	}
	cpCert, cpKey, err := ca.Issue("cp.test", x509.ExtKeyUsageServerAuth, []string{"cp.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dpCert, dpKey, err := rogue.Issue("dp.test", x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := cptest.Start(cptest.Options{TLS: cluster.TLSOptions{Mode: cluster.TLSModePKI, Cert: cpCert, Key: cpKey, CA: ca.PEM}})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Kill()
	o := hybridDP(cp.Addr(), t.TempDir(), dpCert, dpKey)
	o.ClusterMTLS, o.ClusterCACert, o.ClusterServerName = "pki", ca.PEM, "cp.test"
	d := startDP(t, o)
	eventually(t, "the refusal in the log", func() bool {
		return strings.Contains(d.logs.String(), "remote error: tls: bad certificate")
	})
	kb := hyKongfb(t, d.addrs.Status)
	if cpErr, _ := kb["cp_error"].(string); kb["cp_connected"] != false || !strings.Contains(cpErr, "bad certificate") {
		t.Errorf("kongfb block = %v", kb)
	}
	if cp.Accepted() != 0 {
		t.Error("the CP accepted the DP")
	}
}

// TestServeDPHybridCommandEnv runs the real command configured through
// Kong's environment names, in pki mode with certificate files.
func TestServeDPHybridCommandEnv(t *testing.T) {
	up := newUpstream(t)
	ca, err := cptest.NewCA("cluster CA")
	if err != nil {
		t.Fatal(err)
	}
	cpCert, cpKey, err := ca.Issue("cp.test", x509.ExtKeyUsageServerAuth, []string{"cp.test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dpCert, dpKey, err := ca.Issue("dp.test", x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := cptest.Start(cptest.Options{TLS: cluster.TLSOptions{Mode: cluster.TLSModePKI, Cert: cpCert, Key: cpKey, CA: ca.PEM}})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Kill()
	hash, err := cp.SetConfigFrom(hyParseYAML(t, declarative(up.URL, "/env")))
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	for name, body := range map[string]string{"dp.crt": dpCert, "dp.key": dpKey, "ca.crt": ca.PEM} {
		writeFile(t, filepath.Join(dir, name), body)
	}
	prefix := filepath.Join(dir, "prefix")
	nodeID := "0a5e1d7c-8f3b-4c2a-9e6d-1b7f0c3a5d92"
	t.Setenv("KONG_CLUSTER_CONTROL_PLANE", cp.Addr())
	t.Setenv("KONG_CLUSTER_MTLS", "pki")
	t.Setenv("KONG_CLUSTER_CERT", filepath.Join(dir, "dp.crt"))
	t.Setenv("KONG_CLUSTER_CERT_KEY", filepath.Join(dir, "dp.key"))
	t.Setenv("KONG_CLUSTER_CA_CERT", filepath.Join(dir, "ca.crt"))
	t.Setenv("KONG_CLUSTER_SERVER_NAME", "cp.test")
	t.Setenv("KONG_CLUSTER_MAX_PAYLOAD", "8388608")
	t.Setenv("KONG_PREFIX", prefix)
	t.Setenv("KONG_NODE_ID", nodeID)
	t.Setenv("KONG_PROXY_LISTEN", "127.0.0.1:0")
	t.Setenv("KONG_STATUS_LISTEN", "127.0.0.1:0")

	var got serveDPOptions
	ready := make(chan serveDPAddrs, 1)
	serveDPTestHook = func(o *serveDPOptions) {
		got = *o
		o.Ready = func(a serveDPAddrs) { ready <- a }
	}
	t.Cleanup(func() { serveDPTestHook = nil })

	var out, errw syncBuffer
	root := NewRootCommand(Streams{In: strings.NewReader(""), Out: &out, Err: &errw})
	root.SetArgs([]string{"serve", "dp", "--cluster-ping-interval", "100ms", "--cluster-reconnect-min", "10ms", "--cluster-reconnect-max", "20ms"})
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
	if got.ControlPlane != cp.Addr() || got.ClusterMTLS != "pki" || got.ClusterServerName != "cp.test" ||
		got.ClusterMaxPayload != 8388608 || got.Prefix != prefix || got.NodeID != nodeID ||
		got.PingInterval != 100*time.Millisecond || got.ReconnectMin != 10*time.Millisecond ||
		got.CPConnectTimeout != 3*time.Second || got.CacheEncrypt {
		t.Errorf("options from the environment = %+v", got)
	}
	hyWaitCP(t, cp, "the DP's hash", func(s *cptest.Server) bool { return s.Hash(nodeID) == hash })
	if code, _, _ := httpGet(t, "http://"+addrs.Proxy[0]+"/env/x"); code != 200 {
		t.Errorf("GET /env/x = %d", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("command after cancel = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("command did not stop")
	}
	if _, err := os.Stat(filepath.Join(prefix, "config.cache")); err != nil {
		t.Errorf("no cache in the prefix: %v", err)
	}
}

func TestServeDPHybridBadSettings(t *testing.T) {
	cert, key, err := cptest.SharedCert()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	writeFile(t, certFile, cert)
	writeFile(t, keyFile, key)
	base := []string{"serve", "dp", "--proxy-listen", "127.0.0.1:0", "--status-listen", "off", "--prefix", filepath.Join(dir, "p")}
	withCert := append(append([]string{}, base...), "--cluster-cert", certFile, "--cluster-cert-key", keyFile)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"declarative and cp", map[string]string{"KONG_DECLARATIVE_CONFIG": "kong.yaml"},
			append(append([]string{}, withCert...), "--cp", "cp:8005"), "mutually exclusive"},
		{"no certificate", map[string]string{"KONG_CLUSTER_CONTROL_PLANE": "cp:8005"}, base,
			"cluster certificate and key must be provided to use Hybrid mode"},
		{"small max payload", map[string]string{"KONG_CLUSTER_CONTROL_PLANE": "cp:8005", "KONG_CLUSTER_MAX_PAYLOAD": "1048576"}, withCert,
			"cluster_max_payload must be 4194304 (4MB) or greater"},
		{"bad mtls", map[string]string{"KONG_CLUSTER_MTLS": "none"}, append(append([]string{}, withCert...), "--cp", "cp:8005"), "cluster_mtls"},
		{"missing cert file", nil, append(append([]string{}, base...), "--cp", "cp:8005", "--cluster-cert", filepath.Join(dir, "nope.crt"), "--cluster-cert-key", keyFile), "nope.crt"},
		{"bad cp address", nil, append(append([]string{}, withCert...), "--cp", "ftp://cp:8005"), "cluster_control_plane"},
		{"ping wait shorter than interval", nil, append(append([]string{}, withCert...), "--cp", "cp:8005", "--cluster-ping-interval", "10s", "--cluster-ping-wait", "5s"), "--cluster-ping-wait"},
		{"bad node id", map[string]string{"KONG_NODE_ID": "node-1"}, append(append([]string{}, withCert...), "--cp", "cp:8005"), "node_id"},
		// Kong's cluster_use_proxy / proxy_server checks, with its messages.
		{"proxy without server", map[string]string{"KONG_CLUSTER_USE_PROXY": "on"}, append(append([]string{}, withCert...), "--cp", "cp:8005"),
			"cluster_use_proxy is turned on but no proxy_server is configured"},
		{"proxy without scheme", nil, append(append([]string{}, withCert...), "--cp", "cp:8005", "--cluster-use-proxy", "--proxy-server", "//proxy:3128"),
			"proxy_server missing scheme"},
		{"proxy socks", map[string]string{"KONG_PROXY_SERVER": "socks5://proxy:1080"}, append(append([]string{}, withCert...), "--cp", "cp:8005"),
			`proxy_server only supports "http" and "https", got socks5`},
		{"proxy without host", nil, append(append([]string{}, withCert...), "--cp", "cp:8005", "--proxy-server", "http://"),
			"proxy_server missing host"},
		{"proxy with query", nil, append(append([]string{}, withCert...), "--cp", "cp:8005", "--proxy-server", "http://proxy:3128/?a=b"),
			"fragments, query strings or parameters are meaningless in proxy configuration"},
		{"https proxy", nil, append(append([]string{}, withCert...), "--cp", "cp:8005", "--cluster-use-proxy", "--proxy-server", "https://u:secret@proxy:3128"),
			"http:// proxies only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errw bytes.Buffer
			code := Main(tc.args, strings.NewReader(""), &out, &errw)
			if code != ExitUsage || !strings.Contains(errw.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 mentioning %q", code, errw.String(), tc.want)
			}
			if strings.Contains(errw.String(), "secret") {
				t.Errorf("the proxy password is printed: %q", errw.String())
			}
		})
	}
}

// TestServeDPHybridThroughProxy: with --cluster-use-proxy the DP reaches the
// CP through --proxy-server with HTTP CONNECT (Kong's cluster_use_proxy and
// proxy_server), sends the proxy's credentials as Basic Proxy-Authorization,
// syncs and serves; the password is never logged.
func TestServeDPHybridThroughProxy(t *testing.T) {
	up := newUpstream(t)
	cert, key, err := cptest.SharedCert()
	if err != nil {
		t.Fatal(err)
	}
	cp := hyStartCP(t, "", cert, key)
	hash, err := cp.SetConfigFrom(hyParseYAML(t, declarative(up.URL, "/mock")))
	if err != nil {
		t.Fatal(err)
	}
	proxyAddr, connects := testutil.StartConnectProxy(t)

	o := hybridDP(cp.Addr(), t.TempDir(), cert, key)
	o.ClusterUseProxy, o.ProxyServer = true, "http://kong:s3cr3t-pw@"+proxyAddr
	d := startDP(t, o)
	eventually(t, "the CP's config through the proxy", func() bool {
		return statusDoc(t, d.addrs.Status)["configuration_hash"] == hash
	})
	if code, body, _ := httpGet(t, "http://"+d.addrs.Proxy[0]+"/mock/x"); code != 200 || body != "upstream saw /x" {
		t.Fatalf("GET /mock/x = %d %q", code, body)
	}
	select {
	case c := <-connects:
		wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("kong:s3cr3t-pw"))
		if c.Target != cp.Addr() || c.ProxyAuthorization != wantAuth {
			t.Errorf("the proxy saw CONNECT %s with Proxy-Authorization %q; want %s with %q", c.Target, c.ProxyAuthorization, cp.Addr(), wantAuth)
		}
	default:
		t.Fatal("the DP did not go through the proxy")
	}
	logs := d.logs.String()
	if strings.Contains(logs, "s3cr3t-pw") {
		t.Errorf("the proxy password is logged:\n%s", logs)
	}
	if !strings.Contains(logs, "cluster_proxy=") {
		t.Errorf("the proxy in use is not logged:\n%s", logs)
	}
}
