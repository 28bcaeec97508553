package fallback

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

// Importer retry defaults.
const (
	DefaultImportRetryMin = time.Second
	DefaultImportRetryMax = 30 * time.Second
)

// ImporterOptions configure NewImporter.
type ImporterOptions struct {
	// Store is the fallback storage (required).
	Store storage.Store
	// Verify says what an object must pass: pinned signer keys, decryption
	// identities or passphrase, the size limit (MaxSize, default
	// snapshot.DefaultMaxSize) and the version policy (default: same
	// major.minor as this gateway).
	Verify snapshot.VerifyOptions
	// RetryMin and RetryMax bound WaitForConfig's jittered exponential
	// backoff; 0 = the defaults.
	RetryMin, RetryMax time.Duration
	// OnAttempt, if set, is called after every failed attempt of
	// WaitForConfig, before it waits.
	OnAttempt func(Attempt)
	// Logger receives import events; nil discards them.
	Logger *slog.Logger
	// Now is the clock for Status; nil = time.Now.
	Now func() time.Time
}

// Attempt is one failed import attempt.
type Attempt struct {
	N    int           // 1 for the first
	Err  error         // why nothing was imported
	Wait time.Duration // until the next attempt
}

// Result is an imported, fully verified config.
type Result struct {
	Config *config.Config
	// Hash is its config_hash (what the node reports once it serves it).
	Hash string
	// Key is the object it came from (the snapshot id).
	Key  string
	Kind snapshot.Kind
	// Manifest is the snapshot's manifest; for Kong's config.json one is
	// made up from the object (no CreatedAt, NodeID or Term).
	Manifest *snapshot.Manifest
	// LastModified is the storage's time of the object (for Kong's
	// config.json, the only time it has).
	LastModified time.Time
	Signed       bool
	Trusted      bool
	// Rejected lists the newer objects refused before this one, newest
	// first; each error names the object and the reason.
	Rejected []error
}

// Importer finds the newest fallback config that verifies.
type Importer struct {
	store     storage.Store
	verify    snapshot.VerifyOptions
	retry     backoff
	onAttempt func(Attempt)
	log       *slog.Logger
	now       func() time.Time

	mu     sync.Mutex
	status ImporterStatus
}

// ImporterStatus is the importer's part of /status.
type ImporterStatus struct {
	Attempts      int       `json:"attempts"`
	LastAttemptAt time.Time `json:"last_attempt_at,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
	ImportedKey   string    `json:"imported_snapshot,omitempty"`
	ImportedHash  string    `json:"imported_hash,omitempty"`
	ImportedAt    time.Time `json:"imported_at,omitzero"`
	Rejected      []string  `json:"rejected,omitempty"`
}

// NewImporter checks opts and returns an importer.
func NewImporter(opts ImporterOptions) (*Importer, error) {
	if opts.Store == nil {
		return nil, errors.New("fallback importer: no storage")
	}
	if opts.Verify.MaxSize < 0 {
		return nil, fmt.Errorf("fallback importer: size limit %d is negative", opts.Verify.MaxSize)
	}
	im := &Importer{
		store:     opts.Store,
		verify:    opts.Verify,
		retry:     backoff{min: opts.RetryMin, max: opts.RetryMax},
		onAttempt: opts.OnAttempt,
		log:       opts.Logger,
		now:       opts.Now,
	}
	if im.retry.min <= 0 {
		im.retry.min = DefaultImportRetryMin
	}
	if im.retry.max <= 0 {
		im.retry.max = DefaultImportRetryMax
	}
	im.retry.max = max(im.retry.max, im.retry.min)
	if im.log == nil {
		im.log = slog.New(slog.DiscardHandler)
	}
	im.log = im.log.With("component", "fallback-importer")
	if im.now == nil {
		im.now = time.Now
	}
	return im, nil
}

// Status reports the importer's progress.
func (im *Importer) Status() ImporterStatus {
	im.mu.Lock()
	defer im.mu.Unlock()
	s := im.status
	s.Rejected = append([]string(nil), s.Rejected...)
	return s
}

// WaitForConfig imports the newest config that verifies, retrying with a
// jittered exponential backoff while storage is unreachable or holds nothing
// that verifies (Kong tries once per process). It returns when a config
// verifies, or with ctx's error (joined with the last failure) when ctx ends.
// It never returns a config that did not verify.
func (im *Importer) WaitForConfig(ctx context.Context) (*Result, error) {
	for n := 1; ; n++ {
		r, err := im.Import(ctx)
		if err == nil {
			return r, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("fallback import stopped: %w", errors.Join(ctx.Err(), err))
		}
		wait := im.retry.delay(n)
		im.log.Warn("[fallback config] failed to fetch config from fallback storage; retrying", "attempt", n, "retry_in", wait.Round(time.Millisecond), "error", err)
		if im.onAttempt != nil {
			im.onAttempt(Attempt{N: n, Err: err, Wait: wait})
		}
		if !sleep(ctx, wait) {
			return nil, fmt.Errorf("fallback import stopped: %w", errors.Join(ctx.Err(), err))
		}
	}
}

// Import makes one attempt: list the storage, then try the objects the
// version policy accepts newest first, and return the first that verifies.
// Refused objects are logged with their reason and listed in Result.Rejected.
// Errors: a storage error, *snapshot.NoMatchingVersionError (lists the
// versions found) or *snapshot.NoValidSnapshotError (lists every object
// tried and why it was refused); both match snapshot.ErrNoSnapshot.
func (im *Importer) Import(ctx context.Context) (*Result, error) {
	r, err := im.importOnce(ctx)
	im.mu.Lock()
	im.status.Attempts++
	im.status.LastAttemptAt = wallClock(im.now())
	if err != nil {
		im.status.LastError = err.Error()
	} else {
		im.status.LastError = ""
		im.status.ImportedKey, im.status.ImportedHash, im.status.ImportedAt = r.Key, r.Hash, im.status.LastAttemptAt
		im.status.Rejected = im.status.Rejected[:0]
		for _, e := range r.Rejected {
			im.status.Rejected = append(im.status.Rejected, e.Error())
		}
	}
	im.mu.Unlock()
	return r, err
}

func (im *Importer) importOnce(ctx context.Context) (*Result, error) {
	// Ends the fetches started ahead of their use that were not needed.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	im.log.Info("[fallback config] fetching config from fallback storage", "storage", im.store.String())
	var objs []snapshot.ObjectInfo
	modified := map[string]time.Time{}
	for obj, err := range storage.ListAll(ctx, im.store, "", storage.ListOptions{}) {
		if err != nil {
			return nil, fmt.Errorf("list fallback storage %s: %w", im.store, err)
		}
		objs = append(objs, snapshot.ObjectInfo{Key: obj.Key, LastModified: obj.LastModified, Size: obj.Size})
		modified[obj.Key] = obj.LastModified
	}
	cands, err := snapshot.Candidates("", objs, im.verify.VersionPolicy)
	if err != nil {
		return nil, err
	}
	im.log.Debug("[fallback config] storage listed", "objects", len(objs), "candidates", len(cands), "took", time.Since(start))
	a := &attempt{im: im, ctx: ctx, fetches: map[string]*fetch{}, tried: map[string]tried{}}
	var rejected []error
	for i, c := range cands {
		if c.Kind == snapshot.KindKong {
			// Kong's config.json carries no checksum or signature. When the
			// exporter that wrote it says (in its metadata) which config
			// it holds and the history has that config, import the history
			// copy instead, without reading config.json: it is verified end
			// to end and names its writer and term.
			if h := a.historyCopy(c, cands[i+1:]); h != nil {
				return im.result(h, modified, rejected, start), nil
			}
		}
		s, err := a.try(c)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			im.log.Warn("[fallback config] refusing fallback object", "object", c.Key, "error", err)
			rejected = append(rejected, err)
			continue
		}
		if s.Kind == snapshot.KindKong {
			// No usable metadata (e.g. Kong EE wrote the object): look for
			// the history copy by the hash of what config.json holds.
			if h := a.sameInHistory(hashOf(s), cands[i+1:]); h != nil {
				s = h
			}
		}
		return im.result(s, modified, rejected, start), nil
	}
	return nil, &snapshot.NoValidSnapshotError{Errors: rejected}
}

// attempt is the state of one Import: each object is fetched and verified
// at most once, and a fetch may be started before it is needed.
type attempt struct {
	im      *Importer
	ctx     context.Context
	mu      sync.Mutex
	fetches map[string]*fetch
	tried   map[string]tried
}

type fetch struct {
	done chan struct{}
	data []byte
	err  error
}

type tried struct {
	s   *snapshot.Snapshot
	err error
}

// prefetch starts reading key in the background (once).
func (a *attempt) prefetch(key string) *fetch {
	a.mu.Lock()
	defer a.mu.Unlock()
	if f := a.fetches[key]; f != nil {
		return f
	}
	f := &fetch{done: make(chan struct{})}
	a.fetches[key] = f
	go func() {
		defer close(f.done)
		start := time.Now()
		f.data, _, f.err = a.im.store.Get(a.ctx, key)
		a.im.log.Debug("[fallback config] object fetched", "object", key, "size", len(f.data), "took", time.Since(start), "error", f.err)
	}()
	return f
}

// get is the snapshot.FetchFunc of the attempt.
func (a *attempt) get(ctx context.Context, key string) ([]byte, error) {
	f := a.prefetch(key)
	select {
	case <-f.done:
		return f.data, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// try fetches and verifies one candidate (once per attempt).
func (a *attempt) try(c snapshot.Candidate) (*snapshot.Snapshot, error) {
	if t, ok := a.tried[c.Key]; ok {
		return t.s, t.err
	}
	start := time.Now()
	s, err := snapshot.NewestValid(a.ctx, []snapshot.Candidate{c}, a.get, a.im.verify)
	var nv *snapshot.NoValidSnapshotError
	if errors.As(err, &nv) && len(nv.Errors) == 1 {
		err = nv.Errors[0]
	}
	if a.ctx.Err() == nil {
		a.tried[c.Key] = tried{s: s, err: err}
	}
	a.im.log.Debug("[fallback config] object verified", "object", c.Key, "kind", c.Kind, "took", time.Since(start), "error", err)
	return s, err
}

// historyCopy returns the verified history snapshot of the config that
// Kong's object c holds, as the exporter recorded it in c's metadata
// (kongfb-config-hash), or nil. The exporter writes the history snapshot
// first and config.json right after, so the newest history object is read
// while c's metadata is: one round trip for both.
//
// The metadata only chooses which object to verify: what is imported is a
// history snapshot that passed every check, with the hash the metadata
// names. A config.json whose metadata names the wrong hash (something other
// than kongfb's exporter wrote it and kept the metadata) could make the
// node serve that older, verified snapshot rather than config.json; nothing
// unverified is ever served.
func (a *attempt) historyCopy(c snapshot.Candidate, older []snapshot.Candidate) *snapshot.Snapshot {
	limit := a.im.verify.MaxSize
	if limit <= 0 {
		limit = snapshot.DefaultMaxSize
	}
	found := false
	for _, o := range older {
		if o.Kind == snapshot.KindSnapshot {
			if o.Size <= limit {
				a.prefetch(o.Key)
			}
			found = true
			break
		}
	}
	if !found {
		return nil
	}
	start := time.Now()
	info, err := a.im.store.Head(a.ctx, c.Key)
	if err != nil {
		a.im.log.Debug("[fallback config] cannot read the metadata of Kong's object; reading the object", "object", c.Key, "error", err)
		return nil
	}
	hash := info.Metadata[metaConfigHash]
	a.im.log.Debug("[fallback config] Kong's object metadata read", "object", c.Key, "config_hash", hash, "took", time.Since(start))
	if hash == "" {
		return nil
	}
	return a.sameInHistory(hash, older)
}

// sameInHistory looks among older candidates for a history snapshot of the
// config whose hash is hash.
func (a *attempt) sameInHistory(hash string, older []snapshot.Candidate) *snapshot.Snapshot {
	for _, c := range older {
		if c.Kind != snapshot.KindSnapshot || c.HashPrefix != short(hash, 12) {
			continue
		}
		h, err := a.try(c)
		if err == nil && h.Manifest.ConfigHash == hash {
			return h
		}
	}
	return nil
}

// hashOf is the config_hash of a verified object: Decode has checked a
// snapshot's manifest against the config; Kong's object has no manifest hash.
func hashOf(s *snapshot.Snapshot) string {
	if s.Kind == snapshot.KindSnapshot && s.Manifest != nil && s.Manifest.ConfigHash != "" {
		return s.Manifest.ConfigHash
	}
	h, _ := config.Hash(s.Config)
	return h
}

func (im *Importer) result(s *snapshot.Snapshot, modified map[string]time.Time, rejected []error, start time.Time) *Result {
	hash := hashOf(s)
	r := &Result{Config: s.Config, Hash: hash, Key: s.Name, Kind: s.Kind, Manifest: s.Manifest,
		LastModified: modified[s.Name], Signed: s.Signed, Trusted: s.Trusted, Rejected: rejected}
	im.log.Info("[fallback config] fallback config verified", "object", r.Key, "config_hash", hash,
		"node_id", s.Manifest.NodeID, "term", s.Manifest.Term, "signed", s.Signed, "trusted", s.Trusted, "refused_newer", len(rejected),
		"took", time.Since(start).Round(100*time.Microsecond))
	return r
}
