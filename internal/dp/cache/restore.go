package cache

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/kongfb/kongfb/internal/dp"
)

// Restore serves the cached configuration on n, as Kong serves its LMDB store
// at start before it reaches the CP. It reports whether a configuration was
// applied. No cache is not an error (a new node starts empty, 404 to every
// request, until a source delivers one). An unusable cache has already been
// renamed aside by Load; it and every other failure are logged at ERROR and
// reported to n for /status (kongfb.last_error), and n keeps serving what it
// had.
func Restore(n *dp.Node, c *Cache, log *slog.Logger) bool {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e, err := c.Load()
	if errors.Is(err, fs.ErrNotExist) {
		log.Info("no cached configuration yet", "path", c.Path())
		return false
	}
	if err != nil {
		var ue *UnusableError
		if errors.As(err, &ue) {
			dp.LogConfigError(log, "cached configuration is unusable and is not served", err,
				"path", ue.Path, "reason", ue.Reason.Error(), "moved_to", ue.SetAside)
		} else {
			log.Error("cannot read the cached configuration", "path", c.Path(), "error", err)
		}
		n.ReportError(err)
		return false
	}
	log.Info("found cached configuration, loading", "path", c.Path(), "hash", e.Header.ConfigHash,
		"written_at", e.Header.WrittenAt, "from", e.Header.Source, "origin", e.Header.Origin,
		"encrypted", e.Header.Encryption != EncryptionNone)
	if _, err := n.Apply(&dp.Snapshot{
		Config: e.Config, Hash: e.Header.ConfigHash, Source: dp.SourceCache, Origin: c.Path(),
	}); err != nil {
		// Valid when written but refused now (e.g. by a newer engine): keep
		// the file, the CP will replace it.
		err = fmt.Errorf("cached configuration %s: %w", c.Path(), err)
		dp.LogConfigError(log, "cannot serve the cached configuration", err)
		n.ReportError(err)
		return false
	}
	return true
}
