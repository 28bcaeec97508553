package snapshotops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

// MetaConfigHash is the metadata kongfb's exporter (and Export) sets on
// Kong's config.json: the config_hash of its body.
const MetaConfigHash = "kongfb-config-hash"

// Entry is one fallback object as `snapshot ls` shows it.
type Entry struct {
	Key          string         `json:"key"`
	Kind         string         `json:"kind"` // snapshot.Kind.String(): kongfb-snapshot | kong-config.json
	Version      string         `json:"version"`
	CreatedAt    time.Time      `json:"created_at,omitzero"` // history objects: the manifest's capture time
	LastModified time.Time      `json:"last_modified,omitzero"`
	ConfigHash   string         `json:"config_hash,omitempty"`
	Size         int64          `json:"size"`
	ETag         string         `json:"etag,omitempty"`
	Encrypted    bool           `json:"encrypted"`
	Signed       bool           `json:"signed"`
	Signer       string         `json:"signer,omitempty"`     // key id
	Recipients   []string       `json:"recipients,omitempty"` // age key ids, or "scrypt"
	Compression  string         `json:"compression,omitempty"`
	NodeID       string         `json:"node_id,omitempty"`
	Term         uint64         `json:"term"`
	Entities     map[string]int `json:"entities,omitempty"`
	DerivedFrom  string         `json:"derived_from,omitempty"` // "encrypt" | "decrypt"
	// HeaderError is why the header could not be read (a history object
	// whose header is corrupt, truncated or tampered with).
	HeaderError string `json:"header_error,omitempty"`
	// Verify is the full verification (ListOptions.Verify).
	Verify *VerifyResult `json:"verify,omitempty"`

	cand snapshot.Candidate
}

// ListOptions select what List reads.
type ListOptions struct {
	// Version limits the listing to one version directory ("" = all).
	Version string
	// Verify fully verifies each object with VerifyOptions (fetching,
	// decrypting and validating it); without it only headers are read.
	Verify        bool
	VerifyOptions snapshot.VerifyOptions
	// Concurrency bounds the objects read at once; 0 = 4.
	Concurrency int
}

// Listing is the result of List.
type Listing struct {
	Entries []Entry `json:"objects"`
	// Versions are all version directories found (whatever Version says).
	Versions []string `json:"versions"`
	// Ignored counts other objects under the prefix (election leases,
	// foreign files).
	Ignored int `json:"ignored"`
}

// ErrNoObjects says the storage holds no fallback object (for the version asked).
var ErrNoObjects = errors.New("no fallback objects")

// listCandidates lists every fallback object under the store, unsorted.
func listCandidates(ctx context.Context, st storage.Store) (cands []snapshot.Candidate, etags map[string]storage.ObjectInfo, ignored int, err error) {
	etags = map[string]storage.ObjectInfo{}
	for obj, lerr := range storage.ListAll(ctx, st, "", storage.ListOptions{}) {
		if lerr != nil {
			return nil, nil, 0, fmt.Errorf("list %s: %w", st, lerr)
		}
		c, ok := snapshot.ParseObjectKey("", snapshot.ObjectInfo{Key: obj.Key, LastModified: obj.LastModified, Size: obj.Size})
		if !ok {
			ignored++
			continue
		}
		etags[obj.Key] = obj
		cands = append(cands, c)
	}
	return cands, etags, ignored, nil
}

// anyVersion is the policy of inspection: every version directory.
var anyVersion = snapshot.VersionPolicy{Match: snapshot.MatchAny}

// sortNewestFirst orders entries by their time (history: key time, Kong
// object: LastModified), newest first, history before Kong's object on ties.
func sortNewestFirst(cands []snapshot.Candidate) {
	snapshot.SortCandidates(cands, anyVersion)
}

// List reads the fallback objects of st, newest first: Kong's
// <version>/config.json and the history snapshots. For history objects the
// header (manifest) is read and verified with snapshot.ReadHeader, which
// needs no key to decrypt; Kong's object is described from its HEAD
// (kongfb's exporter records the config hash there).
func List(ctx context.Context, st storage.Store, opts ListOptions) (*Listing, error) {
	cands, infos, ignored, err := listCandidates(ctx, st)
	if err != nil {
		return nil, err
	}
	res := &Listing{Ignored: ignored, Entries: []Entry{}}
	seen := map[string]bool{}
	var keep []snapshot.Candidate
	for _, c := range cands {
		if !seen[c.Version] {
			seen[c.Version] = true
			res.Versions = append(res.Versions, c.Version)
		}
		if opts.Version == "" || c.Version == opts.Version {
			keep = append(keep, c)
		}
	}
	sort.Strings(res.Versions)
	sortNewestFirst(keep)
	res.Entries = make([]Entry, len(keep))
	conc := opts.Concurrency
	if conc <= 0 {
		conc = 4
	}
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	errs := make([]error, len(keep))
	for i, c := range keep {
		info := infos[c.Key]
		res.Entries[i] = Entry{Key: c.Key, Kind: c.Kind.String(), Version: c.Version, LastModified: info.LastModified.UTC(),
			Size: info.Size, ETag: info.ETag, cand: c}
		wg.Add(1)
		sem <- struct{}{}
		go func(e *Entry) {
			defer func() { <-sem; wg.Done() }()
			errs[i] = describe(ctx, st, e, opts)
		}(&res.Entries[i])
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return res, nil
}

// describe fills e from the object (header or HEAD) and, with opts.Verify,
// verifies it fully. Only storage failures are returned; a bad object is
// recorded in e.
func describe(ctx context.Context, st storage.Store, e *Entry, opts ListOptions) error {
	var data []byte
	if e.cand.Kind == snapshot.KindKong {
		info, err := st.Head(ctx, e.Key)
		if err != nil {
			return fmt.Errorf("read %s: %w", e.Key, err)
		}
		e.ConfigHash = info.Metadata[MetaConfigHash]
	} else {
		// The store has no ranged read: the object is fetched, but only its
		// header is verified here (no decryption, no config parsing).
		b, _, err := st.Get(ctx, e.Key)
		if err != nil {
			return fmt.Errorf("read %s: %w", e.Key, err)
		}
		data = b
		h, err := snapshot.ReadHeader(e.Key, b, snapshot.VerifyOptions{VersionPolicy: anyVersion})
		if err != nil {
			e.HeaderError = err.Error()
		} else {
			fillFromManifest(e, h.Manifest, h.Signed)
		}
	}
	if !opts.Verify {
		return nil
	}
	if data == nil {
		b, _, err := st.Get(ctx, e.Key)
		if err != nil {
			return fmt.Errorf("read %s: %w", e.Key, err)
		}
		data = b
	}
	vr, _ := VerifyBytes(e.Key, "storage", data, opts.VerifyOptions)
	e.Verify = vr
	if vr.Valid && e.ConfigHash == "" {
		e.ConfigHash = vr.ConfigHash
	}
	return nil
}

func fillFromManifest(e *Entry, m *snapshot.Manifest, signed bool) {
	e.CreatedAt = m.CreatedAt
	e.ConfigHash = m.ConfigHash
	e.Encrypted = m.Encrypted()
	e.Signed = signed
	if m.Signer != nil {
		e.Signer = m.Signer.KeyID
	}
	if e.Encrypted {
		e.Recipients = slices.Clone(m.Encryption.Recipients)
	}
	e.Compression = string(m.Compression)
	e.NodeID = m.NodeID
	e.Term = m.Term
	e.Entities = m.Entities
	if m.DerivedFrom != nil {
		e.DerivedFrom = m.DerivedFrom.Operation
	}
}

// Time is the entry's time for display: the capture time of a history
// object, the last write of Kong's object.
func (e *Entry) Time() time.Time {
	if !e.CreatedAt.IsZero() {
		return e.CreatedAt
	}
	return e.LastModified
}

// noObjectsError explains an empty listing.
func noObjectsError(st storage.Store, version string, versions []string) error {
	if version != "" {
		if len(versions) > 0 {
			return fmt.Errorf("%w for version %s in %s (versions found: %s)", ErrNoObjects, version, st, strings.Join(versions, ", "))
		}
		return fmt.Errorf("%w for version %s in %s: the storage holds no fallback objects", ErrNoObjects, version, st)
	}
	return fmt.Errorf("%w in %s: no <version>/config.json and no <version>/snapshots/*.snap", ErrNoObjects, st)
}
