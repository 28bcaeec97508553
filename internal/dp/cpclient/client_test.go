package cpclient

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kongfb/kongfb/internal/dp"
	"github.com/kongfb/kongfb/internal/dp/cache"
	"github.com/kongfb/kongfb/internal/dp/cpclient/cptest"
	"github.com/kongfb/kongfb/internal/testutil"
	"github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
)

const nodeID = "6f1d1a7e-3b9c-4d7a-9f7e-2b1c0d9e8a01"

// logBuf collects log lines for assertions.
type logBuf = testutil.SyncBuffer

func newLogger(b *logBuf) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// engine is a dp.Engine that records applies and can be made to block in
// Apply, to hold the applier while frames arrive.
type engine struct {
	mu      sync.Mutex
	applied []string
	gate    chan struct{} // when non-nil, Apply waits for a value
	entered chan string   // when non-nil, Apply reports the hash it starts
}

func (e *engine) Apply(_ *config.Config, hash string) error {
	e.mu.Lock()
	gate, entered := e.gate, e.entered
	e.mu.Unlock()
	if entered != nil {
		entered <- hash
	}
	if gate != nil {
		<-gate
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.applied = append(e.applied, hash)
	return nil
}
func (e *engine) Serve(ln net.Listener) error    { return errors.New("not used") }
func (e *engine) Shutdown(context.Context) error { return nil }
func (e *engine) hashes() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.applied...)
}

func configFor(t *testing.T, routePath string) (*config.Config, []byte, string) {
	t.Helper()
	cfg, err := config.Parse([]byte(fmt.Sprintf(`_format_version: "3.0"
services:
  - name: svc
    url: http://127.0.0.1:9/
    routes:
      - name: r
        paths: [%q]
`, routePath)), "kong.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := cfg.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	h, _ := config.Hash(cfg)
	return cfg, doc, h
}

// invalidDoc is an export document with two independent errors.
const invalidDoc = `{"_format_version":"3.0","_transform":false,"services":[
 {"id":"0c5b8a2e-1c0a-4e6a-9a55-6ad1b4c7b2a1","name":"bad-port","protocol":"http","host":"h","port":99999},
 {"id":"1c5b8a2e-1c0a-4e6a-9a55-6ad1b4c7b2a1","name":"bad-protocol","protocol":"gopher","host":"h","port":80}]}`

type rig struct {
	cp       *cptest.Server
	node     *dp.Node
	eng      *engine
	client   *Client
	cache    *cache.Cache
	logs     *logBuf
	cpLogs   *logBuf
	cert     string
	key      string
	cancel   context.CancelFunc
	done     chan error
	cacheDir string
}

type rigOpts struct {
	noCP   bool
	mutate func(*Options)
}

func newRig(t *testing.T, ro rigOpts) *rig {
	t.Helper()
	cert, key, err := cptest.SharedCert()
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{eng: &engine{}, logs: &logBuf{}, cpLogs: &logBuf{}, cert: cert, key: key, cacheDir: t.TempDir()}
	addr := "127.0.0.1:1" // nothing listens there
	if !ro.noCP {
		r.cp, err = cptest.Start(cptest.Options{
			TLS:    cluster.TLSOptions{Mode: cluster.TLSModeShared, Cert: cert, Key: key},
			Logger: newLogger(r.cpLogs),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.cp.Kill)
		addr = r.cp.Addr()
	}
	r.node = dp.NewNode(dp.Options{Engine: r.eng, Logger: newLogger(r.logs), ControlPlane: addr})
	r.cache, err = cache.Open(r.cacheDir, cache.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.cache.Close() })
	tconf, err := cluster.ClientTLSConfig(cluster.TLSOptions{Mode: cluster.TLSModeShared, Cert: cert, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	o := Options{
		Address: addr, TLS: tconf, Node: r.node, Cache: r.cache,
		NodeID: nodeID, Hostname: "dp-test",
		PingInterval: 50 * time.Millisecond, PingWait: 2 * time.Second,
		ConnectTimeout: 2 * time.Second, ReconnectMin: 5 * time.Millisecond, ReconnectMax: 20 * time.Millisecond,
		Logger: newLogger(r.logs),
	}
	if ro.mutate != nil {
		ro.mutate(&o)
	}
	r.client, err = New(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.done = make(chan error, 1)
	go func() { r.done <- r.client.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
}

func (r *rig) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Run returned %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
	r.cancel = nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func awaitCP(t *testing.T, cp *cptest.Server, what string, cond func(*cptest.Server) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cp.Await(ctx, cond); err != nil {
		t.Fatalf("timed out waiting for the CP to see %s", what)
	}
}

func TestAppliesPushedConfigAndReportsHash(t *testing.T) {
	r := newRig(t, rigOpts{})
	_, doc, hash := configFor(t, "/a")
	if err := r.cp.SetConfig(doc, hash); err != nil {
		t.Fatal(err)
	}
	r.start(t)
	<-r.client.FirstAttempt()
	if err := r.client.FirstAttemptErr(); err != nil {
		t.Fatalf("first attempt: %v", err)
	}
	waitFor(t, "the pushed config to apply", func() bool { return r.node.State().Hash == hash })
	st := r.node.State()
	if st.Source != dp.SourceCP || st.Origin != r.cp.Addr() || st.Routes != 1 {
		t.Errorf("state = %+v", st)
	}
	// The DP reports the new hash right after the apply.
	awaitCP(t, r.cp, "the new hash", func(s *cptest.Server) bool { return s.Hash(nodeID) == hash })
	nodes := r.cp.Nodes()
	if len(nodes) != 1 || nodes[0].Hostname != "dp-test" || nodes[0].Version != config.KongVersion ||
		!nodes[0].HasCert || nodes[0].BasicInfo.Plugins == nil {
		t.Errorf("the CP sees %+v", nodes)
	}
	si := r.node.Sync()
	if !si.Connected || si.LastSyncAt.IsZero() {
		t.Errorf("sync info = %+v", si)
	}
	// Applied configurations are cached.
	waitFor(t, "the cache to be written", func() bool {
		e, err := r.cache.Load()
		return err == nil && e.Header.ConfigHash == hash && e.Header.Source == "cp"
	})

	// Keepalive pings keep coming at the configured interval.
	n := r.cp.Pings()
	awaitCP(t, r.cp, "more pings", func(s *cptest.Server) bool { return s.Pings() >= n+3 })

	// The same config again is not reloaded.
	if err := r.cp.SetConfig(doc, hash); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the duplicate to be noticed", func() bool {
		return strings.Contains(r.logs.String(), "same config received from control plane, no need to reload")
	})
	if got := r.eng.hashes(); len(got) != 1 {
		t.Errorf("engine applies = %v, want one", got)
	}

	// A new config replaces it.
	_, doc2, hash2 := configFor(t, "/b")
	if err := r.cp.SetConfig(doc2, hash2); err != nil {
		t.Fatal(err)
	}
	awaitCP(t, r.cp, "the second hash", func(s *cptest.Server) bool { return s.Hash(nodeID) == hash2 })
	if r.node.State().Hash != hash2 {
		t.Errorf("node hash = %s", r.node.State().Hash)
	}

	// A config without config_hash gets the locally computed one.
	_, doc3, hash3 := configFor(t, "/c")
	if err := r.cp.SetConfig(doc3, ""); err != nil {
		t.Fatal(err)
	}
	awaitCP(t, r.cp, "the computed hash", func(s *cptest.Server) bool { return s.Hash(nodeID) == hash3 })

	// Graceful stop: the DP leaves, the CP sees it go.
	r.stop(t)
	awaitCP(t, r.cp, "the DP leave", func(s *cptest.Server) bool { return s.Connected() == 0 })
	if r.node.Sync().Connected {
		t.Error("cp_connected still true after stop")
	}
}

func TestBadConfigIsRejectedAndOldOneKept(t *testing.T) {
	r := newRig(t, rigOpts{})
	_, doc, hash := configFor(t, "/a")
	if err := r.cp.SetConfig(doc, hash); err != nil {
		t.Fatal(err)
	}
	r.start(t)
	awaitCP(t, r.cp, "the first hash", func(s *cptest.Server) bool { return s.Hash(nodeID) == hash })
	// The cache is written after the apply, off the apply path.
	waitFor(t, "the good config to be cached", func() bool {
		e, err := r.cache.Load()
		return err == nil && e.Header.ConfigHash == hash
	})

	badHash := strings.Repeat("b", 32)
	if err := r.cp.SetConfig([]byte(invalidDoc), badHash); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rejection", func() bool { msg, _ := r.node.LastError(); return msg != "" })
	msg, at := r.node.LastError()
	for _, want := range []string{"bad config received from control plane", badHash, "bad-port", "bad-protocol", "control plane " + r.cp.Addr()} {
		if !strings.Contains(msg, want) {
			t.Errorf("last error lacks %q: %s", want, msg)
		}
	}
	if at.IsZero() {
		t.Error("last error has no time")
	}
	logs := r.logs.String()
	for _, want := range []string{"level=ERROR", "unable to update running config: bad config received from control plane", "entity_name=bad-port", "entity_name=bad-protocol", "field=port", "field=protocol"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if h := r.node.State().Hash; h != hash {
		t.Errorf("running hash = %s, want the old %s", h, hash)
	}
	// The cache still holds the good config.
	if e, err := r.cache.Load(); err != nil || e.Header.ConfigHash != hash {
		t.Errorf("cache after a rejection: %v %v", e, err)
	}

	// A frame that is not even gzip is rejected too; the link stays up.
	if err := r.cp.SetPayload([]byte("garbage")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the garbage frame's rejection", func() bool {
		msg, _ := r.node.LastError()
		return strings.Contains(msg, "not gzip-compressed")
	})
	// A config_table that is not JSON (here YAML flow syntax, inside a
	// well-formed envelope) is refused by the parser, never read as YAML.
	var zbuf bytes.Buffer
	zw := gzip.NewWriter(&zbuf)
	_, _ = zw.Write([]byte(`{"type":"reconfigure","config_table":{"_format_version": "3.0", services: []},"config_hash":"` + strings.Repeat("c", 32) + `"}`))
	_ = zw.Close()
	if err := r.cp.SetPayload(zbuf.Bytes()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the non-JSON config_table's rejection", func() bool {
		msg, _ := r.node.LastError()
		return strings.Contains(msg, strings.Repeat("c", 32)) && strings.Contains(msg, "invalid character")
	})
	if h := r.node.State().Hash; h != hash {
		t.Errorf("running hash after a non-JSON config_table = %s, want the old %s", h, hash)
	}

	// Still connected and still reporting the old hash.
	n := r.cp.Pings()
	awaitCP(t, r.cp, "pings with the old hash", func(s *cptest.Server) bool { return s.Pings() > n+1 && s.Hash(nodeID) == hash })
	if r.cp.Accepted() != 1 {
		t.Errorf("the DP reconnected (%d accepts); a bad frame must not drop the link", r.cp.Accepted())
	}
	// And a good config afterwards is applied.
	_, doc2, hash2 := configFor(t, "/b")
	if err := r.cp.SetConfig(doc2, hash2); err != nil {
		t.Fatal(err)
	}
	awaitCP(t, r.cp, "the good hash", func(s *cptest.Server) bool { return s.Hash(nodeID) == hash2 })
}

// Frames that arrive while an apply runs are dropped except the newest, as
// Kong's DP does.
func TestIntermediateFramesAreDropped(t *testing.T) {
	var frames atomic.Int64
	r := newRig(t, rigOpts{})
	r.client.onFrame = func(n int) { frames.Store(int64(n)) }
	gate := make(chan struct{})
	entered := make(chan string, 10)
	r.eng.mu.Lock()
	r.eng.gate, r.eng.entered = gate, entered
	r.eng.mu.Unlock()

	var hashes []string
	var docs [][]byte
	for i := 0; i < 4; i++ {
		_, doc, h := configFor(t, fmt.Sprintf("/p%d", i))
		docs, hashes = append(docs, doc), append(hashes, h)
	}
	if err := r.cp.SetConfig(docs[0], hashes[0]); err != nil {
		t.Fatal(err)
	}
	r.start(t)
	if got := <-entered; got != hashes[0] {
		t.Fatalf("first apply = %s", got)
	}
	// The applier is blocked in the first apply; three more arrive.
	for i := 1; i < 4; i++ {
		if err := r.cp.SetConfig(docs[i], hashes[i]); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "all four frames to be read", func() bool { return frames.Load() == 4 })
	gate <- struct{}{}
	if got := <-entered; got != hashes[3] {
		t.Fatalf("second apply = %s, want the newest %s", got, hashes[3])
	}
	gate <- struct{}{}
	awaitCP(t, r.cp, "the newest hash", func(s *cptest.Server) bool { return s.Hash(nodeID) == hashes[3] })
	if got := r.eng.hashes(); len(got) != 2 || got[0] != hashes[0] || got[1] != hashes[3] {
		t.Errorf("applied %v, want first and newest only", got)
	}
}

// A CP that dies leaves the DP serving; a CP that comes back on the same
// address is rejoined and its new config applied.
func TestReconnectsAfterCPLoss(t *testing.T) {
	r := newRig(t, rigOpts{})
	_, doc, hash := configFor(t, "/a")
	if err := r.cp.SetConfig(doc, hash); err != nil {
		t.Fatal(err)
	}
	r.start(t)
	awaitCP(t, r.cp, "the first hash", func(s *cptest.Server) bool { return s.Hash(nodeID) == hash })
	addr := r.cp.Addr()
	r.cp.Kill()
	waitFor(t, "cp_connected to drop", func() bool { return !r.node.Sync().Connected })
	if r.node.State().Hash != hash {
		t.Error("the DP lost its config with the CP")
	}
	waitFor(t, "a logged reconnect failure", func() bool {
		return strings.Contains(r.logs.String(), "connection to control plane") && strings.Contains(r.logs.String(), "retrying after")
	})

	cp2, err := cptest.Start(cptest.Options{Addr: addr,
		TLS: cluster.TLSOptions{Mode: cluster.TLSModeShared, Cert: r.cert, Key: r.key}})
	if err != nil {
		t.Fatal(err)
	}
	defer cp2.Kill()
	_, doc2, hash2 := configFor(t, "/b")
	if err := cp2.SetConfig(doc2, hash2); err != nil {
		t.Fatal(err)
	}
	awaitCP(t, cp2, "the new hash", func(s *cptest.Server) bool { return s.Hash(nodeID) == hash2 })
	waitFor(t, "cp_connected", func() bool { return r.node.Sync().Connected })
	if le := r.node.Sync().LinkError; le != "" {
		t.Errorf("link error still set after reconnecting: %s", le)
	}
	if st := r.node.State(); st.Hash != hash2 || st.Source != dp.SourceCP {
		t.Errorf("state = %+v", st)
	}
}

// The CP re-sending the configuration the node serves from its cache is
// not reloaded but makes "cp" the source.
func TestCachedConfigConfirmedByCP(t *testing.T) {
	r := newRig(t, rigOpts{})
	cfg, doc, hash := configFor(t, "/a")
	if err := r.cache.Write(doc, cache.Meta{ConfigHash: hash, Source: dp.SourceCP}); err != nil {
		t.Fatal(err)
	}
	if !cache.Restore(r.node, r.cache, newLogger(r.logs)) {
		t.Fatalf("Restore failed:\n%s", r.logs)
	}
	if st := r.node.State(); st.Source != dp.SourceCache || st.Hash != hash {
		t.Fatalf("state after Restore = %+v", st)
	}
	r.client.SetCachedHash(hash)
	if _, err := r.cp.SetConfigFrom(cfg); err != nil {
		t.Fatal(err)
	}
	r.start(t)
	waitFor(t, "the CP to confirm", func() bool { return r.node.State().Source == dp.SourceCP })
	if got := r.eng.hashes(); len(got) != 1 {
		t.Errorf("engine applies = %v, want only the cache's", got)
	}
	if r.node.Sync().LastSyncAt.IsZero() {
		t.Error("last_sync_at not set by a confirming push")
	}
}

func TestFirstAttemptUnreachable(t *testing.T) {
	r := newRig(t, rigOpts{noCP: true})
	r.start(t)
	select {
	case <-r.client.FirstAttempt():
	case <-time.After(10 * time.Second):
		t.Fatal("first attempt never settled")
	}
	if err := r.client.FirstAttemptErr(); err == nil || !strings.Contains(err.Error(), "connection to control plane") {
		t.Errorf("first attempt error = %v", err)
	}
	waitFor(t, "the link error", func() bool { return strings.Contains(r.node.Sync().LinkError, "127.0.0.1:1") })
	if msg, _ := r.node.LastError(); msg != "" {
		t.Errorf("a link failure is reported as a configuration error: %s", msg)
	}
}

// A CP that accepts TCP but never answers counts as unreachable after
// ConnectTimeout.
func TestFirstAttemptTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold the connection open, say nothing
		}
	}()
	r := newRig(t, rigOpts{noCP: true, mutate: func(o *Options) {
		o.Address = ln.Addr().String()
		o.ConnectTimeout = 100 * time.Millisecond
	}})
	start := time.Now()
	r.start(t)
	<-r.client.FirstAttempt()
	err = r.client.FirstAttemptErr()
	if err == nil || !strings.Contains(err.Error(), "first-connect timeout of 100ms") {
		t.Errorf("first attempt = %v", err)
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Errorf("first attempt took %v, far beyond the 100ms timeout", el)
	}
}

// Shared mode with another certificate: the DP refuses the CP's certificate
// (it trusts its own cluster certificate only).
func TestWrongSharedCert(t *testing.T) {
	otherCert, otherKey, err := cptest.SharedCert()
	if err != nil {
		t.Fatal(err)
	}
	r := newRig(t, rigOpts{mutate: func(o *Options) {
		tc, err := cluster.ClientTLSConfig(cluster.TLSOptions{Mode: cluster.TLSModeShared, Cert: otherCert, Key: otherKey})
		if err != nil {
			t.Fatal(err)
		}
		o.TLS = tc
	}})
	r.start(t)
	if err := r.client.FirstAttemptErr(); err == nil || !strings.Contains(err.Error(), "not the cluster certificate") {
		t.Fatalf("first attempt = %v", err)
	}
	if r.cp.Accepted() != 0 {
		t.Error("the CP accepted a DP with another certificate")
	}
}

// PKI mode with a DP certificate from another CA: the CP refuses it during
// the handshake and the DP logs the refusal.
func TestCPRefusesUntrustedDPCert(t *testing.T) {
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
	cpLogs := &logBuf{}
	cp, err := cptest.Start(cptest.Options{Logger: newLogger(cpLogs),
		TLS: cluster.TLSOptions{Mode: cluster.TLSModePKI, Cert: cpCert, Key: cpKey, CA: ca.PEM}})
	if err != nil {
		t.Fatal(err)
	}
	defer cp.Kill()
	r := newRig(t, rigOpts{noCP: true, mutate: func(o *Options) {
		o.Address = cp.Addr()
		tc, err := cluster.ClientTLSConfig(cluster.TLSOptions{Mode: cluster.TLSModePKI, Cert: dpCert, Key: dpKey, CA: ca.PEM, ServerName: "cp.test"})
		if err != nil {
			t.Fatal(err)
		}
		o.TLS = tc
	}})
	r.start(t)
	err = r.client.FirstAttemptErr()
	if err == nil || !strings.Contains(err.Error(), "remote error: tls") {
		t.Fatalf("first attempt = %v, want the CP's TLS refusal", err)
	}
	waitFor(t, "the refusal in the DP's log", func() bool {
		return strings.Contains(r.logs.String(), "level=ERROR") && strings.Contains(r.logs.String(), "remote error: tls")
	})
	waitFor(t, "the refusal in the CP's log", func() bool {
		return strings.Contains(cpLogs.String(), "failed verification")
	})
	if cp.Accepted() != 0 {
		t.Error("the CP accepted the rogue DP")
	}

	// The same DP with a certificate from the cluster CA gets in.
	goodCert, goodKey, err := ca.Issue("dp.test", x509.ExtKeyUsageClientAuth, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := cluster.ClientTLSConfig(cluster.TLSOptions{Mode: cluster.TLSModePKI, Cert: goodCert, Key: goodKey, CA: ca.PEM, ServerName: "cp.test"})
	if err != nil {
		t.Fatal(err)
	}
	good, err := New(Options{Address: cp.Addr(), TLS: tc, Node: dp.NewNode(dp.Options{Engine: &engine{}}), NodeID: nodeID})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- good.Run(ctx) }()
	if err := good.FirstAttemptErr(); err != nil {
		t.Errorf("DP with a cluster-CA certificate: %v", err)
	}
	cancel()
	<-done
}

func TestNewValidatesOptions(t *testing.T) {
	node := dp.NewNode(dp.Options{Engine: &engine{}})
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Address: "cp:8005"}, "Node is nil"},
		{Options{Node: node}, "cluster_control_plane is empty"},
		{Options{Node: node, Address: "ftp://cp:8005"}, "scheme"},
		{Options{Node: node, Address: "cp:8005", MaxPayload: 1024}, "cluster_max_payload must be 4194304 (4MB) or greater"},
		{Options{Node: node, Address: "cp:8005", ReconnectMin: time.Second, ReconnectMax: time.Millisecond}, "below minimum"},
	} {
		if _, err := New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestReconnectDelayRange(t *testing.T) {
	c, err := New(Options{Node: dp.NewNode(dp.Options{Engine: &engine{}}), Address: "cp:8005"})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[time.Duration]bool{}
	for i := 0; i < 200; i++ {
		d := c.reconnectDelay()
		if d < 5*time.Second || d > 10*time.Second {
			t.Fatalf("delay %v outside Kong's 5-10 s", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("delays are not spread: %d distinct values in 200", len(seen))
	}
}

// The DP reports a new hash right after applying it, not at the next ping
// interval.
func TestPingsRightAfterApply(t *testing.T) {
	r := newRig(t, rigOpts{mutate: func(o *Options) {
		o.PingInterval, o.PingWait = time.Hour, 2*time.Hour
	}})
	r.start(t)
	// The first ping goes out at connect, with the empty hash.
	awaitCP(t, r.cp, "the connect-time ping", func(s *cptest.Server) bool { return s.Hash(nodeID) == cluster.EmptyHash })
	_, doc, hash := configFor(t, "/a")
	if err := r.cp.SetConfig(doc, hash); err != nil {
		t.Fatal(err)
	}
	awaitCP(t, r.cp, "the hash right after the apply", func(s *cptest.Server) bool { return s.Hash(nodeID) == hash })
}

// freezer is a TCP relay that can stop forwarding without closing anything:
// a CP that hangs (or a network that drops packets) rather than one that
// refuses.
type freezer struct {
	ln     net.Listener
	target string
	frozen atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
}

func newFreezer(t *testing.T, target string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{ln: ln, target: target}
	t.Cleanup(func() {
		_ = ln.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				_ = c.Close()
				continue
			}
			f.mu.Lock()
			f.conns = append(f.conns, c, u)
			f.mu.Unlock()
			go f.pipe(c, u)
			go f.pipe(u, c)
		}
	}()
	return f
}

func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			_ = dst.Close()
			return
		}
		if f.frozen.Load() {
			continue // swallow: nothing gets through, nothing is closed
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			_ = src.Close()
			return
		}
	}
}

// A CP that goes silent is declared dead after PingWait and the DP
// reconnects.
func TestDeadLinkDetected(t *testing.T) {
	var f *freezer
	r := newRig(t, rigOpts{mutate: func(o *Options) {
		f = newFreezer(t, o.Address)
		o.Address = f.ln.Addr().String()
		o.PingInterval, o.PingWait = 20*time.Millisecond, 200*time.Millisecond
	}})
	_, doc, hash := configFor(t, "/a")
	if err := r.cp.SetConfig(doc, hash); err != nil {
		t.Fatal(err)
	}
	r.start(t)
	waitFor(t, "the config", func() bool { return r.node.State().Hash == hash })
	f.frozen.Store(true)
	waitFor(t, "the dead link to be noticed", func() bool {
		return strings.Contains(r.node.Sync().LinkError, "did not receive pong frame from control plane within 0.2 seconds")
	})
	if r.node.State().Hash != hash {
		t.Error("the config was lost with the link")
	}
	f.frozen.Store(false)
	waitFor(t, "the reconnection", func() bool { return r.node.Sync().Connected && r.node.Sync().LinkError == "" })
	awaitCP(t, r.cp, "a second connection", func(s *cptest.Server) bool { return s.Accepted() >= 2 })
}

// TestCacheWriteOffApplyPath: a slow disk does not hold up applies. While
// the cache write of one configuration blocks, the next ones are applied;
// only the newest of them is written after it (the cache holds the last
// good configuration, not a history); and a stopped client returns only
// after the cache holds the last configuration it applied.
func TestCacheWriteOffApplyPath(t *testing.T) {
	r := newRig(t, rigOpts{})
	var (
		mu      sync.Mutex
		written []string
	)
	gate := make(chan struct{})
	entered := make(chan string, 16)
	write := r.client.cacheWrite
	r.client.cacheWrite = func(doc []byte, m cache.Meta) error {
		entered <- m.ConfigHash
		<-gate
		mu.Lock()
		written = append(written, m.ConfigHash)
		mu.Unlock()
		return write(doc, m)
	}
	push := func(path string) string {
		t.Helper()
		_, doc, hash := configFor(t, path)
		if err := r.cp.SetConfig(doc, hash); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the apply of "+path, func() bool { return r.node.State().Hash == hash })
		return hash
	}
	r.start(t)
	a := push("/a")
	if got := <-entered; got != a {
		t.Fatalf("first cache write is %s, want %s", got, a)
	}
	// The write of /a is blocked: /b and /c are applied all the same.
	push("/b")
	c := push("/c")
	gate <- struct{}{} // /a's write completes
	if got := <-entered; got != c {
		t.Fatalf("second cache write is %s, want the newest (%s); /b was superseded", got, c)
	}
	gate <- struct{}{}
	waitFor(t, "the write of /c", func() bool { mu.Lock(); defer mu.Unlock(); return len(written) == 2 })

	// Stopping while a write is pending: Run returns after it.
	d := push("/d")
	if got := <-entered; got != d {
		t.Fatalf("third cache write is %s, want %s", got, d)
	}
	stopped := make(chan struct{})
	go func() { r.stop(t); close(stopped) }()
	close(gate)
	<-stopped
	if e, err := r.cache.Load(); err != nil || e.Header.ConfigHash != d {
		t.Fatalf("cache after stop: %v %v, want %s", e, err, d)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{a, c, d}; !slices.Equal(written, want) {
		t.Errorf("cache writes %v, want %v", written, want)
	}
}
