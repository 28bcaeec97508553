package dp

import (
	"context"
	"fmt"

	"github.com/kongfb/kongfb/pkg/config"
)

// DeclarativeFile is the source for DB-less mode: a decK kong.yaml or a Kong
// config.json export on disk, read at start and again on every reload.
type DeclarativeFile struct {
	Path string
}

// Source implements Loader.
func (d DeclarativeFile) Source() string { return SourceDeclarative }

// Load parses and validates the file. The error is config's *SyntaxError or
// *ValidationError (listing every problem) wrapped with the path.
func (d DeclarativeFile) Load(_ context.Context) (*Snapshot, error) {
	cfg, err := config.ParseFile(d.Path)
	if err != nil {
		return nil, fmt.Errorf("declarative config: %w", err)
	}
	return &Snapshot{Config: cfg, Source: SourceDeclarative, Origin: d.Path}, nil
}
