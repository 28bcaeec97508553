package cli

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kongfb/kongfb/internal/cp/admin"
	"github.com/kongfb/kongfb/internal/cp/store/storetest"
	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
	"github.com/kongfb/kongfb/pkg/storage/storagetest"
)

// snapStore is one fallback storage the snapshot commands are run against:
// the URL and extra flags the command gets, and a store the test inspects
// and seeds.
type snapStore struct {
	name  string
	url   string
	args  []string // e.g. --s3-endpoint
	store storage.Store
}

// with returns args followed by --storage and the backend's flags.
func (s snapStore) with(args ...string) []string {
	return append(append(append([]string{}, args...), "--storage", s.url), s.args...)
}

// forEachStore runs f against a fresh file:// storage and a fresh prefix
// on one real MinIO (skipped without $KONGFB_TEST_MINIO_BIN). The MinIO
// credentials reach the command the way they reach a user's: through the
// AWS environment variables.
func forEachStore(t *testing.T, f func(t *testing.T, s snapStore)) {
	t.Run("file", func(t *testing.T) {
		f(t, fileSnapStore(t))
	})
	t.Run("minio", func(t *testing.T) {
		m := storagetest.StartMinIO(t)
		t.Setenv("AWS_ACCESS_KEY_ID", m.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", m.SecretKey)
		t.Setenv("AWS_REGION", m.Region)
		t.Setenv("AWS_CONFIG_STORAGE_ENDPOINT", "")
		f(t, snapStore{name: "minio", url: m.URL("kong"), args: []string{"--s3-endpoint", m.Endpoint}, store: m.Open(t, "kong")})
	})
}

func fileSnapStore(t *testing.T) snapStore {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fallback")
	url := "file://" + dir
	st, err := storage.Open(context.Background(), url, storage.Options{CreateBucket: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return snapStore{name: "file", url: url, store: st}
}

// snapKeys are key files for the tests: a signing key, two age identities.
type snapKeys struct {
	dir        string
	signKey    string // signing key file
	signPub    string // ed25519:<base64>
	otherKey   string // another signing key file
	otherPub   string
	identity   string // age identity file
	recipient  string // its recipient
	otherID    string // an identity the snapshots are not encrypted to
	passphrase string // passphrase file
}

func newSnapKeys(t *testing.T) snapKeys {
	t.Helper()
	dir := t.TempDir()
	k := snapKeys{dir: dir}
	sign := func(name string) (string, string) {
		pem, _, err := snapshot.GenerateSigningKey()
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := snapshot.WriteSecretFile(path, pem); err != nil {
			t.Fatal(err)
		}
		sk, err := snapshot.ParseSigningKey(pem)
		if err != nil {
			t.Fatal(err)
		}
		return path, snapshot.PublicKeyString(sk.Public())
	}
	k.signKey, k.signPub = sign("sign.key")
	k.otherKey, k.otherPub = sign("other.key")
	ident := func(name string) (string, string) {
		b, recip, err := snapshot.GenerateAgeIdentity(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		if err := snapshot.WriteSecretFile(path, b); err != nil {
			t.Fatal(err)
		}
		return path, recip
	}
	k.identity, k.recipient = ident("ops.agekey")
	k.otherID, _ = ident("other.agekey")
	k.passphrase = filepath.Join(dir, "pass.txt")
	if err := os.WriteFile(k.passphrase, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// Test configurations: A has one service and route, B adds a service and
// changes the route, C is B without svc-a.
const (
	snapCfgA = `_format_version: "3.0"
services:
- name: svc-a
  url: http://a.internal:8080
  routes:
  - name: route-a
    paths: [/a]
`
	snapCfgB = `_format_version: "3.0"
services:
- name: svc-a
  url: http://a.internal:8080
  routes:
  - name: route-a
    paths: [/a, /a2]
- name: svc-b
  url: http://b.internal:8080
  routes:
  - name: route-b
    paths: [/b]
  plugins:
  - name: rate-limiting
    config: {second: 5}
`
)

func parseCfg(t *testing.T, doc string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(doc), "kong.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// putSnap encodes cfg with opts and stores it as a history object; it
// returns the key.
func putSnap(t *testing.T, st storage.Store, cfg *config.Config, opts snapshot.Options) (string, *snapshot.Encoded) {
	t.Helper()
	enc, err := snapshot.Encode(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	key := enc.Key("")
	if _, err := st.Put(context.Background(), key, enc.Data, storage.PutOptions{IfNoneMatch: "*"}); err != nil {
		t.Fatal(err)
	}
	return key, enc
}

// putKong stores Kong's plain config.json of cfg under version, with the
// exporter's metadata.
func putKong(t *testing.T, st storage.Store, cfg *config.Config, version string) string {
	t.Helper()
	body, err := cfg.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := config.Hash(cfg)
	key := snapshot.KongObjectKey("", version)
	if _, err := st.Put(context.Background(), key, body, storage.PutOptions{ContentType: "application/json",
		Metadata: map[string]string{"kongfb-config-hash": hash}}); err != nil {
		t.Fatal(err)
	}
	return key
}

// tamper flips one byte of an object at offset from its end (1 = last byte).
func tamper(t *testing.T, st storage.Store, key string, fromEnd int) {
	t.Helper()
	ctx := context.Background()
	b, _, err := st.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-fromEnd] ^= 0x01
	if _, err := st.Put(ctx, key, b, storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
}

func wantExit(t *testing.T, what string, code, want int, stdout, stderr string) {
	t.Helper()
	if code != want {
		t.Fatalf("%s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", what, code, want, stdout, stderr)
	}
}

func decodeJSON[T any](t *testing.T, what, s string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("%s: output is not JSON: %v\n%s", what, err, s)
	}
	return v
}

func hashOf(t *testing.T, doc string) string {
	t.Helper()
	h, _ := config.Hash(parseCfg(t, doc))
	return h
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s: %q not in:\n%s", what, sub, s)
		}
	}
}

// adminCP is a real kongfb Admin API (SQLite store) on a test server.
func adminCP(t *testing.T, token string) *httptest.Server {
	t.Helper()
	api, err := admin.New(admin.Options{Store: storetest.NewSQLite(t), Token: token})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv
}

// adminDo sends one request to the Admin API and returns the code and body.
func adminDo(t *testing.T, srv *httptest.Server, method, path, token, ctype, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if token != "" {
		req.Header.Set("Kong-Admin-Token", token)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// cpHash is the config_hash of what the CP serves at GET /config.
func cpHash(t *testing.T, srv *httptest.Server, token string) string {
	t.Helper()
	code, body := adminDo(t, srv, "GET", "/config", token, "", "")
	if code != 200 {
		t.Fatalf("GET /config: %d %s", code, body)
	}
	c, err := config.ParseJSON([]byte(body), "GET /config")
	if err != nil {
		t.Fatal(err)
	}
	h, _ := config.Hash(c)
	return h
}

var snapT0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
