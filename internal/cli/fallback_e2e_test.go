package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kongfb/kongfb/internal/dp"
	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
	"github.com/kongfb/kongfb/pkg/storage/storagetest"
)

// fbBackend is one fallback storage location as the nodes see it (URL,
// options) and as the test inspects it (store).
type fbBackend struct {
	name  string
	url   string
	opts  fallbackOptions // Storage, S3Endpoint, StorageBase filled
	store storage.Store
	minio *storagetest.MinIO // nil for file://
}

// fbFile is a file:// storage in a temp dir.
func fbFile(t *testing.T) fbBackend {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fallback")
	url := "file://" + dir
	st, err := storage.Open(context.Background(), url, storage.Options{CreateBucket: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return fbBackend{name: "file", url: url, opts: fallbackOptions{Storage: url}, store: st}
}

// fbMinIO is s3://<bucket>/kong on a real MinIO (skipped without
// $KONGFB_TEST_MINIO_BIN unless KONGFB_TEST_REQUIRE_SERVICES=1). The nodes
// get the endpoint through --s3-endpoint and the credentials as the AWS
// chain would give them.
func fbMinIO(t *testing.T) fbBackend {
	t.Helper()
	m := storagetest.StartMinIO(t)
	base := m.Options()
	base.Endpoint = ""
	url := m.URL("kong")
	return fbBackend{name: "minio", url: url, minio: m, store: m.Open(t, "kong"),
		opts: fallbackOptions{Storage: url, S3Endpoint: m.Endpoint, StorageBase: base}}
}

// exporterOpts / importerOpts are test-sized fallback settings: no export
// delay, a 300 ms lease, quick retries.
func (b fbBackend) exporterOpts() fallbackOptions {
	o := b.opts
	o.Export, o.ExportDelay, o.ElectionTTL = true, 0, 300*time.Millisecond
	o.RetryMin, o.RetryMax = 20*time.Millisecond, 300*time.Millisecond
	return o
}

func (b fbBackend) importerOpts() fallbackOptions {
	o := b.opts
	o.Import = true
	o.RetryMin, o.RetryMax = 20*time.Millisecond, 200*time.Millisecond
	return o
}

// keys lists every object of the storage.
func (b fbBackend) keys(t *testing.T) []string {
	t.Helper()
	var out []string
	for obj, err := range storage.ListAll(context.Background(), b.store, "", storage.ListOptions{}) {
		if err != nil {
			t.Fatalf("list %s: %v", b.store, err)
		}
		out = append(out, obj.Key)
	}
	sort.Strings(out)
	return out
}

// snapshotOf reports whether the history holds a snapshot of hash.
func (b fbBackend) snapshotOf(t *testing.T, hash string) string {
	t.Helper()
	for _, k := range b.keys(t) {
		if info, err := snapshot.ParseHistoryKey(k); err == nil && strings.HasPrefix(hash, info.HashPrefix) {
			return k
		}
	}
	return ""
}

// kongObjectHash is the config_hash the exporter recorded on Kong's
// config.json ("" when there is none).
func (b fbBackend) kongObjectHash(t *testing.T) string {
	t.Helper()
	info, err := b.store.Head(context.Background(), snapshot.KongObjectKey("", config.KongVersion))
	if err != nil {
		return ""
	}
	return info.Metadata["kongfb-config-hash"]
}

// httpbin answers /status/<code> with that code, like httpbin.org in the
// seed article, and 200 with the path otherwise.
func httpbin(t *testing.T) *httptest.Server {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, ok := strings.CutPrefix(r.URL.Path, "/status/"); ok {
			if code, err := strconv.Atoi(c); err == nil && code >= 200 && code < 600 {
				w.WriteHeader(code)
				return
			}
		}
		fmt.Fprintf(w, "upstream saw %s", r.URL.Path)
	}))
	t.Cleanup(up.Close)
	return up
}

// proxyCode is the status of GET path through the DP's proxy.
func proxyCode(t *testing.T, d *runningDP, path string) int {
	t.Helper()
	res, err := http.Get("http://" + d.addrs.Proxy[0] + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	res.Body.Close()
	return res.StatusCode
}

// fbStatus is the DP's /status kongfb block and configuration_hash.
func fbStatus(t *testing.T, d *runningDP) (map[string]any, string) {
	t.Helper()
	doc := statusDoc(t, d.addrs.Status)
	return doc["kongfb"].(map[string]any), doc["configuration_hash"].(string)
}

func block(kb map[string]any, name string) map[string]any {
	m, _ := kb[name].(map[string]any)
	return m
}

// fbCluster is a CP (SQLite) with its cluster listener, for the fallback
// tests.
type fbCluster struct {
	cert, key string
	cpOpts    serveCPOptions
	addrs     serveCPAddrs
	stopCP    func() error
}

func startFBCluster(t *testing.T) *fbCluster {
	t.Helper()
	c := &fbCluster{}
	c.cert, c.key = writeSharedCert(t)
	c.cpOpts = cpTestOptions(t)
	c.cpOpts.ClusterListen = "127.0.0.1:0"
	c.cpOpts.ClusterCert, c.cpOpts.ClusterCertKey = c.cert, c.key
	c.addrs, c.stopCP = startCP(t, c.cpOpts)
	return c
}

// restart starts the CP again on the same SQLite file, certificate and
// cluster address.
func (c *fbCluster) restart(t *testing.T) {
	t.Helper()
	o := c.cpOpts
	o.ClusterListen = c.addrs.Cluster
	c.addrs, c.stopCP = startCP(t, o)
}

func (c *fbCluster) post(t *testing.T, path, body string) {
	t.Helper()
	if code, m := cpRequest(t, "POST", "http://"+c.addrs.Admin[0]+path, body, ""); code != 201 {
		t.Fatalf("POST %s: %d %v", path, code, m)
	}
}

// dp returns the options of a hybrid DP of this cluster with a fresh prefix.
func (c *fbCluster) dp(t *testing.T, fo fallbackOptions) serveDPOptions {
	o := hybridDP(c.addrs.Cluster, filepath.Join(t.TempDir(), "dp"), c.cert, c.key)
	o.Fallback = fo
	return o
}

// waitExported waits until the exporter DP serves a config with at least
// one route and its exporter reports that very hash exported; it returns
// the hash.
func waitExported(t *testing.T, c *fbCluster, exp *runningDP, what string) string {
	t.Helper()
	var hash string
	eventually(t, what, func() bool {
		kb, h := fbStatus(t, exp)
		ex := block(kb, "exporter")
		if ex == nil || h == config.EmptyHash || kb["config_source"] != dp.SourceCP {
			return false
		}
		// The exporter must hold the CP's current config, not an earlier
		// one it exported while later changes were still on their way.
		if h != c.configHash(t) {
			return false
		}
		hash = h
		return ex["last_hash"] == h && ex["last_result"] == "ok"
	})
	return hash
}

// configHash is the hash of the CP's current configuration, as it pushes it.
func (c *fbCluster) configHash(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + c.addrs.Admin[0] + "/config")
	if err != nil {
		t.Fatalf("GET /config: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /config: %d %v", resp.StatusCode, err)
	}
	cfg, err := config.Parse(body, "config.json")
	if err != nil {
		t.Fatalf("parse GET /config: %v", err)
	}
	h, _ := config.Hash(cfg.WithoutDisabled())
	return h
}

// TestFallbackSeedExperiment is the scenario of the seed article (Kong
// Advent Calendar 2025, "S3 を利用した Kong Gateway Data Plane の復旧シナリオ"), with
// kongfb in every role: a CP on SQLite and a dedicated exporter DP
// (proxy_listen off); a config change reaches the bucket; the CP stops; a
// new DP without import answers 404 and is not ready; a new DP with import
// answers 200 from the snapshot; the CP returns and that DP converges.
func TestFallbackSeedExperiment(t *testing.T) {
	t.Run("file", func(t *testing.T) { seedExperiment(t, fbFile(t)) })
	t.Run("minio", func(t *testing.T) { seedExperiment(t, fbMinIO(t)) })
}

func seedExperiment(t *testing.T, b fbBackend) {
	up := httpbin(t)
	c := startFBCluster(t)

	// 1. The CP and the exporter (backup node): proxy_listen off, export on.
	eo := c.dp(t, b.exporterOpts())
	eo.ProxyListen = "off"
	exp := startDP(t, eo)
	if len(exp.addrs.Proxy) != 0 {
		t.Fatalf("exporter DP proxies on %v", exp.addrs.Proxy)
	}

	// decK's kong.yaml of the article, through the Admin API.
	c.post(t, "/services", fmt.Sprintf(`{"name":"httpbin-service","url":%q}`, up.URL))
	c.post(t, "/services/httpbin-service/routes", `{"name":"httpbin-route","paths":["/mock"],"strip_path":true}`)

	// 2. The config reaches the bucket.
	hash := waitExported(t, c, exp, "the exporter DP to export the config")
	eventually(t, "the snapshot and Kong's config.json in the storage", func() bool {
		return b.snapshotOf(t, hash) != "" && b.kongObjectHash(t) == hash
	})
	t.Logf("seed[%s]: storage %s after the change (config_hash %s):", b.name, b.url, hash)
	for _, k := range b.keys(t) {
		t.Logf("seed[%s]:   %s", b.name, k)
	}

	// Kong's object is plain Kong export JSON (no encryption configured).
	kongKey := snapshot.KongObjectKey("", config.KongVersion)
	raw, info, err := b.store.Get(context.Background(), kongKey)
	if err != nil {
		t.Fatalf("get %s: %v", kongKey, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s is not JSON: %v", kongKey, err)
	}
	svcs, _ := doc["services"].([]any)
	routes, _ := doc["routes"].([]any)
	if doc["_format_version"] != "3.0" || doc["_transform"] != false || len(svcs) != 1 || len(routes) != 1 ||
		svcs[0].(map[string]any)["name"] != "httpbin-service" || routes[0].(map[string]any)["strip_path"] != true {
		t.Fatalf("%s is not the Kong export of the config: %s", kongKey, raw)
	}
	if info.ContentType != "application/json" || info.Metadata["uploader"] == "" {
		t.Errorf("%s: content type %q, metadata %v; want application/json and Kong's uploader", kongKey, info.ContentType, info.Metadata)
	}

	// 3. The CP goes away.
	if err := c.stopCP(); err != nil {
		t.Fatalf("stop CP: %v", err)
	}
	t.Logf("seed[%s]: control plane stopped", b.name)

	// 4. A new DP without import: it cannot be provisioned.
	plain := startDP(t, c.dp(t, fallbackOptions{}))
	eventually(t, "the DP without import to fail its first CP connection", func() bool {
		kb, _ := fbStatus(t, plain)
		return kb["cp_error"] != nil
	})
	code := proxyCode(t, plain, "/mock/status/200")
	rcode, rmsg := readyState(t, plain.addrs.Status)
	t.Logf("seed[%s]: new DP without --import: GET /mock/status/200 -> %d; GET /status/ready -> %d %q", b.name, code, rcode, rmsg)
	if code != 404 || rcode != 503 || rmsg != dp.MsgNoConfig {
		t.Fatalf("DP without import: proxy %d, ready %d %q; want 404 and 503 %q", code, rcode, rmsg, dp.MsgNoConfig)
	}
	if kb, _ := fbStatus(t, plain); kb["fallback"] != nil {
		t.Errorf("DP without import reports a fallback block: %v", kb["fallback"])
	}
	if err := plain.stop(t); err != nil {
		t.Fatal(err)
	}

	// 5. A new DP with import (empty prefix, no cache): served from the
	// storage.
	imp := startDP(t, c.dp(t, b.importerOpts()))
	eventually(t, "the importer DP to serve /mock", func() bool { return proxyCode(t, imp, "/mock/status/200") == 200 })
	kb, h := fbStatus(t, imp)
	fb := block(kb, "fallback")
	rcode, rmsg = readyState(t, imp.addrs.Status)
	t.Logf("seed[%s]: new DP with --import: GET /mock/status/200 -> 200; GET /status/ready -> %d %q; config_source=%v snapshot=%v", b.name, rcode, rmsg, kb["config_source"], fb["snapshot"])
	if kb["config_source"] != dp.SourceFallback || h != hash || rcode != 200 {
		t.Fatalf("importer DP: source %v hash %s ready %d; want fallback, %s, 200", kb["config_source"], h, rcode, hash)
	}
	snap, _ := fb["snapshot"].(string)
	if fb["state"] != dp.FallbackImported || snap != b.snapshotOf(t, hash) || !strings.Contains(fmt.Sprint(kb["config_origin"]), snap) ||
		fb["imported_at"] == nil || fb["attempts"].(float64) < 1 {
		t.Fatalf("importer DP fallback block: %v (origin %v); want imported from %s", fb, kb["config_origin"], b.snapshotOf(t, hash))
	}
	if code := proxyCode(t, imp, "/mock/status/503"); code != 503 {
		t.Errorf("GET /mock/status/503 = %d; the upstream did not see the stripped path", code)
	}

	// 6. The CP comes back (same SQLite file, certificate and address): the
	// importer DP converges to the CP's config, source cp.
	c.restart(t)
	eventually(t, "the importer DP to converge on the CP", func() bool {
		kb, h := fbStatus(t, imp)
		return kb["config_source"] == dp.SourceCP && kb["cp_connected"] == true && h == hash
	})
	kb, h = fbStatus(t, imp)
	t.Logf("seed[%s]: CP restarted: importer DP config_source=%v configuration_hash=%s fallback.state=%v; GET /mock/status/200 -> %d",
		b.name, kb["config_source"], h, block(kb, "fallback")["state"], proxyCode(t, imp, "/mock/status/200"))
	// And a change made now reaches it (and the storage) as usual.
	c.post(t, "/services/httpbin-service/routes", `{"name":"after","paths":["/after"]}`)
	eventually(t, "the change after the CP's return served by the importer DP", func() bool {
		return proxyCode(t, imp, "/after/status/201") == 201
	})
	hash2 := waitExported(t, c, exp, "the change after the CP's return exported")
	if hash2 == hash {
		t.Fatal("the exporter still reports the old hash")
	}
	eventually(t, "the new config in the storage", func() bool { return b.snapshotOf(t, hash2) != "" && b.kongObjectHash(t) == hash2 })
}

// TestFallbackExportSurvivesStorageOutage: the storage goes away while the
// exporter runs, the config changes meanwhile, the storage comes back: the
// pending config is exported without any further change.
func TestFallbackExportSurvivesStorageOutage(t *testing.T) {
	b := fbMinIO(t)
	up := httpbin(t)
	c := startFBCluster(t)
	eo := c.dp(t, b.exporterOpts())
	eo.ProxyListen = "off"
	exp := startDP(t, eo)
	c.post(t, "/services", fmt.Sprintf(`{"name":"httpbin-service","url":%q}`, up.URL))
	c.post(t, "/services/httpbin-service/routes", `{"name":"a","paths":["/a"]}`)
	h1 := waitExported(t, c, exp, "the first config exported")

	if err := b.minio.Stop(); err != nil {
		t.Fatal(err)
	}
	c.post(t, "/services/httpbin-service/routes", `{"name":"b","paths":["/b"]}`)
	var h2 string
	// Either the export of the change fails, or the lease lapses first
	// (renewals fail too) and the exporter holds the change back: both
	// mean the outage is noticed with the change pending.
	eventually(t, "the exporter to fail on the change, or its lease to lapse, while the storage is down", func() bool {
		kb, h := fbStatus(t, exp)
		ex := block(kb, "exporter")
		h2 = h
		return h != h1 && kb["config_source"] == dp.SourceCP && ex["pending_hash"] == h && (ex["last_error"] != nil || ex["role"] == "lapsed")
	})
	kb, _ := fbStatus(t, exp)
	t.Logf("storage down: exporter %v", block(kb, "exporter"))

	if err := b.minio.Start(); err != nil {
		t.Fatal(err)
	}
	// No change from here on: the exporter retries by itself.
	waitExported(t, c, exp, "the pending config exported after the storage returned")
	eventually(t, "the pending config in the storage", func() bool { return b.snapshotOf(t, h2) != "" && b.kongObjectHash(t) == h2 })
	kb, _ = fbStatus(t, exp)
	t.Logf("storage back: exporter %v", block(kb, "exporter"))
}

// seedSnapshot writes a snapshot of cfg (and Kong's config.json) to the
// storage directly, as an exporter would.
func seedSnapshot(t *testing.T, st storage.Store, cfg *config.Config, opts snapshot.Options) *snapshot.Encoded {
	t.Helper()
	enc, err := snapshot.Encode(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := st.Put(ctx, enc.Key(""), enc.Data, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	if opts.KongObjectAllowed(false) {
		if _, err := st.Put(ctx, snapshot.KongObjectKey("", config.KongVersion), enc.KongJSON, storage.PutOptions{ContentType: "application/json"}); err != nil {
			t.Fatal(err)
		}
	}
	return enc
}

// TestFallbackImportWaitsForStorage: a DP that starts with neither CP nor
// storage stays not ready and keeps trying; it serves once the storage is
// back with a valid snapshot.
func TestFallbackImportWaitsForStorage(t *testing.T) {
	b := fbMinIO(t)
	up := httpbin(t)
	enc := seedSnapshot(t, b.store, hyParseYAML(t, declarative(up.URL, "/mock")), snapshot.Options{})
	if err := b.minio.Stop(); err != nil {
		t.Fatal(err)
	}
	cert, key := writeSharedCert(t)
	o := hybridDP(hyFreeAddr(t), filepath.Join(t.TempDir(), "dp"), cert, key)
	o.Fallback = b.importerOpts()
	imp := startDP(t, o)
	eventually(t, "several failed import attempts", func() bool {
		kb, _ := fbStatus(t, imp)
		fb := block(kb, "fallback")
		return fb["state"] == dp.FallbackImporting && fb["attempts"].(float64) >= 3 && fb["last_error"] != nil
	})
	kb, _ := fbStatus(t, imp)
	code := proxyCode(t, imp, "/mock/status/200")
	rcode, rmsg := readyState(t, imp.addrs.Status)
	t.Logf("storage down: GET /mock/status/200 -> %d, /status/ready -> %d %q, fallback %v", code, rcode, rmsg, block(kb, "fallback"))
	if code != 404 || rcode != 503 || kb["config_source"] != nil {
		t.Fatalf("with the storage down: proxy %d, ready %d, source %v; want 404, 503, none", code, rcode, kb["config_source"])
	}

	if err := b.minio.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the DP to import once the storage is back", func() bool { return proxyCode(t, imp, "/mock/status/200") == 200 })
	kb, _ = fbStatus(t, imp)
	fb := block(kb, "fallback")
	if rcode, _ := readyState(t, imp.addrs.Status); rcode != 200 || kb["config_source"] != dp.SourceFallback ||
		fb["snapshot"] != enc.Key("") || fb["last_error"] != nil {
		t.Fatalf("after the storage returned: ready %d, kongfb %v", rcode, kb)
	}
}

// TestFallbackEncryptedSigned: an exporter encrypts to an age recipient and
// signs; an importer with the identity and the pinned key serves the
// snapshot; one with the wrong identity never becomes ready and says why.
// The importers run as the real command, configured by flags and Kong's
// environment names.
func TestFallbackEncryptedSigned(t *testing.T) {
	b := fbFile(t)
	up := httpbin(t)
	dir := t.TempDir()
	idFile, recipient, err := snapshot.GenerateAgeIdentity(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	wrongID, _, err := snapshot.GenerateAgeIdentity(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	signPEM, _, err := snapshot.GenerateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	sk, err := snapshot.ParseSigningKey(signPEM)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"id.txt": string(idFile), "wrong.txt": string(wrongID), "sign.pem": string(signPEM),
		"trusted.txt": "# the exporter's key\n" + snapshot.PublicKeyString(sk.Public()) + "\n"}
	for name, body := range files {
		writeFile(t, filepath.Join(dir, name), body)
	}

	c := startFBCluster(t)
	eo := c.dp(t, b.exporterOpts())
	eo.ProxyListen = "off"
	eo.Fallback.Recipients = []string{recipient}
	eo.Fallback.SigningKeyFile = filepath.Join(dir, "sign.pem")
	exp := startDP(t, eo)
	c.post(t, "/services", fmt.Sprintf(`{"name":"httpbin-service","url":%q}`, up.URL))
	c.post(t, "/services/httpbin-service/routes", `{"name":"httpbin-route","paths":["/mock"]}`)
	hash := waitExported(t, c, exp, "the encrypted snapshot exported")
	key := b.snapshotOf(t, hash)
	for _, k := range b.keys(t) {
		if strings.HasSuffix(k, "config.json") {
			t.Errorf("plaintext %s written although snapshots are encrypted", k)
		}
	}
	if err := c.stopCP(); err != nil {
		t.Fatal(err)
	}

	run := func(t *testing.T, identity string) (*runningDP, func()) {
		t.Helper()
		t.Setenv("KONG_CLUSTER_CONTROL_PLANE", c.addrs.Cluster)
		t.Setenv("KONG_CLUSTER_CERT", c.cert)
		t.Setenv("KONG_CLUSTER_CERT_KEY", c.key)
		t.Setenv("KONG_CLUSTER_FALLBACK_CONFIG_IMPORT", "on")
		t.Setenv("KONG_CLUSTER_FALLBACK_CONFIG_STORAGE", b.url)
		t.Setenv("KONG_PREFIX", filepath.Join(t.TempDir(), "dp"))
		r := &runningDP{logs: &syncBuffer{}, done: make(chan error, 1)}
		ready := make(chan serveDPAddrs, 1)
		serveDPTestHook = func(o *serveDPOptions) { o.Ready = func(a serveDPAddrs) { ready <- a } }
		t.Cleanup(func() { serveDPTestHook = nil })
		root := NewRootCommand(Streams{In: strings.NewReader(""), Out: r.logs, Err: r.logs})
		root.SetArgs([]string{"serve", "dp", "--proxy-listen", "127.0.0.1:0", "--status-listen", "127.0.0.1:0",
			"--cluster-reconnect-min", "10ms", "--cluster-reconnect-max", "50ms",
			"--fallback-retry-min", "20ms", "--fallback-retry-max", "100ms",
			"--snapshot-identity-file", filepath.Join(dir, identity), "--snapshot-trusted-key", filepath.Join(dir, "trusted.txt")})
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel = cancel
		go func() { r.done <- root.ExecuteContext(ctx) }()
		select {
		case r.addrs = <-ready:
		case err := <-r.done:
			t.Fatalf("command returned before ready: %v\n%s", err, r.logs)
		case <-time.After(10 * time.Second):
			t.Fatal("command did not become ready")
		}
		stop := func() {
			cancel()
			if err := <-r.done; err != nil {
				t.Errorf("command: %v", err)
			}
		}
		return r, stop
	}

	t.Run("right identity", func(t *testing.T) {
		imp, stop := run(t, "id.txt")
		defer stop()
		eventually(t, "the encrypted snapshot served", func() bool { return proxyCode(t, imp, "/mock/status/200") == 200 })
		kb, h := fbStatus(t, imp)
		if kb["config_source"] != dp.SourceFallback || h != hash || block(kb, "fallback")["snapshot"] != key {
			t.Fatalf("kongfb %v hash %s; want fallback from %s, %s", kb, h, key, hash)
		}
	})
	t.Run("wrong identity", func(t *testing.T) {
		imp, stop := run(t, "wrong.txt")
		defer stop()
		eventually(t, "repeated refusals", func() bool {
			kb, _ := fbStatus(t, imp)
			return block(kb, "fallback")["attempts"].(float64) >= 3
		})
		kb, _ := fbStatus(t, imp)
		fb := block(kb, "fallback")
		rcode, _ := readyState(t, imp.addrs.Status)
		msg, _ := fb["last_error"].(string)
		t.Logf("wrong identity: /status/ready -> %d, fallback.last_error = %s", rcode, msg)
		if rcode != 503 || proxyCode(t, imp, "/mock/status/200") != 404 || kb["config_source"] != nil {
			t.Fatalf("a snapshot that cannot be decrypted was served: ready %d, kongfb %v", rcode, kb)
		}
		if !strings.Contains(msg, key) || !strings.Contains(msg, snapshot.ErrDecrypt.Error()) {
			t.Fatalf("fallback.last_error %q does not name the object %s and the reason %q", msg, key, snapshot.ErrDecrypt)
		}
	})
}

// TestFallbackCPExporter: `serve cp --export` writes every config its push
// loop validated, with no data plane connected.
func TestFallbackCPExporter(t *testing.T) {
	b := fbFile(t)
	cert, key := writeSharedCert(t)
	o := cpTestOptions(t)
	o.ClusterListen = "127.0.0.1:0"
	o.ClusterCert, o.ClusterCertKey = cert, key
	o.Fallback = b.exporterOpts()
	addrs, _ := startCP(t, o)
	admin := "http://" + addrs.Admin[0]
	if code, m := cpRequest(t, "POST", admin+"/services", `{"name":"s","url":"http://example.test"}`, ""); code != 201 {
		t.Fatalf("POST /services: %d %v", code, m)
	}
	if code, m := cpRequest(t, "POST", admin+"/services/s/routes", `{"name":"r","paths":["/r"]}`, ""); code != 201 {
		t.Fatalf("POST /routes: %d %v", code, m)
	}
	var want string
	eventually(t, "the CP's config in the storage", func() bool {
		raw, _, err := b.store.Get(context.Background(), snapshot.KongObjectKey("", config.KongVersion))
		if err != nil {
			return false
		}
		cfg, err := config.Parse(raw, "config.json")
		if err != nil || len(cfg.Routes) != 1 {
			return false
		}
		want, _ = config.Hash(cfg)
		return b.snapshotOf(t, want) != "" && b.kongObjectHash(t) == want
	})
	if _, root := cpRequest(t, "GET", admin+"/", "", ""); root["configuration"].(map[string]any)["cluster_fallback_config_export"] != true {
		t.Errorf("GET / configuration does not report the export: %v", root["configuration"])
	}
}

// TestFallbackSettings checks Kong's validation messages and the flags'
// environment names.
func TestFallbackSettings(t *testing.T) {
	cert, key := writeSharedCert(t)
	dir := t.TempDir()
	base := []string{"serve", "dp", "--status-listen", "off", "--prefix", filepath.Join(dir, "p")}
	hybrid := append(append([]string{}, base...), "--cp", "127.0.0.1:1", "--cluster-cert", cert, "--cluster-cert-key", key, "--proxy-listen", "127.0.0.1:0")
	with := func(args ...string) []string { return append(append([]string{}, hybrid...), args...) }
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"import without hybrid mode", nil, append(append([]string{}, base...), "--import", "--fallback-storage", "s3://b/p"), msgFallbackHybridOnly},
		{"export without storage", map[string]string{"KONG_CLUSTER_FALLBACK_CONFIG_EXPORT": "on"}, with(), msgFallbackNoStorage},
		{"import without storage", map[string]string{"KONG_CLUSTER_FALLBACK_CONFIG_IMPORT": "on"}, with(), msgFallbackNoStorage},
		{"bad scheme", map[string]string{"KONG_CLUSTER_FALLBACK_CONFIG_STORAGE": "ftp://b/p"}, with("--import"), msgFallbackScheme},
		{"gcs", nil, with("--import", "--fallback-storage", "gcs://b/p"), "(gcs://) is not supported by kongfb yet"},
		{"s3 config without storage", map[string]string{"KONG_CLUSTER_FALLBACK_EXPORT_S3_CONFIG": `{"ServerSideEncryption":"AES256"}`}, with(), msgS3ConfigNoStorage},
		{"s3 config on file storage", nil, with("--export", "--fallback-storage", "file://"+dir, "--export-s3-config", `{"ServerSideEncryption":"AES256"}`), msgS3ConfigScheme},
		{"s3 config not json", nil, with("--export", "--fallback-storage", "s3://bucket/p", "--export-s3-config", `{"ServerSideEncryption":`),
			"cluster_fallback_export_s3_config must be valid json or not set: "},
		{"proxy off without export", nil, with("--proxy-listen", "off"), msgProxyListenOff},
		{"passphrase and recipients", nil, with("--export", "--fallback-storage", "file://"+dir, "--snapshot-passphrase-file", filepath.Join(dir, "pass"),
			"--snapshot-recipient", "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq"), "cannot be combined"},
		{"bad recipient", nil, with("--export", "--fallback-storage", "file://"+dir, "--snapshot-recipient", "age1nope"), "--snapshot-recipient"},
		{"missing identity file", nil, with("--import", "--fallback-storage", "file://"+dir, "--snapshot-identity-file", filepath.Join(dir, "none")), "--snapshot-identity-file"},
		{"bad version policy", nil, with("--import", "--fallback-storage", "file://"+dir, "--snapshot-version-policy", "latest"), "--snapshot-version-policy"},
		{"bad export delay", map[string]string{"KONG_CLUSTER_FALLBACK_CONFIG_EXPORT_DELAY": "soon"}, with(), "KONG_CLUSTER_FALLBACK_CONFIG_EXPORT_DELAY"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, filepath.Join(dir, "pass"), "secret\n")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errw syncBuffer
			code := Main(tc.args, strings.NewReader(""), &out, &errw)
			if code != ExitUsage || !strings.Contains(errw.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 mentioning %q", code, errw.String(), tc.want)
			}
		})
	}

	// The control plane: import is a data-plane setting; export needs the
	// cluster listener.
	cpBase := []string{"serve", "cp", "--admin-listen", "127.0.0.1:0", "--status-listen", "off", "--prefix", filepath.Join(dir, "cp")}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"cp import", map[string]string{"KONG_CLUSTER_FALLBACK_CONFIG_IMPORT": "on"},
			append(append([]string{}, cpBase...), "--cluster-cert", cert, "--cluster-cert-key", key, "--cluster-listen", "127.0.0.1:0", "--fallback-storage", "file://"+dir), msgFallbackImportDPOnly},
		{"cp export admin-only", nil, append(append([]string{}, cpBase...), "--export", "--fallback-storage", "file://"+dir), msgFallbackHybridOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			var out, errw syncBuffer
			code := Main(tc.args, strings.NewReader(""), &out, &errw)
			if code != ExitUsage || !strings.Contains(errw.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 mentioning %q", code, errw.String(), tc.want)
			}
		})
	}

	// Every flag from Kong's environment names.
	t.Setenv("KONG_CLUSTER_FALLBACK_CONFIG_EXPORT", "on")
	t.Setenv("KONG_CLUSTER_FALLBACK_CONFIG_IMPORT", "on")
	t.Setenv("KONG_CLUSTER_FALLBACK_CONFIG_STORAGE", "file://"+dir)
	t.Setenv("KONG_CLUSTER_FALLBACK_CONFIG_EXPORT_DELAY", "0.25")
	t.Setenv("AWS_CONFIG_STORAGE_ENDPOINT", "http://127.0.0.1:9")
	var got serveDPOptions
	serveDPTestHook = func(o *serveDPOptions) { got = *o; o.ProxyListen = "bad listen" }
	t.Cleanup(func() { serveDPTestHook = nil })
	var out, errw syncBuffer
	Main(with("--election-ttl", "2s", "--prefer-newest"), strings.NewReader(""), &out, &errw)
	f := got.Fallback
	if !f.Export || !f.Import || f.Storage != "file://"+dir || f.ExportDelay != 250*time.Millisecond ||
		f.S3Endpoint != "http://127.0.0.1:9" || f.ElectionTTL != 2*time.Second || !f.PreferNewest || f.VersionPolicy != "same-minor" {
		t.Errorf("fallback options from the environment = %+v", f)
	}
}

// TestFallbackPreferNewest: a DP restarted without its CP serves its cache
// (Kong's rule: no import when a configuration is cached), unless
// --prefer-newest and the storage holds a snapshot captured after the cache
// was written.
func TestFallbackPreferNewest(t *testing.T) {
	b := fbFile(t)
	up := httpbin(t)
	c := startFBCluster(t)
	c.post(t, "/services", fmt.Sprintf(`{"name":"httpbin-service","url":%q}`, up.URL))
	c.post(t, "/services/httpbin-service/routes", `{"name":"old","paths":["/old"]}`)
	o := c.dp(t, b.importerOpts())
	d := startDP(t, o)
	eventually(t, "the DP to sync and cache the CP's config", func() bool { return proxyCode(t, d, "/old/status/200") == 200 })
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
	if err := c.stopCP(); err != nil {
		t.Fatal(err)
	}
	// A newer config reached the storage after this DP went away.
	newer := seedSnapshot(t, b.store, hyParseYAML(t, declarative(up.URL, "/new")), snapshot.Options{})

	d = startDP(t, o) // same prefix: the cache is there
	eventually(t, "the cache served and the import skipped", func() bool {
		kb, _ := fbStatus(t, d)
		return block(kb, "fallback")["state"] == dp.FallbackSkippedCache
	})
	if kb, _ := fbStatus(t, d); kb["config_source"] != dp.SourceCache || proxyCode(t, d, "/old/status/200") != 200 {
		t.Fatalf("without --prefer-newest: %v", kb)
	}
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}

	o.Fallback.PreferNewest = true
	d = startDP(t, o)
	eventually(t, "the newer snapshot served", func() bool { return proxyCode(t, d, "/new/status/200") == 200 })
	kb, _ := fbStatus(t, d)
	if kb["config_source"] != dp.SourceFallback || block(kb, "fallback")["snapshot"] != newer.Key("") {
		t.Fatalf("with --prefer-newest: %v", kb)
	}
	if err := d.stop(t); err != nil {
		t.Fatal(err)
	}
	// The imported config was kept in the cache: it is served at the next
	// start, and --prefer-newest finds nothing newer.
	d = startDP(t, o)
	eventually(t, "the cache (the imported config) kept", func() bool {
		kb, _ := fbStatus(t, d)
		return block(kb, "fallback")["state"] == dp.FallbackCacheNewer
	})
	if kb, _ := fbStatus(t, d); kb["config_source"] != dp.SourceCache || proxyCode(t, d, "/new/status/200") != 200 {
		t.Fatalf("after the restart: %v", kb)
	}
}
