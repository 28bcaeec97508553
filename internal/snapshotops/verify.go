package snapshotops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

// VerifyResult is the outcome of a full verification of one object.
type VerifyResult struct {
	Object string `json:"object"`
	Source string `json:"source"` // "storage" or "file"
	Valid  bool   `json:"valid"`
	Kind   string `json:"kind,omitempty"`
	// Reason is the failed check's short name (the snapshot.Err* sentinel's
	// text, e.g. "checksum mismatch"); Error the full message.
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
	// Checks lists what was checked and passed, in order.
	Checks     []string       `json:"checks"`
	Version    string         `json:"version,omitempty"`
	CreatedAt  time.Time      `json:"created_at,omitzero"`
	ConfigHash string         `json:"config_hash,omitempty"`
	Entities   map[string]int `json:"entities,omitempty"`
	Encrypted  bool           `json:"encrypted"`
	Signed     bool           `json:"signed"`
	Trusted    bool           `json:"trusted"`
	Signer     string         `json:"signer,omitempty"`
	Size       int64          `json:"size"`
}

// reasons are the snapshot sentinels in the order Decode checks them.
var reasons = []error{
	snapshot.ErrTooLarge, snapshot.ErrTruncated, snapshot.ErrFormat, snapshot.ErrUnsupported,
	snapshot.ErrUnsigned, snapshot.ErrUntrustedSigner, snapshot.ErrBadSignature, snapshot.ErrKeyMismatch,
	snapshot.ErrVersion, snapshot.ErrChecksum, snapshot.ErrDecrypt, snapshot.ErrInvalidConfig, snapshot.ErrEmptyConfig,
}

// Reason returns the short name of why err refused an object ("" if it is
// not a snapshot refusal).
func Reason(err error) string {
	for _, r := range reasons {
		if errors.Is(err, r) {
			return r.Error()
		}
	}
	return ""
}

// VerifyBytes fully verifies one object (snapshot.Decode: size, header,
// seal or signature against the pinned keys, key/manifest cross-check,
// version policy, payload checksum, decryption, content checksum, config
// schema and references, non-empty, hash and counts). source is "storage"
// or "file". The result is always non-nil; the snapshot is nil when the
// object was refused.
func VerifyBytes(name, source string, data []byte, opts snapshot.VerifyOptions) (*VerifyResult, *snapshot.Snapshot) {
	r := &VerifyResult{Object: name, Source: source, Size: int64(len(data)), Checks: []string{}}
	s, err := snapshot.Decode(name, data, opts)
	if err != nil {
		r.Reason = Reason(err)
		r.Error = err.Error()
		// Say what passed before the failure: a header that verifies means
		// the failure is in the payload or the config.
		if bytes.HasPrefix(data, []byte(snapshot.Magic)) {
			r.Kind = snapshot.KindSnapshot.String()
			if h, herr := snapshot.ReadHeader(name, data, opts); herr == nil {
				r.Checks = headerChecks(h.Manifest, h.Signed, h.Trusted, opts)
				fillManifest(r, h.Manifest, h.Signed, h.Trusted)
			}
		}
		return r, nil
	}
	r.Valid = true
	r.Kind = s.Kind.String()
	m := s.Manifest
	fillManifest(r, m, s.Signed, s.Trusted)
	if s.Kind == snapshot.KindSnapshot {
		r.Checks = headerChecks(m, s.Signed, s.Trusted, opts)
		r.Checks = append(r.Checks, fmt.Sprintf("payload sha256 and size (%d bytes)", m.PayloadSize))
		if m.Encrypted() {
			r.Checks = append(r.Checks, "decrypted (age, "+strings.Join(m.Encryption.Recipients, ", ")+")")
		}
		r.Checks = append(r.Checks, fmt.Sprintf("decompressed (%s) and content sha256 (%d bytes)", m.Compression, m.ContentSize))
	} else {
		r.Checks = append(r.Checks, "plain Kong config.json (no checksum or signature of its own)")
		if m.GatewayVersion != "" {
			r.Checks = append(r.Checks, fmt.Sprintf("version %s accepted (%s)", m.GatewayVersion, policyText(opts.VersionPolicy)))
		}
	}
	r.Checks = append(r.Checks,
		fmt.Sprintf("config schema, defaults and references (Kong %s)", config.KongVersion),
		"config is not empty",
	)
	if s.Kind == snapshot.KindSnapshot {
		r.Checks = append(r.Checks, "config_hash and entity counts equal the manifest's")
	}
	return r, s
}

func fillManifest(r *VerifyResult, m *snapshot.Manifest, signed, trusted bool) {
	r.Version = m.GatewayVersion
	r.CreatedAt = m.CreatedAt
	r.ConfigHash = m.ConfigHash
	r.Entities = m.Entities
	r.Encrypted = m.Encrypted()
	r.Signed, r.Trusted = signed, trusted
	if m.Signer != nil {
		r.Signer = m.Signer.KeyID
	}
}

func headerChecks(m *snapshot.Manifest, signed, trusted bool, opts snapshot.VerifyOptions) []string {
	var out []string
	switch {
	case trusted:
		out = append(out, "signature by "+m.Signer.KeyID+" (a pinned key)")
	case signed:
		out = append(out, "signature by "+m.Signer.KeyID+" (integrity only: no key pinned with --snapshot-trusted-key)")
	default:
		out = append(out, "header checksum (unsigned)")
	}
	out = append(out, "object key matches the manifest")
	out = append(out, fmt.Sprintf("version %s accepted (%s)", m.GatewayVersion, policyText(opts.VersionPolicy)))
	return out
}

func policyText(p snapshot.VersionPolicy) string {
	if p.Match == snapshot.MatchAny {
		return "any version"
	}
	return p.String()
}

// Source names one object: a storage key, the latest snapshot in storage,
// or a local file.
type Source struct {
	Key    string
	File   string
	Latest bool
}

func (s Source) String() string {
	switch {
	case s.Latest:
		return "--latest"
	case s.File != "":
		return s.File
	}
	return s.Key
}

// Read returns the object's bytes and the name to verify it under: the key
// for storage, the path for a file. st may be nil for a file.
func (s Source) Read(ctx context.Context, st storage.Store, policy snapshot.VersionPolicy) (name, source string, data []byte, err error) {
	switch {
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", "", nil, err // *PathError names the file
		}
		return s.File, "file", b, nil
	case st == nil:
		return "", "", nil, errors.New("no storage given (--storage) to read " + s.String() + " from")
	case s.Latest:
		c, err := Latest(ctx, st, policy)
		if err != nil {
			return "", "", nil, err
		}
		b, _, err := st.Get(ctx, c.Key)
		if err != nil {
			return "", "", nil, fmt.Errorf("read %s: %w", c.Key, err)
		}
		return c.Key, "storage", b, nil
	}
	b, _, err := st.Get(ctx, s.Key)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return "", "", nil, fmt.Errorf("no object %q in %s (see `kongfb snapshot ls`): %w", s.Key, st, err)
		}
		return "", "", nil, fmt.Errorf("read %s: %w", s.Key, err)
	}
	return s.Key, "storage", b, nil
}

// Latest is the newest history snapshot whose version the policy accepts
// or, when there is none, the newest Kong config.json. It is the newest
// object, whether it verifies or not (see NewestValid for the importer's
// choice).
func Latest(ctx context.Context, st storage.Store, policy snapshot.VersionPolicy) (snapshot.Candidate, error) {
	cands, err := candidates(ctx, st, policy)
	if err != nil {
		return snapshot.Candidate{}, err
	}
	return cands[0], nil
}

// candidates lists the objects the policy accepts: history snapshots newest
// first, then Kong's config.json objects newest first. The error says why
// there is none.
func candidates(ctx context.Context, st storage.Store, policy snapshot.VersionPolicy) ([]snapshot.Candidate, error) {
	all, _, _, err := listCandidates(ctx, st)
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, noObjectsError(st, "", nil)
	}
	objs := make([]snapshot.ObjectInfo, len(all))
	for i, c := range all {
		// Candidates re-parses keys; Time carries the key time or LastModified.
		objs[i] = snapshot.ObjectInfo{Key: c.Key, LastModified: c.Time, Size: c.Size}
	}
	cands, err := snapshot.Candidates("", objs, policy)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", st, err)
	}
	// History first: it is checksummed (and maybe signed); Kong's object is not.
	slices.SortStableFunc(cands, func(a, b snapshot.Candidate) int {
		if a.Kind == b.Kind {
			return 0
		}
		if a.Kind == snapshot.KindSnapshot {
			return -1
		}
		return 1
	})
	return cands, nil
}

// NewestValid returns the newest object that verifies, in the order of
// candidates (history before Kong's config.json), and the refusals of the
// newer ones it skipped.
func NewestValid(ctx context.Context, st storage.Store, opts snapshot.VerifyOptions) (*snapshot.Snapshot, []byte, []error, error) {
	cands, err := candidates(ctx, st, opts.VersionPolicy)
	if err != nil {
		return nil, nil, nil, err
	}
	var skipped []error
	for _, c := range cands {
		data, _, err := st.Get(ctx, c.Key)
		if err != nil {
			if ctx.Err() != nil {
				return nil, nil, skipped, ctx.Err()
			}
			skipped = append(skipped, fmt.Errorf("read %s: %w", c.Key, err))
			continue
		}
		s, err := snapshot.Decode(c.Key, data, opts)
		if err != nil {
			skipped = append(skipped, err)
			continue
		}
		return s, data, skipped, nil
	}
	return nil, nil, skipped, &snapshot.NoValidSnapshotError{Errors: skipped}
}
