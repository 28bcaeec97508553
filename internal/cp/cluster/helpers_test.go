package cluster

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/kongfb/kongfb/internal/cp/store"
	"github.com/kongfb/kongfb/internal/testutil"
	wire "github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
)

// logBuf collects log lines for assertions.
type logBuf = testutil.SyncBuffer

func newLogger(t testing.TB) (*slog.Logger, *logBuf) {
	lb := &logBuf{}
	h := slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("CP log:\n%s", lb.String())
		}
	})
	return slog.New(h), lb
}

// sharedCert writes a fresh shared-mode certificate and key to files.
func sharedCert(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	c, k, err := wire.GenerateSharedCert(1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cluster.crt"), filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(certFile, c, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, k, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// testCP is a running cluster Server.
type testCP struct {
	*Server
	addr string
	log  *logBuf
	cert wire.TLSOptions
	stop func()
}

func startCP(t testing.TB, st store.Store, tlsOpts wire.TLSOptions, mod func(*Options)) *testCP {
	t.Helper()
	log, lb := newLogger(t)
	opts := Options{
		Store:    st,
		Listen:   "127.0.0.1:0",
		TLS:      tlsOpts,
		RetryMin: 20 * time.Millisecond,
		RetryMax: 200 * time.Millisecond,
		Logger:   log,
	}
	if mod != nil {
		mod(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("cluster Serve: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Errorf("cluster Serve did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return &testCP{Server: s, addr: s.Addr(), log: lb, cert: tlsOpts, stop: stop}
}

func sharedTLS(t testing.TB) wire.TLSOptions {
	c, k := sharedCert(t)
	return wire.TLSOptions{Mode: wire.TLSModeShared, Cert: c, Key: k}
}

// testDP is a minimal data plane built from pkg/cluster: it decodes each
// reconfigure, parses the configuration like a DP and reports its hash.
type testDP struct {
	t       testing.TB
	conn    *wire.DPConn
	id      string
	configs chan *received
	hash    atomic.Value // string
	done    chan struct{}
	err     error // set when done is closed
	cancel  context.CancelFunc
}

type received struct {
	msg *wire.Reconfigure
	cfg *config.Config
}

type dpOpts struct {
	version string
	plugins []wire.PluginInfo
	labels  map[string]string
	id      string
}

func bundledPluginInfos() []wire.PluginInfo {
	var ps []wire.PluginInfo
	for _, p := range config.BundledPlugins() {
		ps = append(ps, wire.PluginInfo{Name: p, Version: config.KongVersion})
	}
	return ps
}

func dialDP(t testing.TB, addr string, tlsOpts wire.TLSOptions, o dpOpts) (*testDP, error) {
	t.Helper()
	if o.version == "" {
		o.version = config.KongVersion
	}
	if o.plugins == nil {
		o.plugins = bundledPluginInfos()
	}
	if o.id == "" {
		o.id = uuid.NewString()
	}
	tlsOpts.Logger = nil
	tc, err := wire.ClientTLSConfig(tlsOpts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := wire.Dial(ctx, addr, tc,
		wire.NodeInfo{ID: o.id, Hostname: "dp-" + o.id[:8], Version: o.version},
		wire.NewBasicInfo(o.plugins, nil, o.labels), nil)
	if err != nil {
		cancel()
		return nil, err
	}
	d := &testDP{t: t, conn: conn, id: o.id, configs: make(chan *received, 64), done: make(chan struct{}), cancel: cancel}
	d.hash.Store(wire.EmptyHash)
	go func() { _ = conn.Keepalive(ctx, func() string { return d.hash.Load().(string) }) }()
	go func() {
		defer close(d.done)
		for {
			m, err := conn.ReadReconfigure(ctx)
			if err != nil {
				d.err = err
				return
			}
			cfg, perr := config.Parse(m.ConfigTable, "config_table.json")
			if perr != nil {
				d.err = fmt.Errorf("DP could not parse the pushed config: %w", perr)
				_ = conn.CloseNow()
				return
			}
			// A DP checks nothing more than Kong's does; the test checks the
			// CP sent the hash of what it sent.
			if h, _ := config.Hash(cfg); h != m.ConfigHash {
				d.err = fmt.Errorf("pushed config_hash %s, but the config_table hashes to %s", m.ConfigHash, h)
				_ = conn.CloseNow()
				return
			}
			d.hash.Store(m.ConfigHash)
			conn.PingNow()
			d.configs <- &received{msg: m, cfg: cfg}
		}
	}()
	t.Cleanup(d.close)
	return d, nil
}

func mustDialDP(t testing.TB, addr string, tlsOpts wire.TLSOptions, o dpOpts) *testDP {
	t.Helper()
	d, err := dialDP(t, addr, tlsOpts, o)
	if err != nil {
		t.Fatalf("DP dial: %v", err)
	}
	return d
}

func (d *testDP) close() {
	d.cancel()
	_ = d.conn.CloseNow()
	<-d.done
}

// next waits for the next configuration.
func (d *testDP) next(t testing.TB) *received {
	t.Helper()
	select {
	case r := <-d.configs:
		return r
	case <-d.done:
		t.Fatalf("DP connection ended before a config arrived: %v", d.err)
	case <-time.After(15 * time.Second):
		t.Fatalf("no config pushed within 15 s")
	}
	return nil
}

// waitHash reads configurations until one has the given hash, returning
// how many arrived.
func (d *testDP) waitHash(t testing.TB, hash string) (*received, int) {
	t.Helper()
	n := 0
	for {
		r := d.next(t)
		n++
		if r.msg.ConfigHash == hash {
			return r, n
		}
	}
}

// none reports no configuration queued right now.
func (d *testDP) none(t testing.TB) {
	t.Helper()
	select {
	case r := <-d.configs:
		t.Fatalf("unexpected config pushed: hash %s", r.msg.ConfigHash)
	default:
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// insert validates an Admin API entity like the Admin API does and stores
// it.
func insert(t testing.TB, st store.Store, coll string, in map[string]any) store.Row {
	t.Helper()
	row, verr := config.ValidateEntity(coll, in, config.Insert)
	if verr != nil {
		t.Fatalf("validate %s %v: %s", coll, in, verr.Message())
	}
	out, err := st.Insert(ctxT(t), coll, row)
	if err != nil {
		t.Fatalf("insert %s: %v", coll, err)
	}
	return out
}

func addService(t testing.TB, st store.Store, name string) store.Row {
	return insert(t, st, "services", map[string]any{"name": name, "host": name + ".example.internal", "port": 8080})
}

func addRoute(t testing.TB, st store.Store, svcID, name, path string) store.Row {
	return insert(t, st, "routes", map[string]any{
		"name": name, "paths": []any{path}, "service": map[string]any{"id": svcID},
	})
}

// expectedHash computes, independently of the push loop, the hash of what
// the store holds now.
func expectedHash(t testing.TB, st store.Store) string {
	t.Helper()
	snap, err := st.Export(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.FromEntities(snap.Collections)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := config.Hash(cfg.WithoutDisabled())
	return h
}

func serviceNames(c *config.Config) string {
	var n []string
	for _, s := range c.Services {
		if s.Name != nil {
			n = append(n, *s.Name)
		}
	}
	return strings.Join(n, ",")
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// faultyStore wraps a real store; Export can be made to fail or to block
// after reading (to hold an export "in flight").
type faultyStore struct {
	store.Store
	fail    atomic.Bool
	gate    atomic.Pointer[chan struct{}] // when set, Export blocks on it after reading
	entered chan struct{}                 // receives once per gated Export
	exports atomic.Int64
}

func newFaultyStore(inner store.Store) *faultyStore {
	return &faultyStore{Store: inner, entered: make(chan struct{}, 16)}
}

var errInjected = fmt.Errorf("injected failure: %w", store.ErrUnavailable)

func (f *faultyStore) Export(ctx context.Context) (*store.Snapshot, error) {
	return faulty(ctx, f, f.Store.Export)
}

func (f *faultyStore) ExportRaw(ctx context.Context) (*store.RawSnapshot, error) {
	return faulty(ctx, f, f.Store.ExportRaw)
}

// faulty runs one of the store's exports with f's faults.
func faulty[S any](ctx context.Context, f *faultyStore, export func(context.Context) (S, error)) (S, error) {
	f.exports.Add(1)
	var none S
	if f.fail.Load() {
		return none, errInjected
	}
	snap, err := export(ctx)
	if g := f.gate.Load(); g != nil {
		f.entered <- struct{}{}
		select {
		case <-*g:
		case <-ctx.Done():
			return none, ctx.Err()
		}
	}
	return snap, err
}

// ---- PKI certificates

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serial atomic.Int64

func newCA(t testing.TB, cn string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &testCA{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns PEM cert and key for a leaf: server (with IP SAN 127.0.0.1)
// or client.
func (ca *testCA) issue(t testing.TB, cn string, server bool) (certPEM, keyPEM string, notAfter time.Time) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	notAfter = time.Now().Add(12 * time.Hour).Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{cn}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})), notAfter
}
