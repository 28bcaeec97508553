package fallback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

// Exporter defaults.
const (
	// DefaultExportDelay is Kong's cluster_fallback_config_export_delay:
	// the minimum gap between two exports.
	DefaultExportDelay = 60 * time.Second
	// DefaultRetryMin and DefaultRetryMax bound the backoff between
	// attempts to upload one config.
	DefaultRetryMin = time.Second
	DefaultRetryMax = time.Minute
	// DefaultRetain is how many history snapshots of its version the leader
	// keeps; older ones are deleted after each export.
	DefaultRetain = 100
)

// Metadata the exporter sets on Kong's config.json. "uploader" is Kong's own
// (x-amz-meta-uploader); the others let a new leader tell, with a HEAD,
// whether the object already holds the config it is about to write.
const (
	metaUploader   = "uploader"
	metaConfigHash = "kongfb-config-hash"
	metaTerm       = "kongfb-term"
)

// ExporterOptions configure NewExporter.
type ExporterOptions struct {
	// Store is the fallback storage (required).
	Store storage.Store
	// Election decides when this node may write (required). Its node id and
	// version are the exporter's.
	Election *Election
	// Snapshot sets how history snapshots are encoded: Compression,
	// Recipients or Passphrase (encryption), SigningKey. NodeID, Term,
	// Version and CreatedAt are set by the exporter.
	Snapshot snapshot.Options
	// KongCompatiblePlaintext writes Kong's plain <version>/config.json even
	// when snapshots are encrypted (--kong-compatible-plaintext). Without
	// encryption it is always written.
	KongCompatiblePlaintext bool
	// KongObjectVersion is the version directory of Kong's config.json:
	// the exact tag Kong EE importers report (e.g. "3.9.1.2"); "" = the
	// election's version.
	KongObjectVersion string
	// Delay is the minimum gap between two exports (Kong's
	// cluster_fallback_config_export_delay): the first change goes out at
	// once, later ones are coalesced and the newest goes out when the delay
	// has passed. 0 = DefaultExportDelay; negative = no delay.
	Delay time.Duration
	// RetryMin and RetryMax bound the jittered exponential backoff between
	// attempts to upload a config that failed; 0 = the defaults.
	RetryMin, RetryMax time.Duration
	// Retain is how many history snapshots of this version to keep;
	// 0 = DefaultRetain, negative = keep all.
	Retain int
	// OnExport, if set, is called after every export attempt (success,
	// failure or refusal) from the exporter's goroutine.
	OnExport func(ExportEvent)
	// Logger receives export events; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil = time.Now.
	Now func() time.Time
}

// ExportEvent describes one export attempt.
type ExportEvent struct {
	Hash     string        // config_hash of the config
	Term     uint64        // term it was written under
	Snapshot string        // history key written ("" if none)
	Kong     string        // Kong config.json key written ("" if none)
	Offered  time.Time     // when the config was offered
	Took     time.Duration // Offer → done (success) or → failure
	Attempt  int           // 1 for the first attempt at this config
	Err      error         // nil on success
}

// Exporter uploads validated configs to the fallback storage while its
// election says this node leads. Feed it with Offer; Run does the work.
type Exporter struct {
	store    storage.Store
	el       *Election
	opts     snapshot.Options
	kong     bool
	kongKey  string
	histPref string
	version  string
	delay    time.Duration
	retry    backoff
	retain   int
	onExport func(ExportEvent)
	log      *slog.Logger
	now      func() time.Time
	opTime   time.Duration

	offered chan struct{} // cap 1: "latest changed"

	mu     sync.Mutex
	latest *offer // newest offered config (kept until exported or replaced)
	st     exportState
	status ExporterStatus
}

// offer is one config handed to Offer.
type offer struct {
	cfg     *config.Config
	hash    string
	at      time.Time // our clock, for the throttle and the capture time
	attempt int
	skipped bool // older than the newest snapshot at takeover: not exported
	enc     *snapshot.Encoded
	encTerm uint64
	histKey string // history object already written for this offer
}

// exportState is what the leader knows about storage in its current term.
type exportState struct {
	term        uint64    // term the state below was loaded for (0 = not loaded)
	histHash    string    // config_hash prefix (12 hex) of the newest history object
	histTime    time.Time // its capture time
	histKey     string
	kongHash    string // config_hash on config.json (metadata), "" unknown/absent
	kongETag    string // its ETag; "" = absent
	kongKnown   bool   // kongETag/kongHash are current
	lastExport  time.Time
	nextAttempt time.Time
}

// ExporterStatus is the exporter's part of /status.
type ExporterStatus struct {
	Role   string `json:"role"` // "leader", "lapsed" or "follower" (from the election)
	Term   uint64 `json:"term"`
	Holder string `json:"holder"`
	// LastExportAt/LastSnapshot/LastHash describe the last successful export.
	LastExportAt time.Time `json:"last_export_at,omitzero"`
	LastSnapshot string    `json:"last_snapshot,omitempty"`
	LastHash     string    `json:"last_hash,omitempty"`
	// LastResult is "ok", "error" or "" (nothing attempted yet).
	LastResult  string    `json:"last_result,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// PendingHash is the newest offered config not exported yet.
	PendingHash   string    `json:"pending_hash,omitempty"`
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
	Failures      int       `json:"consecutive_failures"`
	Exports       uint64    `json:"exports"`
}

// NewExporter checks opts and returns an exporter that does nothing until Run.
func NewExporter(opts ExporterOptions) (*Exporter, error) {
	if opts.Store == nil {
		return nil, errors.New("fallback exporter: no storage")
	}
	if opts.Election == nil {
		return nil, errors.New("fallback exporter: no election")
	}
	if opts.Snapshot.Passphrase != "" && len(opts.Snapshot.Recipients) > 0 {
		return nil, errors.New("fallback exporter: a passphrase cannot be combined with age recipients")
	}
	if len(opts.Snapshot.Recipients) > 0 {
		if _, _, err := snapshot.ParseRecipients(opts.Snapshot.Recipients); err != nil {
			return nil, fmt.Errorf("fallback exporter: %w", err)
		}
	}
	x := &Exporter{
		store:    opts.Store,
		el:       opts.Election,
		opts:     opts.Snapshot,
		version:  opts.Election.Version(),
		delay:    opts.Delay,
		retry:    backoff{min: opts.RetryMin, max: opts.RetryMax},
		retain:   opts.Retain,
		onExport: opts.OnExport,
		log:      opts.Logger,
		now:      opts.Now,
		offered:  make(chan struct{}, 1),
	}
	x.opts.NodeID = opts.Election.NodeID()
	x.opts.Version = x.version
	x.kong = opts.Snapshot.KongObjectAllowed(opts.KongCompatiblePlaintext)
	kv := opts.KongObjectVersion
	if kv == "" {
		kv = x.version
	}
	x.kongKey = snapshot.KongObjectKey("", kv)
	x.histPref = snapshot.HistoryPrefix("", x.version)
	if x.delay == 0 {
		x.delay = DefaultExportDelay
	} else if x.delay < 0 {
		x.delay = 0
	}
	if x.retry.min <= 0 {
		x.retry.min = DefaultRetryMin
	}
	if x.retry.max <= 0 {
		x.retry.max = DefaultRetryMax
	}
	x.retry.max = max(x.retry.max, x.retry.min)
	if x.retain == 0 {
		x.retain = DefaultRetain
	}
	if x.log == nil {
		x.log = slog.New(slog.DiscardHandler)
	}
	x.log = x.log.With("component", "fallback-exporter", "node_id", x.opts.NodeID)
	if x.now == nil {
		x.now = time.Now
	}
	x.opTime = storage.DefaultOpTimeout
	return x, nil
}

// Offer hands the exporter a config that passed validation (and that this
// node applied or would apply). hash is its config_hash as config.Hash
// computes it (the CP's and the node's hash); "" computes it here, in the
// caller's goroutine. Only the newest offer is kept: a config replaced before
// it went out is never exported. Offer never blocks.
//
// A given hash is trusted only to tell offers apart. The exporter checks it
// when it encodes the snapshot (which hashes the config anyway): on a
// mismatch it logs an error and exports under the config's own hash, which
// the history key, the manifest, config.json's metadata and the status then
// all carry, so importers and later exports see one consistent hash.
func (x *Exporter) Offer(cfg *config.Config, hash string) {
	if cfg == nil {
		return
	}
	if hash == "" {
		hash, _ = config.Hash(cfg)
	}
	x.mu.Lock()
	if x.latest != nil && x.latest.hash == hash {
		x.mu.Unlock()
		return
	}
	x.latest = &offer{cfg: cfg, hash: hash, at: x.now()}
	x.mu.Unlock()
	select {
	case x.offered <- struct{}{}:
	default:
	}
}

// Status reports the exporter state (including its election's role).
func (x *Exporter) Status() ExporterStatus {
	es := x.el.Status()
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.status
	s.Role, s.Term, s.Holder = es.Role, es.Term, es.Holder
	s.PendingHash = ""
	s.NextAttemptAt = time.Time{}
	if x.latest != nil && !x.latest.skipped && !x.exportedLocked(x.latest.hash) {
		s.PendingHash = x.latest.hash
		// Zero means "as soon as this node leads".
		if next := later(x.st.nextAttempt, x.st.lastExport.Add(x.delay)); next.After(x.now()) {
			s.NextAttemptAt = wallClock(next)
		}
	}
	return s
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// exportedLocked: does storage already hold hash as its newest history
// object (and config.json, when written)?
func (x *Exporter) exportedLocked(hash string) bool {
	if x.st.term == 0 {
		return x.status.LastHash == hash
	}
	if short(hash, 12) != x.st.histHash {
		return false
	}
	return !x.kong || (x.st.kongKnown && x.st.kongHash == hash)
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Run exports until ctx ends. It only writes while the election says this
// node leads, and checks the lease in storage right before each write.
func (x *Exporter) Run(ctx context.Context) error {
	x.log.Info("[fallback config] exporter started", "history", x.histPref, "kong_object", x.kongObjectName(), "delay", x.delay, "encrypted", x.opts.Encrypted(), "signed", x.opts.SigningKey != nil)
	for {
		changed := x.el.Changed()
		wait, ok := x.tick(ctx)
		if !ok {
			return ctx.Err()
		}
		if wait == 0 {
			continue
		}
		if !sleep(ctx, wait, x.offered, changed) {
			return ctx.Err()
		}
	}
}

func (x *Exporter) kongObjectName() string {
	if !x.kong {
		return ""
	}
	return x.kongKey
}

// idle is how long Run sleeps when nothing wakes it earlier: leadership
// changes and offers do. It only bounds how long a lapse of the election
// (which has no event of its own when the clock passes the deadline) goes
// unnoticed in Status.
const idle = time.Minute

// tick does at most one export step and says how long to wait.
func (x *Exporter) tick(ctx context.Context) (time.Duration, bool) {
	if ctx.Err() != nil {
		return 0, false
	}
	term, leading := x.el.Leader()
	if !leading {
		return idle, true
	}
	x.mu.Lock()
	loaded := x.st.term == term
	nextAttempt := x.st.nextAttempt
	x.mu.Unlock()
	now := x.now()
	if !loaded {
		if wait := nextAttempt.Sub(now); wait > 0 {
			return wait, true
		}
		if err := x.loadState(ctx, term); err != nil {
			if ctx.Err() != nil {
				return 0, false
			}
			x.failed(nil, term, err)
			return x.waitRetry(), true
		}
	}
	x.mu.Lock()
	it := x.latest
	if it == nil || it.skipped || x.exportedLocked(it.hash) {
		x.mu.Unlock()
		return idle, true
	}
	// Do not roll the history back: a config captured before the newest
	// snapshot (written by the previous leader) is older than it.
	if it.histKey == "" && !x.st.histTime.IsZero() && short(it.hash, 12) != x.st.histHash && it.at.Before(x.st.histTime) {
		it.skipped = true
		hk := x.st.histKey
		x.mu.Unlock()
		x.log.Warn("[fallback config] not exporting: this node's config was captured before the newest snapshot; waiting for a newer config",
			"config_hash", it.hash, "offered_at", wallClock(it.at), "newest_snapshot", hk)
		return idle, true
	}
	next := later(x.st.nextAttempt, x.st.lastExport.Add(x.delay))
	x.mu.Unlock()
	if wait := next.Sub(now); wait > 0 {
		return wait, true
	}
	err := x.export(ctx, it, term)
	if ctx.Err() != nil && err != nil {
		return 0, false
	}
	if err != nil {
		x.failed(it, term, err)
		if refused(err) {
			// Not a storage failure, so no backoff. Usually the election
			// has changed (and will say so again when this node leads);
			// but a write cut short by the deadline while a renewal was
			// landing leaves the node leading with no change to announce,
			// so look again shortly.
			return x.retry.min, true
		}
		return x.waitRetry(), true
	}
	return 0, true
}

func (x *Exporter) waitRetry() time.Duration {
	x.mu.Lock()
	defer x.mu.Unlock()
	return max(x.st.nextAttempt.Sub(x.now()), 0)
}

// refused says err is the election refusing a write, not a storage failure.
func refused(err error) bool {
	return errors.Is(err, ErrNotLeader) || errors.Is(err, ErrFenced)
}

// failed records a failed attempt and schedules the retry: storage failures
// back off; refusals by the election wait for the next change of role.
func (x *Exporter) failed(it *offer, term uint64, err error) {
	now := x.now()
	x.mu.Lock()
	n, d := x.status.Failures, time.Duration(0)
	if !refused(err) {
		x.status.Failures++
		n = x.status.Failures
		d = x.retry.delay(n)
		x.st.nextAttempt = now.Add(d)
	}
	x.status.LastResult = "error"
	x.status.LastError, x.status.LastErrorAt = err.Error(), wallClock(now)
	ev := ExportEvent{Term: term, Err: err}
	if it != nil {
		it.attempt++
		ev.Hash, ev.Offered, ev.Took, ev.Attempt = it.hash, wallClock(it.at), now.Sub(it.at), it.attempt
		ev.Snapshot = it.histKey
	}
	x.mu.Unlock()
	switch {
	case refused(err):
		x.log.Warn("[fallback config] export refused: "+err.Error(), "config_hash", ev.Hash, "term", term)
	default:
		x.log.Error("[fallback config] failed to export config to fallback storage: "+err.Error(),
			"config_hash", ev.Hash, "term", term, "attempt", n, "retry_in", d.Round(time.Millisecond))
	}
	if x.onExport != nil {
		x.onExport(ev)
	}
}

// loadState learns, at the start of a term, what storage holds: the newest
// history object of this version and Kong's config.json.
func (x *Exporter) loadState(ctx context.Context, term uint64) error {
	opCtx, cancel := context.WithTimeout(ctx, x.opTime)
	defer cancel()
	var st exportState
	st.term = term
	for obj, err := range storage.ListAll(opCtx, x.store, x.histPref, storage.ListOptions{}) {
		if err != nil {
			return fmt.Errorf("list history %s: %w", x.histPref, err)
		}
		info, perr := snapshot.ParseHistoryKey(obj.Key)
		if perr != nil || obj.Key <= st.histKey {
			continue
		}
		st.histKey, st.histHash, st.histTime = obj.Key, info.HashPrefix, info.CreatedAt
	}
	if x.kong {
		info, err := x.store.Head(opCtx, x.kongKey)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			st.kongKnown = true
		case err != nil:
			return fmt.Errorf("read %s: %w", x.kongKey, err)
		default:
			st.kongKnown, st.kongETag, st.kongHash = true, info.ETag, info.Metadata[metaConfigHash]
		}
	}
	x.mu.Lock()
	st.lastExport = x.st.lastExport // the throttle spans terms
	x.st = st
	if x.latest != nil {
		// Re-judge the pending config against this term's history. A
		// snapshot it wrote in an earlier term counts only if it is still
		// the newest; otherwise writing just its config.json would roll
		// that object back.
		x.latest.skipped = false
		if x.latest.histKey != st.histKey {
			x.latest.histKey = ""
		}
	}
	x.mu.Unlock()
	x.log.Info("[fallback config] export state loaded for the new term", "term", term, "newest_snapshot", st.histKey, "kong_object_hash", st.kongHash)
	return nil
}

// export writes it under term: the history snapshot, then Kong's config.json.
// Each write is preceded by the election's local check and the lease check in
// storage, and runs under a context that ends at the lease deadline.
func (x *Exporter) export(ctx context.Context, it *offer, term uint64) error {
	x.log.Info("[fallback config] exporting config to fallback storage", "config_hash", it.hash, "term", term)
	x.mu.Lock()
	needHist := short(it.hash, 12) != x.st.histHash
	needKong := x.kong && !(x.st.kongKnown && x.st.kongHash == it.hash)
	floor := x.st.histTime
	x.mu.Unlock()
	if needHist && it.histKey != "" {
		needHist = false // written in an earlier attempt; only config.json failed
	}
	if (needHist || needKong) && (it.enc == nil || it.encTerm != term) {
		o := x.opts
		o.Term = term
		// The capture time is when the config was offered, but never before
		// the newest snapshot: keys sort by it, and a new leader's first
		// snapshot must sort after its predecessor's last.
		o.CreatedAt = it.at.UTC().Truncate(time.Millisecond)
		if !floor.IsZero() && !o.CreatedAt.After(floor) {
			o.CreatedAt = floor.Add(time.Millisecond)
		}
		enc, err := snapshot.Encode(it.cfg, o)
		if err != nil {
			return fmt.Errorf("encode snapshot of config %s: %w", it.hash, err)
		}
		it.enc, it.encTerm = enc, term
		if h := enc.Manifest.ConfigHash; h != it.hash {
			x.log.Error("[fallback config] the offered config_hash is not the config's own; exporting under the config's hash",
				"offered_hash", it.hash, "config_hash", h)
			x.mu.Lock()
			it.hash = h
			needHist = short(h, 12) != x.st.histHash && it.histKey == ""
			needKong = x.kong && !(x.st.kongKnown && x.st.kongHash == h)
			x.mu.Unlock()
		}
	}
	ev := ExportEvent{Hash: it.hash, Term: term, Offered: wallClock(it.at)}
	if needHist {
		key := it.enc.Key("")
		if err := x.fencedPut(ctx, term, key, it.enc.Data, storage.PutOptions{IfNoneMatch: "*", ContentType: "application/octet-stream"}); err != nil {
			if !errors.Is(err, storage.ErrPreconditionFailed) {
				return fmt.Errorf("write snapshot %s: %w", key, err)
			}
			// Same key = same capture time, config and payload digest: an
			// earlier attempt of ours landed although we saw an error.
			if data, _, gerr := x.store.Get(ctx, key); gerr != nil || string(data) != string(it.enc.Data) {
				return fmt.Errorf("write snapshot %s: another object exists under this key: %w", key, err)
			}
		}
		it.histKey = key
		x.mu.Lock()
		x.st.histKey, x.st.histHash, x.st.histTime = key, short(it.hash, 12), it.enc.Manifest.CreatedAt
		x.mu.Unlock()
		ev.Snapshot = key
	}
	if needKong {
		if err := x.writeKongObject(ctx, it, term); err != nil {
			return err
		}
		ev.Kong = x.kongKey
	}
	now := x.now()
	x.mu.Lock()
	x.st.lastExport = now
	x.st.nextAttempt = time.Time{}
	x.status.Failures = 0
	x.status.Exports++
	x.status.LastResult, x.status.LastError = "ok", ""
	x.status.LastExportAt, x.status.LastHash = wallClock(now), it.hash
	if it.histKey != "" {
		x.status.LastSnapshot = it.histKey
	}
	ev.Snapshot = it.histKey
	it.attempt++
	ev.Attempt, ev.Took = it.attempt, now.Sub(it.at)
	x.mu.Unlock()
	x.log.Info("[fallback config] successfully exported config to fallback storage", "config_hash", it.hash, "term", term, "snapshot", it.histKey, "kong_object", ev.Kong, "took", ev.Took.Round(time.Millisecond))
	if x.onExport != nil {
		x.onExport(ev)
	}
	if needHist {
		x.prune(ctx, term, it.histKey)
	}
	return nil
}

// writeKongObject writes Kong's config.json. The write is conditional on the
// ETag this leader last saw, so a deposed leader whose write arrives late
// cannot overwrite its successor's object.
func (x *Exporter) writeKongObject(ctx context.Context, it *offer, term uint64) error {
	x.mu.Lock()
	known, etag := x.st.kongKnown, x.st.kongETag
	x.mu.Unlock()
	if !known {
		info, err := x.store.Head(ctx, x.kongKey)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			etag = ""
		case err != nil:
			return fmt.Errorf("read %s: %w", x.kongKey, err)
		default:
			etag = info.ETag
		}
	}
	po := storage.PutOptions{ContentType: "application/json", Metadata: map[string]string{
		metaUploader: x.opts.NodeID, metaConfigHash: it.hash, metaTerm: fmt.Sprint(term),
	}}
	if etag == "" {
		po.IfNoneMatch = "*"
	} else {
		po.IfMatch = etag
	}
	var info storage.ObjectInfo
	err := x.fenced(ctx, term, func(wctx context.Context) error {
		var err error
		info, err = x.store.Put(wctx, x.kongKey, it.enc.KongJSON, po)
		return err
	})
	if err != nil {
		if errors.Is(err, storage.ErrPreconditionFailed) || errors.Is(err, storage.ErrNotFound) {
			// Someone else wrote (or removed) it since we looked: look
			// again before the retry, after the lease check.
			x.mu.Lock()
			x.st.kongKnown = false
			x.mu.Unlock()
		}
		return fmt.Errorf("write %s: %w", x.kongKey, err)
	}
	x.mu.Lock()
	x.st.kongKnown, x.st.kongETag, x.st.kongHash = true, info.ETag, it.hash
	x.mu.Unlock()
	return nil
}

func (x *Exporter) fencedPut(ctx context.Context, term uint64, key string, body []byte, po storage.PutOptions) error {
	return x.fenced(ctx, term, func(wctx context.Context) error {
		_, err := x.store.Put(wctx, key, body, po)
		return err
	})
}

// fenced runs one write under term: the lease is confirmed in storage first,
// the local lease is checked again right before the write (the confirmation
// took time), and the write's context ends at the lease deadline.
func (x *Exporter) fenced(ctx context.Context, term uint64, write func(context.Context) error) error {
	if err := x.el.Confirm(ctx, term); err != nil {
		return err
	}
	deadline, ok := x.el.Deadline(term)
	if !ok {
		return fmt.Errorf("%w (term %d): the lease deadline passed before the write", ErrNotLeader, term)
	}
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	err := write(wctx)
	if err != nil && wctx.Err() != nil && ctx.Err() == nil {
		return fmt.Errorf("%w (term %d): the lease deadline passed during the write: %w", ErrNotLeader, term, err)
	}
	return err
}

// prune deletes the oldest history snapshots of this version beyond Retain.
// Failures are logged: pruning is housekeeping.
func (x *Exporter) prune(ctx context.Context, term uint64, keep string) {
	if x.retain < 0 {
		return
	}
	opCtx, cancel := context.WithTimeout(ctx, x.opTime)
	defer cancel()
	var keys []string
	for obj, err := range storage.ListAll(opCtx, x.store, x.histPref, storage.ListOptions{}) {
		if err != nil {
			x.log.Warn("[fallback config] cannot list the history to prune it", "error", err)
			return
		}
		if _, perr := snapshot.ParseHistoryKey(obj.Key); perr == nil {
			keys = append(keys, obj.Key)
		}
	}
	if len(keys) <= x.retain {
		return
	}
	slices.Sort(keys)
	for _, k := range keys[:len(keys)-x.retain] {
		if k == keep {
			continue
		}
		if !x.el.IsLeader(term) {
			return
		}
		if err := x.store.Delete(opCtx, k, storage.DeleteOptions{}); err != nil {
			x.log.Warn("[fallback config] cannot delete an old snapshot", "object", k, "error", err)
			return
		}
		x.log.Debug("[fallback config] deleted an old snapshot", "object", k, "retain", x.retain)
	}
}
