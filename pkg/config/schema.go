package config

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// This file is a small re-implementation of the parts of Kong's schema
// library (kong/db/schema/init.lua) that the core entities use: typed
// fields with defaults, required / one_of / between / len_min rules, custom
// validators, nested records, arrays, sets and maps, and entity checks. One
// table per entity (entities.go) drives validation, default filling and the
// /schemas JSON, so the three can never disagree.

type fieldType string

const (
	tString  fieldType = "string"
	tInteger fieldType = "integer"
	tNumber  fieldType = "number"
	tBoolean fieldType = "boolean"
	tArray   fieldType = "array"
	tSet     fieldType = "set"
	tMap     fieldType = "map"
	tRecord  fieldType = "record"
	tForeign fieldType = "foreign"
	tAny     fieldType = "json" // anything goes (plugin config, workspace meta)
)

// field is one schema field. The zero value of an option means "not set".
type field struct {
	Name       string
	Type       fieldType
	Required   bool
	Default    any
	HasDefault bool
	OneOf      []any
	Between    *[2]float64
	LenMin     int // 0 = Kong's implicit 1 for strings
	LenMax     int
	UUID       bool
	Auto       bool
	Unique     bool
	Reference  string // foreign: referenced collection
	OnDelete   string
	Elements   *field
	Keys       *field
	Values     *field
	Fields     []*field
	// NoAutoRecord keeps an absent record field null instead of building it
	// from its subfields' defaults.
	NoAutoRecord bool
	// Custom validates a value that already has the right type; it returns
	// Kong's message or "".
	Custom func(v any) string
	// Extra is copied verbatim into the /schemas description (e.g.
	// "starts_with", "match_none") for fidelity with Kong's output.
	Extra map[string]any
	// Transient fields are accepted on input but not stored (certificates.snis).
	Transient bool
}

type fieldOpt func(*field)

func newField(name string, t fieldType, opts ...fieldOpt) *field {
	f := &field{Name: name, Type: t}
	for _, o := range opts {
		o(f)
	}
	return f
}

func required() fieldOpt       { return func(f *field) { f.Required = true } }
func dflt(v any) fieldOpt      { return func(f *field) { f.Default, f.HasDefault = v, true } }
func oneOf(vs ...any) fieldOpt { return func(f *field) { f.OneOf = vs } }
func uuidF() fieldOpt          { return func(f *field) { f.UUID = true } }
func auto() fieldOpt           { return func(f *field) { f.Auto = true } }
func unique() fieldOpt         { return func(f *field) { f.Unique = true } }
func lenMin(n int) fieldOpt    { return func(f *field) { f.LenMin = n } }
func elems(e *field) fieldOpt  { return func(f *field) { f.Elements = e } }
func custom(fn func(any) string) fieldOpt {
	return func(f *field) { f.Custom = fn }
}
func between(a, b float64) fieldOpt {
	return func(f *field) { f.Between = &[2]float64{a, b} }
}
func fields(fs ...*field) fieldOpt { return func(f *field) { f.Fields = fs } }
func extra(k string, v any) fieldOpt {
	return func(f *field) {
		if f.Extra == nil {
			f.Extra = map[string]any{}
		}
		f.Extra[k] = v
	}
}
func noAutoRecord() fieldOpt { return func(f *field) { f.NoAutoRecord = true } }
func foreignTo(coll, onDelete string) fieldOpt {
	return func(f *field) { f.Reference, f.OnDelete = coll, onDelete }
}

func (f *field) sub(name string) *field {
	for _, s := range f.Fields {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// ---------------------------------------------------------------- errors

// errTree is a validation result shaped like Kong's error tables: a leaf
// message, record field errors, array element errors and entity-level
// (`@entity`) messages.
type errTree struct {
	msg    string
	fields map[string]*errTree
	elems  map[int]*errTree
	entity []string
	list   []string // a list of messages (declarative reference errors)
}

func leaf(msg string) *errTree { return &errTree{msg: msg} }

func (t *errTree) empty() bool {
	return t == nil || (t.msg == "" && len(t.fields) == 0 && len(t.elems) == 0 && len(t.entity) == 0 && len(t.list) == 0)
}

func (t *errTree) setField(name string, e *errTree) {
	if e.empty() {
		return
	}
	if t.fields == nil {
		t.fields = map[string]*errTree{}
	}
	t.fields[name] = e
}

func (t *errTree) setElem(i int, e *errTree) {
	if e.empty() {
		return
	}
	if t.elems == nil {
		t.elems = map[int]*errTree{}
	}
	t.elems[i] = e
}

func (t *errTree) addEntity(msg string) { t.entity = append(t.entity, msg) }

// kong renders the tree as Kong's JSON `fields` value: array element errors
// become arrays with nulls for valid elements.
func (t *errTree) kong() any {
	if t == nil {
		return nil
	}
	if t.msg != "" {
		return t.msg
	}
	if len(t.list) > 0 {
		l := make([]any, len(t.list))
		for i, s := range t.list {
			l[i] = s
		}
		return l
	}
	if len(t.elems) > 0 && len(t.fields) == 0 && len(t.entity) == 0 {
		max := -1
		for i := range t.elems {
			if i > max {
				max = i
			}
		}
		out := make([]any, max+1)
		for i, e := range t.elems {
			out[i] = e.kong()
		}
		return out
	}
	m := map[string]any{}
	for k, e := range t.fields {
		m[k] = e.kong()
	}
	for i, e := range t.elems {
		m[strconv.Itoa(i+1)] = e.kong()
	}
	if len(t.entity) > 0 {
		l := make([]any, len(t.entity))
		for i, s := range t.entity {
			l[i] = s
		}
		m["@entity"] = l
	}
	return m
}

// fieldErr is one flattened error: Field is a dotted path ("" = entity).
type fieldErr struct{ Field, Msg string }

// flatten lists the tree's errors: entity-level first, then fields sorted by
// name, array elements as 1-based indexes (Kong's "protocols.1" style).
func (t *errTree) flatten(prefix string) []fieldErr {
	if t == nil {
		return nil
	}
	var out []fieldErr
	if t.msg != "" {
		return []fieldErr{{prefix, t.msg}}
	}
	for _, m := range t.list {
		out = append(out, fieldErr{prefix, m})
	}
	for _, m := range t.entity {
		out = append(out, fieldErr{prefix, m})
	}
	names := make([]string, 0, len(t.fields))
	for k := range t.fields {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		out = append(out, t.fields[k].flatten(joinPath(prefix, k))...)
	}
	idx := make([]int, 0, len(t.elems))
	for i := range t.elems {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		out = append(out, t.elems[i].flatten(joinPath(prefix, strconv.Itoa(i+1)))...)
	}
	return out
}

// ---------------------------------------------------------------- validation

type validateMode int

const (
	modeInsert validateMode = iota // fill defaults, enforce required
	modeUpdate                     // only the given fields are checked
)

// entityCheck is a cross-field rule. Fields lists the inputs: the check is
// skipped when one of them already has an error (Kong does the same).
type entityCheck struct {
	Fields []string
	Run    func(e map[string]any) []checkErr
	Desc   map[string]any // /schemas description
}

// checkErr is one entity-check failure: Field "" means an @entity message.
type checkErr struct {
	Field string
	Msg   string
}

// entitySchema is a collection's schema.
type entitySchema struct {
	Name        string // collection name ("services")
	Singular    string // "service" (flattened errors' entity_type)
	EndpointKey string
	CacheKey    []string
	Record      *field
	Checks      []entityCheck
	// Shorthand rewrites input shorthands (services.url) before validation.
	Shorthand func(in map[string]any) *errTree
	// Normalize runs after successful validation (targets: default port).
	Normalize func(e map[string]any)
	// Workspaceable rows carry ws_id in Kong's export.
	Workspaceable bool
}

func isInt(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		if n == math.Trunc(n) && !math.IsInf(n, 0) && math.Abs(n) <= 1<<63 {
			return int64(n), true
		}
	}
	return 0, false
}

func isNumber(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case float64:
		return n, !math.IsNaN(n)
	}
	return 0, false
}

func fmtNum(f float64) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e18 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func oneOfMsg(vs []any) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = fmt.Sprint(v)
	}
	return "expected one of: " + strings.Join(parts, ", ")
}

func valueIn(v any, vs []any) bool {
	for _, c := range vs {
		if c == v {
			return true
		}
		if ci, ok := isInt(c); ok {
			if vi, ok := isInt(v); ok && vi == ci {
				return true
			}
		}
	}
	return false
}

// deepCopy copies generic JSON values so defaults are never shared.
func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(t))
		for i, e := range t {
			a[i] = deepCopy(e)
		}
		return a
	case []string:
		a := make([]any, len(t))
		for i, e := range t {
			a[i] = e
		}
		return a
	case []int64:
		a := make([]any, len(t))
		for i, e := range t {
			a[i] = e
		}
		return a
	}
	return v
}

// asArray accepts a JSON array, and also an empty object: Kong decodes JSON
// with cjson, where `{}` and `[]` are the same empty Lua table, so `"tags":
// {}` is a valid empty set (fixture i11).
func asArray(v any) ([]any, bool) {
	switch t := v.(type) {
	case []any:
		return t, true
	case map[string]any:
		if len(t) == 0 {
			return []any{}, true
		}
	}
	return nil, false
}

// asRecord accepts an object, and an empty array for the same reason.
func asRecord(v any) (map[string]any, bool) {
	switch t := v.(type) {
	case map[string]any:
		return t, true
	case []any:
		if len(t) == 0 {
			return map[string]any{}, true
		}
	}
	return nil, false
}

// fillRecord returns a copy of in with absent fields set to their defaults
// (records built from their subfields' defaults, like Kong's
// process_auto_fields for inserts). Nested records given partially are
// completed too. Unknown fields are kept for validation to report.
func fillRecord(rec *field, in map[string]any) map[string]any {
	out := make(map[string]any, len(rec.Fields)+len(in))
	for k, v := range in {
		out[k] = v
	}
	for _, f := range rec.Fields {
		v, present := out[f.Name]
		if !present {
			out[f.Name] = defaultFor(f)
			continue
		}
		out[f.Name] = fillValue(f, v)
	}
	return out
}

func fillValue(f *field, v any) any {
	if v == nil {
		return nil
	}
	switch f.Type {
	case tRecord:
		if m, ok := asRecord(v); ok && len(f.Fields) > 0 {
			return fillRecord(f, m)
		}
	case tArray, tSet:
		if a, ok := asArray(v); ok {
			if f.Elements != nil && f.Elements.Type == tRecord {
				out := make([]any, len(a))
				for i, e := range a {
					out[i] = fillValue(f.Elements, e)
				}
				return out
			}
			return a
		}
	}
	return v
}

func defaultFor(f *field) any {
	if f.HasDefault {
		return deepCopy(f.Default)
	}
	if f.Type == tRecord && !f.NoAutoRecord && len(f.Fields) > 0 {
		return fillRecord(f, map[string]any{})
	}
	return nil
}

// validateRecord validates a record value against rec. In update mode only
// the fields present in the input are checked and nothing is required.
func validateRecord(rec *field, m map[string]any, mode validateMode) *errTree {
	t := &errTree{}
	known := make(map[string]bool, len(rec.Fields))
	for _, f := range rec.Fields {
		known[f.Name] = true
		v, present := m[f.Name]
		if !present {
			if mode == modeInsert && f.Required && !f.Auto {
				t.setField(f.Name, leaf("required field missing"))
			}
			continue
		}
		if v == nil {
			if f.Required && !f.Auto {
				t.setField(f.Name, leaf("required field missing"))
			}
			continue
		}
		t.setField(f.Name, validateValue(f, v, mode))
	}
	for k := range m {
		if !known[k] {
			t.setField(k, leaf("unknown field"))
		}
	}
	return t
}

func validateValue(f *field, v any, mode validateMode) *errTree {
	switch f.Type {
	case tString:
		s, ok := v.(string)
		if !ok {
			return leaf("expected a string")
		}
		min := f.LenMin
		if min == 0 {
			min = 1
		}
		if min > 0 && len(s) < min {
			return leaf(fmt.Sprintf("length must be at least %d", min))
		}
		if f.LenMax > 0 && len(s) > f.LenMax {
			return leaf(fmt.Sprintf("length must be at most %d", f.LenMax))
		}
		if f.UUID && !IsUUID(s) {
			return leaf("expected a valid UUID")
		}
		if f.OneOf != nil && !valueIn(s, f.OneOf) {
			return leaf(oneOfMsg(f.OneOf))
		}
	case tInteger:
		n, ok := isInt(v)
		if !ok {
			return leaf("expected an integer")
		}
		if f.Between != nil && (float64(n) < f.Between[0] || float64(n) > f.Between[1]) {
			return leaf(fmt.Sprintf("value should be between %s and %s", fmtNum(f.Between[0]), fmtNum(f.Between[1])))
		}
		if f.OneOf != nil && !valueIn(n, f.OneOf) {
			return leaf(oneOfMsg(f.OneOf))
		}
	case tNumber:
		n, ok := isNumber(v)
		if !ok {
			return leaf("expected a number")
		}
		if f.Between != nil && (n < f.Between[0] || n > f.Between[1]) {
			return leaf(fmt.Sprintf("value should be between %s and %s", fmtNum(f.Between[0]), fmtNum(f.Between[1])))
		}
	case tBoolean:
		if _, ok := v.(bool); !ok {
			return leaf("expected a boolean")
		}
	case tArray, tSet:
		a, ok := asArray(v)
		if !ok {
			if f.Type == tSet {
				return leaf("expected a set")
			}
			return leaf("expected an array")
		}
		if f.LenMin > 0 && len(a) < f.LenMin {
			return leaf(fmt.Sprintf("length must be at least %d", f.LenMin))
		}
		t := &errTree{}
		if f.Elements != nil {
			for i, e := range a {
				if e == nil {
					t.setElem(i, leaf("required field missing"))
					continue
				}
				t.setElem(i, validateValue(f.Elements, e, modeInsert))
			}
		}
		if !t.empty() {
			return t
		}
	case tMap:
		m, ok := asRecord(v)
		if !ok {
			return leaf("expected a map")
		}
		t := &errTree{}
		keys := sortedKeys(m)
		for _, k := range keys {
			if f.Keys != nil {
				if e := validateValue(f.Keys, k, modeInsert); !e.empty() {
					t.setField(k, e)
					continue
				}
			}
			if f.Values != nil {
				if m[k] == nil {
					t.setField(k, leaf("required field missing"))
					continue
				}
				t.setField(k, validateValue(f.Values, m[k], modeInsert))
			}
		}
		if !t.empty() {
			return t
		}
	case tRecord:
		m, ok := asRecord(v)
		if !ok {
			return leaf("expected a record")
		}
		if len(f.Fields) == 0 {
			break // generic record (plugin config without a schema)
		}
		if t := validateRecord(f, m, mode); !t.empty() {
			return t
		}
	case tForeign:
		m, ok := v.(map[string]any)
		if !ok {
			return leaf("expected a record")
		}
		id, has := m["id"]
		if !has || id == nil {
			t := &errTree{}
			t.setField("id", leaf("missing primary key"))
			return t
		}
		s, ok := id.(string)
		if !ok {
			t := &errTree{}
			t.setField("id", leaf("expected a string"))
			return t
		}
		if !IsUUID(s) {
			t := &errTree{}
			t.setField("id", leaf("expected a valid UUID"))
			return t
		}
		for k := range m {
			if k != "id" {
				t := &errTree{}
				t.setField(k, leaf("unknown field"))
				return t
			}
		}
	case tAny:
	}
	if f.Custom != nil {
		if msg := f.Custom(v); msg != "" {
			return leaf(msg)
		}
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// validateEntity validates (and in insert mode default-fills) one entity
// given in Admin-API form. It returns the normalised entity and the error
// tree (empty when valid).
func (s *entitySchema) validateEntity(in map[string]any, mode validateMode) (map[string]any, *errTree) {
	work := make(map[string]any, len(in))
	for k, v := range in {
		work[k] = v
	}
	t := &errTree{}
	if s.Shorthand != nil {
		if e := s.Shorthand(work); !e.empty() {
			for k, fe := range e.fields {
				t.setField(k, fe)
			}
		}
	}
	if mode == modeInsert {
		work = fillRecord(s.Record, work)
	}
	rt := validateRecord(s.Record, work, mode)
	for k, fe := range rt.fields {
		if _, already := t.fields[k]; !already {
			t.setField(k, fe)
		}
	}
	for _, c := range s.Checks {
		skip := false
		for _, f := range c.Fields {
			if _, bad := t.fields[f]; bad {
				skip = true
				break
			}
		}
		if skip {
			continue
		}
		for _, ce := range c.Run(work) {
			if ce.Field == "" {
				t.addEntity(ce.Msg)
			} else if _, exists := t.fields[ce.Field]; !exists {
				t.setField(ce.Field, leaf(ce.Msg))
			}
		}
	}
	if t.empty() && s.Normalize != nil {
		s.Normalize(work)
	}
	return work, t
}

// ---------------------------------------------------------------- /schemas

// describe renders a field the way Kong's /schemas endpoint does.
func (f *field) describe() map[string]any {
	d := map[string]any{"type": string(f.Type)}
	if f.Type == tAny {
		d["type"] = "json"
	}
	if f.Required {
		d["required"] = true
	}
	if f.HasDefault {
		d["default"] = deepCopy(f.Default)
	}
	if f.OneOf != nil {
		d["one_of"] = deepCopy(f.OneOf)
	}
	if f.Between != nil {
		d["between"] = []any{numOut(f.Between[0]), numOut(f.Between[1])}
	}
	if f.LenMin > 0 {
		d["len_min"] = f.LenMin
	}
	if f.LenMax > 0 {
		d["len_max"] = f.LenMax
	}
	if f.UUID {
		d["uuid"] = true
	}
	if f.Auto {
		d["auto"] = true
	}
	if f.Unique {
		d["unique"] = true
	}
	if f.Reference != "" {
		d["reference"] = f.Reference
		if f.OnDelete != "" {
			d["on_delete"] = f.OnDelete
		}
	}
	if f.Transient {
		d["transient"] = true
	}
	if f.Elements != nil {
		d["elements"] = f.Elements.describe()
	}
	if f.Keys != nil {
		d["keys"] = f.Keys.describe()
	}
	if f.Values != nil {
		d["values"] = f.Values.describe()
	}
	if f.Type == tRecord {
		fl := make([]any, 0, len(f.Fields))
		for _, s := range f.Fields {
			fl = append(fl, map[string]any{s.Name: s.describe()})
		}
		d["fields"] = fl
	}
	for k, v := range f.Extra {
		d[k] = deepCopy(v)
	}
	return d
}

func numOut(f float64) any {
	if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
		return int64(f)
	}
	return f
}

func (s *entitySchema) describe() map[string]any {
	fl := make([]any, 0, len(s.Record.Fields))
	for _, f := range s.Record.Fields {
		if f.Transient {
			continue
		}
		fl = append(fl, map[string]any{f.Name: f.describe()})
	}
	checks := make([]any, 0, len(s.Checks))
	for _, c := range s.Checks {
		if c.Desc != nil {
			checks = append(checks, deepCopy(c.Desc))
		}
	}
	out := map[string]any{"fields": fl, "entity_checks": checks}
	if s.EndpointKey != "" {
		out["endpoint_key"] = s.EndpointKey
	}
	if len(s.CacheKey) > 0 {
		ck := make([]any, len(s.CacheKey))
		for i, k := range s.CacheKey {
			ck[i] = k
		}
		out["cache_key"] = ck
	}
	return out
}

// deepCopy for map[string]any descriptors.
var _ = deepCopy
