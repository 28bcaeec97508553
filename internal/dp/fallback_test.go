package dp

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kongfb/kongfb/internal/fallback"
	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
)

// scriptImporter hands out results in order; once they run out it blocks
// until its context ends, like WaitForConfig on a storage with nothing new.
type scriptImporter struct {
	mu      sync.Mutex
	results []*fallback.Result
	calls   int
	called  chan struct{} // signalled on every call
}

func newScript(rs ...*fallback.Result) *scriptImporter {
	return &scriptImporter{results: rs, called: make(chan struct{}, 100)}
}

func (s *scriptImporter) WaitForConfig(ctx context.Context) (*fallback.Result, error) {
	s.mu.Lock()
	s.calls++
	var r *fallback.Result
	if len(s.results) > 0 {
		r, s.results = s.results[0], s.results[1:]
	}
	s.mu.Unlock()
	s.called <- struct{}{}
	if r != nil {
		return r, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

func (s *scriptImporter) Status() fallback.ImporterStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fallback.ImporterStatus{Attempts: s.calls, LastError: "last attempt's error"}
}

func result(t *testing.T, cfg *config.Config, key string, created time.Time) *fallback.Result {
	t.Helper()
	h, _ := config.Hash(cfg)
	return &fallback.Result{Config: cfg, Hash: h, Key: key, Kind: snapshot.KindSnapshot,
		Manifest: &snapshot.Manifest{CreatedAt: created, ConfigHash: h}}
}

// settled is a first-attempt signal that has already fired with err.
func settled(err error) (<-chan struct{}, func() error) {
	ch := make(chan struct{})
	close(ch)
	return ch, func() error { return err }
}

var errCPDown = errors.New("connection refused")

func runImport(t *testing.T, n *Node, o FallbackImportOptions) *FallbackImport {
	t.Helper()
	if o.FirstAttempt == nil {
		o.FirstAttempt, o.FirstAttemptErr = settled(errCPDown)
	}
	o.Storage = "file:///fb"
	o.RetryMin, o.RetryMax = time.Millisecond, 5*time.Millisecond
	f, err := NewFallbackImport(n, o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { defer close(done); f.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func waitState(t *testing.T, f *FallbackImport, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for f.Status().State != want {
		if time.Now().After(deadline) {
			t.Fatalf("fallback state %q, want %q", f.Status().State, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFallbackImportServesSnapshot(t *testing.T) {
	n := NewNode(Options{Engine: &fakeEngine{}})
	cfg := sampleConfig("10.0.0.1")
	r := result(t, cfg, "3.9.1/snapshots/a.snap", time.Now())
	f := runImport(t, n, FallbackImportOptions{Importer: newScript(r)})
	waitState(t, f, FallbackImported)
	st := n.State()
	if st.Source != SourceFallback || st.Hash != r.Hash || st.Origin != "file:///fb 3.9.1/snapshots/a.snap" {
		t.Fatalf("state = %+v", st)
	}
	s := f.Status()
	if s.Snapshot != r.Key || s.ConfigHash != r.Hash || s.ImportedAt.IsZero() || s.Attempts != 1 || s.Storage != "file:///fb" {
		t.Errorf("status = %+v", s)
	}
	// /status carries the block.
	_, doc, _ := get(t, n.StatusHandler(), "GET", "/status", nil, "")
	fb := doc["kongfb"].(map[string]any)["fallback"].(map[string]any)
	if fb["state"] != FallbackImported || fb["snapshot"] != r.Key || fb["config_hash"] != r.Hash || fb["imported_at"] == nil {
		t.Errorf("/status kongfb.fallback = %v", fb)
	}
	if doc["kongfb"].(map[string]any)["exporter"] != nil {
		t.Errorf("exporter block without an exporter: %v", doc["kongfb"])
	}
}

func TestFallbackImportNotWhenCPReachable(t *testing.T) {
	n := NewNode(Options{Engine: &fakeEngine{}})
	imp := newScript(result(t, sampleConfig("10.0.0.1"), "k", time.Now()))
	first, firstErr := settled(nil)
	f := runImport(t, n, FallbackImportOptions{Importer: imp, FirstAttempt: first, FirstAttemptErr: firstErr})
	waitState(t, f, FallbackNotNeeded)
	// The storage may have been read meanwhile (see the next test); what
	// it held is not served.
	if n.State().Hash != "" {
		t.Errorf("imported although the CP answered: state %+v", n.State())
	}
}

func TestFallbackImportWaitsForFirstAttempt(t *testing.T) {
	n := NewNode(Options{Engine: &fakeEngine{}})
	first := make(chan struct{})
	var firstErr error
	imp := newScript(result(t, sampleConfig("10.0.0.1"), "k", time.Now()))
	f := runImport(t, n, FallbackImportOptions{Importer: imp, FirstAttempt: first, FirstAttemptErr: func() error { return firstErr }})
	// The storage is read while the first attempt is in progress, but
	// nothing is served before the attempt failed.
	<-imp.called
	if s := f.Status(); s.State != FallbackWaiting || n.State().Hash != "" {
		t.Fatalf("before the first attempt settled: status %+v, node %+v", s, n.State())
	}
	firstErr = errCPDown
	close(first)
	waitState(t, f, FallbackImported)
	if imp.Status().Attempts != 1 {
		t.Errorf("the prefetched result was not used: %d attempts", imp.Status().Attempts)
	}
}

func TestFallbackImportCacheFirst(t *testing.T) {
	cacheCfg := sampleConfig("10.0.0.1")
	written := time.Date(2025, 12, 8, 9, 0, 0, 0, time.UTC)
	serveCache := func() *Node {
		n := NewNode(Options{Engine: &fakeEngine{}})
		if _, err := n.Apply(&Snapshot{Config: cacheCfg, Source: SourceCache}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	t.Run("cache served, no prefer-newest", func(t *testing.T) {
		n := serveCache()
		imp := newScript(result(t, sampleConfig("10.0.0.2"), "k", written.Add(time.Hour)))
		f := runImport(t, n, FallbackImportOptions{Importer: imp, Cached: true, CacheWrittenAt: written})
		waitState(t, f, FallbackSkippedCache)
		if imp.Status().Attempts != 0 || n.State().Source != SourceCache {
			t.Errorf("the cache was replaced: calls %d, state %+v", imp.Status().Attempts, n.State())
		}
	})
	t.Run("prefer-newest, older snapshot", func(t *testing.T) {
		n := serveCache()
		imp := newScript(result(t, sampleConfig("10.0.0.2"), "k", written.Add(-time.Minute)))
		f := runImport(t, n, FallbackImportOptions{Importer: imp, Cached: true, CacheWrittenAt: written, PreferNewest: true})
		waitState(t, f, FallbackCacheNewer)
		if n.State().Source != SourceCache {
			t.Errorf("an older snapshot replaced the cache: %+v", n.State())
		}
	})
	t.Run("prefer-newest, snapshot without a capture time", func(t *testing.T) {
		n := serveCache()
		r := result(t, sampleConfig("10.0.0.2"), "3.9.1/config.json", time.Time{})
		f := runImport(t, n, FallbackImportOptions{Importer: newScript(r), Cached: true, CacheWrittenAt: written, PreferNewest: true})
		waitState(t, f, FallbackCacheNewer)
	})
	// Kong's config.json has no manifest time: its storage LastModified
	// decides, both ways.
	kongObject := func(lastModified time.Time) *fallback.Result {
		r := result(t, sampleConfig("10.0.0.3"), "3.9.1/config.json", time.Time{})
		r.Kind, r.LastModified = snapshot.KindKong, lastModified
		return r
	}
	t.Run("prefer-newest, Kong object written after the cache", func(t *testing.T) {
		n := serveCache()
		r := kongObject(written.Add(time.Minute))
		f := runImport(t, n, FallbackImportOptions{Importer: newScript(r), Cached: true, CacheWrittenAt: written, PreferNewest: true})
		waitState(t, f, FallbackImported)
		if st := n.State(); st.Source != SourceFallback || st.Hash != r.Hash {
			t.Errorf("state = %+v", st)
		}
	})
	t.Run("prefer-newest, Kong object written before the cache", func(t *testing.T) {
		n := serveCache()
		f := runImport(t, n, FallbackImportOptions{Importer: newScript(kongObject(written.Add(-time.Second))), Cached: true, CacheWrittenAt: written, PreferNewest: true})
		waitState(t, f, FallbackCacheNewer)
		if n.State().Source != SourceCache {
			t.Errorf("an older Kong object replaced the cache: %+v", n.State())
		}
	})
	t.Run("prefer-newest, manifest time wins over LastModified", func(t *testing.T) {
		// A history snapshot copied (or re-uploaded) after the cache was
		// written is still the config captured before it.
		n := serveCache()
		r := result(t, sampleConfig("10.0.0.2"), "k", written.Add(-time.Minute))
		r.LastModified = written.Add(time.Hour)
		f := runImport(t, n, FallbackImportOptions{Importer: newScript(r), Cached: true, CacheWrittenAt: written, PreferNewest: true})
		waitState(t, f, FallbackCacheNewer)
	})
	t.Run("prefer-newest, newer snapshot", func(t *testing.T) {
		n := serveCache()
		r := result(t, sampleConfig("10.0.0.2"), "k", written.Add(time.Minute))
		f := runImport(t, n, FallbackImportOptions{Importer: newScript(r), Cached: true, CacheWrittenAt: written, PreferNewest: true})
		waitState(t, f, FallbackImported)
		if st := n.State(); st.Source != SourceFallback || st.Hash != r.Hash {
			t.Errorf("state = %+v", st)
		}
	})
}

func TestFallbackImportStopsWhenCPDelivers(t *testing.T) {
	n := NewNode(Options{Engine: &fakeEngine{}})
	imp := newScript() // storage holds nothing that verifies: keeps trying
	f := runImport(t, n, FallbackImportOptions{Importer: imp})
	<-imp.called
	if _, err := n.Apply(&Snapshot{Config: sampleConfig("10.0.0.9"), Source: SourceCP}); err != nil {
		t.Fatal(err)
	}
	waitState(t, f, FallbackStopped)
	if n.State().Source != SourceCP {
		t.Errorf("state = %+v", n.State())
	}
}

// A snapshot that verifies after the CP delivered is never served.
func TestFallbackImportLosesToCP(t *testing.T) {
	n := NewNode(Options{Engine: &fakeEngine{}})
	cpCfg := sampleConfig("10.0.0.9")
	if _, err := n.Apply(&Snapshot{Config: cpCfg, Source: SourceCP}); err != nil {
		t.Fatal(err)
	}
	// The race: the check before the import saw no CP config, the apply
	// comes after it. ApplyIf is what protects the CP's config.
	r := result(t, sampleConfig("10.0.0.1"), "k", time.Now())
	_, err := n.ApplyIf(&Snapshot{Config: r.Config, Hash: r.Hash, Source: SourceFallback}, func(cur State) bool { return cur.Source != SourceCP })
	if !errors.Is(err, ErrSuperseded) {
		t.Fatalf("ApplyIf = %v, want ErrSuperseded", err)
	}
	if st := n.State(); st.Source != SourceCP {
		t.Fatalf("fallback replaced the CP's config: %+v", st)
	}
	f := runImport(t, n, FallbackImportOptions{Importer: newScript(r)})
	waitState(t, f, FallbackStopped)
}

// A snapshot that verifies but that the proxy refuses is reported; the node
// waits for another object and serves that one.
func TestFallbackImportApplyFailure(t *testing.T) {
	eng := &fakeEngine{applyErr: errors.New("plugin rate-limiting is not supported")}
	n := NewNode(Options{Engine: eng})
	bad := result(t, sampleConfig("10.0.0.1"), "3.9.1/snapshots/bad.snap", time.Now())
	good := result(t, sampleConfig("10.0.0.2"), "3.9.1/snapshots/good.snap", time.Now())
	imp := newScript(bad, bad)
	f := runImport(t, n, FallbackImportOptions{Importer: imp})
	waitState(t, f, FallbackApplyFailed)
	if msg, _ := n.LastError(); msg == "" || n.State().Hash != "" {
		t.Fatalf("last error %q, state %+v", msg, n.State())
	}
	<-imp.called
	<-imp.called // the same object again: not re-applied
	eng.mu.Lock()
	eng.applyErr = nil
	eng.mu.Unlock()
	imp.mu.Lock()
	imp.results = append(imp.results, good)
	imp.mu.Unlock()
	waitState(t, f, FallbackImported)
	if st := n.State(); st.Hash != good.Hash || f.Status().Snapshot != good.Key {
		t.Errorf("state %+v, status %+v", st, f.Status())
	}
}

func TestNodeOnServe(t *testing.T) {
	var mu sync.Mutex
	var evs []ServeEvent
	n := NewNode(Options{Engine: &fakeEngine{}, OnServe: func(ev ServeEvent) {
		mu.Lock()
		evs = append(evs, ev)
		mu.Unlock()
	}})
	cfg := sampleConfig("10.0.0.1")
	if _, err := n.Apply(&Snapshot{Config: cfg, Source: SourceCache, Origin: "c"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.CPServed():
		t.Fatal("CPServed closed by a cache config")
	default:
	}
	h := n.State().Hash
	if !n.ConfirmSource(h, SourceCP, "cp:8005") {
		t.Fatal("ConfirmSource")
	}
	select {
	case <-n.CPServed():
	default:
		t.Fatal("CPServed not closed after the CP confirmed the config")
	}
	if _, err := n.Apply(&Snapshot{Config: cfg, Source: SourceCP, Origin: "cp:8005"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(evs) != 3 || !evs[0].Changed || evs[0].Source != SourceCache || evs[1].Changed || evs[1].Source != SourceCP ||
		evs[1].Config != cfg || evs[2].Changed || evs[2].Hash != h {
		t.Errorf("events = %+v", evs)
	}
}

func TestExporterStatusBlock(t *testing.T) {
	at := time.Date(2025, 12, 8, 9, 30, 0, 0, time.UTC)
	n := NewNode(Options{Engine: &fakeEngine{}, ExporterStatus: func() ExporterStatus {
		return ExporterStatusFrom("s3://b/kong", fallback.ExporterStatus{Role: "leader", Term: 3, Holder: "n1",
			LastExportAt: at, LastResult: "ok", LastSnapshot: "3.9.1/snapshots/x.snap", LastHash: "abc", Exports: 2})
	}})
	_, doc, _ := get(t, n.StatusHandler(), "GET", "/status", nil, "")
	ex := doc["kongfb"].(map[string]any)["exporter"].(map[string]any)
	if ex["role"] != "leader" || ex["term"] != float64(3) || ex["last_export_at"] != "2025-12-08T09:30:00Z" ||
		ex["last_result"] != "ok" || ex["last_snapshot"] != "3.9.1/snapshots/x.snap" || ex["last_error"] != nil ||
		ex["storage"] != "s3://b/kong" || ex["exports"] != float64(2) {
		t.Errorf("/status kongfb.exporter = %v", ex)
	}
	if doc["kongfb"].(map[string]any)["fallback"] != nil {
		t.Error("fallback block without an importer")
	}
}
