// Package ui renders command results for people and for machines: aligned
// tables (with colour only on a terminal), JSON and YAML. Every command prints
// through one Printer so that --output behaves the same everywhere.
package ui

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/charmbracelet/lipgloss"
	"github.com/mattn/go-isatty"
	"github.com/olekukonko/tablewriter"
	"gopkg.in/yaml.v3"
)

// Format is an output format selected with --output.
type Format string

const (
	FormatText Format = "text"
	FormatJSON Format = "json"
	FormatYAML Format = "yaml"
)

// ParseFormat validates a --output value.
func ParseFormat(s string) (Format, error) {
	switch Format(s) {
	case "", FormatText, "table":
		return FormatText, nil
	case FormatJSON, FormatYAML:
		return Format(s), nil
	}
	return "", fmt.Errorf("invalid --output %q: want text, json or yaml", s)
}

// Printer writes results to Out and diagnostics to Err.
type Printer struct {
	Out    io.Writer
	Err    io.Writer
	Format Format
	// Color is true when Out is a terminal and NO_COLOR is unset.
	Color bool
}

// New returns a Printer; colour is enabled only for a terminal.
func New(out, errw io.Writer, format Format) *Printer {
	p := &Printer{Out: out, Err: errw, Format: format}
	if f, ok := out.(*os.File); ok && os.Getenv("NO_COLOR") == "" {
		p.Color = isatty.IsTerminal(f.Fd())
	}
	return p
}

// Machine reports whether the output is for a program (json or yaml).
func (p *Printer) Machine() bool { return p.Format == FormatJSON || p.Format == FormatYAML }

// Data prints v as JSON or YAML. In text mode it calls text instead.
func (p *Printer) Data(v any, text func(w io.Writer) error) error {
	switch p.Format {
	case FormatJSON:
		enc := json.NewEncoder(p.Out)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	case FormatYAML:
		// Round-trip through JSON so that json tags decide the field names.
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		var generic any
		if err := json.Unmarshal(b, &generic); err != nil {
			return err
		}
		enc := yaml.NewEncoder(p.Out)
		enc.SetIndent(2)
		defer enc.Close()
		return enc.Encode(generic)
	}
	return text(p.Out)
}

// Table prints rows under headers as an aligned table.
func (p *Printer) Table(headers []string, rows [][]string) error {
	t := tablewriter.NewWriter(p.Out)
	t.Header(toAny(headers)...)
	for _, r := range rows {
		if err := t.Append(toAny(r)...); err != nil {
			return err
		}
	}
	return t.Render()
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

var (
	okStyle   = lipgloss.NewStyle().Foreground(lipgloss.Color("2")).Bold(true)
	failStyle = lipgloss.NewStyle().Foreground(lipgloss.Color("1")).Bold(true)
	dimStyle  = lipgloss.NewStyle().Faint(true)
)

// OK styles a success word (green on a terminal).
func (p *Printer) OK(s string) string { return p.style(okStyle, s) }

// Fail styles a failure word (red on a terminal).
func (p *Printer) Fail(s string) string { return p.style(failStyle, s) }

// Dim styles secondary text.
func (p *Printer) Dim(s string) string { return p.style(dimStyle, s) }

func (p *Printer) style(st lipgloss.Style, s string) string {
	if !p.Color {
		return s
	}
	return st.Render(s)
}
