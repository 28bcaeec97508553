package snapshotops

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

// Metadata on Kong's config.json, as kongfb's exporter writes it.
const (
	metaUploader = "uploader"
	metaTerm     = "kongfb-term"
)

// ExportOptions control Export.
type ExportOptions struct {
	// Snapshot are the encoding options: encryption, signing, compression,
	// Version. NodeID is recorded in the manifest and as Kong's "uploader";
	// Term stays 0 (a manual export is not elected). CreatedAt zero = now.
	Snapshot snapshot.Options
	// KongCompatiblePlaintext writes Kong's config.json even when the
	// snapshot is encrypted (the exporter's --kong-compatible-plaintext).
	KongCompatiblePlaintext bool
}

// ExportResult says what Export wrote.
type ExportResult struct {
	Key        string         `json:"key"`
	Version    string         `json:"version"`
	CreatedAt  time.Time      `json:"created_at"`
	ConfigHash string         `json:"config_hash"`
	Entities   map[string]int `json:"entities"`
	Size       int            `json:"size"`
	Encrypted  bool           `json:"encrypted"`
	Signed     bool           `json:"signed"`
	// KongObject is the key of Kong's config.json when it was written;
	// KongObjectSkipped says why it was not.
	KongObject        string `json:"kong_object,omitempty"`
	KongObjectSkipped string `json:"kong_object_skipped,omitempty"`
}

// ErrExists says a history object already exists under the key Export
// would write: history objects are never overwritten.
var ErrExists = errors.New("object already exists")

// Export writes cfg as a new history snapshot, created with If-None-Match
// so that nothing is ever overwritten, and then — when the snapshot is not
// encrypted, or opts.KongCompatiblePlaintext says so (the exporter's rule,
// snapshot.Options.KongObjectAllowed) — Kong's <version>/config.json,
// replaced only if it did not change since it was read (If-Match). The
// capture time is now, but never before the newest snapshot of the
// version, so the new snapshot sorts as the newest.
func Export(ctx context.Context, st storage.Store, cfg *config.Config, opts ExportOptions) (*ExportResult, error) {
	o := opts.Snapshot
	if o.Version == "" {
		o.Version = config.KongVersion
	}
	if o.NodeID == "" {
		if h, err := os.Hostname(); err == nil {
			o.NodeID = h
		}
	}
	o.Term = 0
	if o.CreatedAt.IsZero() {
		o.CreatedAt = time.Now()
	}
	o.CreatedAt = o.CreatedAt.UTC().Truncate(time.Millisecond)
	newest, err := newestHistoryTime(ctx, st, o.Version)
	if err != nil {
		return nil, err
	}
	if !newest.IsZero() && !o.CreatedAt.After(newest) {
		o.CreatedAt = newest.Add(time.Millisecond)
	}
	enc, err := snapshot.Encode(cfg, o)
	if err != nil {
		return nil, err
	}
	key := enc.Key("")
	if _, err := st.Put(ctx, key, enc.Data, storage.PutOptions{IfNoneMatch: "*", ContentType: "application/octet-stream"}); err != nil {
		if errors.Is(err, storage.ErrPreconditionFailed) {
			return nil, fmt.Errorf("write snapshot %s: %w (history objects are never overwritten): %w", key, ErrExists, err)
		}
		return nil, fmt.Errorf("write snapshot %s: %w", key, err)
	}
	m := enc.Manifest
	res := &ExportResult{Key: key, Version: m.GatewayVersion, CreatedAt: m.CreatedAt, ConfigHash: m.ConfigHash,
		Entities: m.Entities, Size: len(enc.Data), Encrypted: m.Encrypted(), Signed: m.Signer != nil}
	if !o.KongObjectAllowed(opts.KongCompatiblePlaintext) {
		res.KongObjectSkipped = "the snapshot is encrypted; Kong's plain config.json is written only with --kong-compatible-plaintext"
		return res, nil
	}
	kkey := snapshot.KongObjectKey("", o.Version)
	po := storage.PutOptions{ContentType: "application/json", Metadata: map[string]string{
		metaUploader: o.NodeID, MetaConfigHash: m.ConfigHash, metaTerm: "0",
	}}
	info, err := st.Head(ctx, kkey)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		po.IfNoneMatch = "*"
	case err != nil:
		return res, fmt.Errorf("snapshot %s written; read %s: %w", key, kkey, err)
	default:
		po.IfMatch = info.ETag
	}
	if _, err := st.Put(ctx, kkey, enc.KongJSON, po); err != nil {
		if errors.Is(err, storage.ErrPreconditionFailed) || errors.Is(err, storage.ErrNotFound) {
			return res, fmt.Errorf("snapshot %s written; %s changed while it was being replaced (an exporter wrote it?), left as it is: %w", key, kkey, err)
		}
		return res, fmt.Errorf("snapshot %s written; write %s: %w", key, kkey, err)
	}
	res.KongObject = kkey
	return res, nil
}

// newestHistoryTime is the capture time of the newest history key of
// version (zero when there is none).
func newestHistoryTime(ctx context.Context, st storage.Store, version string) (time.Time, error) {
	var newest time.Time
	for obj, err := range storage.ListAll(ctx, st, snapshot.HistoryPrefix("", version), storage.ListOptions{}) {
		if err != nil {
			return time.Time{}, fmt.Errorf("list %s: %w", st, err)
		}
		if info, err := snapshot.ParseHistoryKey(obj.Key); err == nil && info.CreatedAt.After(newest) {
			newest = info.CreatedAt
		}
	}
	return newest, nil
}
