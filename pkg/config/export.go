package config

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
)

// ExportFormatVersion is the _format_version of every document kongfb
// exports. Kong's hybrid export always writes "3.0" whatever the source was,
// because the rows are already flattened and normalised.
const ExportFormatVersion = "3.0"

// exportSection is one collection of the export document, in export order.
type exportSection struct {
	name  string
	typed []any            // pointers to copies of typed rows, ws_id filled
	extra []map[string]any // an Extra collection, verbatim
}

// exportSections lays out the document the way Kong's export_config does
// (kong/db/declarative/export.lua):
//   - collections in topological order of their foreign keys, parents first
//     (workspaces, consumers, certificates, ca_certificates, services,
//     routes, snis, upstreams, targets, plugins), then the Extra collections
//     sorted by name;
//   - rows sorted by id, because Kong pages every table ORDER BY its primary
//     key, so a Kong CP holding the same rows exports (and hashes) them in
//     this order;
//   - a collection without rows is left out, because Kong's table emitter
//     creates a collection only when it emits its first row; this is what
//     makes an empty group hash to EmptyHash, as on a Kong CP;
//   - every typed row carries ws_id: its own, else the default workspace's.
//
// When c has no workspaces, Kong's default workspace row (DefaultWorkspaceID,
// "default") is emitted so that the document loads into Kong as is.
func (c *Config) exportSections() []exportSection {
	if c == nil {
		c = &Config{}
	}
	ws := c.Workspaces
	if exportCountNonNil(ws) == 0 {
		ws = []*Workspace{exportDefaultWorkspace()}
	}
	wsID := exportDefaultWsID(ws)
	noWs := func(*Workspace, string) {}

	secs := make([]exportSection, 0, 10+len(c.Extra))
	add := func(name string, rows []any) {
		if len(rows) > 0 {
			secs = append(secs, exportSection{name: name, typed: rows})
		}
	}
	add(CollWorkspaces, exportRows(ws, func(w *Workspace) string { return w.ID }, noWs, wsID))
	add(CollConsumers, exportRows(c.Consumers, func(r *Consumer) string { return r.ID }, func(r *Consumer, id string) { exportSetWs(&r.WsID, id) }, wsID))
	add(CollCertificates, exportRows(c.Certificates, func(r *Certificate) string { return r.ID }, func(r *Certificate, id string) { exportSetWs(&r.WsID, id) }, wsID))
	add(CollCACertificates, exportRows(c.CACertificates, func(r *CACertificate) string { return r.ID }, func(r *CACertificate, id string) { exportSetWs(&r.WsID, id) }, wsID))
	add(CollServices, exportRows(c.Services, func(r *Service) string { return r.ID }, func(r *Service, id string) { exportSetWs(&r.WsID, id) }, wsID))
	add(CollRoutes, exportRows(c.Routes, func(r *Route) string { return r.ID }, func(r *Route, id string) { exportSetWs(&r.WsID, id) }, wsID))
	add(CollSNIs, exportRows(c.SNIs, func(r *SNI) string { return r.ID }, func(r *SNI, id string) { exportSetWs(&r.WsID, id) }, wsID))
	add(CollUpstreams, exportRows(c.Upstreams, func(r *Upstream) string { return r.ID }, func(r *Upstream, id string) { exportSetWs(&r.WsID, id) }, wsID))
	add(CollTargets, exportRows(c.Targets, func(r *Target) string { return r.ID }, func(r *Target, id string) { exportSetWs(&r.WsID, id) }, wsID))
	add(CollPlugins, exportRows(c.Plugins, func(r *Plugin) string { return r.ID }, func(r *Plugin, id string) { exportSetWs(&r.WsID, id) }, wsID))

	names := make([]string, 0, len(c.Extra))
	for name, rows := range c.Extra {
		// A typed collection or a top-level meta key wins over an Extra of
		// the same name: emitting both would give a duplicate JSON key.
		if len(rows) == 0 || exportIsReserved(name) {
			continue
		}
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		secs = append(secs, exportSection{name: name, extra: c.Extra[name]})
	}
	return secs
}

func exportIsReserved(name string) bool {
	switch name {
	case "_format_version", "_transform",
		CollWorkspaces, CollConsumers, CollCertificates, CollCACertificates, CollServices,
		CollRoutes, CollSNIs, CollUpstreams, CollTargets, CollPlugins:
		return true
	}
	return false
}

func exportDefaultWorkspace() *Workspace {
	// Kong fills the record fields config and meta with empty records.
	return &Workspace{ID: DefaultWorkspaceID, Name: "default", Config: map[string]any{}, Meta: map[string]any{}}
}

// exportDefaultWsID is the id rows without ws_id belong to: the workspace
// named "default" (Kong's find_default_ws), else the first one.
func exportDefaultWsID(ws []*Workspace) string {
	first := ""
	for _, w := range ws {
		if w == nil {
			continue
		}
		if w.Name == "default" && w.ID != "" {
			return w.ID
		}
		if first == "" {
			first = w.ID
		}
	}
	if first == "" {
		return DefaultWorkspaceID
	}
	return first
}

func exportSetWs(dst *string, id string) {
	if *dst == "" {
		*dst = id
	}
}

func exportCountNonNil[T any](rows []*T) int {
	n := 0
	for _, r := range rows {
		if r != nil {
			n++
		}
	}
	return n
}

// exportRows copies the non-nil rows (the Config is shared with readers and
// must not be modified), fills ws_id and sorts by id like Kong's ORDER BY on
// the uuid primary key; lower-casing makes that order hold for upper-case ids.
func exportRows[T any](rows []*T, id func(*T) string, ws func(*T, string), wsID string) []any {
	cp := make([]*T, 0, len(rows))
	for _, r := range rows {
		if r == nil {
			continue
		}
		v := *r
		ws(&v, wsID)
		cp = append(cp, &v)
	}
	slices.SortStableFunc(cp, func(a, b *T) int {
		return cmp.Compare(strings.ToLower(id(a)), strings.ToLower(id(b)))
	})
	out := make([]any, len(cp))
	for i, r := range cp {
		out[i] = r
	}
	return out
}

// hashIsEmpty reports whether c has no entities besides workspaces, which is
// Kong's definition of an empty configuration.
func (c *Config) hashIsEmpty() bool {
	if c == nil {
		return true
	}
	if exportCountNonNil(c.Services)+exportCountNonNil(c.Routes)+exportCountNonNil(c.Upstreams)+exportCountNonNil(c.Targets)+
		exportCountNonNil(c.Consumers)+exportCountNonNil(c.Plugins)+exportCountNonNil(c.Certificates)+exportCountNonNil(c.SNIs)+
		exportCountNonNil(c.CACertificates) > 0 {
		return false
	}
	for name, rows := range c.Extra {
		if len(rows) > 0 && !exportIsReserved(name) {
			return false
		}
	}
	return true
}

// MarshalJSON writes c as Kong's hybrid export document (the config.json of
// Kong's fallback configuration and the config_table of a reconfigure
// message): {"_format_version":"3.0","_transform":false,"workspaces":[…],…}.
// Collections and rows are in the order described at exportSections, keys of
// a row in Kong's field order, unset fields null, foreign keys bare ids, and
// Extra collections verbatim. The output is deterministic.
//
// The document decodes to exactly c.ExportMap(). Config.FormatVersion is not
// written: whatever c was parsed from, its typed form is already the
// flattened 3.0 shape.
func (c *Config) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(`{"_format_version":"` + ExportFormatVersion + `","_transform":false`)
	enc := json.NewEncoder(&buf)
	// Plugin configs hold regexes and templates; keep '<', '>' and '&'
	// readable instead of \u003c escapes (both are valid JSON).
	enc.SetEscapeHTML(false)
	for _, s := range c.exportSections() {
		buf.WriteString(`,`)
		exportWriteString(&buf, s.name)
		buf.WriteString(`:[`)
		n := len(s.typed) + len(s.extra)
		for i := 0; i < n; i++ {
			if i > 0 {
				buf.WriteByte(',')
			}
			var row any
			if s.typed != nil {
				row = s.typed[i]
			} else {
				row = s.extra[i]
			}
			if err := enc.Encode(row); err != nil {
				return nil, fmt.Errorf("export %s row %d%s: %w", s.name, i, exportRowIDSuffix(row), err)
			}
			// Encoder.Encode terminates each value with a newline.
			buf.Truncate(buf.Len() - 1)
		}
		buf.WriteByte(']')
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

func exportWriteString(buf *bytes.Buffer, s string) {
	b, _ := json.Marshal(s) // a string always marshals
	buf.Write(b)
}

func exportRowIDSuffix(row any) string {
	if m, ok := row.(map[string]any); ok {
		if id, ok := m["id"].(string); ok {
			return " (id " + id + ")"
		}
		return ""
	}
	rv := reflect.ValueOf(row)
	if rv.Kind() == reflect.Pointer && !rv.IsNil() && rv.Elem().Kind() == reflect.Struct {
		if f := rv.Elem().FieldByName("ID"); f.IsValid() && f.Kind() == reflect.String {
			return " (id " + f.String() + ")"
		}
	}
	return ""
}

// ExportMap returns the document MarshalJSON writes as generic JSON values,
// the same values encoding/json gives when decoding that document into any:
// map[string]any, []any, string, float64, bool and nil. Nothing in it is
// shared with c. Hash is computed over it.
func (c *Config) ExportMap() map[string]any {
	secs := c.exportSections()
	doc := make(map[string]any, len(secs)+2)
	doc["_format_version"] = ExportFormatVersion
	doc["_transform"] = false
	for _, s := range secs {
		var rows []any
		if s.typed != nil {
			rows = make([]any, len(s.typed))
			for i, r := range s.typed {
				rows[i] = exportReflect(reflect.ValueOf(r))
			}
		} else {
			rows = make([]any, len(s.extra))
			for i, r := range s.extra {
				rows[i] = exportGeneric(r)
			}
		}
		doc[s.name] = rows
	}
	return doc
}

// exportGeneric deep-copies v into generic JSON values. The common decoded
// shapes take the fast path; anything else goes through reflection.
func exportGeneric(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return x
	case bool:
		return x
	case float64:
		return x
	case json.Number:
		return hashJSONNumber(x)
	case int:
		return float64(x)
	case int64:
		return float64(x)
	case map[string]any:
		if x == nil {
			return nil
		}
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = exportGeneric(e)
		}
		return m
	case []any:
		if x == nil {
			return nil
		}
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = exportGeneric(e)
		}
		return s
	case []string:
		if x == nil {
			return nil
		}
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = e
		}
		return s
	}
	return exportReflect(reflect.ValueOf(v))
}

// exportReflect converts a reflected value to generic JSON values following
// encoding/json's rules (field names from json tags, omitempty, nil slices
// and maps as null, byte slices as base64).
func exportReflect(rv reflect.Value) any {
	switch rv.Kind() {
	case reflect.Invalid:
		return nil
	case reflect.Pointer, reflect.Interface:
		if rv.IsNil() {
			return nil
		}
		if rv.Kind() == reflect.Interface {
			return exportGeneric(rv.Elem().Interface())
		}
		return exportReflect(rv.Elem())
	case reflect.Struct:
		plan := exportPlan(rv.Type())
		m := make(map[string]any, len(plan))
		for _, f := range plan {
			fv := rv.FieldByIndex(f.index)
			if f.omitEmpty && exportIsEmptyValue(fv) {
				continue
			}
			m[f.name] = exportReflect(fv)
		}
		return m
	case reflect.String:
		return rv.String()
	case reflect.Bool:
		return rv.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(rv.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return float64(rv.Uint())
	case reflect.Float32, reflect.Float64:
		return rv.Float()
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.IsNil() {
			return nil
		}
		if rv.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, rv.Len())
			reflect.Copy(reflect.ValueOf(b), rv)
			return base64.StdEncoding.EncodeToString(b)
		}
		s := make([]any, rv.Len())
		for i := range s {
			s[i] = exportReflect(rv.Index(i))
		}
		return s
	case reflect.Map:
		if rv.IsNil() {
			return nil
		}
		if rv.Type().Key().Kind() == reflect.String {
			m := make(map[string]any, rv.Len())
			it := rv.MapRange()
			for it.Next() {
				m[it.Key().String()] = exportReflect(it.Value())
			}
			return m
		}
	}
	// Anything else (maps with non-string keys, types with their own
	// MarshalJSON): take what encoding/json makes of it.
	b, err := json.Marshal(rv.Interface())
	if err != nil {
		return nil
	}
	var g any
	if json.Unmarshal(b, &g) != nil {
		return nil
	}
	return g
}

type exportField struct {
	name      string
	index     []int
	omitEmpty bool
}

var exportPlans sync.Map // reflect.Type -> []exportField

// exportPlan lists the JSON fields of a struct type (tag name, "-" skipped,
// omitempty, untagged embedded structs flattened), cached per type.
func exportPlan(t reflect.Type) []exportField {
	if p, ok := exportPlans.Load(t); ok {
		return p.([]exportField)
	}
	var plan []exportField
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for _, sub := range exportPlan(f.Type) {
				sub.index = append([]int{i}, sub.index...)
				plan = append(plan, sub)
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		plan = append(plan, exportField{name: name, index: []int{i}, omitEmpty: strings.Contains(","+opts+",", ",omitempty,")})
	}
	exportPlans.Store(t, plan)
	return plan
}

func exportIsEmptyValue(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Array, reflect.Map, reflect.Slice, reflect.String:
		return v.Len() == 0
	case reflect.Bool:
		return !v.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int() == 0
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return v.Uint() == 0
	case reflect.Float32, reflect.Float64:
		return v.Float() == 0
	case reflect.Interface, reflect.Pointer:
		return v.IsNil()
	}
	return false
}

// WithoutDisabled returns the part of c that Kong's hybrid export sends to
// data planes (export_config with skip_disabled_entities): disabled services
// are dropped, with the routes of those services, every plugin or other
// entity pointing at a dropped service or route, and disabled plugins. A
// Kong CP hashes what remains, so Hash(c.WithoutDisabled()) is the hash a Kong
// CP holding c would push. c is not modified; unchanged rows are shared.
func (c *Config) WithoutDisabled() *Config {
	if c == nil {
		return nil
	}
	out := *c
	offSvc := map[string]bool{}
	out.Services = exportFilterRows(c.Services, func(s *Service) bool {
		if !s.Enabled {
			offSvc[s.ID] = true
			return false
		}
		return true
	})
	offRoute := map[string]bool{}
	out.Routes = exportFilterRows(c.Routes, func(r *Route) bool {
		if r.Service != nil && offSvc[*r.Service] {
			offRoute[r.ID] = true
			return false
		}
		return true
	})
	off := func(id *string) bool { return id != nil && (offSvc[*id] || offRoute[*id]) }
	out.Plugins = exportFilterRows(c.Plugins, func(p *Plugin) bool {
		return p.Enabled && !off(p.Service) && !off(p.Route)
	})
	if len(offSvc) > 0 && c.Extra != nil {
		out.Extra = make(map[string][]map[string]any, len(c.Extra))
		for name, rows := range c.Extra {
			kept := make([]map[string]any, 0, len(rows))
			for _, row := range rows {
				if exportPointsAt(row["service"], offSvc, offRoute) || exportPointsAt(row["route"], offSvc, offRoute) {
					continue
				}
				kept = append(kept, row)
			}
			out.Extra[name] = kept
		}
	}
	return &out
}

func exportFilterRows[T any](rows []*T, keep func(*T) bool) []*T {
	if rows == nil {
		return nil
	}
	out := make([]*T, 0, len(rows))
	for _, r := range rows {
		if r != nil && keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// exportPointsAt reports whether a foreign-key value of an uninterpreted row (a
// bare id, or {"id": …} in Admin API form) names a dropped service or route.
func exportPointsAt(v any, svc, route map[string]bool) bool {
	var id string
	switch x := v.(type) {
	case string:
		id = x
	case map[string]any:
		id, _ = x["id"].(string)
	}
	return id != "" && (svc[id] || route[id])
}
