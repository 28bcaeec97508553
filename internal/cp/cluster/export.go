package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/kongfb/kongfb/internal/cp/store"
	wire "github.com/kongfb/kongfb/pkg/cluster"
	"github.com/kongfb/kongfb/pkg/config"
)

// Payload is one encoded configuration, ready to send to every DP: Kong
// caches the deflated reconfigure frame once per export and so does kongfb.
type Payload struct {
	// Version is the store version the configuration was read at.
	Version uint64
	// Hash is Kong's config_hash of the configuration; Hashes the per-group
	// hashes.
	Hash   string
	Hashes map[string]string
	// Frame is the gzip-compressed reconfigure message.
	Frame []byte
	// Plugins are the names of the plugins the configuration uses, sorted,
	// for the per-push plugin compatibility check.
	Plugins []string
	// Entities counts the rows sent, for logs.
	Entities int
	// ExportedAt is when the store was read; ExportTook how long reading,
	// converting, hashing and compressing took.
	ExportedAt time.Time
	ExportTook time.Duration
	// Stages splits ExportTook: reading the store, converting and
	// validating the rows (FromEntities), hashing, and encoding (JSON +
	// gzip).
	Stages ExportStages
}

// ExportStages are the parts of an export, for logs and benchmarks.
type ExportStages struct {
	Read, Convert, Hash, Encode time.Duration
}

// exportPayload reads the whole configuration in one consistent snapshot
// and encodes it; it also returns the validated configuration (for
// Options.OnExport). Any failure returns an error and no payload: the caller
// keeps the last good one. Nothing here may turn a partial read into a
// smaller configuration (Kong/kong#12861: a CP that pushed an empty config
// after a failed read took every route of every DP down).
//
// The rows are parsed as one export document by parser, which reuses the
// validated form of every row that is byte-for-byte unchanged since its
// last parse: a change to one entity of many costs one entity's validation.
// The result is what config.FromEntities gives for the decoded rows.
func exportPayload(ctx context.Context, st store.Store, parser *config.Reparser, maxPayload int64) (*Payload, *config.Config, error) {
	start := time.Now()
	var stages ExportStages
	mark := start
	lap := func(d *time.Duration) {
		now := time.Now()
		*d = now.Sub(mark)
		mark = now
	}
	snap, err := st.ExportRaw(ctx)
	lap(&stages.Read)
	if err != nil {
		return nil, nil, fmt.Errorf("read configuration from the store: %w", err)
	}
	if snap == nil {
		return nil, nil, fmt.Errorf("read configuration from the store: no snapshot")
	}
	full, err := parser.ParseJSON(snap.Document(), "stored configuration")
	if err != nil {
		return nil, nil, fmt.Errorf("stored configuration (version %d) does not convert to an export: %w", snap.Version, err)
	}
	cfg := full.WithoutDisabled()
	lap(&stages.Convert)
	hash, hashes := config.Hash(cfg)
	lap(&stages.Hash)
	table, err := cfg.MarshalJSON()
	if err != nil {
		return nil, nil, fmt.Errorf("encode configuration (version %d): %w", snap.Version, err)
	}
	msg := &wire.Reconfigure{
		Type:        wire.TypeReconfigure,
		Timestamp:   float64(time.Now().UnixMicro()) / 1e6,
		ConfigTable: json.RawMessage(table),
		ConfigHash:  hash,
		Hashes:      hashes,
	}
	frame, err := wire.EncodeReconfigure(msg, maxPayload)
	if err != nil {
		return nil, nil, fmt.Errorf("encode reconfigure payload (version %d, hash %s): %w", snap.Version, hash, err)
	}
	lap(&stages.Encode)
	return &Payload{
		Version:    snap.Version,
		Hash:       hash,
		Hashes:     hashes,
		Frame:      frame,
		Plugins:    pluginNames(cfg),
		Entities:   countEntities(cfg),
		ExportedAt: start,
		ExportTook: time.Since(start),
		Stages:     stages,
	}, cfg, nil
}

func pluginNames(c *config.Config) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range c.Plugins {
		if !seen[p.Name] {
			seen[p.Name] = true
			out = append(out, p.Name)
		}
	}
	sort.Strings(out)
	return out
}

func countEntities(c *config.Config) int {
	n := len(c.Services) + len(c.Routes) + len(c.Upstreams) + len(c.Targets) + len(c.Consumers) +
		len(c.Plugins) + len(c.Certificates) + len(c.SNIs) + len(c.CACertificates)
	for _, rows := range c.Extra {
		n += len(rows)
	}
	return n
}
