package cli

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/pkg/config"
)

func init() { register(newConfigCommand) }

func newConfigCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Validate and hash Kong declarative configuration files",
		Long: `Work with Kong declarative configuration files: decK's kong.yaml (format
1.1, 2.1 or 3.0, nested or flat, JSON or YAML) and Kong's flattened
config.json export (the file Kong's fallback configuration stores).

  validate   check files the way Kong's declarative loader does, listing every error
  hash       print Kong's hybrid-mode config_hash and the per-group hashes

A file name of "-" reads standard input.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(
		newConfigValidateCommand(a, nil),
		newConfigHashCommand(a, nil),
	)
	return cmd
}

// readConfigInput reads a file argument; "-" is standard input. The error
// names the file (or standard input).
func readConfigInput(path string, stdin io.Reader) ([]byte, error) {
	if path == "-" {
		if stdin == nil {
			return nil, fmt.Errorf("read standard input: no input stream")
		}
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return b, nil
	}
	// os.ReadFile's *PathError already names the file ("open x.yaml: no
	// such file or directory").
	return os.ReadFile(path)
}

// configInputName is the name used in messages and given to the parser, which
// picks JSON or YAML from the extension; standard input has none, so the
// parser tries JSON then YAML, like Kong.
func configInputName(path string) string {
	if path == "-" {
		return ""
	}
	return path
}

// configDisplayName is how a file argument is shown to the user.
func configDisplayName(path string) string {
	if path == "-" {
		return "<stdin>"
	}
	return path
}

// configEntityCount is one collection's row count.
type configEntityCount struct {
	Collection string
	Count      int
}

// configCounts lists the collections of c with their row counts, in Kong's
// export order, then the uninterpreted collections by name. Services and
// routes are always listed (they are what people look for); other
// collections only when they have rows.
func configCounts(c *config.Config) []configEntityCount {
	out := []configEntityCount{
		{config.CollServices, len(c.Services)},
		{config.CollRoutes, len(c.Routes)},
	}
	for _, e := range []configEntityCount{
		{config.CollConsumers, len(c.Consumers)},
		{config.CollCertificates, len(c.Certificates)},
		{config.CollCACertificates, len(c.CACertificates)},
		{config.CollSNIs, len(c.SNIs)},
		{config.CollUpstreams, len(c.Upstreams)},
		{config.CollTargets, len(c.Targets)},
		{config.CollPlugins, len(c.Plugins)},
	} {
		if e.Count > 0 {
			out = append(out, e)
		}
	}
	extra := make([]string, 0, len(c.Extra))
	for name, rows := range c.Extra {
		if len(rows) > 0 {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		out = append(out, configEntityCount{name, len(c.Extra[name])})
	}
	return out
}

// configCountWords are the singular and plural words for the core
// collections; other collections are shown by their Kong name.
var configCountWords = map[string][2]string{
	config.CollServices:       {"service", "services"},
	config.CollRoutes:         {"route", "routes"},
	config.CollConsumers:      {"consumer", "consumers"},
	config.CollCertificates:   {"certificate", "certificates"},
	config.CollCACertificates: {"CA certificate", "CA certificates"},
	config.CollSNIs:           {"SNI", "SNIs"},
	config.CollUpstreams:      {"upstream", "upstreams"},
	config.CollTargets:        {"target", "targets"},
	config.CollPlugins:        {"plugin", "plugins"},
}

// configCountsText renders counts as "2 services, 1 route, 3 keyauth_credentials".
func configCountsText(counts []configEntityCount) string {
	parts := make([]string, len(counts))
	for i, e := range counts {
		word := e.Collection
		if w, ok := configCountWords[e.Collection]; ok {
			word = w[1]
			if e.Count == 1 {
				word = w[0]
			}
		}
		parts[i] = fmt.Sprintf("%d %s", e.Count, word)
	}
	return strings.Join(parts, ", ")
}
