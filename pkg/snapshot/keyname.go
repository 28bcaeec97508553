package snapshot

import (
	"context"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Object names inside `<prefix>/<version>/`.
const (
	// KongObjectName is Kong EE's fallback object: plain JSON of the hybrid export.
	KongObjectName = "config.json"
	// HistoryDir holds kongfb's immutable history of snapshots.
	HistoryDir = "snapshots"
	// HistoryExt ends every history object name.
	HistoryExt = ".snap"
)

// historyTimeLayout is fixed-width (for years 1000-9999, which Encode
// enforces), so lexicographic key order is creation-time order.
const historyTimeLayout = "20060102T150405.000Z"

var historyNameRe = regexp.MustCompile(`^([0-9]{8}T[0-9]{6}\.[0-9]{3}Z)-([0-9a-f]{12})-([0-9a-f]{8})\.snap$`)

// joinKey joins key segments like Kong's normalize(uri, true): repeated
// slashes merge, "." segments vanish and ".." removes the previous segment,
// so "p/", "/p" and "p//" all give the same key as Kong computes for them.
func joinKey(parts ...string) string {
	var segs []string
	for _, p := range parts {
		for _, s := range strings.Split(p, "/") {
			switch s {
			case "", ".":
			case "..":
				if len(segs) > 0 {
					segs = segs[:len(segs)-1]
				}
			default:
				segs = append(segs, s)
			}
		}
	}
	return strings.Join(segs, "/")
}

// VersionPrefix is the directory of one gateway version: "<prefix>/<version>/".
func VersionPrefix(prefix, version string) string {
	return joinKey(prefix, version) + "/"
}

// KongObjectKey is the key Kong EE reads and writes:
// "<prefix>/<version>/config.json". version must be the exact string Kong's
// nodes report (kong.meta.version, e.g. "3.9.1.2" on Enterprise): a Kong
// importer looks for nothing else.
func KongObjectKey(prefix, version string) string {
	return joinKey(prefix, version, KongObjectName)
}

// HistoryPrefix is the directory of kongfb's history for one version:
// "<prefix>/<version>/snapshots/".
func HistoryPrefix(prefix, version string) string {
	return joinKey(prefix, version, HistoryDir) + "/"
}

// HistoryKey names an immutable history object:
//
//	<prefix>/<version>/snapshots/<YYYYMMDDTHHMMSS.mmmZ>-<config_hash[:12]>-<payload_sha256[:8]>.snap
//
// The UTC timestamp comes first and is fixed-width, so keys sort by creation
// time. The payload digest makes a re-encrypted copy (same config, same
// created_at) a distinct object instead of an overwrite. configHash and
// payloadSHA256 must be lowercase hex (as in a Manifest).
func HistoryKey(prefix, version string, createdAt time.Time, configHash, payloadSHA256 string) string {
	name := createdAt.UTC().Format(historyTimeLayout) + "-" + short(configHash, 12) + "-" + short(payloadSHA256, 8) + HistoryExt
	return joinKey(prefix, version, HistoryDir, name)
}

func short(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// HistoryKeyInfo is what a history key says about its object.
type HistoryKeyInfo struct {
	Prefix        string    // storage prefix (normalised, no trailing slash)
	Version       string    // gateway version segment
	CreatedAt     time.Time // UTC, millisecond precision
	HashPrefix    string    // first 12 hex digits of config_hash
	PayloadPrefix string    // first 8 hex digits of payload_sha256
}

// ParseHistoryKey parses a key made by HistoryKey.
func ParseHistoryKey(key string) (HistoryKeyInfo, error) {
	dir, name := path.Split(joinKey(key))
	m := historyNameRe.FindStringSubmatch(name)
	if m == nil {
		return HistoryKeyInfo{}, fmt.Errorf("history key %q: name is not <YYYYMMDDTHHMMSS.mmmZ>-<12 hex>-<8 hex>%s", key, HistoryExt)
	}
	segs := strings.Split(strings.TrimSuffix(dir, "/"), "/")
	if len(segs) < 2 || segs[len(segs)-1] != HistoryDir {
		return HistoryKeyInfo{}, fmt.Errorf("history key %q: not under <prefix>/<version>/%s/", key, HistoryDir)
	}
	ver := segs[len(segs)-2]
	if _, ok := parseVersion(ver); !ok {
		return HistoryKeyInfo{}, fmt.Errorf("history key %q: %q is not a gateway version", key, ver)
	}
	ts, err := time.Parse(historyTimeLayout, m[1])
	if err != nil {
		return HistoryKeyInfo{}, fmt.Errorf("history key %q: timestamp: %w", key, err)
	}
	return HistoryKeyInfo{
		Prefix:        strings.Join(segs[:len(segs)-2], "/"),
		Version:       ver,
		CreatedAt:     ts.UTC(),
		HashPrefix:    m[2],
		PayloadPrefix: m[3],
	}, nil
}

// Kind tells the two object formats apart.
type Kind int

const (
	// KindSnapshot is a kongfb history object (manifest + payload).
	KindSnapshot Kind = iota + 1
	// KindKong is Kong EE's plain config.json.
	KindKong
)

func (k Kind) String() string {
	switch k {
	case KindSnapshot:
		return "kongfb-snapshot"
	case KindKong:
		return "kong-config.json"
	}
	return "unknown"
}

// ObjectInfo is one listed storage object, as the storage layer reports it.
type ObjectInfo struct {
	Key          string
	LastModified time.Time
	Size         int64 // -1 or 0 when unknown
}

// Candidate is a listed object that a reader could import.
type Candidate struct {
	Key     string
	Kind    Kind
	Version string
	// Time orders candidates: the creation time in the key for history
	// objects, the storage LastModified for Kong's config.json (which has no
	// time of its own).
	Time          time.Time
	HashPrefix    string // history objects only
	PayloadPrefix string // history objects only
	Size          int64
}

// ParseObjectKey recognises the objects a reader may import under prefix:
// "<prefix>/<version>/config.json" and "<prefix>/<version>/snapshots/<name>.snap".
// Anything else (election entries, foreign files, bad names) gives false.
func ParseObjectKey(prefix string, obj ObjectInfo) (Candidate, bool) {
	p := joinKey(prefix)
	key := joinKey(obj.Key)
	rest := key
	if p != "" {
		if !strings.HasPrefix(key, p+"/") {
			return Candidate{}, false
		}
		rest = key[len(p)+1:]
	}
	segs := strings.Split(rest, "/")
	if len(segs) < 2 {
		return Candidate{}, false
	}
	if _, ok := parseVersion(segs[0]); !ok {
		return Candidate{}, false
	}
	c := Candidate{Key: obj.Key, Version: segs[0], Size: obj.Size}
	switch {
	case len(segs) == 2 && segs[1] == KongObjectName:
		c.Kind = KindKong
		c.Time = obj.LastModified.UTC()
		return c, true
	case len(segs) == 3 && segs[1] == HistoryDir:
		info, err := ParseHistoryKey(key)
		if err != nil {
			return Candidate{}, false
		}
		c.Kind = KindSnapshot
		c.Time = info.CreatedAt
		c.HashPrefix = info.HashPrefix
		c.PayloadPrefix = info.PayloadPrefix
		return c, true
	}
	return Candidate{}, false
}

// Candidates returns the importable objects under prefix whose version the
// policy accepts, newest first (see SortCandidates). When objects exist but
// none has an accepted version, the error is a *NoMatchingVersionError that
// lists the versions found.
func Candidates(prefix string, objects []ObjectInfo, policy VersionPolicy) ([]Candidate, error) {
	var found []string
	var out []Candidate
	for _, o := range objects {
		c, ok := ParseObjectKey(prefix, o)
		if !ok {
			continue
		}
		found = append(found, c.Version)
		if policy.Accepts(c.Version) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, &NoMatchingVersionError{Prefix: joinKey(prefix), Policy: policy, Found: uniqueSorted(found)}
	}
	SortCandidates(out, policy)
	return out, nil
}

// SortCandidates orders candidates newest first. Ties (and Kong objects
// without a LastModified) are broken by the policy's version preference,
// then kongfb history before Kong's config.json (history is verified by
// checksum and possibly signature), then key order descending.
func SortCandidates(cands []Candidate, policy VersionPolicy) {
	slices.SortStableFunc(cands, func(a, b Candidate) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		if c := policy.compareRank(a.Version, b.Version); c != 0 {
			return c
		}
		if a.Kind != b.Kind {
			if a.Kind == KindSnapshot {
				return -1
			}
			return 1
		}
		return strings.Compare(b.Key, a.Key)
	})
}

// FetchFunc reads a whole object.
type FetchFunc func(ctx context.Context, key string) ([]byte, error)

// NoValidSnapshotError says every candidate was tried and none verified.
type NoValidSnapshotError struct {
	Errors []error // one per candidate, in the order tried
}

func (e *NoValidSnapshotError) Error() string {
	if len(e.Errors) == 0 {
		return "no fallback config: no candidate objects"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "no fallback config verified (%d tried):", len(e.Errors))
	for _, err := range e.Errors {
		b.WriteString("\n  ")
		b.WriteString(err.Error())
	}
	return b.String()
}

func (e *NoValidSnapshotError) Unwrap() []error {
	return append([]error{ErrNoSnapshot}, e.Errors...)
}

// NewestValid tries cands in order (sort them with Candidates or
// SortCandidates first) and returns the first that fetches and verifies,
// so a corrupted or tampered newest object falls back to the next one
// instead of leaving a node without config. Objects whose listed size is
// over opts' size limit are skipped without fetching.
func NewestValid(ctx context.Context, cands []Candidate, fetch FetchFunc, opts VerifyOptions) (*Snapshot, error) {
	var errs []error
	limit := opts.maxSize()
	for _, c := range cands {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if c.Size > limit {
			errs = append(errs, newErr(c.Key, ErrTooLarge, "object is %d bytes, limit %d", c.Size, limit))
			continue
		}
		data, err := fetch(ctx, c.Key)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, ctxErr
			}
			errs = append(errs, fmt.Errorf("fetch %s: %w", c.Key, err))
			continue
		}
		s, err := Decode(c.Key, data, opts)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return s, nil
	}
	return nil, &NoValidSnapshotError{Errors: errs}
}
