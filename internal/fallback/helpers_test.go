package fallback

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
	"github.com/kongfb/kongfb/pkg/storage/storagetest"
)

// backend opens stores on one storage location: every call gives a new
// Store (a node's own client); calls with the same sub name share a
// bucket/directory and prefix, different sub names are separate locations.
type backend struct {
	name  string
	open  func(t *testing.T, sub string) storage.Store
	minio *storagetest.MinIO // nil for file://
}

// forEachBackend runs fn against file:// and a real MinIO server (skipped
// without $KONGFB_TEST_MINIO_BIN unless KONGFB_TEST_REQUIRE_SERVICES=1).
func forEachBackend(t *testing.T, fn func(t *testing.T, b backend)) {
	t.Run("file", func(t *testing.T) {
		fn(t, fileBackend(t.TempDir()))
	})
	t.Run("minio", func(t *testing.T) {
		m := storagetest.StartMinIO(t)
		fn(t, minioBackend(m, "fb-"+sanitize(t.Name())))
	})
}

func fileBackend(dir string) backend {
	return backend{name: "file", open: func(t *testing.T, sub string) storage.Store {
		t.Helper()
		s, err := storage.Open(context.Background(), "file://"+dir+"/"+sanitize(sub), storage.Options{CreateBucket: true})
		if err != nil {
			t.Fatalf("open file store: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}}
}

func minioBackend(m *storagetest.MinIO, prefix string) backend {
	return backend{name: "minio", minio: m, open: func(t *testing.T, sub string) storage.Store {
		t.Helper()
		return m.Open(t, prefix+"/"+sanitize(sub))
	}}
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	return string(bytes.ToLower(b))
}

// testLogger logs through t.Log until the test ends (goroutines may outlive
// it by a moment while they stop).
func testLogger(t *testing.T) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimSuffix(p, []byte("\n"))))
	}
	return len(p), nil
}

// genConfig builds a valid config whose content (and hash) depends on tag.
func genConfig(t testing.TB, tag string, services int) *config.Config {
	t.Helper()
	var b bytes.Buffer
	b.WriteString(`{"_format_version":"3.0","services":[`)
	for i := range services {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"svc-%s-%d","url":"http://up-%d.internal:8080/base","routes":[{"name":"r-%s-%d","paths":["/v1/s%d"]}]}`, tag, i, i, tag, i, i)
	}
	b.WriteString(`]}`)
	cfg, err := config.Parse(b.Bytes(), "gen-"+tag+".json")
	if err != nil {
		t.Fatalf("parse generated config: %v", err)
	}
	return cfg
}

func hashOfConfig(cfg *config.Config) string {
	h, _ := config.Hash(cfg)
	return h
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Test timings: short enough for fast tests, long enough that a loaded
// 2-core machine does not blow the margin.
//
// The TTL is the failover bound; the lease duration D the leader times is
// TTL − poll − TTL/20 = 400ms (in whole ms), so a leader may write for D −
// margin = 300ms after each renewal starts, with renewals every 100ms.
const (
	testTTL    = 527 * time.Millisecond
	testRenew  = 100 * time.Millisecond
	testPoll   = 100 * time.Millisecond
	testMargin = 100 * time.Millisecond
)

func testElectionOptions(store storage.Store, id string) ElectionOptions {
	return ElectionOptions{Store: store, NodeID: id, TTL: testTTL, RenewInterval: testRenew, PollInterval: testPoll, Margin: testMargin}
}

// eventLog collects ExportEvents from several exporters.
type eventLog struct {
	mu     sync.Mutex
	events []nodeEvent
}

type nodeEvent struct {
	node string
	at   time.Time
	ExportEvent
}

func (l *eventLog) hook(node string) func(ExportEvent) {
	return func(ev ExportEvent) {
		l.mu.Lock()
		l.events = append(l.events, nodeEvent{node: node, at: time.Now(), ExportEvent: ev})
		l.mu.Unlock()
	}
}

func (l *eventLog) list() []nodeEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// ok returns the successful exports, optionally of one node only.
func (l *eventLog) ok(node string) []nodeEvent {
	var out []nodeEvent
	for _, ev := range l.list() {
		if ev.Err == nil && (node == "" || ev.node == node) {
			out = append(out, ev)
		}
	}
	return out
}

// node is one exporter process: an election and an exporter on its own
// store client.
type node struct {
	id     string
	store  storage.Store
	el     *Election
	x      *Exporter
	cancel context.CancelFunc
	done   chan struct{}
}

func startNode(t *testing.T, store storage.Store, eo ElectionOptions, xo ExporterOptions, setup func(*Election)) *node {
	t.Helper()
	if eo.Logger == nil {
		eo.Logger = testLogger(t).With("test_node", eo.NodeID)
	}
	el, err := NewElection(eo)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(el)
	}
	xo.Store, xo.Election = store, el
	if xo.Logger == nil {
		xo.Logger = eo.Logger
	}
	x, err := NewExporter(xo)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{id: eo.NodeID, store: store, el: el, x: x, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); el.Run(ctx) }()
	go func() { defer wg.Done(); x.Run(ctx) }()
	go func() { wg.Wait(); close(n.done) }()
	t.Cleanup(n.kill)
	return n
}

// kill stops the node the way a crash does: no release.
func (n *node) kill() {
	n.cancel()
	<-n.done
}

// historyObject is one history snapshot as found in storage.
type historyObject struct {
	key      string
	manifest *snapshot.Manifest
}

// listHistory reads every history snapshot's verified header.
func listHistory(t *testing.T, s storage.Store, version string) []historyObject {
	t.Helper()
	ctx := context.Background()
	var out []historyObject
	for obj, err := range storage.ListAll(ctx, s, snapshot.HistoryPrefix("", version), storage.ListOptions{}) {
		if err != nil {
			t.Fatalf("list history: %v", err)
		}
		data, _, err := s.Get(ctx, obj.Key)
		if err != nil {
			t.Fatalf("get %s: %v", obj.Key, err)
		}
		h, err := snapshot.ReadHeader(obj.Key, data, snapshot.VerifyOptions{})
		if err != nil {
			t.Fatalf("history object %s: %v", obj.Key, err)
		}
		out = append(out, historyObject{key: obj.Key, manifest: h.Manifest})
	}
	return out
}

func hashes(objs []historyObject) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.manifest.ConfigHash)
	}
	return out
}

// forge builds a snapshot envelope around arbitrary content with a valid
// sha256 seal, bypassing Encode's validation, so tests can store objects a
// buggy or hostile writer could produce.
func forge(t *testing.T, content []byte, createdAt time.Time, version string) (string, []byte) {
	t.Helper()
	csum := sha256.Sum256(content)
	m := &snapshot.Manifest{
		Format: snapshot.FormatVersion, CreatedAt: createdAt.UTC().Truncate(time.Millisecond), NodeID: "forger",
		GatewayVersion: version, Term: 1, ConfigHash: "0123456789abcdef0123456789abcdef",
		Entities: map[string]int{}, ContentSHA256: hex.EncodeToString(csum[:]), ContentSize: int64(len(content)),
		Compression: snapshot.CompressionNone, Encryption: snapshot.Encryption{Scheme: snapshot.EncryptionNone},
		PayloadSHA256: hex.EncodeToString(csum[:]), PayloadSize: int64(len(content)),
	}
	mj, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	seal := sha256.Sum256(snapshot.SignedBytes(mj))
	var b bytes.Buffer
	b.Write(snapshot.SignedBytes(mj))
	b.WriteString("sha256 " + hex.EncodeToString(seal[:]) + "\n")
	b.Write(content)
	return m.HistoryKey(""), b.Bytes()
}

func snapshotOptions(term uint64) snapshot.Options { return snapshot.Options{Term: term} }

func put(t *testing.T, s storage.Store, key string, data []byte) {
	t.Helper()
	if _, err := s.Put(context.Background(), key, data, storage.PutOptions{}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// encodeAt encodes cfg captured at the given time and stores it.
func encodeAt(t *testing.T, s storage.Store, cfg *config.Config, at time.Time, o snapshot.Options) (string, *snapshot.Encoded) {
	t.Helper()
	o.CreatedAt = at
	if o.NodeID == "" {
		o.NodeID = "writer"
	}
	enc, err := snapshot.Encode(cfg, o)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	key := enc.Key("")
	put(t, s, key, enc.Data)
	return key, enc
}
