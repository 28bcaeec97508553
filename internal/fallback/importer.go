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
	Key      string
	Kind     snapshot.Kind
	Manifest *snapshot.Manifest
	Signed   bool
	Trusted  bool
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
	im.log.Info("[fallback config] fetching config from fallback storage", "storage", im.store.String())
	var objs []snapshot.ObjectInfo
	for obj, err := range storage.ListAll(ctx, im.store, "", storage.ListOptions{}) {
		if err != nil {
			return nil, fmt.Errorf("list fallback storage %s: %w", im.store, err)
		}
		objs = append(objs, snapshot.ObjectInfo{Key: obj.Key, LastModified: obj.LastModified, Size: obj.Size})
	}
	cands, err := snapshot.Candidates("", objs, im.verify.VersionPolicy)
	if err != nil {
		return nil, err
	}
	fetch := func(ctx context.Context, key string) ([]byte, error) {
		data, _, err := im.store.Get(ctx, key)
		return data, err
	}
	var rejected []error
	for i, c := range cands {
		s, err := im.try(ctx, c, fetch)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			im.log.Warn("[fallback config] refusing fallback object", "object", c.Key, "error", err)
			rejected = append(rejected, err)
			continue
		}
		if s.Kind == snapshot.KindKong {
			// Kong's config.json carries no checksum or signature. When the
			// history holds the same config, import that copy instead: it
			// is verified end to end and names its writer and term.
			if h := im.sameInHistory(ctx, s, cands[i+1:], fetch); h != nil {
				s = h
			}
		}
		return im.result(s, rejected), nil
	}
	return nil, &snapshot.NoValidSnapshotError{Errors: rejected}
}

// try fetches and verifies one candidate.
func (im *Importer) try(ctx context.Context, c snapshot.Candidate, fetch snapshot.FetchFunc) (*snapshot.Snapshot, error) {
	s, err := snapshot.NewestValid(ctx, []snapshot.Candidate{c}, fetch, im.verify)
	if err == nil {
		return s, nil
	}
	var nv *snapshot.NoValidSnapshotError
	if errors.As(err, &nv) && len(nv.Errors) == 1 {
		return nil, nv.Errors[0]
	}
	return nil, err
}

// sameInHistory looks among older candidates for a history snapshot of the
// config that Kong's object s holds.
func (im *Importer) sameInHistory(ctx context.Context, s *snapshot.Snapshot, older []snapshot.Candidate, fetch snapshot.FetchFunc) *snapshot.Snapshot {
	hash := hashOf(s)
	for _, c := range older {
		if c.Kind != snapshot.KindSnapshot || c.HashPrefix != short(hash, 12) {
			continue
		}
		h, err := im.try(ctx, c, fetch)
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

func (im *Importer) result(s *snapshot.Snapshot, rejected []error) *Result {
	hash := hashOf(s)
	r := &Result{Config: s.Config, Hash: hash, Key: s.Name, Kind: s.Kind, Manifest: s.Manifest,
		Signed: s.Signed, Trusted: s.Trusted, Rejected: rejected}
	im.log.Info("[fallback config] fallback config verified", "object", r.Key, "config_hash", hash,
		"node_id", s.Manifest.NodeID, "term", s.Manifest.Term, "signed", s.Signed, "trusted", s.Trusted, "refused_newer", len(rejected))
	return r
}
