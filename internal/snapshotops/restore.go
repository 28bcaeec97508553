package snapshotops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/kongfb/kongfb/pkg/config"
	"github.com/kongfb/kongfb/pkg/snapshot"
	"github.com/kongfb/kongfb/pkg/storage"
)

// Loaded is a configuration read from a snapshot, a Kong config.json or a
// configuration file, verified or validated.
type Loaded struct {
	Name   string // storage key or file path
	Source string // "storage" or "file"
	// Kind is kongfb-snapshot, kong-config.json or config-file (a decK
	// file read for a diff).
	Kind     string
	Config   *config.Config
	Hash     string
	Manifest *snapshot.Manifest // nil for a config file
	// Skipped are the newer objects --latest passed over because they did
	// not verify.
	Skipped []error
}

// LoadOptions control Load.
type LoadOptions struct {
	Verify snapshot.VerifyOptions
	// AllowConfigFile accepts a local decK kong.yaml (or JSON) that is not
	// a snapshot, validated with config.Parse (an empty one too).
	AllowConfigFile bool
}

// Load reads and verifies src. For --latest it takes the newest object that
// verifies (history before Kong's config.json) and reports the newer ones
// it skipped.
func Load(ctx context.Context, st storage.Store, src Source, opts LoadOptions) (*Loaded, error) {
	if src.Latest {
		if st == nil {
			return nil, errors.New("no storage given (--storage) to read --latest from")
		}
		s, _, skipped, err := NewestValid(ctx, st, opts.Verify)
		if err != nil {
			return nil, err
		}
		l := fromSnapshot(s, "storage")
		l.Skipped = skipped
		return l, nil
	}
	name, origin, data, err := src.Read(ctx, st, opts.Verify.VersionPolicy)
	if err != nil {
		return nil, err
	}
	if origin == "file" && opts.AllowConfigFile && !bytes.HasPrefix(data, []byte(snapshot.Magic)) {
		cfg, err := config.Parse(data, name)
		if err != nil {
			return nil, err // names the file, entity and field
		}
		h, _ := config.Hash(cfg)
		return &Loaded{Name: name, Source: origin, Kind: "config-file", Config: cfg, Hash: h}, nil
	}
	s, err := snapshot.Decode(name, data, opts.Verify)
	if err != nil {
		return nil, err
	}
	return fromSnapshot(s, origin), nil
}

func fromSnapshot(s *snapshot.Snapshot, origin string) *Loaded {
	return &Loaded{Name: s.Name, Source: origin, Kind: s.Kind.String(), Config: s.Config, Hash: s.Manifest.ConfigHash, Manifest: s.Manifest}
}

// ErrFileExists refuses to replace a file without Force.
var ErrFileExists = errors.New("file exists")

// ConfigFileFormat is the format WriteConfigFile picks from a file name:
// "json" (Kong's config.json export) or "yaml" (kong.yaml), "" for neither.
func ConfigFileFormat(path string) string {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".json":
		return "json"
	case ".yaml", ".yml":
		return "yaml"
	}
	return ""
}

// RenderConfig renders cfg as Kong's export document: JSON, or the same
// document as YAML (flat, foreign keys as ids, _format_version 3.0), which
// Kong's declarative loader, decK and `kongfb config validate` read.
func RenderConfig(cfg *config.Config, format string) ([]byte, error) {
	doc, err := cfg.MarshalJSON()
	if err != nil {
		return nil, err
	}
	switch format {
	case "json":
		return append(doc, '\n'), nil
	case "yaml":
		// JSON is YAML: decode into a node tree, which keeps Kong's field
		// and collection order, and write it back in block style.
		var n yaml.Node
		if err := yaml.Unmarshal(doc, &n); err != nil {
			return nil, fmt.Errorf("convert to YAML: %w", err)
		}
		blockStyle(&n)
		var buf bytes.Buffer
		buf.WriteString("# Kong declarative configuration (Kong's export format), written by kongfb snapshot restore\n")
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(&n); err != nil {
			return nil, fmt.Errorf("convert to YAML: %w", err)
		}
		if err := enc.Close(); err != nil {
			return nil, fmt.Errorf("convert to YAML: %w", err)
		}
		return buf.Bytes(), nil
	}
	return nil, fmt.Errorf("unknown format %q: want json or yaml", format)
}

// blockStyle clears the flow and quoting styles JSON gave the nodes; the
// encoder quotes the strings that need it (e.g. "3.0", "on", "null").
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// WriteFileAtomic writes data to path through a temporary file in the same
// directory (fsync'd, mode 0600: configurations carry secrets), so a reader
// sees the old file or the whole new one. Without force an existing file is
// never replaced, even one created meanwhile (the temp file is linked into
// place, which fails if the name exists).
func WriteFileAtomic(path string, data []byte, force bool) error {
	dir := filepath.Dir(path)
	if !force {
		if _, err := os.Lstat(path); err == nil {
			return fmt.Errorf("%s: %w (--force replaces it)", path, ErrFileExists)
		}
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	name := tmp.Name()
	defer os.Remove(name)
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if force {
		err = os.Rename(name, path)
	} else {
		err = os.Link(name, path)
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s: %w (--force replaces it)", path, ErrFileExists)
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// RestoreResult says what a restore to a CP did (or would do).
type RestoreResult struct {
	Snapshot string `json:"snapshot"`
	CP       string `json:"cp"`
	Plan     *Diff  `json:"plan"` // from the CP's current config to the snapshot
	// Applied: POST /config was sent and the CP now serves the snapshot's
	// configuration.
	Applied bool `json:"applied"`
	// Reason says why nothing was applied (plan only, already equal, refused).
	Reason string `json:"reason,omitempty"`
	// HashAfter is the CP's config_hash after the restore.
	HashAfter string `json:"hash_after,omitempty"`
}

// ErrWouldRemove refuses a restore that deletes entities the CP has and the
// snapshot lacks (without Force).
var ErrWouldRemove = errors.New("the control plane has entities the snapshot lacks")

// RestoreToCP replaces a CP's configuration with l's through its Admin
// API. It first reads the CP's configuration and computes the entity-level
// plan; with plan it stops there. Without force it refuses when the CP has
// entities the snapshot lacks (they would be deleted), naming them. After
// POST /config it reads the configuration again and checks that the CP
// serves the snapshot's entities.
func RestoreToCP(ctx context.Context, a Admin, l *Loaded, plan, force bool) (*RestoreResult, error) {
	cur, _, err := a.GetConfig(ctx)
	if err != nil {
		return nil, err
	}
	res := &RestoreResult{Snapshot: l.Name, CP: a.URL, Plan: DiffConfigs(a.endpoint(), cur, l.Name, l.Config)}
	switch {
	case plan:
		res.Reason = "plan only (--plan): nothing changed"
		return res, nil
	case res.Plan.Empty():
		res.Reason = "the control plane already serves this configuration: nothing to do"
		res.HashAfter = res.Plan.FromHash
		return res, nil
	case len(res.Plan.Removed) > 0 && !force:
		labels := make([]string, len(res.Plan.Removed))
		for i, e := range res.Plan.Removed {
			labels[i] = e.Label() + " (id " + e.ID + ")"
		}
		res.Reason = "refused"
		return res, fmt.Errorf("%w and the restore would delete: %s; --plan shows the whole difference, --force restores anyway", ErrWouldRemove, strings.Join(labels, ", "))
	}
	doc, err := l.Config.MarshalJSON()
	if err != nil {
		return res, err
	}
	if err := a.PostConfig(ctx, doc); err != nil {
		return res, err
	}
	after, _, err := a.GetConfig(ctx)
	if err != nil {
		return res, fmt.Errorf("restored, but reading the configuration back failed: %w", err)
	}
	check := DiffConfigs(a.endpoint(), after, l.Name, l.Config)
	res.HashAfter = check.FromHash
	if !check.Empty() {
		return res, fmt.Errorf("POST %s succeeded but the control plane does not serve the snapshot's entities: %d added, %d removed, %d changed since", a.endpoint(), len(check.Added), len(check.Removed), len(check.Changed))
	}
	res.Applied = true
	return res, nil
}
