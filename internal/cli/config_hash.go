package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/kongfb/kongfb/internal/ui"
	"github.com/kongfb/kongfb/pkg/config"
)

// configHashOptions are the inputs of `kongfb config hash`.
type configHashOptions struct {
	File    string
	Raw     bool
	Stdin   io.Reader
	Printer *ui.Printer
}

// configHashResult is the machine-readable output: exactly Kong's names.
type configHashResult struct {
	ConfigHash string            `json:"config_hash"`
	Hashes     map[string]string `json:"hashes"`
}

// configHashOrder is the order Kong lists the hashes in (config_helper.lua's
// hash_fields).
var configHashOrder = []string{"config", "routes", "services", "plugins", "upstreams", "targets"}

func newConfigHashCommand(a *app, runF func(*configHashOptions) error) *cobra.Command {
	o := &configHashOptions{Stdin: a.streams.In}
	cmd := &cobra.Command{
		Use:   "hash FILE",
		Short: "Print Kong's hybrid-mode config_hash of a declarative configuration",
		Long: `Print the config_hash a Kong control plane would compute for the configuration
in FILE, and the per-group hashes (routes, services, plugins, upstreams,
targets) it sends along. A data plane reports config_hash in its pings and in
/status as configuration_hash, so this tells whether a node runs this file.

By default FILE (decK kong.yaml or a Kong config.json export) is parsed and
validated, defaults are filled in, and the hash is taken over the flattened
export document, leaving out what Kong's hybrid export leaves out: disabled
services with their routes and plugins, and disabled plugins. A configuration
with no entities besides workspaces has Kong's empty hash (32 zeros).

With --raw, FILE must be a JSON document and is hashed exactly as given: no
parsing into entities, no defaults, no validation. Use it on a config.json
taken from a fallback bucket or a data plane to reproduce the hash Kong
computes over that very document.

Exit codes: 0 success, 1 the file could not be read, parsed or validated,
2 bad arguments.`,
		Example: `  # hash a decK file
  kongfb config hash kong.yaml

  # hash an exported config.json as is, for scripts
  kongfb config hash --raw --output json config.json | jq -r .config_hash

  # from standard input
  cat kong.yaml | kongfb config hash -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := a.printer()
			if err != nil {
				return err
			}
			o.File = args[0]
			o.Printer = p
			if runF != nil {
				return runF(o)
			}
			return configHashRun(o)
		},
	}
	cmd.Flags().BoolVar(&o.Raw, "raw", false, "hash the JSON document exactly as given, without parsing it into entities")
	return cmd
}

func configHashRun(o *configHashOptions) error {
	name := configDisplayName(o.File)
	if o.Raw {
		switch strings.ToLower(filepath.Ext(o.File)) {
		case ".yml", ".yaml":
			return usageErrorf("--raw hashes a JSON document as given; %s is YAML (drop --raw to parse it)", name)
		}
	}
	data, err := readConfigInput(o.File, o.Stdin)
	if err != nil {
		return err
	}
	var res configHashResult
	if o.Raw {
		doc, err := decodeRawJSONDocument(data, name)
		if err != nil {
			return err
		}
		if !utf8.Valid(data) {
			// encoding/json replaces invalid UTF-8 with U+FFFD while Kong's
			// cjson keeps the bytes, so the hash may differ from Kong's.
			fmt.Fprintf(o.Printer.Err, "warning: %s contains invalid UTF-8; Kong hashes those bytes as they are, kongfb hashed U+FFFD in their place\n", name)
		}
		res.ConfigHash, res.Hashes = config.HashDocument(doc)
	} else {
		cfg, err := config.Parse(data, configInputName(o.File))
		if err != nil {
			return configParseError(name, err)
		}
		// Kong's CP hashes its hybrid export, which leaves disabled
		// entities out (export_config with skip_disabled_entities).
		res.ConfigHash, res.Hashes = config.Hash(cfg.WithoutDisabled())
	}
	return o.Printer.Data(res, func(w io.Writer) error {
		for _, k := range configHashOrder {
			label := k
			if k == "config" {
				label = "config_hash"
			}
			if _, err := fmt.Fprintf(w, "%-12s %s\n", label, res.Hashes[k]); err != nil {
				return err
			}
		}
		return nil
	})
}

// configParseError makes sure the message names the input: the parser's
// errors do, other errors get the name prepended.
func configParseError(name string, err error) error {
	var se *config.SyntaxError
	var ve *config.ValidationError
	if errors.As(err, &se) || errors.As(err, &ve) {
		return err
	}
	return fmt.Errorf("%s: %w", name, err)
}

// decodeRawJSONDocument decodes a JSON object into generic values, keeping
// numbers as json.Number so they are converted exactly once, as cjson does.
// Malformed input gives a *config.SyntaxError with the line and column of the
// offending character.
func decodeRawJSONDocument(data []byte, name string) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, rawJSONSyntaxError(data, name, err)
	}
	if tok, err := dec.Token(); err != io.EOF {
		off := dec.InputOffset()
		msg := "unexpected data after the top-level JSON value"
		if err == nil {
			msg = fmt.Sprintf("unexpected %v after the top-level JSON value", tok)
		}
		line, col := configLineCol(data, off)
		return nil, &config.SyntaxError{File: name, Line: line, Column: col, Msg: msg}
	}
	doc, ok := v.(map[string]any)
	if !ok {
		return nil, &config.SyntaxError{File: name, Line: 1, Column: 1,
			Msg: fmt.Sprintf("the top-level JSON value is %s, want an object", jsonKind(v))}
	}
	return doc, nil
}

func rawJSONSyntaxError(data []byte, name string, err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		// Offset counts the bytes read including the offending one.
		line, col := configLineCol(data, max(se.Offset-1, 0))
		return &config.SyntaxError{File: name, Line: line, Column: col, Msg: se.Error()}
	case errors.Is(err, io.EOF):
		return &config.SyntaxError{File: name, Msg: "empty document"}
	case errors.Is(err, io.ErrUnexpectedEOF):
		line, col := configLineCol(data, int64(len(data)))
		return &config.SyntaxError{File: name, Line: line, Column: col, Msg: "unexpected end of JSON input"}
	}
	return &config.SyntaxError{File: name, Msg: err.Error()}
}

// configLineCol converts a byte offset to a 1-based line and column (in
// bytes, as editors and compilers count for ASCII).
func configLineCol(data []byte, off int64) (int, int) {
	off = min(max(off, 0), int64(len(data)))
	line, col := 1, 1
	for _, b := range data[:off] {
		if b == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case []any:
		return "an array"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	}
	return fmt.Sprintf("%T", v)
}
