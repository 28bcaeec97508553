package config

import (
	"bytes"
	"encoding/json"
	"sync"

	"github.com/kongfb/kongfb/pkg/jsonscan"
)

// Reparser parses successive versions of one configuration, such as the
// full configuration a control plane pushes to a data plane on every change.
// Most entities are byte-for-byte the same from one push to the next, and
// decoding and schema-validating each of them is most of a parse, so a
// Reparser remembers the validated form of every top-level entity of its
// last successful parse, keyed by the entity's exact JSON, and reuses it when
// the same bytes come again.
//
// The result is the same as Parse's for the same input, and nothing is
// skipped that depends on more than the entity itself: ids, endpoint keys,
// uniqueness and every reference are checked again over the whole document.
// An input that fails is parsed again by Parse, so its errors carry
// positions. Only JSON objects use the memo (Kong's export, as pushed by a
// control plane); anything else is handed to Parse.
//
// Configs returned by a Reparser share unchanged entities (the *Route,
// *Service… values and what they hold) with earlier results. Configs are
// read-only after parsing; a caller that wants to modify one must copy it.
//
// A Reparser is safe for concurrent use; parses run one at a time.
type Reparser struct {
	mu sync.Mutex
	// mode is the document settings the memo was built under
	// (_format_version and _transform as raw JSON): entities validate
	// differently under other settings, so a change empties the memo.
	mode string
	memo map[string]map[string]*memoEnt // collection -> entity JSON -> entity
}

// memoEnt is one entity as collect and validate left it.
type memoEnt struct {
	key               string // the entity's JSON
	input, data, refs map[string]any
	id, ws            string
	// out is the validated record before build added ids and references
	// (build writes into a copy).
	out map[string]any
	// typed is the entity build made, valid while the references resolve
	// to refIDs (foreignFields order).
	typed  any
	refIDs []string
}

// Parse parses data like Parse(data, filename), reusing the entities that
// are unchanged since the last successful Parse of this Reparser.
func (r *Reparser) Parse(data []byte, filename string) (*Config, error) {
	return r.parseAs(data, filename, formatFor(filename))
}

// ParseJSON is ParseJSON(data, name) reusing unchanged entities.
func (r *Reparser) ParseJSON(data []byte, name string) (*Config, error) {
	return r.parseAs(data, name, formatJSON)
}

func (r *Reparser) parseAs(data []byte, filename string, format docFormat) (*Config, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if format != formatYAML {
		if cfg, ok := r.parseWith(data, newParser(filename, nil)); ok {
			return cfg, nil
		}
	}
	cfg, err := parseAs(data, filename, format)
	if err == nil {
		// A valid document the memo path could not take (YAML, format
		// 1.1/2.1): the next one starts afresh.
		r.memo, r.mode = nil, ""
	}
	return cfg, err
}

// parseWith is the memo path, with the parser given (tests look at its
// entities); false means "let Parse do it" (not applicable, or invalid:
// Parse gives the positioned errors).
func (r *Reparser) parseWith(data []byte, p *parser) (*Config, bool) {
	top, ok := jsonscan.Object(data)
	if !ok {
		return nil, false
	}
	fv := string(top.Get("_format_version"))
	if fv == `"1.1"` || fv == `"2.1"` {
		// migrateRoutes rewrites route records in place; keep them
		// private to one parse.
		return nil, false
	}
	mode := fv + "\x00" + string(top.Get("_transform"))
	memo := r.memo
	if mode != r.mode {
		memo = nil
	}

	root := make(map[string]any, len(top))
	raws := map[string][][]byte{}
	hits := map[string][]*memoEnt{}
	for _, kv := range top {
		k, raw := kv.Key, kv.Raw
		if schemas[k] != nil && raw[0] == '[' {
			elems, ok := jsonscan.Array(raw)
			if !ok {
				return nil, false
			}
			list := make([]any, len(elems))
			var found []*memoEnt
			for i, el := range elems {
				if h := memo[k][string(el)]; h != nil {
					if found == nil {
						found = make([]*memoEnt, len(elems))
					}
					found[i] = h
					list[i] = h.input
					continue
				}
				v, ok := decodeJSONValue(el, 3)
				if !ok {
					return nil, false
				}
				list[i] = v
			}
			// A repeated key: the last one counts, as in decodeJSON.
			root[k] = list
			raws[k] = elems
			hits[k] = found
			continue
		}
		v, ok := decodeJSONValue(raw, 2)
		if !ok {
			return nil, false
		}
		root[k] = v
		delete(raws, k)
		delete(hits, k)
	}

	p.hits = hits
	p.keepOut = true
	cfg, err := validated(p.run(root))
	if err != nil {
		return nil, false
	}

	next := map[string]map[string]*memoEnt{}
	for _, e := range p.ents {
		if e.parent != nil || e.inline || e.sch == nil || !e.memoable || e.failed || e.outSnap == nil {
			continue
		}
		list := raws[e.coll]
		if e.idx >= len(list) {
			continue
		}
		if next[e.coll] == nil {
			next[e.coll] = map[string]*memoEnt{}
		}
		fks := e.sch.foreignFields()
		if e.memo != nil {
			if e.typed != nil {
				// Reused, but its references resolved differently.
				m := *e.memo
				m.typed, m.refIDs = e.typed, refIDs(fks, e.resolved)
				next[e.coll][m.key] = &m
				continue
			}
			next[e.coll][e.memo.key] = e.memo
			continue
		}
		key := string(list[e.idx])
		next[e.coll][key] = &memoEnt{key: key, input: e.input, data: e.data, refs: e.refs,
			id: e.id, ws: e.ws, out: e.outSnap, typed: e.typed, refIDs: refIDs(fks, e.resolved)}
	}
	r.memo, r.mode = next, mode
	return cfg, true
}

// decodeJSONValue decodes one JSON value found at nesting depth (the
// document is 1) as decodeJSON would: numbers via numberValue, depth
// bounded. It reports false for anything decodeJSON would reject.
func decodeJSONValue(raw []byte, depth int) (any, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, false
	}
	switch t := v.(type) {
	case json.Number:
		return numberValue(string(t)), true
	case map[string]any, []any:
		if !fixNumbers(t, depth) {
			return nil, false
		}
	}
	return v, true
}

// reuse adds a remembered entity at position idx of a top-level list in
// place of collecting and validating it again.
//
// The entity gets no document path: when anything in the document fails,
// Reparser.Parse discards this parse and Parse reports the errors with
// positions.
func (p *parser) reuse(coll string, h *memoEnt, idx int) {
	// out is shared with the memo; build copies it before writing.
	e := &rawEnt{coll: coll, sch: schemas[coll], input: h.input, data: h.data, refs: h.refs,
		idx: idx, ord: len(p.ents), id: h.id, ws: h.ws,
		out: h.out, outSnap: h.out, memoable: true, reused: true, memo: h}
	p.ents = append(p.ents, e)
}

// refIDs lists an entity's resolved references in foreignFields order.
func refIDs(fks []*field, resolved map[string]string) []string {
	ids := make([]string, len(fks))
	for i, f := range fks {
		ids[i] = resolved[f.Name]
	}
	return ids
}

func sameRefs(ids []string, fks []*field, resolved map[string]string) bool {
	if len(ids) != len(fks) {
		return false
	}
	for i, f := range fks {
		if resolved[f.Name] != ids[i] {
			return false
		}
	}
	return true
}

// snapshotOut keeps the validated record of an entity that a Reparser may
// remember, before build writes ids and references into it.
func (p *parser) snapshotOut(e *rawEnt) {
	if !p.keepOut || !e.memoable || e.failed || e.out == nil {
		return
	}
	snap := make(map[string]any, len(e.out))
	for k, v := range e.out {
		snap[k] = v
	}
	e.outSnap = snap
}
