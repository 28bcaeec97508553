package dp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kongfb/kongfb/internal/fallback"
)

// Fallback import states, as reported in /status kongfb.fallback.state.
const (
	// FallbackWaiting: the first connection attempt to the CP has not
	// settled yet (it succeeds, fails, or runs past --cp-connect-timeout).
	FallbackWaiting = "waiting_for_cp"
	// FallbackNotNeeded: the CP answered the first attempt.
	FallbackNotNeeded = "not_needed"
	// FallbackSkippedCache: the CP was unreachable but the node serves its
	// own cache (and does not prefer a newer snapshot).
	FallbackSkippedCache = "skipped_cache"
	// FallbackImporting: the importer is looking for an object that
	// verifies, retrying while storage is down or holds none.
	FallbackImporting = "importing"
	// FallbackImported: a verified snapshot is (or was) served.
	FallbackImported = "imported"
	// FallbackCacheNewer: --prefer-newest found no snapshot newer than the
	// cache being served.
	FallbackCacheNewer = "cache_newer"
	// FallbackStopped: the CP delivered its configuration before the import
	// finished; the importer stopped.
	FallbackStopped = "stopped_cp_connected"
	// FallbackApplyFailed: a snapshot verified but the proxy refused it
	// (e.g. it uses plugins); the importer waits for another object.
	FallbackApplyFailed = "apply_failed"
)

// FallbackStatus is /status kongfb.fallback on a node with --import.
type FallbackStatus struct {
	State   string
	Storage string
	// Snapshot is the object served (its key under the storage prefix),
	// ConfigHash its hash and ImportedAt when it was applied.
	Snapshot   string
	ConfigHash string
	ImportedAt time.Time
	// Attempts counts the importer's attempts (listing + verification);
	// LastError is the last attempt's failure, naming each object refused
	// and why.
	Attempts  int
	LastError string
}

// ExporterStatus is /status kongfb.exporter on a node with --export.
type ExporterStatus struct {
	Storage      string
	Role         string // leader, lapsed or follower
	Term         uint64
	Holder       string
	LastExportAt time.Time
	LastResult   string // ok, error or "" (nothing attempted yet)
	LastSnapshot string
	LastHash     string
	LastError    string
	PendingHash  string
	Exports      uint64
}

// ExporterStatusFrom converts the fallback exporter's status.
func ExporterStatusFrom(storage string, s fallback.ExporterStatus) ExporterStatus {
	return ExporterStatus{
		Storage: storage, Role: s.Role, Term: s.Term, Holder: s.Holder,
		LastExportAt: s.LastExportAt, LastResult: s.LastResult, LastSnapshot: s.LastSnapshot,
		LastHash: s.LastHash, LastError: s.LastError, PendingHash: s.PendingHash, Exports: s.Exports,
	}
}

// FallbackImporter is what a node needs of *fallback.Importer.
type FallbackImporter interface {
	WaitForConfig(ctx context.Context) (*fallback.Result, error)
	Status() fallback.ImporterStatus
}

// FallbackImportOptions configure NewFallbackImport.
type FallbackImportOptions struct {
	Importer FallbackImporter
	// Storage is the storage URL (for /status and the config origin).
	Storage string
	// FirstAttempt is closed when the sync client's first connection
	// attempt has settled; FirstAttemptErr is then nil if it connected
	// (cpclient.Client's methods of the same names).
	FirstAttempt    <-chan struct{}
	FirstAttemptErr func() error
	// Cached says the node serves its own cache, written at CacheWrittenAt.
	// Then nothing is imported, unless PreferNewest and the snapshot was
	// captured after the cache was written.
	Cached         bool
	CacheWrittenAt time.Time
	PreferNewest   bool
	// Prefetch, if set, is an import started before the node was set up
	// (StartPrefetch); Run uses its result instead of starting its own, and
	// stops it when it is not needed.
	Prefetch *Prefetch
	// RetryMin and RetryMax bound the wait before looking for another
	// object after the proxy refused a verified one (0: the importer's
	// defaults).
	RetryMin, RetryMax time.Duration
	Logger             *slog.Logger
}

// FallbackImport is a node's fallback source: at start, when the CP cannot
// be reached and the node has nothing better, it imports the newest verified
// snapshot and serves it (source "fallback"), until the CP delivers.
type FallbackImport struct {
	n   *Node
	o   FallbackImportOptions
	log *slog.Logger

	mu sync.Mutex
	st FallbackStatus
}

// NewFallbackImport prepares the fallback source of n and makes n report
// it in /status. Run starts it.
func NewFallbackImport(n *Node, o FallbackImportOptions) (*FallbackImport, error) {
	if n == nil || o.Importer == nil || o.FirstAttempt == nil || o.FirstAttemptErr == nil {
		return nil, errors.New("fallback import: node, importer and first-attempt signal are required")
	}
	if o.RetryMin <= 0 {
		o.RetryMin = fallback.DefaultImportRetryMin
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = max(fallback.DefaultImportRetryMax, o.RetryMin)
	}
	f := &FallbackImport{n: n, o: o, log: o.Logger, st: FallbackStatus{State: FallbackWaiting, Storage: o.Storage}}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	n.mu.Lock()
	n.fallbackSt = f.Status
	n.mu.Unlock()
	return f, nil
}

// Status reports the import state, with the importer's attempts and error.
func (f *FallbackImport) Status() FallbackStatus {
	is := f.o.Importer.Status()
	f.mu.Lock()
	s := f.st
	f.mu.Unlock()
	s.Attempts, s.LastError = is.Attempts, is.LastError
	return s
}

func (f *FallbackImport) setState(state string) {
	f.mu.Lock()
	f.st.State = state
	f.mu.Unlock()
}

// Run waits for the CP's first connection attempt and, if the CP could not
// be reached and the node has nothing better to serve, imports. It returns
// when the import is done, not needed, superseded by the CP, or ctx ends.
// Nothing unverified is ever served: until a snapshot verifies the node stays
// as it is (not ready when it has no configuration).
//
// When an import may be needed (no cache served, or PreferNewest), the
// storage is read while the first CP attempt is still in progress, so that
// its latency hides behind the connection attempt (a dead CP host costs the
// whole --cp-connect-timeout); the result is used only if the attempt fails.
func (f *FallbackImport) Run(ctx context.Context) {
	ictx, cancel := context.WithCancel(ctx)
	defer cancel()
	pre := f.o.Prefetch
	if pre == nil && (!f.o.Cached || f.o.PreferNewest) {
		pre = StartPrefetch(ictx, f.o.Importer)
	}
	if pre != nil {
		// Whatever the outcome, the prefetch ends with Run: it has
		// delivered its result, or it is not needed.
		defer pre.Stop()
	}
	// The import stops as soon as the CP delivers: its configuration wins.
	go func(pre *Prefetch) {
		select {
		case <-f.n.CPServed():
			cancel()
			if pre != nil {
				pre.Stop()
			}
		case <-ictx.Done():
		}
	}(pre)

	select {
	case <-ctx.Done():
		return
	case <-f.o.FirstAttempt:
	}
	firstErr := f.o.FirstAttemptErr()
	switch {
	case firstErr == nil:
		cancel()
		f.setState(FallbackNotNeeded)
		f.log.Info("[fallback config] control plane reachable; not importing")
		return
	case f.cpServed():
		f.setState(FallbackStopped)
		return
	case f.o.Cached && !f.o.PreferNewest:
		f.setState(FallbackSkippedCache)
		f.log.Info("[fallback config] control plane not connected, but the cached configuration is served; not importing (--prefer-newest imports a newer snapshot)",
			"cp_error", firstErr.Error(), "cache_written_at", f.o.CacheWrittenAt)
		return
	}
	f.setState(FallbackImporting)
	f.log.Info("[fallback config] control_plane not connected. Fetching config from fallback storage",
		"storage", f.o.Storage, "cp_error", firstErr.Error(), "prefer_newest", f.o.PreferNewest && f.o.Cached)

	refused := ""
	for n := 1; ; n++ {
		var r *fallback.Result
		var err error
		if pre != nil {
			r, err = pre.Result(ictx)
			pre = nil
		} else {
			r, err = f.o.Importer.WaitForConfig(ictx)
		}
		if err != nil {
			if f.cpServed() {
				f.setState(FallbackStopped)
				f.log.Info("[fallback config] the control plane delivered its configuration; import stopped")
			}
			return
		}
		if r.Key == refused {
			// The proxy refused this very object already: wait for another.
			if !f.wait(ictx, n) {
				return
			}
			continue
		}
		if f.o.Cached && f.o.PreferNewest {
			captured, from := capturedAt(r)
			if captured.IsZero() || !captured.After(f.o.CacheWrittenAt) {
				f.setState(FallbackCacheNewer)
				f.log.Info("[fallback config] the newest snapshot is not newer than the cached configuration; keeping the cache",
					"object", r.Key, "snapshot_time", captured, "snapshot_time_from", from, "cache_written_at", f.o.CacheWrittenAt)
				return
			}
			f.log.Info("[fallback config] the newest snapshot is newer than the cached configuration; importing it",
				"object", r.Key, "snapshot_time", captured, "snapshot_time_from", from, "cache_written_at", f.o.CacheWrittenAt)
		}
		origin := r.Key
		if f.o.Storage != "" {
			origin = f.o.Storage + " " + r.Key
		}
		// f.mu is held across the apply so that /status never shows the
		// snapshot served while the import still reads "importing".
		f.mu.Lock()
		_, err = f.n.ApplyIf(&Snapshot{Config: r.Config, Hash: r.Hash, Source: SourceFallback, Origin: origin},
			func(cur State) bool { return cur.Source != SourceCP })
		if err == nil {
			f.st.State, f.st.Snapshot, f.st.ConfigHash, f.st.ImportedAt = FallbackImported, r.Key, r.Hash, f.n.now()
		}
		f.mu.Unlock()
		if errors.Is(err, ErrSuperseded) {
			f.setState(FallbackStopped)
			f.log.Info("[fallback config] the control plane delivered its configuration first; the snapshot is not served", "object", r.Key)
			return
		}
		if err != nil {
			refused = r.Key
			err = fmt.Errorf("fallback config %s verified but cannot be served: %w", r.Key, err)
			LogConfigError(f.log, "[fallback config] failed to apply the fallback config; waiting for another snapshot", err)
			// The error first: whoever sees the state also sees why.
			f.n.ReportError(err)
			f.setState(FallbackApplyFailed)
			if !f.wait(ictx, n) {
				return
			}
			continue
		}
		f.log.Info("[fallback config] fallback config applied", "object", r.Key, "config_hash", r.Hash,
			"signed", r.Signed, "trusted", r.Trusted, "refused_newer", len(r.Rejected))
		return
	}
}

// capturedAt is when an imported config was captured, for --prefer-newest:
// the snapshot manifest's created_at, else (Kong's config.json has no
// manifest of its own) the object's LastModified in the storage. from says
// which ("" when neither is known).
func capturedAt(r *fallback.Result) (t time.Time, from string) {
	if r.Manifest != nil && !r.Manifest.CreatedAt.IsZero() {
		return r.Manifest.CreatedAt, "manifest_created_at"
	}
	if !r.LastModified.IsZero() {
		return r.LastModified, "storage_last_modified"
	}
	return time.Time{}, ""
}

// Prefetch is an import running ahead of the decision to use it: a node
// that may need the storage reads it while the rest of the start (and the
// first CP attempt) runs, and applies the result only if the CP could not be
// reached.
type Prefetch struct {
	cancel context.CancelFunc
	done   chan struct{}
	r      *fallback.Result
	err    error
}

// StartPrefetch starts imp.WaitForConfig in the background.
func StartPrefetch(ctx context.Context, imp FallbackImporter) *Prefetch {
	ctx, cancel := context.WithCancel(ctx)
	p := &Prefetch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		p.r, p.err = imp.WaitForConfig(ctx)
	}()
	return p
}

// Result waits for the prefetched result (or ctx's end).
func (p *Prefetch) Result(ctx context.Context) (*fallback.Result, error) {
	select {
	case <-p.done:
		return p.r, p.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Stop cancels the prefetch if it is still running.
func (p *Prefetch) Stop() { p.cancel() }

func (f *FallbackImport) cpServed() bool {
	select {
	case <-f.n.CPServed():
		return true
	default:
		return false
	}
}

// wait sleeps before the n-th look for another object; false when ctx ended.
func (f *FallbackImport) wait(ctx context.Context, n int) bool {
	d := f.o.RetryMin
	for i := 1; i < n && d < f.o.RetryMax; i++ {
		d *= 2
	}
	t := time.NewTimer(min(d, f.o.RetryMax))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
