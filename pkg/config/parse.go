package config

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/google/uuid"
)

// Parse reads a declarative configuration: a decK / Kong kong.yaml or JSON
// file (format 1.1, 2.1 or 3.0, entities nested or flat, foreign keys by
// name or id, `url` shorthand), or Kong's flattened export (`_transform:
// false`, rows with ws_id, foreign keys as bare ids, nulls). It fills Kong's
// defaults, generates Kong's deterministic ids for entities given without
// one, and checks schema, uniqueness and references. Malformed text gives a
// *SyntaxError; an invalid configuration gives a *ValidationError listing
// every problem.
//
// filename is used in messages and to choose the decoder: ".json" is JSON
// only, ".yml"/".yaml" YAML only, anything else (or "") tries JSON then
// YAML, like Kong.
func Parse(data []byte, filename string) (*Config, error) {
	return parseAs(data, filename, formatFor(filename))
}

// ParseJSON is Parse for input that must be JSON whatever its name (a
// control plane's config_table): YAML is not tried. name is used in
// messages.
func ParseJSON(data []byte, name string) (*Config, error) {
	return parseAs(data, name, formatJSON)
}

func parseAs(data []byte, filename string, format docFormat) (*Config, error) {
	// Fast path for JSON objects (every CP push and every fallback snapshot
	// is one): decode without recording source positions, which costs more
	// than all the validation. Positions only serve error messages, so an
	// input that fails is decoded again, with them, below.
	if format != formatYAML {
		if doc, ok := decodeJSONFast(data); ok {
			if cfg, err := validated(newParser(filename, nil).run(doc)); err == nil {
				return cfg, nil
			}
		}
	}
	doc, pos, err := decodeDocument(data, filename, format)
	if err != nil {
		return nil, err
	}
	p := newParser(filename, pos)
	return validated(p.run(doc))
}

// validated marks a config that the parser built and validated.
func validated(c *Config, err error) (*Config, error) {
	if err != nil || c == nil {
		return nil, err
	}
	c.validated = true
	return c, nil
}

// ParseFile reads and parses the file at path.
func ParseFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read declarative config %s: %w", path, err)
	}
	return Parse(data, path)
}

// entityNamespace is Kong's namespace for deterministic entity ids
// (kong/db/schema/others/declarative_config.lua): the per-collection
// namespace is UUIDv5(entityNamespace, collection), and an entity's id is
// UUIDv5(that, key).
var entityNamespace = uuid.MustParse("fd02801f-0957-4a15-a55a-c8d9606f30b5")

var collNamespaces sync.Map // collection -> uuid.UUID

// DeterministicID returns Kong's UUIDv5 id for an entity of collection coll
// whose id key is key (see entityIDKey).
func DeterministicID(coll, key string) string {
	ns, ok := collNamespaces.Load(coll)
	if !ok {
		ns, _ = collNamespaces.LoadOrStore(coll, uuid.NewSHA1(entityNamespace, []byte(coll)))
	}
	return uuid.NewSHA1(ns.(uuid.UUID), []byte(key)).String()
}

// credSchema describes the consumer-owned plugin collections kongfb keeps
// verbatim in Config.Extra, enough to nest them under consumers, give them
// Kong's ids and check their consumer reference.
type credSchema struct {
	EndpointKey string
	CacheKey    []string
}

var credentialSchemas = map[string]*credSchema{
	"keyauth_credentials":   {EndpointKey: "key", CacheKey: []string{"key"}},
	"basicauth_credentials": {EndpointKey: "username", CacheKey: []string{"username"}},
	"hmacauth_credentials":  {EndpointKey: "username", CacheKey: []string{"username"}},
	"jwt_secrets":           {EndpointKey: "key", CacheKey: []string{"key"}},
	"oauth2_credentials":    {EndpointKey: "client_id", CacheKey: []string{"client_id"}},
	"acls":                  {CacheKey: []string{"consumer", "group"}},
}

// knownExtraCollections are Kong collections kongfb does not interpret but
// accepts (kept verbatim in Config.Extra) in any file. Other unknown
// top-level arrays are accepted only in a flattened export
// (`_transform: false`), where newer Kong / Kong EE adds collections.
var knownExtraCollections = map[string]bool{
	"vaults": true, "keys": true, "key_sets": true, "parameters": true, "filter_chains": true,
	"consumer_groups": true, "consumer_group_consumers": true, "consumer_group_plugins": true,
	"oauth2_authorization_codes": true, "oauth2_tokens": true, "sessions": true, "partials": true,
	"custom_plugins": true, "degraphql_routes": true, "licenses": true,
}

// coreOrder is the topological order of the interpreted collections.
var coreOrder = []string{CollWorkspaces, CollConsumers, CollCertificates, CollCACertificates,
	CollServices, CollRoutes, CollSNIs, CollUpstreams, CollTargets, CollPlugins}

type childRel struct{ Coll, FK string }

// nestedChildren: which collections may be nested in an entity of a
// collection, and the foreign key the parent fills in the child.
var nestedChildren = func() map[string][]childRel {
	m := map[string][]childRel{}
	for _, coll := range coreOrder {
		s := schemas[coll]
		for _, f := range s.foreignFields() {
			m[f.Reference] = append(m[f.Reference], childRel{coll, f.Name})
		}
	}
	creds := make([]string, 0, len(credentialSchemas))
	for c := range credentialSchemas {
		creds = append(creds, c)
	}
	sort.Strings(creds)
	for _, c := range creds {
		m[CollConsumers] = append(m[CollConsumers], childRel{c, "consumer"})
	}
	return m
}()

func childRelFor(parent, key string) (childRel, bool) {
	for _, r := range nestedChildren[parent] {
		if r.Coll == key {
			return r, true
		}
	}
	return childRel{}, false
}

type pathSeg struct {
	key   string
	idx   int
	isIdx bool
}

func segKey(k string) pathSeg { return pathSeg{key: k} }
func segIdx(i int) pathSeg    { return pathSeg{idx: i, isIdx: true} }

func appendPath(p []pathSeg, segs ...pathSeg) []pathSeg {
	out := make([]pathSeg, 0, len(p)+len(segs))
	out = append(out, p...)
	return append(out, segs...)
}

// rawEnt is one entity found in the document.
type rawEnt struct {
	coll     string
	sch      *entitySchema // nil for credentials
	cred     *credSchema   // non-nil for credentials
	input    map[string]any
	data     map[string]any // fields to validate (nested lists, annotations, refs removed)
	refs     map[string]any // foreign field -> value as given
	parent   *rawEnt
	parentFK string
	idx      int
	docPath  string
	kpath    []pathSeg
	ws       string
	id       string
	inline   bool // an inline record in a foreign field: validated, not created
	out      map[string]any
	resolved map[string]string
	failed   bool            // has errors (phase 1 or 2)
	skipRefs map[string]bool // inline records that already failed validation
	ord      int             // document order (index in parser.ents)

	// For a Reparser: memoable entities depend on nothing but their own
	// JSON (top level, explicit id, no nested children, no inline
	// references); reused ones came from its memo; outSnap is the
	// validated record before build wrote into out.
	memoable, reused bool
	outSnap          map[string]any
	memo             *memoEnt // where a reused entity came from
	typed            any      // what build made of it (Reparser only)
}

// orderedErr is an error with the document order of its entity, so the
// final list groups errors per entity in document order.
type orderedErr struct {
	ord int
	EntityError
}

func sortedErrs(list []orderedErr) []EntityError {
	sort.SliceStable(list, func(i, j int) bool { return list[i].ord < list[j].ord })
	out := make([]EntityError, len(list))
	for i, e := range list {
		out[i] = e.EntityError
	}
	return out
}

type parser struct {
	file     string
	pos      positions
	ents     []*rawEnt
	p1, p2   *errTree
	errs1    []orderedErr // schema phase
	errs2    []orderedErr // uniqueness and reference phase
	extra    map[string][]map[string]any
	export   bool
	byID     map[string]map[string]*rawEnt
	byKey    map[string]map[string]map[string]*rawEnt // ws -> coll -> key
	fversion string

	// Reparser: remembered entities by top-level list and index, and
	// whether to snapshot validated records for the next memo.
	hits    map[string][]*memoEnt
	keepOut bool
}

func newParser(file string, pos positions) *parser {
	return &parser{
		file: file, pos: pos, p1: &errTree{}, p2: &errTree{},
		extra: map[string][]map[string]any{},
		byID:  map[string]map[string]*rawEnt{}, byKey: map[string]map[string]map[string]*rawEnt{},
	}
}

// addErr records an error into a Kong tree at path.
func addErr(root *errTree, path []pathSeg, sub *errTree) {
	if sub.empty() {
		return
	}
	node := root
	for i, s := range path {
		last := i == len(path)-1
		var next *errTree
		if s.isIdx {
			if node.elems == nil {
				node.elems = map[int]*errTree{}
			}
			next = node.elems[s.idx]
			if next == nil {
				next = &errTree{}
				node.elems[s.idx] = next
			}
		} else {
			if node.fields == nil {
				node.fields = map[string]*errTree{}
			}
			next = node.fields[s.key]
			if next == nil {
				next = &errTree{}
				node.fields[s.key] = next
			}
		}
		if last {
			mergeTree(next, sub)
		}
		node = next
	}
	if len(path) == 0 {
		mergeTree(root, sub)
	}
}

func mergeTree(dst, src *errTree) {
	if src.msg != "" {
		dst.msg = src.msg
	}
	for k, v := range src.fields {
		if dst.fields == nil {
			dst.fields = map[string]*errTree{}
		}
		if old, ok := dst.fields[k]; ok {
			mergeTree(old, v)
		} else {
			dst.fields[k] = v
		}
	}
	for k, v := range src.elems {
		if dst.elems == nil {
			dst.elems = map[int]*errTree{}
		}
		if old, ok := dst.elems[k]; ok {
			mergeTree(old, v)
		} else {
			dst.elems[k] = v
		}
	}
	dst.entity = append(dst.entity, src.entity...)
	dst.list = append(dst.list, src.list...)
}

func (p *parser) posOf(path string) (int, int) {
	if pp, ok := p.pos[path]; ok {
		return pp.Line, pp.Column
	}
	return 0, 0
}

// docError records a document-level error (not inside an entity).
func (p *parser) docError(kpath []pathSeg, docPath, field, msg string) {
	addErr(p.p1, kpath, leaf(msg))
	l, c := p.posOf(docPath)
	p.errs1 = append(p.errs1, orderedErr{-1, EntityError{Field: field, Message: msg, Line: l, Column: c}})
}

func (e *rawEnt) entityError(p *parser, field, msg string) orderedErr {
	ee := EntityError{EntityType: e.singular(), EntityID: e.id, EntityName: e.name(), EntityTags: e.tags(),
		Field: field, Message: msg, Entity: e.input}
	ee.Line, ee.Column = p.posOf(e.docPath)
	if field != "" {
		first := field
		if i := strings.IndexByte(first, '.'); i >= 0 {
			first = first[:i]
		}
		if l, c := p.posOf(joinPath(e.docPath, first)); l > 0 {
			ee.Line, ee.Column = l, c
		}
	}
	return orderedErr{e.ord, ee}
}

func (e *rawEnt) singular() string {
	if e.sch != nil {
		return e.sch.Singular
	}
	return strings.TrimSuffix(e.coll, "s")
}

func (e *rawEnt) name() string {
	src := e.input
	for _, k := range []string{"name", "username", "target", "key", "custom_id", "group", "client_id"} {
		if s, ok := src[k].(string); ok && s != "" {
			if k == "custom_id" && e.coll != CollConsumers {
				continue
			}
			return s
		}
	}
	return ""
}

func (e *rawEnt) tags() []string {
	a, ok := asArray(e.input["tags"])
	if !ok {
		return nil
	}
	var out []string
	for _, t := range a {
		if s, ok := t.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// endpointKeyValue returns the entity's unique endpoint key value, if any.
func (e *rawEnt) endpointKeyValue() (string, string) {
	ek := ""
	if e.sch != nil {
		ek = e.sch.EndpointKey
		if ek == "" || e.sch.Record.sub(ek) == nil || !e.sch.Record.sub(ek).Unique {
			return "", ""
		}
	} else if e.cred != nil {
		ek = e.cred.EndpointKey
	}
	if ek == "" {
		return "", ""
	}
	if s, ok := e.data[ek].(string); ok && s != "" {
		return ek, s
	}
	return "", ""
}

func (p *parser) run(doc any) (*Config, error) {
	root, ok := doc.(map[string]any)
	if !ok {
		msg := "failed parsing declarative configuration: expected an object"
		return nil, &ValidationError{File: p.file, Fields: map[string]any{"error": msg},
			Errors: []EntityError{{Message: msg, Line: 1, Column: 1}}}
	}
	p.topLevel(root)
	for _, e := range p.ents {
		p.validate(e)
	}
	p.register()
	p.resolve()
	p.uniqueFields()

	if len(p.errs1) > 0 || len(p.errs2) > 0 {
		fields := p.p1
		if fields.empty() {
			fields = p.p2
		}
		// Fields mirrors Kong, which stops after the schema phase when it
		// failed; Errors lists both phases.
		kf, _ := fields.kong().(map[string]any)
		errs := append(sortedErrs(p.errs1), sortedErrs(p.errs2)...)
		return nil, &ValidationError{File: p.file, Errors: errs, Fields: kf}
	}
	return p.build(), nil
}

func (p *parser) topLevel(root map[string]any) {
	// _format_version: required string, one of 1.1 / 2.1 / 3.0.
	fv, has := root["_format_version"]
	switch {
	case !has || fv == nil:
		p.docError([]pathSeg{segKey("_format_version")}, "", "_format_version", "required field missing")
	default:
		s, ok := fv.(string)
		if !ok {
			p.docError([]pathSeg{segKey("_format_version")}, "_format_version", "_format_version", "expected a string")
		} else if s != "1.1" && s != "2.1" && s != "3.0" {
			p.docError([]pathSeg{segKey("_format_version")}, "_format_version", "_format_version", "expected one of: 1.1, 2.1, 3.0")
		} else {
			p.fversion = s
		}
	}
	if tv, ok := root["_transform"]; ok && tv != nil {
		b, ok := tv.(bool)
		if !ok {
			p.docError([]pathSeg{segKey("_transform")}, "_transform", "_transform", "expected a boolean")
		} else if !b {
			p.export = true
		}
	}
	if cv, ok := root["_comment"]; ok && cv != nil {
		if _, ok := cv.(string); !ok {
			p.docError([]pathSeg{segKey("_comment")}, "_comment", "_comment", "expected a string")
		}
	}
	if iv, ok := root["_ignore"]; ok && iv != nil {
		if _, ok := asArray(iv); !ok {
			p.docError([]pathSeg{segKey("_ignore")}, "_ignore", "_ignore", "expected an array")
		}
	}
	if wv, ok := root["_workspace"]; ok && wv != nil {
		if _, ok := wv.(string); !ok {
			p.docError([]pathSeg{segKey("_workspace")}, "_workspace", "_workspace", "expected a string")
		}
	}
	if p.fversion == "1.1" || p.fversion == "2.1" {
		migrateRoutes(root)
	}
	keys := sortedKeys(root)
	for _, coll := range coreOrder {
		if v, ok := root[coll]; ok {
			p.walkList(coll, v, nil, "", coll, []pathSeg{segKey(coll)})
		}
	}
	for _, k := range keys {
		if schemas[k] != nil || strings.HasPrefix(k, "_") && isMetaKey(k) {
			continue
		}
		v := root[k]
		if credentialSchemas[k] != nil {
			p.walkList(k, v, nil, "", k, []pathSeg{segKey(k)})
			continue
		}
		if v == nil {
			continue
		}
		a, isArr := asArray(v)
		if isArr && (knownExtraCollections[k] || p.export) {
			rows := make([]map[string]any, 0, len(a))
			for i, e := range a {
				m, ok := e.(map[string]any)
				if !ok {
					p.docError([]pathSeg{segKey(k), segIdx(i)}, joinPath(k, strconv.Itoa(i)), k+"."+strconv.Itoa(i+1), "expected a record")
					continue
				}
				rows = append(rows, m)
			}
			p.extra[k] = append(p.extra[k], rows...)
			continue
		}
		p.docError([]pathSeg{segKey(k)}, k, k, "unknown field")
	}
}

func isMetaKey(k string) bool {
	switch k {
	case "_format_version", "_transform", "_comment", "_ignore", "_workspace":
		return true
	}
	return false
}

// migrateRoutes is Kong's on-the-fly migration of 1.1/2.1 files: route
// paths (top-level routes and routes nested in top-level services) that
// look like regexes get the "~" prefix.
func migrateRoutes(root map[string]any) {
	migrate := func(routes any) {
		list, _ := routes.([]any)
		for _, r := range list {
			rm, _ := r.(map[string]any)
			if rm == nil {
				continue
			}
			paths, _ := rm["paths"].([]any)
			for i, pv := range paths {
				if s, ok := pv.(string); ok {
					paths[i] = migrateRoutePath(s)
				}
			}
		}
	}
	migrate(root["routes"])
	if svcs, ok := root["services"].([]any); ok {
		for _, s := range svcs {
			if sm, ok := s.(map[string]any); ok {
				migrate(sm["routes"])
			}
		}
	}
}

// walkList collects the entities of one list (top-level or nested).
func (p *parser) walkList(coll string, v any, parent *rawEnt, parentFK, docPath string, kpath []pathSeg) {
	if v == nil {
		return
	}
	list, ok := asArray(v)
	if !ok {
		if parent != nil {
			t := &errTree{}
			t.setField(coll, leaf("expected an array"))
			addErr(p.p1, parent.kpath, t)
			p.errs1 = append(p.errs1, parent.entityError(p, coll, "expected an array"))
			parent.failed = true
			return
		}
		p.docError(kpath, docPath, coll, "expected an array")
		return
	}
	var hits []*memoEnt
	if parent == nil {
		hits = p.hits[coll]
	}
	for i, e := range list {
		if i < len(hits) && hits[i] != nil {
			// No positions: a Reparser reports no errors of its own.
			p.reuse(coll, hits[i], i)
			continue
		}
		ePath := joinPath(docPath, strconv.Itoa(i))
		eK := appendPath(kpath, segIdx(i))
		m, ok := e.(map[string]any)
		if !ok {
			// A certificate's `snis` may list plain names (the transient
			// Admin-API field).
			if s, isStr := e.(string); isStr && coll == CollSNIs && parent != nil && parent.coll == CollCertificates {
				m = map[string]any{"name": s}
			} else {
				if parent != nil {
					p.errs1 = append(p.errs1, parent.entityError(p, coll+"."+strconv.Itoa(i+1), "expected a record"))
					parent.failed = true
				} else {
					l, c := p.posOf(ePath)
					p.errs1 = append(p.errs1, orderedErr{len(p.ents), EntityError{EntityType: strings.TrimSuffix(coll, "s"),
						Field: coll + "." + strconv.Itoa(i+1), Message: "expected a record", Line: l, Column: c}})
				}
				addErr(p.p1, eK, leaf("expected a record"))
				continue
			}
		}
		p.collect(coll, m, parent, parentFK, i, ePath, eK)
	}
}

// collect splits one entity into its own fields, references and nested
// children, and walks the children.
func (p *parser) collect(coll string, m map[string]any, parent *rawEnt, parentFK string, idx int, docPath string, kpath []pathSeg) *rawEnt {
	e := &rawEnt{coll: coll, sch: schemas[coll], cred: credentialSchemas[coll], input: m,
		data: map[string]any{}, refs: map[string]any{}, parent: parent, parentFK: parentFK,
		idx: idx, docPath: docPath, kpath: kpath, ord: len(p.ents)}
	if parent != nil {
		e.ws = parent.ws
	}
	p.ents = append(p.ents, e)
	type childList struct {
		rel childRel
		v   any
	}
	var children []childList
	field1 := &errTree{}
	for _, k := range sortedKeys(m) {
		v := m[k]
		switch k {
		case "_comment":
			if _, ok := v.(string); !ok && v != nil {
				field1.setField(k, leaf("expected a string"))
			}
			continue
		case "_ignore":
			if _, ok := asArray(v); !ok && v != nil {
				field1.setField(k, leaf("expected an array"))
			}
			continue
		case "ws_id":
			if s, ok := v.(string); ok {
				e.ws = s
			} else if v != nil {
				field1.setField(k, leaf("expected a string"))
			}
			continue
		}
		if rel, ok := childRelFor(coll, k); ok {
			// certificates.snis is the transient Admin-API field and also
			// the nested SNI list: either way it creates SNI entities.
			children = append(children, childList{rel, v})
			continue
		}
		if e.sch != nil {
			if f := e.sch.Record.sub(k); f != nil && f.Type == tForeign {
				e.refs[k] = v
				continue
			}
			if e.sch.Record.sub(k) == nil && v == nil {
				// Newer Kong / Kong EE export nullable fields kongfb does
				// not know (services.tls_sans): null means unset, drop it.
				continue
			}
		} else if k == "consumer" && e.cred != nil {
			e.refs[k] = v
			continue
		}
		e.data[k] = v
	}
	if p.keepOut && parent == nil && len(children) == 0 {
		_, hasID := e.data["id"].(string)
		e.memoable = hasID
	}
	// The id is known before the children are walked: they may need it
	// (cache keys of nested entities use the parent's id).
	p.assignID(e)
	if !field1.empty() {
		addErr(p.p1, kpath, field1)
		for _, fe := range field1.flatten("") {
			p.errs1 = append(p.errs1, e.entityError(p, fe.Field, fe.Msg))
		}
		e.failed = true
	}
	for _, c := range children {
		p.walkList(c.rel.Coll, c.v, e, c.rel.FK, joinPath(docPath, c.rel.Coll), appendPath(kpath, segKey(c.rel.Coll)))
	}
	return e
}

const placeholderID = "00000000-0000-0000-0000-000000000000"

// validate runs the schema over one entity (phase 1).
func (p *parser) validate(e *rawEnt) {
	if e.reused {
		return
	}
	if e.sch == nil {
		if e.cred != nil {
			e.out = e.data
		}
		return
	}
	work := make(map[string]any, len(e.data)+len(e.refs))
	for k, v := range e.data {
		work[k] = v
	}
	refErrs := &errTree{}
	for _, f := range e.sch.foreignFields() {
		rv, has := e.refs[f.Name]
		switch {
		case has && rv == nil:
			work[f.Name] = nil
		case has:
			switch t := rv.(type) {
			case string:
				if t == "" {
					refErrs.setField(f.Name, leaf("length must be at least 1"))
				}
				work[f.Name] = map[string]any{"id": placeholderID}
			case map[string]any:
				if isInlineRecord(t) {
					e.memoable = false
					p.inline(e, f, t)
				}
				work[f.Name] = map[string]any{"id": placeholderID}
			default:
				refErrs.setField(f.Name, leaf("expected a string"))
				work[f.Name] = map[string]any{"id": placeholderID}
			}
		case e.parentFK == f.Name:
			work[f.Name] = map[string]any{"id": placeholderID}
		}
	}
	out, t := e.sch.validateEntity(work, modeInsert)
	for k, v := range refErrs.fields {
		t.setField(k, v)
	}
	e.out = out
	if e.inline {
		return
	}
	if !t.empty() {
		e.failed = true
		addErr(p.p1, e.kpath, t)
		for _, fe := range t.flatten("") {
			p.errs1 = append(p.errs1, e.entityError(p, fe.Field, fe.Msg))
		}
	}
	p.snapshotOut(e)
}

// isInlineRecord: a foreign value given as a whole record rather than
// {"id": …} (Kong validates it against the referenced schema, fixture i07).
func isInlineRecord(m map[string]any) bool {
	for k := range m {
		if k != "id" {
			return true
		}
	}
	return false
}

func (p *parser) inline(owner *rawEnt, f *field, m map[string]any) {
	sch := schemas[f.Reference]
	e := &rawEnt{coll: f.Reference, sch: sch, input: m, data: m, refs: map[string]any{},
		docPath: joinPath(owner.docPath, f.Name), kpath: appendPath(owner.kpath, segKey(f.Name)), inline: true, ord: owner.ord}
	_, t := sch.validateEntity(m, modeInsert)
	if !t.empty() {
		owner.failed = true
		if owner.skipRefs == nil {
			owner.skipRefs = map[string]bool{}
		}
		owner.skipRefs[f.Name] = true
		addErr(p.p1, e.kpath, t)
		for _, fe := range t.flatten("") {
			p.errs1 = append(p.errs1, e.entityError(p, fe.Field, fe.Msg))
		}
	}
}

// assignID gives an entity its id: the one given, else Kong's deterministic
// UUIDv5 from its cache key or unique endpoint key, else (where Kong would
// use a random UUID) a UUIDv5 of its position: "kongfb:<parent id>:<coll>:<index>"
// nested, "kongfb:<coll>:<index>" at the top level. The same file therefore
// always yields the same ids.
func (p *parser) assignID(e *rawEnt) {
	if v, ok := e.data["id"]; ok && v != nil {
		if s, ok := v.(string); ok {
			e.id = s
		}
		return
	}
	key := e.idKey()
	if key == "" {
		if e.parent != nil {
			key = "kongfb:" + e.parent.id + ":" + e.coll + ":" + strconv.Itoa(e.idx)
		} else {
			key = "kongfb:" + e.coll + ":" + strconv.Itoa(e.idx)
		}
	}
	e.id = DeterministicID(e.coll, key)
}

// idKey is Kong's get_key_for_uuid_gen: the cache key
// ("<coll>:<ws|*>:<k1>:<k2>…", the parent's id standing in for the foreign
// key a nested entity inherits), else the unique endpoint key value.
func (e *rawEnt) idKey() string {
	var cacheKey []string
	var ek string
	if e.sch != nil {
		cacheKey, ek = e.sch.CacheKey, e.sch.EndpointKey
	} else if e.cred != nil {
		cacheKey, ek = e.cred.CacheKey, e.cred.EndpointKey
	}
	if len(cacheKey) > 0 {
		ws := e.ws
		if ws == "" {
			ws = "*"
		}
		ck := []string{e.coll, ws}
		for _, k := range cacheKey {
			v, present := e.data[k]
			isRef := false
			if rv, ok := e.refs[k]; ok {
				v, present, isRef = rv, true, true
			}
			switch t := v.(type) {
			case string:
				ck = append(ck, t)
			default:
				if present {
					// A null or a {id=…} table: Kong appends nothing.
					_ = isRef
					continue
				}
				if k == e.parentFK && e.parent != nil {
					if e.parent.id == "" {
						return ""
					}
					ck = append(ck, e.parent.id)
					continue
				}
				if e.sch != nil {
					if f := e.sch.Record.sub(k); f != nil && f.Required {
						return ""
					}
				}
				ck = append(ck, "")
			}
		}
		return strings.Join(ck, ":")
	}
	if ek != "" {
		if s, ok := e.data[ek].(string); ok {
			return s
		}
	}
	return ""
}

func wsKey(ws string) string {
	if ws == "" {
		return "*"
	}
	return ws
}

// uniquenessMsg is Kong's wording.
func uniquenessMsg(coll, field, value string) string {
	return fmt.Sprintf("uniqueness violation: '%s' entity with %s set to '%s' already declared", coll, field, value)
}

// register indexes entities by id and endpoint key, reporting duplicates
// like Kong's populate_references (phase 2).
func (p *parser) register() {
	for _, e := range p.ents {
		failed := false
		if ek, key := e.endpointKeyValue(); key != "" {
			ws := wsKey(e.ws)
			if p.byKey[ws] == nil {
				p.byKey[ws] = map[string]map[string]*rawEnt{}
			}
			if p.byKey[ws][e.coll] == nil {
				p.byKey[ws][e.coll] = map[string]*rawEnt{}
			}
			if _, dup := p.byKey[ws][e.coll][key]; dup {
				msg := uniquenessMsg(e.coll, ek, key)
				addErr(p.p2, []pathSeg{segKey(e.coll), segIdx(e.idx)}, leaf(msg))
				p.errs2 = append(p.errs2, e.entityError(p, "", msg))
				e.failed, failed = true, true
			} else {
				p.byKey[ws][e.coll][key] = e
			}
		}
		if e.id == "" {
			continue
		}
		if p.byID[e.coll] == nil {
			p.byID[e.coll] = map[string]*rawEnt{}
		}
		_, dup := p.byID[e.coll][e.id]
		if dup && !failed {
			msg := uniquenessMsg(e.coll, "primary key", e.id)
			path := []pathSeg{segKey(e.coll), segIdx(e.idx)}
			if e.parent != nil {
				path = []pathSeg{segKey(e.parent.coll), segIdx(e.parent.idx), segKey(e.coll), segIdx(e.idx)}
			}
			addErr(p.p2, path, leaf(msg))
			p.errs2 = append(p.errs2, e.entityError(p, "", msg))
			e.failed = true
			continue
		}
		if !dup {
			p.byID[e.coll][e.id] = e
		}
	}
}

func (p *parser) find(ws, coll, key string) *rawEnt {
	if m := p.byKey[wsKey(ws)][coll]; m != nil {
		if e := m[key]; e != nil {
			return e
		}
	}
	if ws != "" {
		if m := p.byKey["*"][coll]; m != nil {
			if e := m[key]; e != nil {
				return e
			}
		}
	}
	return p.byID[coll][key]
}

// refAt is where Kong files a reference error: the endpoint key value, else
// the id.
func (e *rawEnt) refAt() pathSeg {
	if _, key := e.endpointKeyValue(); key != "" {
		return segKey(key)
	}
	if e.id != "" {
		return segKey(e.id)
	}
	return segIdx(e.idx)
}

func (p *parser) refError(e *rawEnt, field, shown, coll string) {
	msg := fmt.Sprintf("invalid reference '%s: %s' (no such entry in '%s')", field, shown, coll)
	t := &errTree{list: []string{msg}}
	addErr(p.p2, []pathSeg{segKey(e.coll), e.refAt()}, t)
	p.errs2 = append(p.errs2, e.entityError(p, field, msg))
	e.failed = true
}

// resolve turns every foreign reference (nested parent, name or id) into an
// id and reports the ones that point nowhere.
func (p *parser) resolve() {
	for _, e := range p.ents {
		e.resolved = map[string]string{}
		var fks []struct{ name, ref string }
		if e.sch != nil {
			for _, f := range e.sch.foreignFields() {
				fks = append(fks, struct{ name, ref string }{f.Name, f.Reference})
			}
		} else if e.cred != nil {
			fks = append(fks, struct{ name, ref string }{"consumer", CollConsumers})
		}
		for _, fk := range fks {
			rv, has := e.refs[fk.name]
			if !has {
				if e.parentFK == fk.name && e.parent != nil {
					e.resolved[fk.name] = e.parent.id
				}
				continue
			}
			if rv == nil || e.skipRefs[fk.name] {
				continue
			}
			var key, shown string
			switch t := rv.(type) {
			case string:
				key, shown = t, t
			case map[string]any:
				key, _ = t["id"].(string)
				shown = compactJSON(t)
			default:
				continue // reported by the schema phase
			}
			found := (*rawEnt)(nil)
			if key != "" {
				found = p.find(e.ws, fk.ref, key)
			}
			if found == nil {
				p.refError(e, fk.name, shown, fk.ref)
				continue
			}
			e.resolved[fk.name] = found.id
		}
		if e.coll == CollServices && e.out != nil {
			for _, id := range gStrs(e.out, "ca_certificates") {
				if p.byID[CollCACertificates][id] == nil {
					p.refError(e, "ca_certificates", id, CollCACertificates)
				}
			}
		}
	}
}

// uniqueFields checks the unique fields other than the endpoint key (e.g.
// consumers.custom_id), as Kong's flatten does.
func (p *parser) uniqueFields() {
	seen := map[string]*rawEnt{}
	for _, e := range p.ents {
		if e.sch == nil || e.out == nil {
			continue
		}
		for _, f := range e.sch.Record.Fields {
			if !f.Unique || f.Name == e.sch.EndpointKey || f.Type == tForeign {
				continue
			}
			s, ok := e.out[f.Name].(string)
			if !ok || s == "" {
				continue
			}
			k := e.coll + "\x00" + f.Name + "\x00" + wsKey(e.ws) + "\x00" + s
			if seen[k] != nil {
				msg := uniquenessMsg(e.coll, f.Name, s)
				at := segKey(e.id)
				if _, key := e.endpointKeyValue(); key != "" {
					at = segKey(key)
				}
				addErr(p.p2, []pathSeg{segKey(e.coll), at}, leaf(msg))
				p.errs2 = append(p.errs2, e.entityError(p, "", msg))
				e.failed = true
				continue
			}
			seen[k] = e
		}
	}
}

// build assembles the typed configuration from the validated entities.
func (p *parser) build() *Config {
	c := &Config{FormatVersion: "3.0"}
	for _, coll := range coreOrder {
		for _, e := range p.ents {
			if e.coll != coll || e.sch == nil || e.inline || e.out == nil {
				continue
			}
			fks := e.sch.foreignFields()
			if e.reused && e.memo.typed != nil && sameRefs(e.memo.refIDs, fks, e.resolved) {
				// Same JSON, same resolved references: the same entity.
				c.appendTyped(e.memo.typed)
				continue
			}
			m := e.out
			if e.reused {
				// The memo's record is shared: build into a copy.
				m = make(map[string]any, len(e.out)+len(fks)+2)
				for k, v := range e.out {
					m[k] = v
				}
			}
			m["id"] = e.id
			for _, f := range fks {
				if id, ok := e.resolved[f.Name]; ok {
					m[f.Name] = map[string]any{"id": id}
				} else {
					m[f.Name] = nil
				}
			}
			if e.ws != "" {
				m["ws_id"] = e.ws
			}
			typed := toTyped(coll, m)
			c.appendTyped(typed)
			if p.keepOut {
				e.typed = typed
			}
		}
	}
	// Credentials: flat rows, consumer as a bare id like Kong's export.
	for _, e := range p.ents {
		if e.cred == nil {
			continue
		}
		row := make(map[string]any, len(e.data)+3)
		for k, v := range e.data {
			row[k] = v
		}
		row["id"] = e.id
		if v, has := row["ttl"]; has && v == nil {
			// Kong accepts `ttl: ~` on credentials and does not store it.
			delete(row, "ttl")
		}
		if id, ok := e.resolved["consumer"]; ok {
			row["consumer"] = id
		} else if rv, has := e.refs["consumer"]; has {
			row["consumer"] = rv
		}
		if e.ws != "" {
			row["ws_id"] = e.ws
		}
		p.extra[e.coll] = append(p.extra[e.coll], row)
	}
	if len(p.extra) > 0 {
		c.Extra = p.extra
	}
	return c
}
