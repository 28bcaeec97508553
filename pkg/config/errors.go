package config

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// EntityError is one validation error, flattened like Kong's
// `flattened_errors` entries.
type EntityError struct {
	EntityType string // singular Kong type: "service", "route", ... ("" for document-level errors)
	EntityID   string
	EntityName string
	EntityTags []string
	Field      string // dotted path inside the entity; "" or "@entity" for entity-level errors
	Message    string
	// Line and Column locate the entity (or the document-level key) in the
	// source text when known; 0 otherwise.
	Line, Column int
	// Entity is the entity as it was submitted (Kong's flattened_errors
	// `entity`), nil for document-level errors.
	Entity map[string]any
}

// ValidationError lists every problem found in a configuration.
type ValidationError struct {
	File   string
	Errors []EntityError
	// Fields is Kong's nested `fields` of the code-14 error, e.g.
	// {"services":[{"host":"required field missing"}]}.
	Fields map[string]any
}

func (e *ValidationError) Error() string {
	file := e.File
	if file == "" {
		file = "<input>"
	}
	var b strings.Builder
	n := len(e.Errors)
	if n == 1 {
		fmt.Fprintf(&b, "%s: invalid configuration: 1 error", file)
	} else {
		fmt.Fprintf(&b, "%s: invalid configuration: %d errors", file, n)
	}
	for _, x := range e.Errors {
		b.WriteString("\n  ")
		b.WriteString(x.Describe(file))
	}
	return b.String()
}

// KongMessage is the `message` of Kong's code-14 answer:
// `declarative config is invalid: {services={{host="required field missing"}}}`.
func (e *ValidationError) KongMessage() string {
	return "declarative config is invalid: " + luaPretty(e.Fields)
}

// luaPretty renders a JSON-like value the way Kong's error message does
// (Penlight pretty.write with no indentation): arrays as {a,b}, holes as
// [n]=v, keys sorted, identifiers bare, strings double-quoted.
func luaPretty(v any) string {
	var b strings.Builder
	writeLua(&b, v)
	return b.String()
}

func writeLua(b *strings.Builder, v any) {
	switch t := v.(type) {
	case nil:
		b.WriteString("nil")
	case string:
		b.WriteString(luaQuote(t))
	case bool:
		b.WriteString(strconv.FormatBool(t))
	case int64, int, float64:
		b.WriteString(fmt.Sprint(t))
	case []any:
		b.WriteByte('{')
		first := true
		seq := true
		for i, e := range t {
			if e == nil {
				seq = false
				continue
			}
			if !first {
				b.WriteByte(',')
			}
			first = false
			if !seq {
				fmt.Fprintf(b, "[%d]=", i+1)
			}
			writeLua(b, e)
		}
		b.WriteByte('}')
	case []string:
		a := make([]any, len(t))
		for i, s := range t {
			a[i] = s
		}
		writeLua(b, a)
	case map[string]any:
		b.WriteByte('{')
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			if isLuaIdent(k) {
				b.WriteString(k)
			} else {
				b.WriteString("[" + luaQuote(k) + "]")
			}
			b.WriteByte('=')
			writeLua(b, t[k])
		}
		b.WriteByte('}')
	default:
		fmt.Fprint(b, t)
	}
}

func isLuaIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func luaQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case '\n':
			b.WriteString("\\n")
		case '\r':
			b.WriteString("\\r")
		case 0:
			b.WriteString("\\0")
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// ValidateMode selects how ValidateEntity treats missing fields.
type ValidateMode int

const (
	// Insert fills defaults and requires required fields (POST).
	Insert ValidateMode = iota
	// Update validates only the given fields (PATCH; the caller merges).
	Update
	// Upsert is Insert (PUT replaces the whole entity).
	Upsert
)

// SchemaViolation is Kong's code-2 "schema violation" error body.
type SchemaViolation struct {
	// Fields is Kong's `fields`, e.g. {"host":"required field missing",
	// "paths":["should start with: /"],"@entity":["..."]}.
	Fields map[string]any
	list   []fieldErr
}

func (v *SchemaViolation) Error() string { return v.Message() }

// Message is Kong's message: "schema violation (host: required field
// missing)" or "2 schema violations (a; b)"; entity-level errors first,
// then fields sorted by name, nested errors as "service.id: …".
func (v *SchemaViolation) Message() string {
	list := v.list
	if list == nil {
		list = fieldErrsFromKong(v.Fields, "")
	}
	parts := make([]string, len(list))
	for i, e := range list {
		if e.Field == "" {
			parts[i] = e.Msg
		} else {
			parts[i] = e.Field + ": " + e.Msg
		}
	}
	if len(parts) == 1 {
		return "schema violation (" + parts[0] + ")"
	}
	return fmt.Sprintf("%d schema violations (%s)", len(parts), strings.Join(parts, "; "))
}

// fieldErrsFromKong flattens a Kong `fields` value (used when a
// SchemaViolation is built by hand).
func fieldErrsFromKong(v any, prefix string) []fieldErr {
	switch t := v.(type) {
	case string:
		return []fieldErr{{prefix, t}}
	case []any:
		var out []fieldErr
		for i, e := range t {
			if e != nil {
				out = append(out, fieldErrsFromKong(e, joinPath(prefix, strconv.Itoa(i+1)))...)
			}
		}
		return out
	case map[string]any:
		var out []fieldErr
		if ent, ok := t["@entity"].([]any); ok {
			for _, m := range ent {
				out = append(out, fieldErr{prefix, fmt.Sprint(m)})
			}
		}
		keys := make([]string, 0, len(t))
		for k := range t {
			if k != "@entity" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			out = append(out, fieldErrsFromKong(t[k], joinPath(prefix, k))...)
		}
		return out
	}
	return nil
}

// compactJSON renders a reference value like cjson does in Kong's
// "invalid reference" message.
func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return strings.ReplaceAll(string(b), "/", `\/`)
}

// Describe renders the error as one line naming the file (with line and column
// when known), the entity and the field:
// `FILE:LINE:COL: service 'billing' (id 1b2…): host: required field missing`.
func (x EntityError) Describe(file string) string {
	var b strings.Builder
	b.WriteString(file)
	if x.Line > 0 {
		b.WriteString(":" + strconv.Itoa(x.Line))
		if x.Column > 0 {
			b.WriteString(":" + strconv.Itoa(x.Column))
		}
	}
	b.WriteString(": ")
	if x.EntityType != "" {
		b.WriteString(x.EntityType)
		switch {
		case x.EntityName != "" && x.EntityID != "":
			fmt.Fprintf(&b, " '%s' (id %s)", x.EntityName, x.EntityID)
		case x.EntityName != "":
			fmt.Fprintf(&b, " '%s'", x.EntityName)
		case x.EntityID != "":
			fmt.Fprintf(&b, " %s", x.EntityID)
		}
		b.WriteString(": ")
	}
	if x.Field != "" && x.Field != "@entity" {
		b.WriteString(x.Field)
		b.WriteString(": ")
	}
	b.WriteString(x.Message)
	return b.String()
}
