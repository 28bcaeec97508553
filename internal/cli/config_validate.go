package cli

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/internal/ui"
	"github.com/kongfb/kongfb/pkg/config"
)

// configValidateOptions are the inputs of `kongfb config validate`.
type configValidateOptions struct {
	Files   []string
	Stdin   io.Reader
	Printer *ui.Printer
}

// configValidateResult is the machine-readable output.
type configValidateResult struct {
	Valid bool                 `json:"valid"`
	Files []configFileValidity `json:"files"`
}

// configFileValidity is one file's outcome. For an invalid file, Message and
// Fields are what Kong answers (code 14, "invalid declarative configuration")
// when the file is POSTed to /config, and Errors is the same list flattened,
// one entry per problem.
type configFileValidity struct {
	File        string             `json:"file"`
	Valid       bool               `json:"valid"`
	Entities    map[string]int     `json:"entities,omitempty"`
	Message     string             `json:"message,omitempty"`
	Fields      map[string]any     `json:"fields,omitempty"`
	Errors      []configErrorEntry `json:"errors,omitempty"`
	SyntaxError *configSyntaxEntry `json:"syntax_error,omitempty"`

	counts []configEntityCount // for the text summary, in display order
	lines  []string            // text-mode error lines
}

type configErrorEntry struct {
	EntityType string   `json:"entity_type,omitempty"`
	EntityID   string   `json:"entity_id,omitempty"`
	EntityName string   `json:"entity_name,omitempty"`
	EntityTags []string `json:"entity_tags,omitempty"`
	Field      string   `json:"field,omitempty"`
	Message    string   `json:"message"`
	Line       int      `json:"line,omitempty"`
	Column     int      `json:"column,omitempty"`
}

type configSyntaxEntry struct {
	Line    int    `json:"line"`
	Column  int    `json:"column"`
	Message string `json:"message"`
}

func newConfigValidateCommand(a *app, runF func(*configValidateOptions) error) *cobra.Command {
	o := &configValidateOptions{Stdin: a.streams.In}
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check declarative configuration files and list every error",
		Long: `Check each FILE the way Kong's declarative loader does: syntax, the entity
schemas with Kong's defaults, and references between entities. FILE is a decK
kong.yaml (format 1.1, 2.1 or 3.0, nested or flat) or a Kong config.json
export, in YAML or JSON; "-" reads standard input.

A valid file prints one line with its entity counts. An invalid file prints
every error, one per line, naming the file, the entity (type and name or id)
and the field. A syntax error prints FILE:LINE:COLUMN. With --output json the
result carries, per file, Kong's own error message and nested "fields" (what
Kong's POST /config answers with code 14) and the flattened list of errors.

Exit codes: 0 every file is valid, 1 a file is invalid or unreadable,
2 bad arguments.`,
		Example: `  # check a decK file before syncing it
  kongfb config validate kong.yaml

  # several files; the exit code is 1 if any is invalid
  kongfb config validate base.yaml team-a.yaml team-b.yaml

  # machine-readable result, e.g. in CI
  kongfb config validate --output json kong.yaml | jq '.files[].errors'`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.printer()
			if err != nil {
				return err
			}
			o.Files = args
			o.Printer = p
			if runF != nil {
				return runF(o)
			}
			return configValidateRun(o)
		},
	}
	return cmd
}

func configValidateRun(o *configValidateOptions) error {
	if len(o.Files) == 0 {
		return usageErrorf("no file given")
	}
	res := configValidateResult{Valid: true, Files: make([]configFileValidity, 0, len(o.Files))}
	invalid := 0
	for _, f := range o.Files {
		fr := validateConfigFile(f, o.Stdin)
		if !fr.Valid {
			res.Valid = false
			invalid++
		}
		res.Files = append(res.Files, fr)
	}
	p := o.Printer
	err := p.Data(res, func(w io.Writer) error {
		for _, fr := range res.Files {
			if fr.Valid {
				summary := "no entities"
				if len(fr.counts) > 0 {
					summary = configCountsText(fr.counts)
				}
				if _, err := fmt.Fprintf(w, "%s: %s (%s)\n", fr.File, p.OK("valid"), summary); err != nil {
					return err
				}
				continue
			}
			for _, l := range fr.lines {
				if _, err := fmt.Fprintln(w, l); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if invalid > 0 {
		msg := fmt.Sprintf("%s is invalid", res.Files[0].File)
		if len(o.Files) > 1 {
			msg = fmt.Sprintf("%d of %d files are invalid", invalid, len(o.Files))
		}
		return &ExitError{Code: ExitFailure, Err: errors.New(msg)}
	}
	return nil
}

// validateConfigFile reads, parses and validates one file argument.
func validateConfigFile(path string, stdin io.Reader) configFileValidity {
	name := configDisplayName(path)
	fr := configFileValidity{File: name}
	data, err := readConfigInput(path, stdin)
	if err != nil {
		fr.Message = err.Error()
		fr.lines = []string{fmt.Sprintf("%s: %v", name, err)}
		if path == "-" {
			fr.lines = []string{err.Error()}
		}
		fr.Errors = []configErrorEntry{{Message: err.Error()}}
		return fr
	}
	cfg, err := config.Parse(data, configInputName(path))
	if err == nil {
		fr.Valid = true
		fr.counts = configCounts(cfg)
		fr.Entities = make(map[string]int, len(fr.counts))
		for _, c := range fr.counts {
			fr.Entities[c.Collection] = c.Count
		}
		return fr
	}

	var se *config.SyntaxError
	var ve *config.ValidationError
	switch {
	case errors.As(err, &se):
		// Name the file as the user typed it (the parser got "" for stdin).
		s := *se
		s.File = name
		fr.SyntaxError = &configSyntaxEntry{Line: s.Line, Column: s.Column, Message: s.Msg}
		fr.Message = s.KongMessage()
		fr.Fields = map[string]any{"error": s.KongMessage()}
		fr.Errors = []configErrorEntry{{Message: s.Error()}}
		fr.lines = []string{s.Error()}
	case errors.As(err, &ve):
		fr.Message = ve.KongMessage()
		fr.Fields = ve.Fields
		fr.Errors = make([]configErrorEntry, len(ve.Errors))
		fr.lines = make([]string, 0, len(ve.Errors)+1)
		n := len(ve.Errors)
		fr.lines = append(fr.lines, fmt.Sprintf("%s: invalid (%d %s)", name, n, configPlural(n, "error", "errors")))
		for i, e := range ve.Errors {
			fr.Errors[i] = configErrorEntry{EntityType: e.EntityType, EntityID: e.EntityID, EntityName: e.EntityName,
				EntityTags: e.EntityTags, Field: e.Field, Message: e.Message, Line: e.Line, Column: e.Column}
			fr.lines = append(fr.lines, e.Describe(name))
		}
	default:
		fr.Message = err.Error()
		fr.Errors = []configErrorEntry{{Message: err.Error()}}
		fr.lines = []string{fmt.Sprintf("%s: %v", name, err)}
	}
	return fr
}

func configPlural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
