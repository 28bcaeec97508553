package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// SyntaxError reports malformed YAML or JSON input. Line and Column are
// 1-based; Column is 0 when the decoder only knows the line (yaml.v3 reports
// most errors by line only).
type SyntaxError struct {
	File   string
	Line   int
	Column int
	Msg    string
}

func (e *SyntaxError) Error() string {
	file := e.File
	if file == "" {
		file = "<input>"
	}
	switch {
	case e.Line > 0 && e.Column > 0:
		return fmt.Sprintf("%s:%d:%d: %s", file, e.Line, e.Column, e.Msg)
	case e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", file, e.Line, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", file, e.Msg)
	}
}

// KongMessage is the text Kong puts in `fields.error` of its code-14 answer
// for input it could not parse.
func (e *SyntaxError) KongMessage() string {
	return "failed parsing declarative configuration: " + e.Msg
}

// pos is a 1-based position in the source text.
type pos struct{ Line, Column int }

// positions maps a document path ("services.0.routes.1.paths.0") to where
// its value starts, so validation errors can point at the source.
type positions map[string]pos

// maxDecodeDepth bounds nesting so hostile input cannot exhaust the stack
// when the generic tree is walked recursively later on.
const maxDecodeDepth = 512

// Expanding YAML aliases can multiply a small document ("billion laughs").
// The converter allows aliasNodeBase nodes plus aliasNodesPerByte per input
// byte, far above what real configurations (even alias-heavy ones) need.
const (
	aliasNodeBase     = 200_000
	aliasNodesPerByte = 2
)

type docFormat int

const (
	formatAuto docFormat = iota
	formatJSON
	formatYAML
)

func formatFor(filename string) docFormat {
	switch strings.ToLower(filepath.Ext(filename)) {
	case ".json":
		return formatJSON
	case ".yml", ".yaml":
		return formatYAML
	}
	return formatAuto
}

// decodeDocument turns the input into generic values: map[string]any,
// []any, string, int64, float64, bool and nil. The choice between JSON and
// YAML follows Kong (kong/db/declarative/init.lua): a .json file is only JSON,
// a .yml/.yaml file only YAML, anything else (including no name) is tried as
// JSON first and then as YAML.
func decodeDocument(data []byte, filename string, format docFormat) (any, positions, error) {
	switch format {
	case formatJSON:
		return decodeJSON(data, filename)
	case formatYAML:
		return decodeYAML(data, filename)
	}
	v, p, jerr := decodeJSON(data, filename)
	if jerr == nil {
		if _, ok := v.(map[string]any); ok {
			return v, p, nil
		}
	}
	v, p, yerr := decodeYAML(data, filename)
	if yerr == nil {
		return v, p, nil
	}
	// Both failed. Text that starts like JSON is most likely meant as JSON,
	// and the JSON decoder gives the more precise position.
	trimmed := bytes.TrimLeft(data, " \t\r\n\ufeff")
	if jerr != nil && len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		return nil, nil, jerr
	}
	return nil, nil, yerr
}

// ---------------------------------------------------------------- JSON

func lineCol(data []byte, offset int64) (int, int) {
	if offset < 0 {
		offset = 0
	}
	if offset > int64(len(data)) {
		offset = int64(len(data))
	}
	line, col := 1, 1
	for _, b := range data[:offset] {
		if b == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return line, col
}

type jsonDecoder struct {
	data  []byte
	dec   *json.Decoder
	pos   positions
	depth int
	// Incremental line/column tracking: value offsets only grow, so the
	// position is advanced from the previous one instead of rescanning
	// the input from the start (which would be quadratic on big exports).
	lastOff          int64
	lastLine, lastCo int
}

func (d *jsonDecoder) lineColAt(off int64) (int, int) {
	if off < d.lastOff || d.lastLine == 0 {
		d.lastOff, d.lastLine, d.lastCo = 0, 1, 1
	}
	if off > int64(len(d.data)) {
		off = int64(len(d.data))
	}
	for _, b := range d.data[d.lastOff:off] {
		if b == '\n' {
			d.lastLine++
			d.lastCo = 1
		} else {
			d.lastCo++
		}
	}
	d.lastOff = off
	return d.lastLine, d.lastCo
}

func decodeJSON(data []byte, filename string) (any, positions, error) {
	d := &jsonDecoder{data: data, dec: json.NewDecoder(bytes.NewReader(data)), pos: positions{}}
	d.dec.UseNumber()
	v, err := d.value("")
	if err == nil {
		// Trailing garbage after the document is a syntax error too.
		if _, terr := d.dec.Token(); terr != io.EOF {
			off := d.dec.InputOffset()
			l, c := lineCol(data, off)
			msg := "invalid character after top-level value"
			if terr != nil {
				msg = terr.Error()
			}
			return nil, nil, &SyntaxError{File: filename, Line: l, Column: c, Msg: msg}
		}
		return v, d.pos, nil
	}
	var own *SyntaxError
	if errors.As(err, &own) {
		own.File = filename
		return nil, nil, own
	}
	var se *json.SyntaxError
	off := d.dec.InputOffset()
	msg := err.Error()
	if errors.As(err, &se) {
		off = se.Offset
		msg = se.Error()
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		off = int64(len(data))
		msg = "unexpected end of JSON input"
	}
	l, c := lineCol(data, off)
	return nil, nil, &SyntaxError{File: filename, Line: l, Column: c, Msg: msg}
}

// decodeJSONFast decodes a JSON object in one pass of encoding/json,
// without positions. It reports false for anything decodeJSON would treat
// differently or reject (not an object, syntax errors, trailing data,
// nesting beyond maxDecodeDepth), so the caller falls back to decodeJSON,
// which gives the positioned error. The values are the same as decodeJSON's.
func decodeJSONFast(data []byte) (any, bool) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc map[string]any
	if err := dec.Decode(&doc); err != nil || doc == nil {
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false
	}
	if !fixNumbers(doc, 1) {
		return nil, false
	}
	return doc, true
}

// fixNumbers replaces json.Number values with numberValue's in place and
// checks the nesting depth as decodeJSON does.
func fixNumbers(v any, depth int) bool {
	if depth > maxDecodeDepth {
		return false
	}
	ok := true
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k], ok = fixValue(e, depth)
			if !ok {
				return false
			}
		}
	case []any:
		for i, e := range t {
			t[i], ok = fixValue(e, depth)
			if !ok {
				return false
			}
		}
	}
	return true
}

// fixValue is fixNumbers for one member of a container at depth.
func fixValue(e any, depth int) (any, bool) {
	switch x := e.(type) {
	case json.Number:
		return numberValue(string(x)), true
	case map[string]any, []any:
		return e, fixNumbers(x, depth+1)
	}
	return e, true
}

// valueStart skips whitespace and separators after the decoder's offset to
// find where the next value really starts.
func (d *jsonDecoder) valueStart() int64 {
	off := d.dec.InputOffset()
	for off < int64(len(d.data)) {
		switch d.data[off] {
		case ' ', '\t', '\r', '\n', ':', ',':
			off++
			continue
		}
		break
	}
	return off
}

func (d *jsonDecoder) value(path string) (any, error) {
	start := d.valueStart()
	tok, err := d.dec.Token()
	if err != nil {
		return nil, err
	}
	l, c := d.lineColAt(start)
	d.pos[path] = pos{l, c}
	switch t := tok.(type) {
	case json.Delim:
		d.depth++
		defer func() { d.depth-- }()
		if d.depth > maxDecodeDepth {
			return nil, &SyntaxError{Line: l, Column: c, Msg: "document nested too deeply"}
		}
		switch t {
		case '{':
			m := map[string]any{}
			for d.dec.More() {
				kt, err := d.dec.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key is not a string")
				}
				v, err := d.value(joinPath(path, k))
				if err != nil {
					return nil, err
				}
				m[k] = v
			}
			if _, err := d.dec.Token(); err != nil {
				return nil, err
			}
			return m, nil
		case '[':
			a := []any{}
			for i := 0; d.dec.More(); i++ {
				v, err := d.value(joinPath(path, strconv.Itoa(i)))
				if err != nil {
					return nil, err
				}
				a = append(a, v)
			}
			if _, err := d.dec.Token(); err != nil {
				return nil, err
			}
			return a, nil
		}
		return nil, fmt.Errorf("unexpected delimiter %q", t)
	case json.Number:
		return numberValue(string(t)), nil
	default:
		return t, nil // string, bool, nil
	}
}

// numberValue keeps integers exact (2^53 must survive, fixture v09) and
// everything else as float64.
func numberValue(s string) any {
	if i, err := strconv.ParseInt(s, 10, 64); err == nil {
		return i
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return s
	}
	if f == math.Trunc(f) && math.Abs(f) < 1<<63 && !strings.ContainsAny(s, ".eE") {
		return int64(f)
	}
	return f
}

func joinPath(base, seg string) string {
	if base == "" {
		return seg
	}
	return base + "." + seg
}

// ---------------------------------------------------------------- YAML

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
var yamlColRe = regexp.MustCompile(`^yaml: line (\d+): column (\d+): (.*)$`)

type yamlConverter struct {
	file     string
	pos      positions
	nodes    int
	maxNodes int
}

func decodeYAML(data []byte, filename string) (v any, p positions, err error) {
	// yaml.v3 can panic on some pathological inputs; a parser must not.
	defer func() {
		if r := recover(); r != nil {
			v, p = nil, nil
			err = &SyntaxError{File: filename, Msg: fmt.Sprintf("yaml: %v", r)}
		}
	}()
	var root yaml.Node
	if uerr := yaml.Unmarshal(data, &root); uerr != nil {
		return nil, nil, yamlSyntaxError(filename, uerr)
	}
	c := &yamlConverter{file: filename, pos: positions{}, maxNodes: aliasNodeBase + aliasNodesPerByte*len(data)}
	if root.Kind == 0 || len(root.Content) == 0 {
		// An empty document is YAML null.
		return nil, c.pos, nil
	}
	v, err = c.convert(root.Content[0], "", 0, false)
	if err != nil {
		return nil, nil, err
	}
	return v, c.pos, nil
}

func yamlSyntaxError(filename string, err error) *SyntaxError {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	if m := yamlColRe.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		c, _ := strconv.Atoi(m[2])
		return &SyntaxError{File: filename, Line: l, Column: c, Msg: m[3]}
	}
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		l, _ := strconv.Atoi(m[1])
		return &SyntaxError{File: filename, Line: l, Msg: m[2]}
	}
	return &SyntaxError{File: filename, Msg: strings.TrimPrefix(msg, "yaml: ")}
}

func (c *yamlConverter) errAt(n *yaml.Node, format string, args ...any) error {
	return &SyntaxError{File: c.file, Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)}
}

// convert builds the generic value of n. inAlias is set below an alias:
// positions are then not recorded (they would all point at the anchor).
func (c *yamlConverter) convert(n *yaml.Node, path string, depth int, inAlias bool) (any, error) {
	c.nodes++
	if c.nodes > c.maxNodes {
		return nil, c.errAt(n, "document too large after expanding aliases")
	}
	if depth > maxDecodeDepth {
		return nil, c.errAt(n, "document nested too deeply")
	}
	if !inAlias {
		c.pos[path] = pos{n.Line, n.Column}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return c.convert(n.Content[0], path, depth+1, inAlias)
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, c.errAt(n, "unknown anchor")
		}
		return c.convert(n.Alias, path, depth+1, true)
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			if kn.Kind == yaml.ScalarNode && kn.Tag == "!!merge" {
				// `<<: *anchor` merges the anchored mapping(s) in; explicit
				// keys of this mapping win (YAML 1.1 merge key semantics).
				if err := c.merge(m, vn, path, depth, inAlias); err != nil {
					return nil, err
				}
				continue
			}
			key, err := c.keyString(kn)
			if err != nil {
				return nil, err
			}
			v, err := c.convert(vn, c.sub(path, key, inAlias), depth+1, inAlias)
			if err != nil {
				return nil, err
			}
			m[key] = v
		}
		return m, nil
	case yaml.SequenceNode:
		a := make([]any, 0, len(n.Content))
		for i, e := range n.Content {
			v, err := c.convert(e, c.sub(path, strconv.Itoa(i), inAlias), depth+1, inAlias)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		return a, nil
	case yaml.ScalarNode:
		return c.scalar(n)
	}
	return nil, c.errAt(n, "unsupported YAML node")
}

// sub is the path of a child; below an alias paths are not needed.
func (c *yamlConverter) sub(path, seg string, inAlias bool) string {
	if inAlias {
		return ""
	}
	return joinPath(path, seg)
}

func (c *yamlConverter) merge(m map[string]any, vn *yaml.Node, path string, depth int, inAlias bool) error {
	var sources []*yaml.Node
	target := vn
	if target.Kind == yaml.AliasNode && target.Alias != nil {
		target = target.Alias
	}
	switch target.Kind {
	case yaml.MappingNode:
		sources = []*yaml.Node{vn}
	case yaml.SequenceNode:
		sources = target.Content
	default:
		return c.errAt(vn, "map merge requires a mapping or a list of mappings")
	}
	for _, s := range sources {
		v, err := c.convert(s, path, depth+1, true)
		if err != nil {
			return err
		}
		sm, ok := v.(map[string]any)
		if !ok {
			return c.errAt(s, "map merge requires a mapping or a list of mappings")
		}
		for k, val := range sm {
			if _, exists := m[k]; !exists {
				m[k] = val
			}
		}
	}
	return nil
}

func (c *yamlConverter) keyString(kn *yaml.Node) (string, error) {
	if kn.Kind == yaml.AliasNode && kn.Alias != nil {
		kn = kn.Alias
	}
	if kn.Kind != yaml.ScalarNode {
		return "", c.errAt(kn, "mapping keys must be scalars")
	}
	return kn.Value, nil
}

func (c *yamlConverter) scalar(n *yaml.Node) (any, error) {
	switch n.ShortTag() {
	case "!!null":
		return nil, nil
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return nil, c.errAt(n, "invalid boolean %q", n.Value)
		}
		return b, nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err == nil {
			return i, nil
		}
		var f float64
		if err := n.Decode(&f); err == nil {
			return f, nil
		}
		return n.Value, nil
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return nil, c.errAt(n, "invalid number %q", n.Value)
		}
		return f, nil
	case "!!str", "!!binary", "!!timestamp":
		// Timestamps stay strings: Kong's lyaml has no timestamp type.
		return n.Value, nil
	default:
		return n.Value, nil
	}
}
