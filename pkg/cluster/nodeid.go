package cluster

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
)

// LoadOrCreateNodeID returns the node id stored in the file at path,
// creating it (a random UUID) on first use, so that a node keeps one id
// across restarts as Kong's nodes do. The file is written atomically (temp
// file, fsync, rename): a crash must not leave a half-written id that would
// stop the next start. A file that does not hold a UUID is an error, not
// silently replaced.
func LoadOrCreateNodeID(path string) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		id := strings.TrimSpace(string(b))
		if _, perr := uuid.Parse(id); perr == nil {
			return id, nil
		}
		return "", fmt.Errorf("node id file %s: %q is not a UUID (delete the file to get a new id)", path, id)
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read node id %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create prefix %s: %w", dir, err)
	}
	id, err := uuid.NewRandomFromReader(rand.Reader)
	if err != nil {
		return "", fmt.Errorf("generate node id: %w", err)
	}
	// CreateTemp makes the file owner-only (0600).
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("write node id %s: %w", path, err)
	}
	_, werr := tmp.WriteString(id.String() + "\n")
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return "", fmt.Errorf("write node id %s: %w", path, werr)
	}
	return id.String(), nil
}
