package snapshotops

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

// PruneOptions control Prune.
type PruneOptions struct {
	// KeepLast keeps the newest N history snapshots of each version.
	KeepLast int
	// KeepWithin keeps every snapshot captured within this long before Now
	// (0 = no such rule).
	KeepWithin time.Duration
	// Version limits pruning to one version directory ("" = all).
	Version string
	// DryRun reports what would be deleted and deletes nothing.
	DryRun bool
	// Verify opens snapshots to find the newest valid one of each version,
	// which is never deleted (its version policy is ignored: any version).
	Verify snapshot.VerifyOptions
	// Now is the reference time of KeepWithin; zero = now.
	Now time.Time
}

// PruneItem is one history object and what Prune did with it.
type PruneItem struct {
	Key       string    `json:"key"`
	Version   string    `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	// Action is keep, delete (dry run), deleted or failed.
	Action string `json:"action"`
	Reason string `json:"reason"`
}

// PruneResult lists every history object examined, newest first per version.
type PruneResult struct {
	DryRun  bool        `json:"dry_run"`
	Items   []PruneItem `json:"objects"`
	Kept    int         `json:"kept"`
	Deleted int         `json:"deleted"` // or would delete, in a dry run
	// Problems are versions left alone and deletes that failed.
	Problems []string `json:"problems,omitempty"`
}

// Prune deletes old history snapshots: per version it keeps the newest
// KeepLast, those within KeepWithin, and always the newest snapshot that
// verifies with opts.Verify (when none verifies, or one cannot be read,
// nothing of that version is deleted and a Problem says why; the other
// versions are still pruned and reported). Kong's config.json and every other object are never touched.
// Deletes are conditional on the ETag seen in the listing (If-Match), so an
// object replaced meanwhile is not deleted.
func Prune(ctx context.Context, st storage.Store, opts PruneOptions) (*PruneResult, error) {
	if opts.KeepLast < 0 {
		return nil, fmt.Errorf("keep-last %d: must be 0 or more", opts.KeepLast)
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	vo := opts.Verify
	vo.VersionPolicy = anyVersion
	type obj struct {
		info snapshot.HistoryKeyInfo
		key  string
		etag string
	}
	byVersion := map[string][]obj{}
	for o, err := range storage.ListAll(ctx, st, "", storage.ListOptions{}) {
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", st, err)
		}
		info, perr := snapshot.ParseHistoryKey(o.Key)
		if perr != nil || info.Prefix != "" {
			continue // config.json, leases, foreign files
		}
		if opts.Version != "" && info.Version != opts.Version {
			continue
		}
		byVersion[info.Version] = append(byVersion[info.Version], obj{info: info, key: o.Key, etag: o.ETag})
	}
	res := &PruneResult{DryRun: opts.DryRun, Items: []PruneItem{}}
	versions := make([]string, 0, len(byVersion))
	for v := range byVersion {
		versions = append(versions, v)
	}
	sort.Strings(versions)
	for _, v := range versions {
		objs := byVersion[v]
		slices.SortFunc(objs, func(a, b obj) int { return strings.Compare(b.key, a.key) }) // newest first
		// The newest snapshot that verifies is never deleted.
		protected := ""
		var refusals []string
		readErr := ""
		for _, o := range objs {
			data, _, err := st.Get(ctx, o.key)
			if err != nil {
				// Which snapshot is the newest valid one is unknown: this
				// version is left alone, and what was already done to the
				// others is still reported.
				readErr = fmt.Sprintf("read %s: %v", o.key, err)
				break
			}
			if _, err := snapshot.Decode(o.key, data, vo); err != nil {
				refusals = append(refusals, err.Error())
				continue
			}
			protected = o.key
			break
		}
		if readErr != "" {
			res.Problems = append(res.Problems, fmt.Sprintf("version %s: none deleted: %s", v, readErr))
		} else if protected == "" {
			res.Problems = append(res.Problems, fmt.Sprintf("version %s: no snapshot verifies, so none is deleted (give the keys that open them: --snapshot-identity-file, --snapshot-passphrase-file, --snapshot-trusted-key): %s",
				v, strings.Join(refusals, "; ")))
		}
		for i, o := range objs {
			it := PruneItem{Key: o.key, Version: v, CreatedAt: o.info.CreatedAt, Action: "keep"}
			switch {
			case readErr != "":
				it.Reason = "could not be read: " + readErr
			case protected == "":
				it.Reason = "no snapshot of this version verifies"
			case o.key == protected:
				it.Reason = "newest snapshot that verifies"
			case i < opts.KeepLast:
				it.Reason = fmt.Sprintf("one of the last %d", opts.KeepLast)
			case opts.KeepWithin > 0 && now.Sub(o.info.CreatedAt) < opts.KeepWithin:
				it.Reason = "captured within " + opts.KeepWithin.String()
			default:
				it.Action, it.Reason = "delete", fmt.Sprintf("older than the last %d", opts.KeepLast)
				if opts.KeepWithin > 0 {
					it.Reason += " and than " + opts.KeepWithin.String()
				}
				if !opts.DryRun {
					if err := st.Delete(ctx, o.key, storage.DeleteOptions{IfMatch: o.etag}); err != nil {
						it.Action, it.Reason = "failed", err.Error()
						res.Problems = append(res.Problems, fmt.Sprintf("delete %s: %v", o.key, err))
					} else {
						it.Action = "deleted"
					}
				}
			}
			switch it.Action {
			case "keep", "failed":
				res.Kept++
			default:
				res.Deleted++
			}
			res.Items = append(res.Items, it)
		}
	}
	return res, nil
}
